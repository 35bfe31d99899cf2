"""Acceptance numerics: zoo models with every DLA-eligible layer on the DLA emulator.

FP16 must reach cosine >= 0.9999 per output and INT8 (entropy-calibrated on 32 inputs) >= 0.98
against the FP32 CPU reference. Small resolutions keep this fast; BENCHMARKS.md has the table.
"""

from __future__ import annotations

import pytest

from tests.dla_sim.acceptance import measure


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "resnet50", "mobilenetv2", "yolov5s", "unet-small"])
def test_zoo_model_on_dla_matches_reference(model: str) -> None:
    acc = measure(model)
    assert acc.dla_layers >= 0.9 * acc.layers, f"only {acc.dla_layers}/{acc.layers} on the DLA"
    for name, cos in acc.fp16.items():
        assert cos >= 0.9999, f"{model} FP16 output {name}: cosine {cos:.6f}"
    for name, cos in acc.int8.items():
        assert cos >= 0.98, f"{model} INT8 output {name}: cosine {cos:.5f}"
