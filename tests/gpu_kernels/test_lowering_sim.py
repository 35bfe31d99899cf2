"""CI (no GPU): lowered programs run on the numpy kernel model (kernel_sim) against the CPU
reference -- element-wise fusion, views, concat slots, the space-to-depth stem and whole
models, checked end to end without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import FUSED_IN, FUSED_OPS, lower
from tandem.zoo import build_model
from tandem.zoo.builder import GraphBuilder
from tandem.zoo.detection import _yolo_detect
from tests.devices.gpu_cases import build, cases, feeds_for, graph_of, reference, rel_err
from tests.gpu_kernels.kernel_sim import simulate

TOL = {"fp32": 1e-5, "fp16": 1e-2}
MODELLED = {"MatMul", "Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Relu", "Sigmoid", "Tanh",
            "LeakyRelu", "HardSwish", "HardSigmoid", "Abs", "Neg", "Exp", "Elu", "Softplus",
            "Clip", "Concat", "Transpose", "Slice", "Split", "Reshape", "Flatten",
            "BatchNormalization", "Gather", "MaxPool", "AveragePool", "Resize", "Softmax",
            "LayerNormalization"}
CASES = [c for c in cases() if c.op in MODELLED or c.name in (
    "conv3x3", "conv_stem_c3", "conv_stride2", "conv1x1_oddk", "conv_dilated", "conv_depthwise",
    "conv_dw_stride2", "conv_dw_c12", "conv_grouped", "conv_grouped_resnext",
    "conv_grouped_regnet", "conv_grouped_wide", "conv_grouped_c3")]


def _check(graph, precision: str, arch: int = 90, tol: float | None = None):
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=arch)
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    for name, r in ref.items():
        err = rel_err(got[name], r)
        assert err <= (tol or TOL[precision]), (name, err)
    return prog


def _kernels(prog) -> list[str]:
    return [ln.kernel for ln in prog.launches]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_layer_matches_reference(case, precision) -> None:
    if case.name == "resize_linear":
        pytest.skip("linear resizing is not modelled by kernel_sim")
    _check(graph_of(build(case)), precision)


def _detect_head(batch: int = 2, resolution: int = 64):
    """YOLOv5's decode head (sigmoid, split, grid / anchor arithmetic, concats) on inputs."""
    g = GraphBuilder("head")
    feats = [(g.input(f"p{i}", [batch, c, resolution // s, resolution // s]), c)
             for i, (c, s) in enumerate([(16, 8), (32, 16), (64, 32)])]
    return graph_of(g.build([_yolo_detect(g, feats, batch, resolution)]))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_detect_head_is_one_fused_kernel_per_branch(precision) -> None:
    prog = _check(_detect_head(), precision)
    ks = _kernels(prog)
    # per scale: a 1x1 conv, then one fused kernel (xy, wh and conf its pieces) written
    # straight into the scale's rows of the FP32 output (its concat and the outer one are
    # views of it); no separate activation / arithmetic / transpose kernels, no concat copy,
    # no output cast
    assert ks.count("fused_f32" if precision == "fp32" else "fused_f16_f32") == 3
    assert not any(k.startswith(("binary", "unary")) for k in ks)
    assert not [ln.layer for ln in prog.launches if ln.kernel.startswith("copy_")
                and not ln.layer.startswith("model.24.m.")], ks


def _chain_model(n_inputs: int, n_ops: int):
    """Add / Mul / Sigmoid chain over many inputs: longer than one fused kernel takes."""
    names = [f"x{i}" for i in range(n_inputs)]
    nodes, prev = [], "x0"
    for j in range(n_ops):
        out = f"t{j}"
        if j % 3 == 2:
            nodes.append(helper.make_node("Sigmoid", [prev], [out], name=f"sig{j}"))
        else:
            other = names[(j + 1) % n_inputs]
            nodes.append(helper.make_node("Add" if j % 3 else "Mul", [prev, other], [out],
                                          name=f"op{j}"))
        prev = out
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    shapes = {n: [2, 3, 5] if i % 2 else [3, 1] for i, n in enumerate(names)}
    shapes["x0"] = [2, 3, 5]
    graph = helper.make_graph(
        nodes, "chain", [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n])
                         for n in names],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    return graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("n_inputs,n_ops", [(3, 5), (FUSED_IN + 3, 12), (4, FUSED_OPS + 9)])
def test_long_chains_are_cut_to_what_the_kernel_takes(n_inputs, n_ops) -> None:
    prog = _check(_chain_model(n_inputs, n_ops), "fp32")
    fused = [ln for ln in prog.launches if ln.kernel == "fused_f32"]
    assert all(ln.ints[1] <= FUSED_IN and ln.ints[2] <= FUSED_OPS for ln in fused)
    assert len(fused) == 1 if n_inputs <= FUSED_IN and n_ops <= FUSED_OPS else len(fused) > 1


def test_silu_reads_its_input_once_and_shared_values_are_computed_once() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 3, 3])
    nodes = [helper.make_node("Exp", ["x"], ["e"], name="exp"),  # read by two layers
             helper.make_node("Sigmoid", ["e"], ["s"], name="sig"),
             helper.make_node("Mul", ["e", "s"], ["y0"], name="silu"),
             helper.make_node("Neg", ["e"], ["y1"], name="neg")]
    graph = helper.make_graph(nodes, "g", [x], [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y0", "y1")])
    prog = _check(graph_of(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17)])), "fp16")
    fused = [ln for ln in prog.launches if ln.kernel.startswith("fused_f16")]
    assert len(fused) == 3  # e (two readers) once, then e * sigmoid(e) and -e
    # the two output chains write the FP32 outputs themselves: no conversion copy after them
    assert [ln.kernel for ln in fused if ln.layer.startswith("output:")] == ["fused_f16_f32"] * 2
    assert [ln.kernel for ln in prog.launches if ln.kernel.startswith("copy_")] \
        == ["copy_f32_f16"]  # the input's conversion only
    silu = next(ln for ln in fused if ln.layer == "output:y0" or ln.ints[2] == 2)
    assert silu.ints[1] == 1  # x * sigmoid(x): one input register, two instructions


