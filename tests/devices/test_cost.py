"""Cost models: sanity (monotonic in size, precision, power mode) and hand-computed rooflines."""

from __future__ import annotations

import numpy as np
import pytest

from devices.capability import DlaCapability, GpuCapability
from devices.cost import (
    DEPTHWISE_CONV_EFFICIENCY,
    GPU_LAUNCH_SECONDS,
    L2_BYTES_PER_CLOCK_PER_SM,
    MEMORY_EFFICIENCY,
    REFORMAT_EFFICIENCY,
    SWITCH_OVERHEAD_SECONDS,
    TC_SUSTAINED,
    GemmShape,
    dla_layer_seconds,
    dla_roofline_seconds,
    gemm_shape,
    gpu_kernel_seconds,
    gpu_layer_seconds,
    gpu_priced_kernels,
    gpu_roofline_seconds,
    gpu_segment_seconds,
    tensor_core_seconds,
    transition_cost_for,
    transition_seconds,
)
from dla_sim.hardware import dla_config
from partitioner.errors import ConfigError, TandemError
from partitioner.ir import Graph
from partitioner.passes import mark_fusions
from partitioner.shape_inference import infer_shapes
from targets.catalog import load_target


def conv_graph(c: int = 64, k: int = 64, hw: int = 56, kernel: int = 3, group: int = 1,
               relu: bool = False) -> Graph:  # fmt: skip
    g = Graph("t")
    x = g.add_input("x", (1, c, hw, hw))
    w = g.add_constant("w", np.zeros((k, c // group, kernel, kernel), np.float32))
    pad = kernel // 2
    attrs = {"kernel_shape": [kernel, kernel], "strides": [1, 1], "pads": [pad] * 4,
             "dilations": [1, 1], "group": group}  # fmt: skip
    conv = g.add_node("Conv", [x, w], 1, attrs, name="conv")
    out = conv.outputs[0]
    if relu:
        out = g.add_node("Relu", [out], 1, name="relu").outputs[0]
    g.mark_output(out)
    infer_shapes(g)
    return g


def test_gpu_roofline_matches_hand_computation():
    # Orin AGX 64GB at MAXN: 16 SMs x 1300.5 MHz, 1024 FP16 MACs/clk/SM; 204.7 GB/s. The 3x3
    # conv 64 -> 64 at 56x56 is a GEMM of M = 3136 output pixels, N = 64, K = 576.
    t = load_target("orin-agx-64gb")
    g = conv_graph()
    node = g.node("conv")
    assert gemm_shape(node) == GemmShape(m=3136, n=64, k=576)
    # A 128x64 tile: 25 tiles, 2 waves on 16 SMs; the L2 feeds 47.4 x 128 x 64 / (192 x 2)
    # = 1011 MACs/clk, more than the 1024 x TC_SUSTAINED the tile computes at.
    rate = 1024 * TC_SUSTAINED["sm_87"]
    assert rate < L2_BYTES_PER_CLOCK_PER_SM["sm_87"] * 128 * 64 / (192 * 2)
    compute = 2 * 128 * 64 * 576 / rate / 1300.5e6
    assert tensor_core_seconds(gemm_shape(node), "fp16", t) == (
        pytest.approx(compute, rel=1e-9), (128, 64), 2)  # fmt: skip
    nbytes = (64 * 56 * 56 * 2) * 2 + 64 * 64 * 9 * 2  # input + output + weights, FP16
    memory = nbytes / (2 * 3199e6 * 32 * MEMORY_EFFICIENCY)
    expected = gpu_kernel_seconds("sm_87") + max(compute, memory)
    assert compute > memory  # this layer is compute-bound on Orin
    assert gpu_layer_seconds(node, g, "fp16", t) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(16.07e-6, rel=1e-3)


def test_gpu_batching_fills_the_sms():
    """A late ResNet layer (7x7 output, 512 channels, K = 3x3x512) at batch 1 has 8 64x64 tiles
    for Orin's 16 SMs; smaller tiles fill them but the L2 feeds those more slowly. At batch 64
    the tiles fill every SM and the layer runs near the sustained fraction of the peak."""
    t = load_target("orin-agx-64gb")
    one = tensor_core_seconds(GemmShape(m=49, n=512, k=4608), "int8", t)
    many = tensor_core_seconds(GemmShape(m=49 * 64, n=512, k=4608), "int8", t)
    assert one[0] > 1.5 * many[0] / 64
    peak = t.gpu.peak_ops_per_s("int8", "MAXN") * TC_SUSTAINED["sm_87"]
    assert 2 * 49 * 64 * 512 * 4608 / many[0] == pytest.approx(peak, rel=0.15)
    # well below it at batch 1
    assert 2 * 49 * 512 * 4608 / one[0] < 0.65 * peak


def test_int8_grouped_conv_runs_at_the_scalar_rate():
    # Depthwise 3x3 on 256x56x56 INT8, AGX Orin MAXN: no dp4a (one channel per group), so the
    # CUDA cores' FP32 rate, at DEPTHWISE_CONV_EFFICIENCY of the roofline.
    t = load_target("orin-agx-64gb")
    g = conv_graph(c=256, k=256, group=256)
    nbytes = 256 * 56 * 56 * 2 + 256 * 9
    memory = nbytes / (2 * 3199e6 * 32 * MEMORY_EFFICIENCY)
    compute = 2 * 256 * 56 * 56 * 9 / (16 * 1300.5e6 * 256 * 0.7)
    roofline = max(compute, memory) / DEPTHWISE_CONV_EFFICIENCY
    got = gpu_layer_seconds(g.node("conv"), g, "int8", t)
    assert got == pytest.approx(gpu_kernel_seconds("sm_87") + roofline, rel=1e-9)


def test_fused_residual_moves_at_the_kernels_precision():
    """An Add fused into an INT8 conv's epilogue reads the residual in INT8 (the GPU lowering's
    INT8 path), although an Add alone would run in FP16."""
    t = load_target("orin-agx-64gb")
    g = Graph("t")
    x = g.add_input("x", (1, 64, 56, 56))
    w = g.add_constant("w", np.zeros((64, 64, 1, 1), np.float32))
    conv = g.add_node("Conv", [x, w], 1, {"kernel_shape": [1, 1]}, name="conv")
    add = g.add_node("Add", [conv.outputs[0], x], 1, name="add")
    g.mark_output(add.outputs[0])
    infer_shapes(g)
    mark_fusions(g)
    gpu = GpuCapability(t)
    assert gpu.runs_as(g.node("add"), g, "int8") == "fp16"
    bandwidth = t.dram_bytes_per_s * MEMORY_EFFICIENCY
    assert gpu.cost(g.node("add"), g, "int8") == pytest.approx(64 * 56 * 56 / bandwidth)


def test_gpu_memory_bound_depthwise_hand_computation():
    # Depthwise 3x3 on 256x56x56 FP16, AGX Xavier MAXN: CUDA-core rate, memory-bound.
    t = load_target("xavier-agx")
    g = conv_graph(c=256, k=256, group=256)
    nbytes = (256 * 56 * 56 * 2) * 2 + 256 * 9 * 2
    memory = nbytes / (2 * 2133e6 * 32 * MEMORY_EFFICIENCY)
    flops = 2 * 256 * 56 * 56 * 9
    compute = flops / (8 * 1377e6 * 256 * 0.7)  # half2 SIMT: 2 x 128 FLOPs/clk/SM
    assert memory > compute
    got = gpu_layer_seconds(g.node("conv"), g, "fp16", t)
    assert got == pytest.approx(gpu_kernel_seconds("sm_72") + memory, rel=1e-9)


def test_dla_roofline_hand_computation():
    # Xavier DLA at MAXN: 1024 FP16 MACs/cycle x 1395.2 MHz; C=3 pads to atomic-C 64.
    t = load_target("xavier-agx")
    g = conv_graph(c=3, k=64, hw=224, kernel=3)
    macs = 224 * 224 * 64 * 3 * 9 * (64 / 3)  # atomic-C rounding of 3 channels to 64
    expected_mac = macs / (1024 * 1395.2e6)
    cfg = dla_config(1)
    fixed = cfg.op_fixed_seconds + cfg.op_fixed_cycles / 1395.2e6
    got = dla_roofline_seconds(g.node("conv"), g, "fp16", t)
    assert got == pytest.approx(fixed + expected_mac, rel=1e-9)


@pytest.mark.parametrize("target", ["orin-agx-64gb", "xavier-agx"])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_bigger_conv_costs_more(target: str, precision: str):
    t = load_target(target)
    small, big = conv_graph(hw=28), conv_graph(hw=56)
    for cost in (gpu_layer_seconds, dla_layer_seconds):
        assert cost(big.node("conv"), big, precision, t) > cost(
            small.node("conv"), small, precision, t
        )
    wide = conv_graph(c=256, k=256, hw=28)
    assert dla_layer_seconds(wide.node("conv"), wide, precision, t) > dla_layer_seconds(
        small.node("conv"), small, precision, t
    )


@pytest.mark.parametrize("target", ["orin-agx-64gb", "orin-nx-16gb"])
def test_int8_faster_than_fp16_on_dla2(target: str):
    t = load_target(target)
    g = conv_graph(c=256, k=256, hw=56)
    fp16 = dla_layer_seconds(g.node("conv"), g, "fp16", t)
    int8 = dla_layer_seconds(g.node("conv"), g, "int8", t)
    assert int8 < fp16 / 2, (int8, fp16)


def test_int8_faster_than_fp16_on_gpu():
    t = load_target("orin-agx-64gb")
    g = conv_graph(c=256, k=256, hw=56)
    assert gpu_layer_seconds(g.node("conv"), g, "int8", t) < gpu_layer_seconds(
        g.node("conv"), g, "fp16", t
    )


@pytest.mark.parametrize(
    "target, low",
    [("orin-agx-64gb", "15W"), ("orin-agx-64gb", "30W"), ("xavier-agx", "15W"),
     ("xavier-nx", "10W"), ("orin-nx-16gb", "10W")],
)  # fmt: skip
def test_low_power_mode_is_slower(target: str, low: str):
    fast, slow = load_target(target), load_target(target, low)
    g = conv_graph(c=128, k=128, hw=56)
    node = g.node("conv")
    assert gpu_layer_seconds(node, g, "fp16", slow) > gpu_layer_seconds(node, g, "fp16", fast)
    assert dla_layer_seconds(node, g, "int8", slow) > dla_layer_seconds(node, g, "int8", fast)
    # The capability objects price at the target's selected mode.
    assert GpuCapability(slow).cost(node, g, "fp16") > GpuCapability(fast).cost(node, g, "fp16")
    assert DlaCapability(slow).cost(node, g, "int8") > DlaCapability(fast).cost(node, g, "int8")


def test_fused_activation_and_views_are_free_on_gpu():
    t = load_target("orin-agx-64gb")
    g = conv_graph(relu=True)
    assert gpu_layer_seconds(g.node("relu"), g, "fp16", t) > GPU_LAUNCH_SECONDS  # not marked
    mark_fusions(g)  # as the build's passes do: the lowering folds the Relu into the conv
    assert gpu_layer_seconds(g.node("relu"), g, "fp16", t) == 0.0
    g2 = Graph("t")
    x = g2.add_input("x", (1, 4, 8, 8))
    shape = g2.add_constant("s", np.array([1, 256], np.int64))
    r = g2.add_node("Reshape", [x, shape], 1, name="r")
    s = g2.add_node("Sigmoid", [r.outputs[0]], 1, name="s")
    g2.mark_output(s.outputs[0])
    infer_shapes(g2)
    assert gpu_layer_seconds(g2.node("r"), g2, "fp16", t) == 0.0
    # A stand-alone activation is a kernel of its own: launch + traffic.
    assert gpu_layer_seconds(g2.node("s"), g2, "fp16", t) > GPU_LAUNCH_SECONDS


def test_squeeze_excitation_is_priced_as_its_two_kernels():
    """The pool and the Mul each pay a launch; the FCs and activations only their weights."""
    from tests.partitioner.test_passes import se_block

    t = load_target("orin-agx-64gb")
    g = se_block()
    unfused = {n.name: gpu_layer_seconds(n, g, "fp16", t) for n in g.nodes}
    mark_fusions(g)
    fused = {n.name: gpu_layer_seconds(n, g, "fp16", t) for n in g.nodes}
    bandwidth = t.dram_bytes_per_s * MEMORY_EFFICIENCY
    assert fused["pool"] == unfused["pool"] > GPU_LAUNCH_SECONDS
    # x (16 x 4 x 4) and the gate (16) read, the scaled x written, at 2 bytes an element
    assert fused["scale"] == pytest.approx(GPU_LAUNCH_SECONDS + (256 + 16 + 256) * 2 / bandwidth)
    assert fused["fc1"] == pytest.approx((4 * 16 + 4) * 2 / bandwidth)  # weights and bias
    assert fused["act"] == fused["gate"] == 0.0
    assert sum(fused.values()) < sum(unfused.values()) - 3 * GPU_LAUNCH_SECONDS
    # after a depthwise conv, the conv's kernel sums for the pool: no launch, no read
    g = se_block(dw=True)
    mark_fusions(g)
    assert gpu_layer_seconds(g.node("pool"), g, "fp16", t) == 0.0


@pytest.mark.parametrize("target", ["orin-agx-64gb", "xavier-agx"])
def test_gpu_layer_price_is_its_roofline_plus_its_priced_kernels(target: str):
    """Placement's price splits into the roofline (what a built plan keeps) and the per-kernel
    cost of the kernels the per-layer model expects: none for a fused or view layer."""
    from tests.partitioner.test_passes import se_block

    t = load_target(target)
    kernel = gpu_kernel_seconds(t.gpu.arch)
    se, conv = se_block(), conv_graph(relu=True)
    mark_fusions(se)
    mark_fusions(conv)
    expected = {"pool": 1, "fc1": 0, "act": 0, "fc2": 0, "gate": 0, "scale": 1}
    assert {n.name: gpu_priced_kernels(n) for n in se.nodes} == expected
    assert [gpu_priced_kernels(n) for n in conv.nodes] == [1, 0]  # the Relu is the epilogue
    for g in (se, conv, conv_graph(group=64)):
        for n in g.nodes:
            for precision in ("fp16", "int8"):
                roofline = gpu_roofline_seconds(n, g, precision, t)
                assert roofline >= 0.0
                assert gpu_layer_seconds(n, g, precision, t) == (
                    roofline + gpu_priced_kernels(n) * kernel
                ), (n.name, precision)
    node = conv.node("conv")
    assert GpuCapability(t).roofline(node, conv, "fp16") == gpu_roofline_seconds(
        node, conv, "fp16", t
    )


def test_gpu_segment_seconds_charges_each_lowered_kernel_once():
    kernel = gpu_kernel_seconds("sm_87")
    rooflines = {"conv": 3e-6, "mul": 1e-7, "add": 2e-7, "view": 0.0}
    # the lowering ran mul + add as one kernel (named for add) and copied the output of conv
    priced = gpu_segment_seconds(rooflines, {"conv": 2, "add": 1}, "sm_87")
    assert priced.kernels == 3
    assert priced.per_layer == {
        "conv": 3e-6 + 2 * kernel, "mul": 1e-7, "add": 2e-7 + kernel, "view": 0.0,
    }  # fmt: skip
    assert priced.total == pytest.approx(sum(rooflines.values()) + 3 * kernel, rel=1e-12)
    with pytest.raises(TandemError, match="outside the segment"):
        gpu_segment_seconds(rooflines, {"relu": 1}, "sm_87")


def test_int8_request_priced_at_the_precision_that_runs():
    t = load_target("orin-agx-64gb")
    g = Graph("t")
    x = g.add_input("x", (1, 64, 56, 56))
    n = g.add_node("Sigmoid", [x], 1, name="s")
    g.mark_output(n.outputs[0])
    infer_shapes(g)
    gpu = GpuCapability(t)
    # Sigmoid has no INT8 GPU kernel: an INT8 request runs (and costs) as FP16.
    assert gpu.cost(n, g, "int8") == pytest.approx(gpu_layer_seconds(n, g, "fp16", t))


# GoogLeNet split points HaX-CoNN measured at FP16 on AGX Xavier (published.yaml, transitions):
# every one costs 0.045-0.074 ms; the model must stay inside that band at each of them.
@pytest.mark.parametrize(
    "shape", [(192, 28, 28), (256, 28, 28), (480, 28, 28), (512, 14, 14), (832, 7, 7)]
)
def test_transition_matches_published_xavier_switch_cost(shape):
    t = load_target("xavier-agx")
    nbytes = int(np.prod(shape)) * 2
    seconds = transition_seconds(nbytes, t, "gpu", "dla")
    assert 0.045e-3 <= seconds <= 0.074e-3, seconds


def test_transition_parts():
    t = load_target("orin-agx-64gb")
    assert transition_seconds(1e6, t, "gpu", "gpu") == 0.0
    assert transition_seconds(1e6, t, "dla0", "dla") == 0.0
    small = transition_seconds(1e3, t, "dla0", "gpu")
    big = transition_seconds(1e7, t, "gpu", "dla0")
    assert SWITCH_OVERHEAD_SECONDS < small < big
    reformat = GPU_LAUNCH_SECONDS + 2 * 1e7 / (t.dram_bytes_per_s * REFORMAT_EFFICIENCY)
    assert big == pytest.approx(SWITCH_OVERHEAD_SECONDS + reformat)
    # Slower DRAM at 15W makes the same boundary dearer.
    assert transition_seconds(1e7, load_target("orin-agx-64gb", "15W")) > big


def test_transition_cost_for_partitioner_signature():
    t = load_target("orin-agx-64gb")
    g = conv_graph()
    tensor = g.node("conv").outputs[0]
    fp16 = transition_cost_for(t, "fp16")(tensor, "gpu", "dla")
    int8 = transition_cost_for(t, "int8")(tensor, "dla", "gpu")
    assert fp16 == pytest.approx(transition_seconds(64 * 56 * 56 * 2, t))
    assert int8 < fp16


def _supported_cases():
    from tests.devices.test_support_dla import CASES

    for case in CASES:
        if case.ok and not case.trt:
            for version in case.versions:
                yield pytest.param(case, version, id=f"dla{version}-{case.id}")


@pytest.mark.parametrize("case, version", list(_supported_cases()))
def test_every_dla_supported_layer_has_a_finite_cost(case, version: int):
    t = load_target({1: "xavier-agx", 2: "orin-agx-64gb"}[version])
    graph, name = case.build()
    node = graph.node(name)
    dla, gpu = DlaCapability(t), GpuCapability(t)
    assert dla.supports(node, graph, case.precision).ok
    seconds = dla.cost(node, graph, case.precision)
    # A layer fused into its producer's engine op (a Cast after Equal) may add nothing.
    assert 0.0 <= seconds < 0.1 and np.isfinite(seconds)
    if node.op in ("Conv", "ConvTranspose", "Gemm", "MatMul", "MaxPool", "AveragePool"):
        assert seconds > 0.0
    assert 0.0 <= gpu.cost(node, graph, case.precision) < 0.1


def test_concurrent_slowdown_follows_the_shared_dram():
    from devices.cost import concurrent_slowdown

    assert concurrent_slowdown("dla0", []) == 1.0
    beside_gpu = concurrent_slowdown("dla0", ["gpu"])
    assert concurrent_slowdown("dla0", ["gpu", "dla1"]) > beside_gpu > 1.0
    # The GPU draws more bandwidth than a DLA, so it slows a DLA more than the other DLA does.
    assert beside_gpu > concurrent_slowdown("dla0", ["dla1"]) > 1.0
    assert concurrent_slowdown("gpu", ["dla0", "dla1"]) > concurrent_slowdown("gpu", ["dla0"])
    with pytest.raises(ConfigError):
        concurrent_slowdown("cpu", ["gpu"])
