"""GridSample (opset 16 and 20): sample an image (2-D, or 3-D from opset 20) at normalised grid
coordinates.

The arithmetic follows ONNX Runtime's CPU kernel step for step, in float32 as it does, so that
nearest-neighbour ties and border cases pick the same pixel: denormalise the coordinate, round
it (nearest), mirror an out-of-range coordinate back inside the sampling bounds (reflection),
then read the taps under the padding mode (zeros: taps outside read 0; border: taps clamp to
the edge pixel; reflection: taps mirror too). Modes take their opset-20 names (the importer renames
opset 16's ``bilinear`` / ``bicubic``); the old names are accepted too for raw node tests.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np

from devices.cpu.registry import as_compute, attr_str, cast_back, register
from partitioner.ir import Node

_MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic",
          "bicubic": "cubic"}  # fmt: skip
_PADDINGS = ("zeros", "border", "reflection")
_CUBIC_A = np.float32(-0.75)


def _denormalize(n: np.ndarray, length: int, align_corners: bool) -> np.ndarray:
    one, half = np.float32(1), np.float32(0.5)
    if align_corners:
        return (n + one) * half * np.float32(length - 1)
    return ((n + one) * np.float32(length) - one) * half


def _reflect(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Mirror ``x`` into ``[lo, hi]`` as often as it takes (ORT's GsReflect)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    span = hi32 - lo32
    if span <= 0:
        return np.full_like(x, lo32)
    below, above = x < lo32, x > hi32
    d = np.where(below, lo32 - x, np.where(above, x - hi32, np.float32(0)))
    n = np.trunc(d / span)
    r = d - n * span
    even = (n.astype(np.int64) % 2) == 0
    from_below = np.where(even, lo32 + r, hi32 - r)
    from_above = np.where(even, hi32 - r, lo32 + r)
    return np.where(below, from_below, np.where(above, from_above, x)).astype(np.float32)


class _Taps:
    """Reads pixels of an (N, C, *spatial) image at integer positions under a padding mode."""

    def __init__(self, x: np.ndarray, padding: str, bounds: list[tuple[float, float]]) -> None:
        self.x, self.padding, self.bounds = x, padding, bounds
        self.sizes = x.shape[2:]
        self.batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * len(self.sizes))

    def __call__(self, at: list[np.ndarray]) -> np.ndarray:
        """Pixels at per-axis positions ``at`` (int64, (N, *out) each) -> (N, C, *out)."""
        if self.padding == "zeros":
            inside = np.logical_and.reduce([(i >= 0) & (i < n) for i, n in zip(at, self.sizes)])
            at = [np.clip(i, 0, n - 1) for i, n in zip(at, self.sizes)]
            v = np.where(inside[..., None], self.x[(self.batch, slice(None), *at)], 0)
        else:
            if self.padding == "border":
                at = [np.clip(i, 0, n - 1) for i, n in zip(at, self.sizes)]
            else:
                at = [_reflect(i.astype(np.float32), lo, hi).astype(np.int64)
                      for i, (lo, hi) in zip(at, self.bounds)]  # fmt: skip
            v = self.x[(self.batch, slice(None), *at)]  # (N, *out, C)
        return np.moveaxis(v, -1, 1)


def _cubic_coeffs(t: np.ndarray) -> list[np.ndarray]:
    a = _CUBIC_A
    t = np.abs(t)
    u, v, w = t + 1, 1 - t, 2 - t
    return [
        ((a * u - 5 * a) * u + 8 * a) * u - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * v - (a + 3)) * v * v + 1,
        ((a * w - 5 * a) * w + 8 * a) * w - 4 * a,
    ]


@register("GridSample")
def grid_sample(node: Node, inputs: list[Any]) -> np.ndarray:
    x, grid = inputs[0], inputs[1]
    mode_name = attr_str(node, "mode", "linear")
    padding = attr_str(node, "padding_mode", "zeros")
    if mode_name not in _MODES:
        raise ValueError(f"mode '{mode_name}' is not one of linear, nearest, cubic")
    if padding not in _PADDINGS:
        raise ValueError(f"padding_mode '{padding}' is not one of {', '.join(_PADDINGS)}")
    rank = x.ndim - 2
    if rank not in (2, 3) or grid.ndim != x.ndim or grid.shape[-1] != rank:
        raise ValueError(f"input (N, C, *spatial) with 2 or 3 spatial dims and grid "
                         f"(N, *out, {rank}) expected, got {x.shape} and {grid.shape}")  # fmt: skip
    if grid.shape[0] != x.shape[0]:
        raise ValueError(f"grid batch {grid.shape[0]} differs from the input batch {x.shape[0]}")
    mode = _MODES[mode_name]
    if mode == "cubic" and rank != 2:
        raise ValueError("cubic sampling is defined for 2-D inputs only (as in ONNX Runtime)")
    align = bool(int(node.attrs.get("align_corners", 0)))
    sizes = x.shape[2:]
    xc = as_compute(x)
    g = grid.astype(np.float32)
    # the grid's last axis lists coordinates innermost first: (x, y) for (H, W), (x, y, z) ...
    bounds = [(0.0, n - 1.0) if align else (-0.5, n - 0.5) for n in sizes]
    pos = [_denormalize(g[..., rank - 1 - a], sizes[a], align) for a in range(rank)]
    if mode == "nearest":
        pos = [np.rint(p) for p in pos]
    if padding == "reflection":
        pos = [_reflect(p, lo, hi) for p, (lo, hi) in zip(pos, bounds)]
    taps = _Taps(xc, padding, bounds)
    if mode == "nearest":
        y = taps([p.astype(np.int64) for p in pos])
    elif mode == "linear":
        base = [np.floor(p) for p in pos]
        frac = [(p - b)[:, None] for p, b in zip(pos, base)]
        first = [b.astype(np.int64) for b in base]
        y = 0
        for corner in itertools.product((0, 1), repeat=rank):
            weight = functools.reduce(
                np.multiply, [f if c else 1 - f for f, c in zip(frac, corner)]
            )
            y = y + weight * taps([i + c for i, c in zip(first, corner)])
    else:
        (gy, gx) = pos
        x0, y0 = np.floor(gx) - 1, np.floor(gy) - 1
        cx = [c[:, None] for c in _cubic_coeffs(gx - x0 - 1)]
        cy = [c[:, None] for c in _cubic_coeffs(gy - y0 - 1)]
        c0, r0 = x0.astype(np.int64), y0.astype(np.int64)
        y = sum(cy[i] * sum(cx[j] * taps([r0 + i, c0 + j]) for j in range(4)) for i in range(4))
    return cast_back(np.asarray(y, dtype=xc.dtype), x)
