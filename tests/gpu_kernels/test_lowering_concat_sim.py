"""CI (no GPU): nested prefix Concats along channels (DenseNet's dense blocks) share the widest
Concat's buffer: each feature map is written once into its channel slice, every narrower
Concat is a view of it (no copy kernel). Checked on the numpy kernel model against ONNX Runtime
on dense blocks built here and on torchvision's densenet121; the same on CUDA is the
@pytest.mark.gpu tests at the end."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from devices.cost import fused_into_epilogue, fusion_role, gpu_layer_seconds
from gpu_kernels.lowering import Lowering, lower
from gpu_kernels.tactics import heuristic
from partitioner.passes import mark_fusions
from partitioner.passes.concat_chains import concat_chains
from tests.devices.gpu_cases import graph_of, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_reference, ort_run, random_inputs

TOL = {"fp32": 1e-5, "fp16": 1e-2}


def dense_block(
    layers: int = 4,
    growth: int = 8,
    c0: int = 16,
    n: int = 1,
    hw: tuple[int, int] = (6, 7),
    first: str = "conv",
    scaled: int = -1,
    output_cat: int = -1,
    diverge: bool = False,
    pre_act: bool = True,
    pools: bool = False,
) -> onnx.ModelProto:
    """A DenseNet dense block as torchvision exports it: before layer i, Concat(f0 .. fi)
    (one input for the first) -> BatchNorm -> Relu -> 1x1 conv (4 x growth) -> BatchNorm ->
    Relu -> 3x3 conv (growth) = f(i+1); then Concat of every feature map -> BatchNorm -> Relu.

    ``first``: f0 is a stem conv's output ("conv") or the graph input ("input", no producer to
    write in place); ``scaled``: layer whose feature map is ``0.5 x conv`` (an element-wise
    result, not written in place by a kernel); ``output_cat``: layer whose Concat is also a
    graph output; ``diverge``: a second Concat extends f0, f1 with another map (the prefix
    f0, f1 is nested in two chains); not ``pre_act``: the 1x1 convs read the Concats themselves
    (no BatchNorm + Relu before them); ``pools``: a max pool, an average pool and a global
    average pool of the second Concat are graph outputs too."""
    rng = np.random.default_rng(3)
    inits: list = []

    def const(name: str, *shape: int, scale: float = 0.3) -> str:
        inits.append(
            numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)
        )
        return name

    def bn(x: str, c: int, name: str) -> list:
        inits.extend(
            numpy_helper.from_array(v.astype(np.float32), f"{name}.{k}")
            for k, v in (
                ("s", rng.uniform(0.5, 1.5, c)),
                ("b", rng.standard_normal(c) * 0.1),
                ("m", rng.standard_normal(c) * 0.1),
                ("v", rng.uniform(0.5, 1.5, c)),
            )
        )
        return [
            helper.make_node(
                "BatchNormalization", [x, *(f"{name}.{k}" for k in "sbmv")], [name], name=name
            )
        ]

    c_in = 3 if first == "conv" else c0
    nodes: list = []
    if first == "conv":
        nodes.append(
            helper.make_node(
                "Conv", ["x", const("w0", c0, 3, 3, 3)], ["f0"], name="stem", pads=[1, 1, 1, 1]
            )
        )
    feats, chans = ["f0" if first == "conv" else "x"], [c0]
    outs = ["y"]
    for i in range(layers):
        cat, c = f"cat{i}", sum(chans)
        nodes.append(helper.make_node("Concat", list(feats), [cat], name=cat, axis=1))
        if i == output_cat:
            outs.append(cat)
        if pre_act:
            nodes += bn(cat, c, f"l{i}.n1")
            nodes.append(helper.make_node("Relu", [f"l{i}.n1"], [f"l{i}.r1"], name=f"l{i}.r1"))
        nodes.append(
            helper.make_node(
                "Conv",
                [f"l{i}.r1" if pre_act else cat, const(f"l{i}.w1", 4 * growth, c, 1, 1)],
                [f"l{i}.c1"],
                name=f"l{i}.c1",
            )
        )
        nodes += bn(f"l{i}.c1", 4 * growth, f"l{i}.n2")
        nodes.append(helper.make_node("Relu", [f"l{i}.n2"], [f"l{i}.r2"], name=f"l{i}.r2"))
        out = f"f{i + 1}"
        conv_out = f"l{i}.c2" if i == scaled else out
        nodes.append(
            helper.make_node(
                "Conv",
                [f"l{i}.r2", const(f"l{i}.w2", growth, 4 * growth, 3, 3)],
                [conv_out],
                name=f"l{i}.c2",
                pads=[1, 1, 1, 1],
            )
        )
        if i == scaled:
            inits.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
            nodes.append(helper.make_node("Mul", [conv_out, "half"], [out], name=f"l{i}.scale"))
        feats.append(out)
        chans.append(growth)
    nodes.append(helper.make_node("Concat", feats, ["block"], name="block", axis=1))
    nodes += bn("block", sum(chans), "final.n")
    nodes.append(helper.make_node("Relu", ["final.n"], ["y"], name="final.r"))
    if pools:
        nodes += [
            helper.make_node("MaxPool", ["cat1"], ["mp"], name="mp", kernel_shape=[3, 3],
                             pads=[1, 1, 1, 1]),
            helper.make_node("AveragePool", ["cat1"], ["ap"], name="ap", kernel_shape=[2, 2]),
            helper.make_node("GlobalAveragePool", ["cat1"], ["gap"], name="gap"),
        ]  # fmt: skip
        outs += ["mp", "ap", "gap"]
    if diverge:
        nodes.append(
            helper.make_node("Conv", [feats[0], const("wd", growth, c0, 1, 1)], ["g"], name="side")
        )
        nodes.append(
            helper.make_node("Concat", [*feats[:2], "g"], ["side_cat"], name="side_cat", axis=1)
        )
        nodes.append(helper.make_node("Relu", ["side_cat"], ["z"], name="side.r"))
        outs.append("z")
    graph = helper.make_graph(
        nodes,
        "dense_block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c_in, *hw])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model


BLOCKS = {
    "growth8": {},
    "growth16_batch2": {"growth": 16, "layers": 3, "n": 2, "hw": (5, 9)},
    "growth12": {"growth": 12},  # slices at offsets that are no multiple of 8
    "from_input": {"first": "input"},  # f0 has no producer: copied into its slice once
    "scaled_feature": {"scaled": 1},  # an element-wise f2: materialised, copied once
    "narrow_output": {"output_cat": 2},  # a view leaves the graph
    "diverging": {"diverge": True},
    "convs_read_views": {"pre_act": False},  # in place: pixel stride 48, offset 0
    # pixel stride 12 + 4 x 12 = 60, no multiple of 8: each conv copies its view once
    "convs_read_unaligned_views": {"pre_act": False, "c0": 12, "growth": 12},
    "pools_read_a_view": {"pools": True},  # the global pool copies it once
}



def _concat_launches(prog, graph) -> list[str]:
    concats = {n.name for n in graph.nodes if n.op == "Concat"}
    return [ln.kernel for ln in prog.launches if ln.layer in concats]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", list(BLOCKS))
def test_dense_block_matches_onnx_runtime(variant, precision, tmp_path) -> None:
    model = dense_block(**BLOCKS[variant])
    feeds, ref = ort_reference(model, tmp_path)
    graph = graph_of(model)
    prog = lower(graph, precision, arch=87)
    got = simulate(prog, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= TOL[precision], name
    chains = concat_chains(graph)
    block = chains["block"]
    assert [n.name for n in block.members] == [
        f"cat{i}" for i in range(BLOCKS[variant].get("layers", 4))
    ] + ["block"]
    copies = _concat_launches(prog, graph)
    if variant == "from_input":  # the FP32 input to the compute dtype, into its slice
        assert len(copies) == (1 if precision == "fp32" else 2)
    elif variant == "scaled_feature":  # f2 = 0.5 x conv, read by three Concats: computed
        # once straight into its slice by the first of them to need it
        assert copies == [f"fused_{'f32' if precision == 'fp32' else 'f16'}"]
    elif variant == "diverging":  # f0, f1 live in the block's buffer: copied into side_cat
        assert chains["side_cat"].members == (graph.node("side_cat"),)
        assert [ln.layer for ln in prog.launches if ln.layer in ("side_cat", "side")] == [
            "side",
            "side_cat",
            "side_cat",
        ]
    else:
        assert copies == []
    chain_buf = {ln.ptrs[4].buf for ln in prog.launches if ln.layer == "l0.c2"}
    if variant.startswith("convs_read"):  # the first operand of the 1x1 convs
        reads = {ln.ptrs[0].buf for ln in prog.launches if ln.layer.endswith(".c1")}
        assert (reads == chain_buf) is (variant == "convs_read_views")
    if variant == "pools_read_a_view":
        pools = {ln.layer: ln for ln in prog.launches if ln.layer in ("mp", "ap", "gap")}
        assert {ln.ptrs[0].buf for k, ln in pools.items() if k != "gap"} == chain_buf
        assert pools["gap"].ptrs[0].buf not in chain_buf


def test_every_feature_map_is_written_once_into_the_widest_buffer() -> None:
    """growth 8, 4 layers, FP16: 3 kernels a layer (BatchNorm + Relu fused, the two convs),
    3 for the stem (its 3 input channels padded to 8: memset, copy, conv) and the last
    BatchNorm + Relu, which writes the FP32 output itself (no output copy); the stem and the
    3x3 convs write the block's buffer at channels 0, 16, 24, 32, 40 with its 48-channel pixel
    stride."""
    graph = graph_of(dense_block())
    prog = lower(graph, "fp16", arch=87)
    assert prog.kernel_count == 3 + 4 * 3 + 1
    assert prog.launches[-1].kernel == "fused_f16_f32"
    stem = next(ln for ln in prog.launches if ln.layer == "stem" and ln.problem is not None)
    writes = [stem] + [next(ln for ln in prog.launches if ln.layer == f"l{i}.c2") for i in range(4)]
    buf = stem.ptrs[4].buf
    assert all(ln.ptrs[4].buf is buf for ln in writes)
    assert [ln.ptrs[4].byte_offset // 2 for ln in writes] == [0, 16, 24, 32, 40]
    assert buf.nbytes == 6 * 7 * 48 * 2  # the widest Concat's, no other copy of it


def test_plain_path_without_chains_is_unchanged() -> None:
    """Two Concats of the same maps in another order nest in neither: each its own buffer,
    the second one's inputs copied (the maps were written into the first) -- straight into the
    FP32 graph output it is, converting on the way (no output copy after it)."""
    model = dense_block(layers=1)
    g = model.graph
    g.node.append(helper.make_node("Concat", ["f1", "f0"], ["swap"], name="swap", axis=1))
    g.output.append(helper.make_tensor_value_info("swap", TensorProto.FLOAT, None))
    graph = graph_of(model)
    assert concat_chains(graph)["swap"].members == (graph.node("swap"),)
    prog = lower(graph, "fp16", arch=87)
    assert [ln.kernel for ln in prog.launches if ln.layer == "swap"] == ["copy_f16_f32"] * 2
    assert "output:swap" not in {ln.layer for ln in prog.launches}


def test_cost_model_prices_no_kernel_for_a_view() -> None:
    """The marks (partitioner.passes.concat_chains) and the lowering agree: every Concat but
    the widest of a chain is role concat_view, has no launch and costs 0 s on the GPU; the
    epilogue fusions the cost model prices are still exactly the lowering's."""
    from targets.catalog import load_target

    graph = graph_of(dense_block(output_cat=1))
    lw = Lowering(graph, "fp16", 87, lambda p: heuristic(p, 87, 16), None)
    prog = lw.run()
    views = {n.name for n in graph.nodes if fusion_role(n) == "concat_view"}
    assert views == {f"cat{i}" for i in range(4)}
    assert {graph.node(v).meta["fusion"]["group"] for v in views} == {"block"}
    assert not mark_fusions(graph)  # the same marks again
    assert not views & {ln.layer for ln in prog.launches}
    target = load_target("orin-agx-64gb")
    assert all(gpu_layer_seconds(graph.node(v), graph, "fp16", target) == 0.0 for v in views)
    assert gpu_layer_seconds(graph.node("block"), graph, "fp16", target) > 0.0
    assert {n.name for n in graph.nodes if fused_into_epilogue(n)} == lw.fused


