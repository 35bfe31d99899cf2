"""CI (no GPU): the lowering of every GPU test layer and zoo model, memory planning, errors."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_kernels.lowering import GpuLoweringError, VBuf, describe, lower, plan_memory
from partitioner.ir import Graph
from tests.devices.gpu_cases import Case, build, cases, graph_of

CASES = cases()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_case_lowers(case, precision) -> None:
    prog = lower(graph_of(build(case)), precision, arch=87, sm_count=16)
    assert prog.kernel_count >= 1
    for ln in prog.launches:
        assert len(ln.ints) <= 32 and len(ln.ptrs) <= 8
        assert all(g >= 1 for g in ln.grid)
    assert set(prog.outputs) == {f"y{i}" for i in range(case.n_outputs)}


def test_tensor_core_conv_is_chosen_only_where_eligible() -> None:
    by_name = {c.name: c for c in CASES}
    fp16 = lower(graph_of(build(by_name["conv3x3"])), "fp16", arch=90)
    assert any(ln.kernel == "conv_mma_f16" for ln in fp16.launches)
    stem = lower(graph_of(build(by_name["conv_stem_c3"])), "fp16", arch=90)
    kernels = [ln.kernel for ln in stem.launches]  # RGB, stride 2: space-to-depth, 12 -> 16
    assert "conv_mma_f16" in kernels and kernels[0] == "space_to_depth_f32_f16"
    rgb = Case("rgb_s1", "Conv", {"x": (1, 3, 9, 9)},
               {"w": np.ones((8, 3, 3, 3), np.float32)}, dict(kernel_shape=[3, 3], pads=[1] * 4))
    kernels = [ln.kernel for ln in lower(graph_of(build(rgb)), "fp16", arch=90).launches]
    assert "conv_mma_f16" in kernels and kernels[0] == "memset"  # stride 1: C padded to 8
    for arch, precision, name in ((72, "fp16", "conv3x3"), (90, "fp32", "conv3x3"),
                                  (80, "fp16", "conv_grouped_c3"),  # 3-channel groups
                                  (90, "fp16", "conv_depthwise")):
        prog = lower(graph_of(build(by_name[name])), precision, arch=arch)
        assert not any(ln.kernel == "conv_mma_f16" for ln in prog.launches), (arch, name)
    grouped = lower(graph_of(build(by_name["conv_grouped"])), "fp16", arch=80)  # in a bundle
    assert [ln.kernel for ln in grouped.launches if ln.problem] == ["conv_mma_f16"]


def test_memory_plan_never_overlaps_live_buffers() -> None:
    rng = np.random.default_rng(0)
    bufs = []
    for _ in range(200):
        first = int(rng.integers(0, 50))
        bufs.append(VBuf(int(rng.integers(1, 5000)), first, first + int(rng.integers(0, 10))))
    arena, naive = plan_memory(bufs)
    assert arena <= naive
    for i, a in enumerate(bufs):
        assert a.offset + a.nbytes <= arena
        for b in bufs[i + 1:]:
            if not (a.last < b.first or b.last < a.first):
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "yolov5s", "unet-small",
                                  "vit-tiny"])
def test_zoo_model_lowers_with_fusion_and_reuse(name) -> None:
    from tandem.zoo import build_model

    graph = graph_of(build_model(name, 1))
    prog = lower(graph, "fp16", arch=87, sm_count=16)
    d = describe(prog)
    convs = sum(1 for n in graph.nodes if n.op == "Conv")
    # conv + activation (+ residual) fuse: fewer kernels than layers
    assert d["kernels"] < len(graph.nodes)
    assert d["arena_bytes"] < d["naive_activation_bytes"]  # lifetimes let buffers share memory
    assert sum(1 for ln in prog.launches if ln.kernel.startswith("conv_")) >= convs


def test_unsupported_op_names_the_layer() -> None:
    g = Graph("g")
    x = g.add_input("x", (1, 4), "float32")
    y = g.add_variable("y", (1, 4), "float32")
    g.add_node("NonMaxSuppression", [x], [y], name="nms0")
    g.mark_output(y)
    with pytest.raises(GpuLoweringError, match="nms0.*NonMaxSuppression"):
        lower(g, "fp16")


def test_matmul_bias_gelu_residual_fuse_into_two_gemms() -> None:
    from tests.devices.gpu_cases import mlp_model

    prog = lower(graph_of(mlp_model()), "fp16", arch=90)
    gemms = [ln for ln in prog.launches if ln.kernel.startswith("conv_")]
    assert len(gemms) == 2
    assert gemms[0].ints[16] == 8  # ACT_GELU in the first GEMM's epilogue
    assert gemms[1].ptrs[3] is not None  # the residual is read by the second GEMM
    assert not any(ln.kernel.startswith(("binary", "unary")) for ln in prog.launches)


def test_conv_outputs_are_written_into_their_concat() -> None:
    from tandem.zoo import build_model

    graph = graph_of(build_model("unet-small", 1, 64))
    prog = lower(graph, "fp16", arch=90)
    concats = {n.name for n in graph.nodes if n.op == "Concat"}
    # U-Net concats join a ConvTranspose output and a skip conv: both write in place
    assert concats and not any(ln.layer in concats for ln in prog.launches)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3-small", "yolov5s", "unet-small",
                                  "vit-tiny"])
def test_cost_model_prices_exactly_the_fusions_the_lowering_makes(name) -> None:
    """One decision (partitioner.passes.fusion): the layers the fusion pass marks, which the GPU
    cost model prices as epilogue work, are the layers the lowering folds into kernels."""
    from devices.cost import fused_into_epilogue
    from gpu_kernels.lowering import Lowering
    from gpu_kernels.tactics import heuristic
    from tandem.zoo import build_model

    graph = graph_of(build_model(name, 1))
    lw = Lowering(graph, "fp16", 87, lambda p: heuristic(p, 87, 16), None)
    lw.run()
    priced = {n.name for n in graph.nodes if fused_into_epilogue(n)}
    assert lw.fused  # every one of these models has epilogue fusions
    assert priced == lw.fused


@pytest.mark.parametrize("op", ["Add", "MatMul"])
def test_fp16_constants_saturate_at_fp16s_range_and_infinities_stay(op) -> None:
    """As TensorRT clamps weights: float32's minimum (an attention mask's fill) becomes
    -65504, an infinity stays one; in-range constants are only rounded to FP16. The GEMM's
    weights are stored transposed (N, K)."""
    big = np.float32(np.finfo(np.float32).min)
    values = np.array([[1.5, big, np.inf, 7e4], [-2.0, 3.0, -np.inf, 0.25]], np.float32)
    shape = (2, 4) if op == "Add" else (3, 2)
    case = Case("clamp", op, {"x": shape}, {"c": values})
    prog = lower(graph_of(build(case)), "fp16", arch=87)
    stored = [a for _, a in prog.weights if a.dtype == np.float16 and a.size == values.size]
    assert len(stored) == 1
    want = np.clip(values, -65504, 65504).astype(np.float16)
    want[np.isinf(values)] = values[np.isinf(values)]
    got = stored[0].reshape(values.shape if op == "Add" else values.T.shape)
    np.testing.assert_array_equal(got, want if op == "Add" else want.T)
    in_range = Case("plain", op, {"x": shape}, {"c": np.ones_like(values) * 0.1})
    prog = lower(graph_of(build(in_range)), "fp16", arch=87)
    assert any(a.dtype == np.float16 and np.all(a == np.float16(0.1)) for _, a in prog.weights)


def test_kernels_by_layer_counts_every_launch_for_a_layer_of_the_graph() -> None:
    """The launches per layer a plan's prediction charges: each launch once, an output's copy
    (``output:T``) for the layer producing T, memsets included."""
    from gpu_kernels.lowering import Launch, kernels_by_layer
    from partitioner.errors import InternalError
    from tests.targets.test_gpu_prediction import chain

    g = chain()
    prog = lower(g, "fp16", arch=87, sm_count=16)
    per_layer = kernels_by_layer(prog, g)
    assert sum(per_layer.values()) == len(prog.launches) == prog.kernel_count
    assert set(per_layer) <= {n.name for n in g.nodes}
    out = g.outputs[0]
    assert any(ln.layer == f"output:{out.name}" for ln in prog.launches), "premise: a copy out"
    assert per_layer[out.producer.name] >= 1
    rgb = Case("rgb_s1", "Conv", {"x": (1, 3, 9, 9)},
               {"w": np.ones((8, 3, 3, 3), np.float32)}, dict(kernel_shape=[3, 3], pads=[1] * 4))
    graph = graph_of(build(rgb))
    stem = lower(graph, "fp16", arch=90)
    assert stem.launches[0].kernel == "memset"
    assert sum(kernels_by_layer(stem, graph).values()) == len(stem.launches)
    # a host-computed bool mask (transformers' attention masks) is widened once, by a launch
    # named after the input: it counts for the first layer reading the mask
    from onnx import TensorProto, helper

    masked = graph_of(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Where", ["m", "r", "x"], ["y"], name="where")], "mask",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8]),
         helper.make_tensor_value_info("m", TensorProto.BOOL, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]),
        opset_imports=[helper.make_opsetid("", 17)]))
    mprog = lower(masked, "fp16", arch=87)
    assert any(ln.layer == "m" for ln in mprog.launches), "premise: the mask's own launch"
    counted = kernels_by_layer(mprog, masked)
    assert sum(counted.values()) == len(mprog.launches) and set(counted) <= {"relu", "where"}
    assert counted["where"] >= 1 + sum(ln.layer == "where" for ln in mprog.launches)
    # a bool graph output computed by a deferred chain: the chain and the byte copy both
    # count for the layer producing it
    boolean = graph_of(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"], name="relu"),
         helper.make_node("Greater", ["r", "x"], ["gt"], name="gt"),
         helper.make_node("Not", ["gt"], ["y"], name="not")], "bool_out",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, None)]),
        opset_imports=[helper.make_opsetid("", 17)]))
    bprog = lower(boolean, "fp16", arch=87)
    counted = kernels_by_layer(bprog, boolean)
    assert sum(counted.values()) == len(bprog.launches)
    assert counted["not"] == sum(ln.layer == "output:y" for ln in bprog.launches) >= 2
    prog.launches.append(Launch("not-a-layer", "copy_f16_f16", (1, 1, 1), 256, []))
    with pytest.raises(InternalError, match="not-a-layer"):
        kernels_by_layer(prog, g)
