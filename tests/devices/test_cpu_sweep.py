"""Seeded random sweeps of the ops with the most geometry (Conv, ConvTranspose, pools, Resize,
Slice) against ONNX Runtime; each case is one row of ``test_cpu_ops``'s table.

Combinations where ONNX Runtime itself departs from the ONNX specification are not drawn:
AveragePool with ``auto_pad`` SAME and dilations (ORT ignores the dilation in its output size),
SAME pooling with kernel < stride (ORT pads negatively), tf_crop_and_resize on axes whose size
does not change (ORT skips the roi there), antialiased *up*-sampling (ORT drops border taps).
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.devices.test_cpu_ops import C, Case, f32, i64
from tests.devices.test_cpu_ops import test_op_matches_onnxruntime as check_case

pytest.importorskip("onnxruntime")


def _window_case(rng: random.Random, index: int) -> Case:
    nd = rng.choice([1, 2, 2, 3])
    op = rng.choice(["Conv", "ConvTranspose", "MaxPool", "AveragePool"])
    k = [rng.randint(1, 4) for _ in range(nd)]
    s = [rng.randint(1, 3) for _ in range(nd)]
    d = [rng.randint(1, 2) for _ in range(nd)]
    spatial = [rng.randint(max(kk * dd, 3), 9) for kk, dd in zip(k, d)]
    auto_pad = rng.choice(["NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if op in ("MaxPool", "AveragePool") and auto_pad.startswith("SAME"):
        s = [min(ss, kk) for ss, kk in zip(s, k)]
        d = [1] * nd
    attrs: dict = {"strides": s}
    if auto_pad == "NOTSET":
        attrs["pads"] = [rng.randint(0, kk - 1) for kk in k] + [rng.randint(0, kk - 1) for kk in k]
    else:
        attrs["auto_pad"] = auto_pad
    if op == "Conv":
        g = rng.choice([1, 1, 2])
        if auto_pad.startswith("SAME"):
            d = [1] * nd  # ORT refuses dilated SAME convolutions
        attrs.update(group=g, dilations=d)
        inputs = [f32(1, 2 * g, *spatial), C(f32(rng.choice([1, 2]) * g, 2, *k))]
    elif op == "ConvTranspose":
        g = rng.choice([1, 2])
        attrs.update(group=g, dilations=d)
        if auto_pad == "NOTSET" and rng.random() < 0.3:
            attrs["output_padding"] = [rng.randint(0, min(ss, dd) - 1) for ss, dd in zip(s, d)]
        inputs = [f32(1, 2 * g, *spatial), C(f32(2 * g, rng.choice([1, 2]), *k))]
    else:
        attrs["kernel_shape"] = k
        attrs["dilations"] = d
        if auto_pad == "NOTSET" and rng.random() < 0.4:
            attrs["ceil_mode"] = 1
        if op == "AveragePool" and rng.random() < 0.5:
            attrs["count_include_pad"] = 1
        inputs = [f32(1, 2, *spatial)]
    return Case(f"{op.lower()}_{index}", op, inputs, attrs, opset=19)


def _resize_case(rng: random.Random, index: int) -> Case:
    mode = rng.choice(["nearest", "linear", "cubic"])
    coord = rng.choice(["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel",
                        "half_pixel_symmetric"])  # fmt: skip
    h, w = rng.randint(2, 9), rng.randint(2, 9)
    attrs: dict = {"mode": mode, "coordinate_transformation_mode": coord}
    if mode == "nearest":
        attrs["nearest_mode"] = rng.choice(["round_prefer_floor", "round_prefer_ceil", "floor",
                                            "ceil"])  # fmt: skip
    if mode == "cubic" and rng.random() < 0.5:
        attrs["exclude_outside"] = 1
    if rng.random() < 0.5:
        scales = [1.0, 1.0, round(rng.uniform(0.4, 3.0), 2), round(rng.uniform(0.4, 3.0), 2)]
        if mode != "nearest" and max(scales) <= 1.0 and rng.random() < 0.5:
            attrs["antialias"] = 1
        inputs = [f32(1, 2, h, w), None, C(np.array(scales, np.float32))]
    else:
        inputs = [f32(1, 2, h, w), None, None, C(i64(1, 2, rng.randint(1, 12), rng.randint(1, 12)))]
    return Case(f"resize_{index}", "Resize", inputs, attrs, opset=19)


def _slice_case(rng: random.Random, index: int) -> Case:
    shape = [rng.randint(1, 6) for _ in range(rng.randint(1, 3))]
    axes = rng.sample(range(len(shape)), rng.randint(1, len(shape)))
    starts = [rng.randint(-8, 8) for _ in axes]
    ends = [rng.choice([rng.randint(-8, 8), 2**31, -(2**31)]) for _ in axes]
    steps = [rng.choice([1, 2, -1, -2, 3]) for _ in axes]
    inputs = [f32(*shape), C(i64(*starts)), C(i64(*ends)), C(i64(*axes)), C(i64(*steps))]
    return Case(f"slice_{index}", "Slice", inputs)


_RNG = random.Random(20261124)
SWEEP = (
    [_window_case(_RNG, i) for i in range(80)]
    + [_resize_case(_RNG, i) for i in range(60)]
    + [_slice_case(_RNG, i) for i in range(40)]
)


@pytest.mark.parametrize("case", SWEEP, ids=[c.id for c in SWEEP])
def test_sweep_matches_onnxruntime(case: Case) -> None:
    check_case(case)