def test_int8_chain_is_stored_in_fp16() -> None:
    """INT8: a chain's views cannot each have their own scale in one buffer, so a chain of
    more than one Concat keeps the compute precision (a single Concat keeps the INT8 rule)."""
    from tests.devices.gpu_cases import feeds_for
    from tests.devices.int8_cases import int8_values, lowering, minmax_scales

    graph = graph_of(dense_block(c0=32, growth=16))
    scales = minmax_scales(graph, [feeds_for(graph, 1)])
    low = lowering(graph, scales, 87)
    assert not ({f"cat{i}" for i in range(4)} | {"block"}) & set(int8_values(low))
    assert low.concat_values["block"].dtype == "f16"
    assert _concat_launches(low, graph) == []
    assert "conv_mma_i8" in {ln.kernel for ln in low.launches}


def _int8_block_case():
    """The INT8 dense block, its feeds and min-max scales, and its FP32 and fake-quant
    (tests/devices/int8_cases.py) references of ``y``."""
    from tests.devices.gpu_cases import feeds_for, reference
    from tests.devices.int8_cases import fake_quant_reference, lowering, minmax_scales

    graph = graph_of(dense_block(c0=32, growth=16))
    feeds = feeds_for(graph, 0)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)] + [feeds])
    fq = fake_quant_reference(graph, feeds, lowering(graph, scales, 87))["y"]
    return graph, feeds, scales, reference(graph, feeds)["y"], fq


