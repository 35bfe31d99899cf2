"""CI (no GPU): the tile sweep's shapes and its network-weighted summary (bench/conv_tiles.py)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from conv_tiles import EXTRA_TILES, NARROW_TILES, narrow_convs, resnet50_convs, summarise  # noqa: E402

from gpu_kernels.tactics import ConvTactic  # noqa: E402


def test_resnet50_has_52_convolutions_after_the_stem() -> None:
    convs = resnet50_convs(32)
    assert sum(count for _, count in convs) == 52  # 16 blocks x 3 + 4 projections
    assert sum(count for p, count in convs if p.r == 3) == 16
    flops = sum(p.flops * count for p, count in convs) / 32
    assert 7.9e9 < flops < 8.0e9  # ResNet-50: 8.18 GFLOP a 224 px image, less the stem (0.24)


def test_summary_weighs_shapes_by_count() -> None:
    rows = [
        {"precision": "f16", "r": 3, "count": 2, "gflop": 1.0, "best_ms": 0.010,
         "best_shipped_ms": 0.020, "cudnn_ms": 0.005},
        {"precision": "f16", "r": 1, "count": 1, "gflop": 2.0, "best_ms": 0.040,
         "best_shipped_ms": 0.040, "cudnn_ms": 0.020},
        {"precision": "i8", "r": 3, "count": 2, "gflop": 1.0, "best_ms": 0.005,
         "best_shipped_ms": 0.005},
    ]
    s = summarise(rows, {"mma_sync_peak_tflops": 500.0})
    assert s["f16_3x3"]["best_tflops"] == 100.0  # 2 GFLOP in 0.02 ms
    assert s["f16_3x3"]["shipped_tflops"] == 50.0
    assert s["f16_3x3"]["best_fraction_of_mma_peak"] == 0.2
    assert s["f16_all"]["best_ms"] == 0.06 and s["f16_all"]["best_over_cudnn"] == 2.0
    assert s["int8_speedup_3x3"] == 2.0


def test_extra_tiles_are_valid_tactic_names() -> None:
    for name in EXTRA_TILES + NARROW_TILES:
        assert ConvTactic.from_name(name).name == name


def test_narrow_sweep_takes_the_zoo_layers_of_at_most_64_channels() -> None:
    convs = narrow_convs(32)
    assert all(p.k <= 64 and p.n == 32 for p, _ in convs)
    # unet-small's 11 shapes (its 16-channel layers at 256 px among them), yolov5s' 10
    # (its stem after space-to-depth: 16 channels on 322 x 322), mobilenetv2's 8
    assert len(convs) == 29 and sum(count for _, count in convs) == 42
    assert any(p.c == 16 and p.h == 322 and p.k == 32 for p, _ in convs)
