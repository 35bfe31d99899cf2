"""GridSample (opset 16 and 20): sample an image at normalised grid coordinates.

The arithmetic follows ONNX Runtime's CPU kernel step for step, in float32 as it does, so that
nearest-neighbour ties and border cases pick the same pixel: denormalise the coordinate, round
it (nearest), mirror an out-of-range coordinate back inside the sampling bounds (reflection),
then read the taps under the padding mode (zeros: taps outside read 0; border: taps clamp to
the edge pixel; reflection: taps mirror too). Modes take their opset-20 names (the importer renames
opset 16's ``bilinear`` / ``bicubic``); the old names are accepted too for raw node tests.
"""

from __future__ import annotations

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
    """Reads pixels of one (N, C, H, W) image at integer positions under a padding mode."""

    def __init__(self, x: np.ndarray, padding: str, bounds: tuple[float, float, float, float]):
        self.x, self.padding, self.bounds = x, padding, bounds
        self.h, self.w = x.shape[2], x.shape[3]
        self.batch = np.arange(x.shape[0]).reshape(-1, 1, 1)

    def __call__(self, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """Pixels at rows ``r`` and columns ``c`` (int64, (N, Ho, Wo)) -> (N, C, Ho, Wo)."""
        if self.padding == "zeros":
            inside = (c >= 0) & (c < self.w) & (r >= 0) & (r < self.h)
            rc, cc = np.clip(r, 0, self.h - 1), np.clip(c, 0, self.w - 1)
            v = self.x[self.batch, :, rc, cc]  # (N, Ho, Wo, C)
            v = np.where(inside[..., None], v, 0)
        else:
            if self.padding == "border":
                c, r = np.clip(c, 0, self.w - 1), np.clip(r, 0, self.h - 1)
            else:
                x0, y0, x1, y1 = self.bounds
                c = _reflect(c.astype(np.float32), x0, x1).astype(np.int64)
                r = _reflect(r.astype(np.float32), y0, y1).astype(np.int64)
            v = self.x[self.batch, :, r, c]
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
    if x.ndim != 4 or grid.ndim != 4 or grid.shape[-1] != 2:
        raise ValueError(f"only 2-D sampling is supported: input (N, C, H, W) and grid "
                         f"(N, H_out, W_out, 2), got {x.shape} and {grid.shape}")  # fmt: skip
    if grid.shape[0] != x.shape[0]:
        raise ValueError(f"grid batch {grid.shape[0]} differs from the input batch {x.shape[0]}")
    mode = _MODES[mode_name]
    align = bool(int(node.attrs.get("align_corners", 0)))
    h, w = x.shape[2], x.shape[3]
    xc = as_compute(x)
    g = grid.astype(np.float32)
    if align:
        bounds = (0.0, 0.0, w - 1.0, h - 1.0)
    else:
        bounds = (-0.5, -0.5, w - 0.5, h - 0.5)
    gx = _denormalize(g[..., 0], w, align)
    gy = _denormalize(g[..., 1], h, align)
    if mode == "nearest":
        gx, gy = np.rint(gx), np.rint(gy)
    if padding == "reflection":
        gx = _reflect(gx, bounds[0], bounds[2])
        gy = _reflect(gy, bounds[1], bounds[3])
    taps = _Taps(xc, padding, bounds)
    if mode == "nearest":
        y = taps(gy.astype(np.int64), gx.astype(np.int64))
    elif mode == "linear":
        x1, y1 = np.floor(gx), np.floor(gy)
        dx1, dy1 = (gx - x1)[:, None], (gy - y1)[:, None]
        dx2, dy2 = 1 - dx1, 1 - dy1
        c1, r1 = x1.astype(np.int64), y1.astype(np.int64)
        y = dy2 * (dx2 * taps(r1, c1) + dx1 * taps(r1, c1 + 1)) + dy1 * (
            dx2 * taps(r1 + 1, c1) + dx1 * taps(r1 + 1, c1 + 1)
        )
    else:
        x0, y0 = np.floor(gx) - 1, np.floor(gy) - 1
        cx = [c[:, None] for c in _cubic_coeffs(gx - x0 - 1)]
        cy = [c[:, None] for c in _cubic_coeffs(gy - y0 - 1)]
        c0, r0 = x0.astype(np.int64), y0.astype(np.int64)
        y = sum(cy[i] * sum(cx[j] * taps(r0 + i, c0 + j) for j in range(4)) for i in range(4))
    return cast_back(np.asarray(y, dtype=xc.dtype), x)