def test_rgb_stem_runs_as_space_to_depth_then_a_stride1_conv() -> None:
    case = next(c for c in cases() if c.name == "conv_stem_c3")  # 7x7 / 2, C = 3
    prog = _check(graph_of(build(case)), "fp16")
    ks = _kernels(prog)
    assert ks[0] == "space_to_depth_f32_f16" and "memset" not in ks
    conv = next(ln for ln in prog.launches if ln.kernel == "conv_mma_f16")
    assert conv.problem is not None
    p = conv.problem
    assert (p.c, p.r, p.s, p.stride, p.pad) == (16, 4, 4, (1, 1), (0, 0))


@pytest.mark.parametrize("name,resolution", [("yolov5s", 64), ("resnet18", 64),
                                             ("unet-small", 32)])
def test_zoo_model_runs_on_the_kernel_model(name, resolution) -> None:
    graph = graph_of(build_model(name, 1, resolution))
    prog = _check(graph, "fp16", tol=2e-2)
    assert not any(k.startswith(("binary", "unary")) for k in _kernels(prog))
    assert np.isfinite(prog.arena_bytes)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("batch", [1, 3])
def test_attention_reads_and_writes_its_head_views_in_place(batch, precision) -> None:
    """ViT blocks: Q, K^T and V are read from the QKV projection, the context is written
    straight into the head-merged layout (two-level batch strides: batch x heads), and the
    1/sqrt(d) scale runs inside the softmax -- no copy or element-wise kernel per block."""
    depth = 2
    prog = _check(graph_of(build_model("vit-tiny", batch, 32, depth=depth)), precision,
                  tol=2e-2 if precision == "fp16" else 1e-4)
    per_block = [ln.kernel.rsplit("_", 1)[0] for ln in prog.launches
                 if ln.layer.startswith("blocks.1.")]
    assert per_block == ["layernorm_lastdim", "conv_mma" if precision == "fp16" else
                         "conv_tiled", "bmm", "softmax_lastdim", "bmm", per_block[5],
                         "layernorm_lastdim", per_block[7], per_block[8]], per_block
    assert sum(k.startswith("bmm") for k in _kernels(prog)) == 2 * depth
    softmax = [ln for ln in prog.launches if ln.kernel.startswith("softmax")]
    assert all(ln.floats == [pytest.approx(64 ** -0.5)] for ln in softmax)


