"""The DLA latency model's invariants. Published figures: tests/dla_sim/test_published.py."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from devices.cpu import evaluate_node
from dla_sim.hardware import dla_config
from dla_sim.latency import predict_graph, predict_layer_seconds, segment_overhead_seconds
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from tandem.zoo import build_model
from tests.dla_sim.graphs import Builder


@functools.cache
def zoo_graph(name: str, batch: int, resolution: int) -> Graph:
    return simplify(
        import_onnx(build_model(name, batch=batch, resolution=resolution)), evaluate_node
    )


def test_per_layer_times_sum_to_the_segment() -> None:
    g = zoo_graph("resnet18", 1, 64)
    total = predict_graph(g, "int8", 2, 1.6e9, 102.4e9)
    layers = [predict_layer_seconds(n, g, "int8", 2, 1.6e9, 102.4e9) for n in g.nodes]
    assert sum(layers) == pytest.approx(total.total_seconds - segment_overhead_seconds(2), rel=0.02)
    relu = next(n for n in g.nodes if n.op == "Relu" and n.inputs[0].producer.op == "Conv")
    assert predict_layer_seconds(relu, g, "int8", 2, 1.6e9, 102.4e9) == 0.0  # fused into SDP


def test_model_follows_the_hardware() -> None:
    b = Builder("c")
    x = b.input("x", (1, 256, 28, 28))
    y = b.conv(x, np.zeros((256, 256, 3, 3)), pads=(1, 1, 1, 1))
    g = b.output(y)
    conv = g.nodes[0]

    def t(precision: str, version: int, clock: float, bw: float = 100e9) -> float:
        return predict_layer_seconds(conv, g, precision, version, clock, bw)

    # Compute-bound layer: time scales with 1 / clock.
    assert t("int8", 2, 0.8e9) == pytest.approx(2 * t("int8", 2, 1.6e9), rel=0.05)
    # Orin's INT8 core is 4x Xavier's; its FP16 is slower than its INT8 (and than Xavier's).
    assert t("int8", 1, 1.4e9) > 3 * t("int8", 2, 1.4e9)
    assert t("fp16", 2, 1.4e9) > t("fp16", 1, 1.4e9) > t("int8", 1, 1.4e9)
    # The MAC bound: 256*256*9*784 MACs at 8192 MAC/cycle is the floor at 1.6 GHz.
    assert t("int8", 2, 1.6e9) >= 256 * 256 * 9 * 784 / (8192 * 1.6e9)
    # 3 input channels cost a full atomic-C (image-input mode packs the kernel width instead).
    assert dla_config(2).rates("int8").atomic_c == 64
    with pytest.raises(ConfigError, match="clock"):
        t("int8", 2, 0.0)


def test_overrides_come_from_yaml_style_keys() -> None:
    cfg = dla_config(2).with_overrides(dram_efficiency=0.8, int8={"atomic_c": 32, "atomic_k": 64})
    assert cfg.macs_per_cycle("int8") == 32 * 64 * 2
    with pytest.raises(ConfigError, match="unknown DLA hardware field"):
        dla_config(2).with_overrides(warp_drive=1)


def _conv_graph(c: int, k: int, hw: int, group: int = 1, batch: int = 1) -> Graph:
    b = Builder("c")
    x = b.input("x", (batch, c, hw, hw))
    y = b.conv(x, np.zeros((k, c // group, 3, 3)), pads=(1, 1, 1, 1), group=group)
    return b.output(y)


def test_grouped_conv_takes_the_cheaper_of_per_group_and_block_diagonal():
    # ResNeXt's 32 groups of 4 channels: per group, each group fills 1/16 of a 64-wide atomic;
    # as one block-diagonal dense convolution it is 2 x 2 atomics per tap.
    grouped = _conv_graph(128, 128, 56, group=32)
    dense = _conv_graph(128, 128, 56)
    t_grouped = predict_graph(grouped, "int8", 2, 1.6e9, 204.8e9)
    t_dense = predict_graph(dense, "int8", 2, 1.6e9, 204.8e9)
    assert t_grouped.ops[0].seconds == pytest.approx(t_dense.ops[0].seconds, rel=0.05)
    # Depthwise (one channel per group) runs on the depth-wise processor: channels per cycle
    # and tap, no atomic-C padding (per group it would be 128 x 9 atomics per pixel).
    cfg = dla_config(2)
    depthwise = predict_graph(_conv_graph(128, 128, 56, group=128), "int8", 2, 1.6e9, 204.8e9)
    atomics = 56 * 56 * 9 * -(-128 // cfg.depthwise_channels_per_cycle)
    assert depthwise.ops[0].cycles == pytest.approx(
        atomics / cfg.conv_pipes("int8") + cfg.op_fixed_cycles
    )


def test_conv_core_overhead_per_output_pixel():
    # A 64-channel 3x3 layer pays R*S*ceil(C/64) = 9 atomics + the per-pixel overhead per
    # atomic-K group; a 512-channel one 72 + the same overhead, so it is closer to the MAC peak.
    cfg = dla_config(2)
    for c, work in ((64, 9), (512, 72)):
        g = _conv_graph(c, c, 28)
        op = predict_graph(g, "int8", 2, 1.6e9, 1e15).ops[0]
        k_groups = c // cfg.rates("int8").atomic_k
        expected = 28 * 28 * k_groups * (work + cfg.pixel_overhead_s1) / cfg.conv_pipes("int8")
        assert op.bound == "mac"
        assert op.cycles == pytest.approx(expected + cfg.op_fixed_cycles, rel=1e-6)


def test_batch_costs_linearly_with_no_batching_gain():
    one = predict_graph(_conv_graph(64, 64, 28), "int8", 2, 1.6e9, 204.8e9).total_seconds
    four = predict_graph(_conv_graph(64, 64, 28, batch=4), "int8", 2, 1.6e9, 204.8e9)
    fixed = segment_overhead_seconds(2)
    assert four.total_seconds - fixed == pytest.approx(4 * (one - fixed), rel=0.02)


def test_dlas_running_copies_share_the_dram():
    g = _conv_graph(256, 256, 56)
    alone = predict_graph(g, "int8", 2, 1.6e9, 20e9).total_seconds
    shared = predict_graph(g, "int8", 2, 1.6e9, 20e9, concurrent_dlas=2).total_seconds
    assert shared > 1.5 * alone  # memory-bound at 20 GB/s: half the bandwidth, ~twice the time


def _silu_graph(c: int, k: int, hw: int, kernel: int = 1, second_reader: bool = False) -> Graph:
    b = Builder("silu")
    x = b.input("x", (1, c, hw, hw))
    y = b.conv(x, np.zeros((k, c, kernel, kernel)), pads=(kernel // 2,) * 4)
    s = b.op("Sigmoid", [y], (1, k, hw, hw))
    out = b.op("Mul", [y, s], (1, k, hw, hw))
    if second_reader:
        return b.output(out, b.op("Relu", [y], (1, k, hw, hw)))
    return b.output(out)


def test_silu_runs_in_the_convolutions_sdp_pass_at_the_lut_rate():
    cfg = dla_config(2)
    clock, bw = 1.6e9, 204.8e9
    # A cheap 1x1 convolution: the LUT (Y unit) streams slower than the MACs, so the tail adds
    # only the difference, and nothing more moves through the DRAM.
    cheap = _silu_graph(16, 64, 112)
    t = predict_graph(cheap, "int8", 2, clock, bw)
    conv, tail = t.ops
    assert (tail.bound, tail.dram_bytes) == ("lut", 0)
    assert conv.cycles + tail.cycles == pytest.approx(64 * 112 * 112 / cfg.sdp_lut_elems_per_cycle)
    # A heavy 3x3 convolution hides the LUT entirely.
    heavy = _silu_graph(256, 256, 28, kernel=3)
    h = predict_graph(heavy, "int8", 2, clock, bw)
    assert h.ops[1].seconds == 0.0
    # inspect's per-layer prices add up to the loadable's.
    for g, timing in ((cheap, t), (heavy, h)):
        layers = [predict_layer_seconds(n, g, "int8", 2, clock, bw) for n in g.nodes]
        assert sum(layers) == pytest.approx(
            timing.total_seconds - segment_overhead_seconds(2), rel=0.02
        )
    # When something else reads the convolution's output, the SiLU is its own SDP op again:
    # it reads x twice (LUT input and multiplier operand) and writes the result.
    shared = predict_graph(_silu_graph(16, 64, 112, second_reader=True), "int8", 2, clock, bw)
    tail = next(o for o in shared.ops if "sigmoid" in o.layers[0])
    assert tail.dram_bytes >= 3 * 64 * 112 * 112


def test_fetch_and_macs_take_turns_when_cbuf_cannot_double_buffer():
    # 256 -> 256 3x3 INT8: 576 KiB of weights never fit the 512 KiB CBUF, so they load in two
    # chunks beside the input. At 150 wide an input slice needs 4 banks and the 7 left cannot
    # hold two: fetches wait for the MACs (time = MAC + DRAM). At 56 wide (2 banks) they can.
    cfg = dla_config(2)
    for hw, serial in ((150, True), (56, False)):
        slow = predict_graph(_conv_graph(256, 256, hw), "int8", 2, 1.6e9, 100e9).ops[0]
        fast = predict_graph(_conv_graph(256, 256, hw), "int8", 2, 1.6e9, 1e15).ops[0]
        assert slow.bound == fast.bound == "mac"
        # DRAM cycles at 100 GB/s x efficiency, and at the DBB port's width when DRAM is free.
        port = cfg.dbb_bytes_per_cycle
        dram = slow.dram_bytes / min(port, 100e9 * cfg.dram_efficiency / 1.6e9)
        if serial:
            assert slow.cycles - fast.cycles == pytest.approx(dram - slow.dram_bytes / port)
        else:
            assert slow.cycles == fast.cycles > dram