def _check_int8_feature_maps(y: np.ndarray, fp32: np.ndarray, fq: np.ndarray) -> None:
    """Each feature map's channels of ``y`` (f0: 32, then 16 per layer) are as close to FP32
    as the fake-quant reference's (cosine within 1e-3 of its). Not max-abs against the
    fake-quant reference, as the other INT8 networks are: four layers compound one-step
    rounding flips (FP16-stored feature maps quantised again by every later layer), so the
    numpy kernel model, which has the kernels' quantisation points and storage types, is
    6.6e-2 from that reference while the reference itself is 9.2e-2 from FP32; a feature map
    in the wrong slice moves that 6.6e-2 only to 7.4e-2 but its cosine from 0.9998 to 0.37."""
    from tests.devices.test_gpu_int8 import cosine

    for lo, hi in ((0, 32), (32, 48), (48, 64), (64, 80), (80, 96)):
        got, ref = cosine(y[:, lo:hi], fp32[:, lo:hi]), cosine(fq[:, lo:hi], fp32[:, lo:hi])
        assert got >= min(ref - 1e-3, 0.99), f"channels {lo}:{hi}: cosine {got:.5f} vs {ref:.5f}"


def test_int8_dense_block_matches_fake_quant_feature_map_by_feature_map() -> None:
    graph, feeds, scales, fp32, fq = _int8_block_case()
    y = simulate(lower(graph, "int8", arch=87, scales=scales), feeds)["y"]
    _check_int8_feature_maps(y, fp32, fq)
    swapped = y.copy()  # the check fails a feature map written into its neighbour's slice
    swapped[:, 32:48], swapped[:, 48:64] = y[:, 48:64], y[:, 32:48]
    with pytest.raises(AssertionError, match="channels 32:48"):
        _check_int8_feature_maps(swapped, fp32, fq)