def _scaled_attention(scale_q: str, scale_k: str, shared: bool = False):
    """torchvision's MultiheadAttention export in small: Q (2 x 3 heads x 5 x 8) and K^T each
    scaled by a constant (``scale_q`` / ``scale_k``: "Mul", "Div" or "" for none) before
    Q @ K^T; ``shared``: the scaled Q is also a graph output (a second reader)."""
    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
             for n, v in (("cq", 8 ** -0.25), ("ck", 8 ** 0.25))]
    nodes = [helper.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 1, 3, 2])]
    q, k = "q", "kt"
    if scale_q:
        nodes.append(helper.make_node(scale_q, ["q", "cq"], ["qs"], name="scale_q"))
        q = "qs"
    if scale_k:
        nodes.append(helper.make_node(scale_k, ["kt", "ck"], ["ks"], name="scale_k"))
        k = "ks"
    nodes.append(helper.make_node("MatMul", [q, k], ["s"], name="qk"))
    outs = ["s"] + (["qs"] if shared else [])
    graph = helper.make_graph(
        nodes, "scaled_attention",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, 5, 8]) for n in "qk"],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outs], inits)
    return graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("scale_q,scale_k,alpha", [
    ("Mul", "Mul", 8 ** -0.25 * 8 ** 0.25), ("Mul", "Div", 8 ** -0.25 / 8 ** 0.25),
    ("", "Mul", 8 ** 0.25), ("Div", "", 8 ** 0.25)])
def test_constant_scales_of_a_batched_product_are_its_alpha(precision, scale_q, scale_k,
                                                           alpha) -> None:
    """Q * c1 @ (K^T * c2) (torchvision's ViT and Swin scale both by d^-1/4) is one bmm with
    alpha c1 c2 that reads Q and K^T in place: no element-wise kernel for the scales."""
    prog = _check(_scaled_attention(scale_q, scale_k), precision)
    kernels = _kernels(prog)  # besides: the graph inputs' and output's format copies
    assert not any(k.startswith("fused") for k in kernels), kernels
    (bmm,) = [ln for ln in prog.launches if ln.kernel.startswith("bmm")]
    assert bmm.floats[2] == pytest.approx(alpha, rel=1e-6)


def test_a_scale_with_another_reader_is_computed_once() -> None:
    """The scaled Q is also a graph output: it is written once (one fused kernel) and the
    product reads it, alpha 1 on that side."""
    prog = _check(_scaled_attention("Mul", "Mul", shared=True), "fp32")
    kernels = _kernels(prog)
    assert kernels.count("fused_f32") == 1 and kernels.count("bmm_f32") == 1, kernels
    bmm = next(ln for ln in prog.launches if ln.kernel == "bmm_f32")
    assert bmm.floats[2] == pytest.approx(8 ** 0.25, rel=1e-6)


