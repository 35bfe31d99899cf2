"""The DLA latency model against published figures (dla.md §3) and its own invariants.

The model is built from hardware facts (dla_sim/hardware.py); these figures only check it.
Clocks and DRAM bandwidth come from the target catalog (AGX Orin) or, for DRIVE Orin-X, from
the cuDLA-samples README table (DLA 1331 MHz, memory 3200 MHz = 204.8 GB/s on 256 bits).
"""

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
from partitioner.subgraph import extract_between
from tandem.zoo import build_model
from targets.catalog import load_target
from tests.dla_sim.graphs import Builder

TOLERANCE = 0.25


@functools.cache
def zoo_graph(name: str, batch: int, resolution: int) -> Graph:
    return simplify(
        import_onnx(build_model(name, batch=batch, resolution=resolution)), evaluate_node
    )


@functools.cache
def yolov5s_trimmed() -> Graph:
    """YOLOv5s 672x672 up to the three detection convolutions, as cuDLA-samples deploys it
    (yolov5_trimmed_qat.onnx: box decoding runs on the GPU)."""
    g = zoo_graph("yolov5s", 1, 672)
    heads = [f"model.24.m.{i}" for i in range(3)]
    outs = [g.node(h).outputs[0].name for h in heads]
    return extract_between(g, [g.inputs[0].name], outs, "yolov5s_trimmed")


@pytest.mark.parametrize(
    "power_mode, published_img_per_s",
    [("MAXN", 2037.0), ("15W", 1072.0)],  # DLA-SW README, JetPack 5.1.1, 2 DLAs, dense INT8
)
def test_resnet50_int8_bs2_on_two_orin_dlas(power_mode: str, published_img_per_s: float) -> None:
    target = load_target("orin-agx-64gb", power_mode)
    assert target.dla is not None and target.dla_clock_hz is not None
    g = zoo_graph("resnet50", 2, 224)
    # Both DLAs run a copy at once and share the DRAM.
    per_dla_bw = target.dram_bytes_per_s / target.dla.cores
    timing = predict_graph(
        g, "int8", 2, target.dla_clock_hz, per_dla_bw, output_dtype="int8", input_format="hwc4"
    )
    img_per_s = target.dla.cores * 2 / timing.total_seconds
    assert img_per_s == pytest.approx(published_img_per_s, rel=TOLERANCE), (
        f"{power_mode}: predicted {img_per_s:.0f} img/s vs published {published_img_per_s}"
    )


@pytest.mark.parametrize(
    "output, head_precision, published_ms",
    [
        ("int8", "int8", 2.4),  # int8:hwc4 in + int8:chw32 out
        ("float16", "fp16", 3.82),  # fp16:chw16 out; the 3 head convs pinned to FP16
    ],
)
def test_yolov5s_672_int8_bs1_on_one_drive_orin_dla(
    output: str, head_precision: str, published_ms: float
) -> None:
    g = yolov5s_trimmed()
    pins = {f"model.24.m.{i}": head_precision for i in range(3)}
    timing = predict_graph(g, "int8", 2, 1331e6, 204.8e9, output_dtype=output,
                           layer_precisions=pins, input_format="hwc4")  # fmt: skip
    ms = timing.total_seconds * 1e3
    assert ms == pytest.approx(published_ms, rel=TOLERANCE), f"predicted {ms:.2f} ms"


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
