"""INT8 arithmetic pinned bit-exactly against an independent integer / rational reference.

Scales are powers of two so every real value in these cases is exactly representable; the
reference below uses Python integers and Fractions only (no numpy float arithmetic), so a
tie (x.5) is a tie and must round away from zero.
"""

from __future__ import annotations

import zlib
from fractions import Fraction

import numpy as np
import pytest

from dla_sim.compiler import compile_loadable
from dla_sim.execute import run_loadable
from dla_sim.numerics import quantize, quantize_weights_per_channel, round_half_away
from tests.dla_sim.graphs import Builder


def ref_round(v: Fraction) -> int:
    """Round half away from zero on an exact rational."""
    whole = abs(v.numerator) * 2 + v.denominator  # floor(|v| + 1/2) = floor((2|n| + d) / 2d)
    mag = whole // (2 * v.denominator)
    return mag if v >= 0 else -mag


def ref_sat(v: int) -> int:
    return max(-128, min(127, v))


@pytest.mark.parametrize(
    "value, expected",
    [
        (0.5, 1),
        (-0.5, -1),
        (1.5, 2),
        (2.5, 3),
        (-2.5, -3),
        (0.49999, 0),
        (-0.5000001, -1),
        (126.5, 127),
        (-127.5, -128),
        (0.0, 0),
        (0.49999999999999994, 0),  # just below a tie: floor(x + 0.5) would give 1
        (-3.5, -4),
        (2.0**40 + 0.5, 2**40 + 1),
    ],
)
def test_round_half_away_from_zero(value: float, expected: int) -> None:
    assert int(round_half_away(value)) == expected
    assert ref_round(Fraction(value)) == expected


@pytest.mark.parametrize(
    "real, scale, expected",
    [
        (1000.0, 1.0, 127),
        (-1000.0, 1.0, -128),
        (63.75, 0.5, 127),
        (-64.25, 0.5, -128),
        (0.75, 0.5, 2),
        (-0.75, 0.5, -2),
        (0.25, 0.5, 1),
    ],
)
def test_quantize_rounds_and_saturates(real: float, scale: float, expected: int) -> None:
    assert int(quantize(np.array([real]), scale)[0]) == expected


def test_weight_quantisation_is_per_channel_symmetric_with_ties_away() -> None:
    w = np.array([[127 / 128, -63.5 / 128], [2.0, 0.5]])
    q, s = quantize_weights_per_channel(w)
    assert s.tolist() == [1 / 128, 2 / 127]
    assert q.tolist() == [[127, -64], [127, 32]]  # -63.5 -> -64; 0.5 / (2/127) = 31.75 -> 32


def ref_conv_int8(
    qx: list[list[list[list[int]]]],
    qw: list[list[list[list[int]]]],
    stride: int,
    pad: int,
) -> list[list[list[list[int]]]]:
    """Direct integer convolution, NCHW, zero padding, groups = 1."""
    n, c, h, w = len(qx), len(qx[0]), len(qx[0][0]), len(qx[0][0][0])
    k, r, s = len(qw), len(qw[0][0]), len(qw[0][0][0])
    p = (h + 2 * pad - r) // stride + 1
    q = (w + 2 * pad - s) // stride + 1
    out = [[[[0] * q for _ in range(p)] for _ in range(k)] for _ in range(n)]
    for b in range(n):
        for kk in range(k):
            for i in range(p):
                for j in range(q):
                    acc = 0
                    for cc in range(c):
                        for di in range(r):
                            for dj in range(s):
                                y, x = i * stride + di - pad, j * stride + dj - pad
                                if 0 <= y < h and 0 <= x < w:
                                    acc += qx[b][cc][y][x] * qw[kk][cc][di][dj]
                    out[b][kk][i][j] = acc
    return out


CASES = [
    # (name, input shape, kernel, stride, pad, relu, x scale, y scale)
    ("1x1", (1, 2, 2, 3), 1, 1, 0, False, Fraction(1, 2), Fraction(1, 4)),
    ("3x3_s2_pad1", (1, 3, 5, 5), 3, 2, 1, False, Fraction(1, 8), Fraction(1, 16)),
    ("3x3_relu", (2, 4, 4, 4), 3, 1, 1, True, Fraction(1, 4), Fraction(1, 4)),
]