def _pool_resize_concat_model(kp: int, ka: int, kr: int):
    """SPPF / FPN in small: MaxPool / AveragePool chains and a nearest Resize, each reading a
    channel slice of one Concat and writing into a slice of another, beside convolutions."""
    rng = np.random.default_rng(3)

    def conv(name: str, x: str, k: int, c: int, r: int) -> list:
        wt = numpy_helper.from_array((rng.standard_normal((k, c, r, r)) * 0.3)
                                     .astype(np.float32), f"{name}_w")
        inits.append(wt)
        return [helper.make_node("Conv", [x, wt.name], [name], name=name,
                                 pads=[r // 2] * 4)]

    def pool(op: str, x: str, name: str, **attrs) -> list:
        return [helper.make_node(op, [x], [name], name=name, kernel_shape=[3, 3],
                                 pads=[1, 1, 1, 1], **attrs)]

    inits: list = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [*conv("p", "x", kp, 8, 1), *conv("a", "x", ka, 8, 3),
             *pool("MaxPool", "a", "m1"), *pool("MaxPool", "m1", "m2"),
             *pool("AveragePool", "m2", "m3", count_include_pad=0),
             *conv("sr", "s", kr, 8, 1), *conv("s2", "s", 8, 8, 3),
             helper.make_node("Concat", ["s2", "sr"], ["cat0"], name="cat0", axis=1),
             helper.make_node("Resize", ["sr", "", "scales"], ["r"], name="up",
                              mode="nearest", coordinate_transformation_mode="asymmetric",
                              nearest_mode="floor"),
             helper.make_node("Concat", ["p", "a", "m1", "m2", "m3", "r"], ["cat1"],
                              name="cat1", axis=1),
             *conv("y", "cat1", 8, kp + 4 * ka + kr, 1)]
    graph = helper.make_graph(
        nodes, "pool_resize_concat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 6, 8]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 8, 3, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("cat1", "cat0",
                                                                             "y")], inits)
    return graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("kp,ka,kr", [(8, 16, 8), (5, 12, 7)], ids=["aligned", "unaligned"])
def test_pool_and_resize_read_and_write_concat_slices_in_place(precision, kp, ka, kr) -> None:
    prog = _check(_pool_resize_concat_model(kp, ka, kr), precision)
    launches = {ln.layer: ln for ln in prog.launches if ln.kernel.startswith(("pool", "resize"))}
    c1, c0 = kp + 4 * ka + kr, 8 + kr  # pixel strides of cat1 and cat0
    for name in ("m1", "m2", "m3"):
        xcs, ycs = launches[name].ints[18:20]
        assert (xcs, ycs) == (c1, c1), name  # read a slice of cat1, written into another
        vector = precision == "fp16" and (kp, ka) == (8, 16)
        assert launches[name].kernel == f"pool2d_{'x8_' if vector else ''}" \
            f"{'f16' if precision == 'fp16' else 'f32'}", name
    assert launches["up"].ints[9:11] == [c0, c1]
    # no copies around pooling / resizing, nor into the two concats
    copies = [ln.layer for ln in prog.launches if ln.kernel.startswith("copy_")]
    assert not set(copies) & {"m1", "m2", "m3", "up", "cat0", "cat1"}, copies


def test_yolov5s_pooling_and_resizing_need_no_copies() -> None:
    prog = lower(graph_of(build_model("yolov5s", 1, 640)), "fp16", arch=90)
    layers = {"model.9.m", "model.9.concat", "model.11", "model.12", "model.15", "model.16"}
    copies = [ln.layer for ln in prog.launches
              if ln.kernel == "copy_f16_f16" and ln.layer in layers]
    assert not copies, copies
    sppf = [ln for ln in prog.launches if ln.layer.startswith("model.9.m")]
    assert [ln.kernel for ln in sppf] == ["pool2d_x8_f16"] * 3
    assert all(ln.ints[18:20] == [1024, 1024] for ln in sppf)  # slices of the SPPF concat


@pytest.mark.parametrize("groups,c_per_group,k_per_group,m", [
    (32, 4, 4, 8), (32, 8, 8, 4), (32, 16, 16, 2), (32, 32, 32, 1),  # ResNeXt-50's 4 stages
    (6, 16, 16, 2), (4, 8, 8, 4),  # RegNetX-400MF's and RegNetY-400MF's group widths
    (2, 64, 64, 1),
    (4, 4, 4, 0),  # all 4 groups together write 16 channels: narrower than a priced tile
    (4, 3, 6, 0),  # 3-channel groups: no bundle of <= 4 makes a multiple of 8
])
def test_groups_per_bundle(groups, c_per_group, k_per_group, m) -> None:
    from gpu_kernels.lowering.conv import groups_per_bundle

    got = groups_per_bundle(groups, c_per_group, k_per_group)
    assert got == m
    if m:
        assert groups % m == 0 and m * c_per_group % 8 == 0 and m * k_per_group % 32 == 0


@pytest.mark.parametrize("name,bundle,c", [("conv_grouped_resnext", 32, 32),
                                           ("conv_grouped_regnet", 32, 32),
                                           ("conv_grouped_wide", 64, 64),
                                           ("conv_grouped", 32, 16)])  # one bundle
def test_grouped_convolutions_run_on_tensor_cores_in_bundles(name, bundle, c) -> None:
    from gpu_kernels.tactics import candidates

    graph = graph_of(build(next(cs for cs in cases() if cs.name == name)))
    conv = next(ln for ln in lower(graph, "fp16").launches if ln.problem is not None)
    p = conv.problem
    assert conv.kernel == "conv_mma_f16" and (p.bundle, p.c, p.groups) == (bundle, c, 1)
    assert conv.ints[15] == bundle and conv.ints[18] == p.x_channels == p.k // bundle * c
    tiles = candidates(p, 90)
    assert tiles and all(bundle % t.bn == 0 for t in tiles)
    for t in tiles:  # every tile the autotuner may pick reads its own bundle's channels
        feeds = feeds_for(graph)
        got = simulate(lower(graph, "fp16", choose=lambda q, t=t: t), feeds)
        for out, r in reference(graph, feeds).items():
            assert rel_err(got[out], r) <= TOL["fp16"], (t.name, rel_err(got[out], r))


def test_grouped_convolutions_without_a_bundle_stay_simt() -> None:
    for precision, arch, name in (("fp16", 90, "conv_grouped_c3"),
                                  ("fp16", 72, "conv_grouped_resnext"),
                                  ("fp32", 90, "conv_grouped_resnext")):
        graph = graph_of(build(next(cs for cs in cases() if cs.name == name)))
        prog = _check(graph, precision, arch=arch)
        conv = next(ln for ln in prog.launches if ln.problem is not None)
        assert conv.kernel.startswith("conv_direct") and conv.problem.bundle == 0, name