# ----- torchvision's densenet121 (the conformance export, 64 x 64) ------------------------------
# FP16 on sm_87: 779 kernels before (589 copies of feature maps into later Concats), 190 now:
# 121 convolutions, 62 fused BatchNorm + Relu, 4 pools, the stem's space-to-depth, the global
# pool and the output copy.
DENSENET = ("tv-densenet121", 779, 190)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_densenet121_matches_onnx_runtime(precision, conformance_model) -> None:
    name, before, now = DENSENET
    path = conformance_model("torchvision", name, (name,))
    graph = graph_of(onnx.load(path))
    prog = lower(graph, precision, arch=87)
    assert prog.kernel_count == now < before
    assert _concat_launches(prog, graph) == []
    # one chain a dense block (6, 12, 24 and 16 layers): each layer's Concat and the block's
    chains = {id(c.root): c for c in concat_chains(graph).values()}
    assert sorted(len(c.members) for c in chains.values()) == [7, 13, 17, 25]
    feeds = random_inputs(path)
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], out


# ----- on CUDA (the integrator's GPU run) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", list(BLOCKS))
def test_dense_block_on_cuda_matches_onnx_runtime(variant, precision, tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = dense_block(**BLOCKS[variant])
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], out


@pytest.mark.gpu
def test_dense_block_int8_on_cuda_matches_fake_quant_feature_map_by_feature_map() -> None:
    from devices.gpu import GpuRunner

    graph, feeds, scales, fp32, fq = _int8_block_case()
    with GpuRunner(graph, "int8", scales=scales, autotune=False) as runner:
        y = runner.infer(feeds)["y"]
        assert "conv_mma_i8" in {ln.kernel for ln in runner.program.launches}
    _check_int8_feature_maps(y, fp32, fq)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_densenet121_on_cuda_matches_onnx_runtime(precision, conformance_model) -> None:
    from devices.gpu import GpuRunner

    name = DENSENET[0]
    path = conformance_model("torchvision", name, (name,))
    feeds = random_inputs(path)
    ref = ort_run(path, feeds)
    with GpuRunner(graph_of(onnx.load(path)), precision, autotune=False) as runner:
        got = runner.infer(feeds)
        assert runner.program.kernel_count == DENSENET[2]
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision] * (10 if precision == "fp32" else 1), out