@pytest.mark.parametrize("name, shape, ksize, stride, pad, relu, sx, sy", CASES)
def test_int8_conv_requantisation_bit_exact(
    name: str,
    shape: tuple[int, int, int, int],
    ksize: int,
    stride: int,
    pad: int,
    relu: bool,
    sx: Fraction,
    sy: Fraction,
) -> None:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    n, c, h, w = shape
    k = 3
    qx = rng.integers(-128, 128, size=shape)
    x = qx.astype(np.float64) * float(sx)  # exactly on the INT8 grid
    # Weights on a 1/128 grid with per-channel amax 127/128 -> scale exactly 1/128; odd
    # half-steps make ties that must round away from zero.
    qw2 = rng.integers(-254, 255, size=(k, c, ksize, ksize))
    qw2[:, 0, 0, 0] = 254
    wf = qw2.astype(np.float64) / 256.0
    bias = np.array([0.0, 3.0 / 1024, -5.0 / 1024])  # bias / (sx * sw) ties too
    b = Builder(name)
    xin = b.input("x", shape)
    y = b.conv(xin, wf, bias, strides=(stride, stride), pads=(pad,) * 4)
    if relu:
        y = b.op("Relu", [y], y.static_shape())
    g = b.output(y)
    scales = {"x": float(sx), y.name: float(sy)}
    conv_out = g.nodes[0].outputs[0].name
    scales[conv_out] = float(sy)
    lo = compile_loadable(g, "int8", 2, scales, output_dtype="int8")
    out = run_loadable(lo, {"x": x}, raw=True)[y.name]

    # Independent reference: integer weights, integer accumulation, rational requantisation.
    sw = Fraction(1, 128)
    qw = [
        [[[ref_round(Fraction(int(v), 2)) for v in row] for row in ch] for ch in kern]
        for kern in qw2.tolist()
    ]
    acc = ref_conv_int8(qx.tolist(), qw, stride, pad)
    qb = [ref_round(Fraction(bv).limit_denominator(1 << 20) / (sx * sw)) for bv in bias]
    expected = np.zeros_like(out, dtype=np.int64)
    for bb in range(n):
        for kk in range(k):
            for i in range(expected.shape[2]):
                for j in range(expected.shape[3]):
                    v = (acc[bb][kk][i][j] + qb[kk]) * sx * sw
                    if relu:
                        v = max(v, Fraction(0))
                    expected[bb, kk, i, j] = ref_sat(ref_round(v / sy))
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out.astype(np.int64), expected)
    # The case must exercise saturation and ties, or it pins nothing.
    assert (np.abs(expected) == 127).any() or (expected == -128).any()


def test_int8_accumulation_is_exact_beyond_float32() -> None:
    """Sums of int8 products far beyond 2**24 come out exact (float32 would lose bits)."""
    from dla_sim.execute import _conv2d

    rng = np.random.default_rng(7)
    qx = rng.integers(-128, 128, size=(1, 2048, 6, 6))
    qx[:, :, 2:4, 2:4] = 127
    qw = rng.integers(-127, 128, size=(3, 2048, 3, 3))
    qw[0] = 127  # channel 0 accumulates ~2048*9*127*127 = 3e8 > 2**24
    # The emulator's path: float32 GEMMs over <= 1024-term chunks (2048 * 9 terms here).
    got = _conv2d(
        qx.astype(np.float32), qw.astype(np.float32), [1, 1], [1, 1, 1, 1], [1, 1], 1, exact=True
    )
    padded = np.pad(qx, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros((1, 3, 6, 6), dtype=np.int64)
    for i in range(3):
        for j in range(3):
            want += np.einsum("nchw,kc->nkhw", padded[:, :, i : i + 6, j : j + 6], qw[:, :, i, j])
    assert np.abs(want).max() > 2**24
    np.testing.assert_array_equal(got.astype(np.int64), want)
    assert np.array_equal(got, np.rint(got))
    naive = _conv2d(qx.astype(np.float32), qw.astype(np.float32), [1, 1], [1, 1, 1, 1], [1, 1], 1)
    assert not np.array_equal(naive.astype(np.int64), want)  # float32 alone would be wrong


def test_fused_residual_add_requantises_once() -> None:
    b = Builder("res")
    x = b.input("x", (1, 1, 1, 4))
    z = b.input("z", (1, 1, 1, 4))
    y = b.conv(x, np.full((1, 1, 1, 1), 127 / 128))
    s = b.op("Add", [y, z], (1, 1, 1, 4))
    r = b.op("Relu", [s], (1, 1, 1, 4))
    g = b.output(r)
    qx = np.array([3, -5, 1, 100])
    qz = np.array([1, 2, -3, 127])
    scales = {"x": 0.5, "z": 0.25, y.name: 1.0, s.name: 1.0, r.name: 0.5}
    lo = compile_loadable(g, "int8", 2, scales, output_dtype="int8")
    assert len(lo.ops) == 1  # conv + add + relu: one engine op
    feeds = {"x": (qx * 0.5).reshape(1, 1, 1, 4), "z": (qz * 0.25).reshape(1, 1, 1, 4)}
    out = run_loadable(lo, feeds, raw=True)[r.name]
    expected = []
    for a, bz in zip(qx.tolist(), qz.tolist()):
        v = Fraction(a * 127) * Fraction(1, 2) * Fraction(1, 128) + Fraction(bz, 4)
        expected.append(ref_sat(ref_round(max(v, Fraction(0)) / Fraction(1, 2))))
    assert out.reshape(-1).tolist() == expected
