"""Resize (and legacy Upsample): nearest / linear / cubic, every coordinate transformation mode.

Resizing is separable, so each resized axis is handled on its own:

* nearest: an index vector and one ``np.take``, in the input's own dtype (exact for integers);
* linear / cubic (antialiased or not): per output index a few taps (input index, weight) along
  the axis; the weights fold in edge clamping, ``exclude_outside`` renormalisation and antialias
  filter widening, so the numerics follow the ONNX specification (and its reference
  implementation). The taps are summed block by block into the output, so an upscale never
  holds more than the output plus a few megabytes: FP16 is summed in FP32 and integer images in
  float64 only per block, then rounded into the output's dtype.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from devices.cpu.registry import attr_ints, attr_str, const_ints, normalize_axis, register
from partitioner.ir import Node


def _source_coords(
    mode: str, out_len: int, in_len: int, scale: float, roi: tuple[float, float] | None
) -> np.ndarray:
    """Input coordinate of every output index along one axis.

    Computed in float32, operation by operation as ONNX Runtime does: nearest rounding of a
    coordinate that lands within an ulp of .5 (e.g. 8.5 / 1.7) then picks the same pixel.
    align_corners, tf_crop_and_resize and pytorch_half_pixel use the integer output length,
    as the specification and ONNX Runtime do (the ONNX reference uses scale * in_len; both
    agree when that product is integral).
    """
    f = np.float32
    y = np.arange(out_len, dtype=f)
    half, sc, length = f(0.5), f(scale), f(in_len)
    if mode == "align_corners":
        if out_len == 1:
            return np.zeros(out_len, f)
        return y * f(in_len - 1) / f(out_len - 1)
    if mode == "asymmetric":
        return y / sc
    if mode == "tf_crop_and_resize":
        start, end = (f(v) for v in roi) if roi is not None else (f(0.0), f(1.0))
        if out_len == 1:
            x = np.full(out_len, (end - start) * f(in_len - 1) / f(2), f)
        else:
            x = y * (end - start) * f(in_len - 1) / f(out_len - 1)
        return x + start * f(in_len - 1)
    if mode == "pytorch_half_pixel":
        # the specification (and ONNX Runtime) map a length-1 output to 0; the ONNX reference
        # implementation uses -0.5, which no node test exercises
        return np.zeros(out_len, f) if out_len == 1 else (y + half) / sc - half
    if mode == "half_pixel":
        return (y + half) / sc - half
    if mode == "half_pixel_symmetric":
        adjustment = f(out_len) / (sc * length)
        offset = length / f(2) * (f(1) - adjustment)
        return offset + (y + half) / sc - half
    raise ValueError(f"unknown coordinate_transformation_mode '{mode}'")


def _nearest_index(x: np.ndarray, in_len: int, nearest_mode: str) -> np.ndarray:
    floor = np.floor(x)
    frac = x - floor
    if nearest_mode == "round_prefer_floor":
        idx = np.where(frac > 0.5, floor + 1, floor)
    elif nearest_mode == "round_prefer_ceil":
        idx = np.where(frac >= 0.5, floor + 1, floor)
    elif nearest_mode == "floor":
        idx = floor
    elif nearest_mode == "ceil":
        idx = np.ceil(x)
    else:
        raise ValueError(f"unknown nearest_mode '{nearest_mode}'")
    return np.clip(idx, 0, in_len - 1).astype(np.int64)


def _cubic_kernel(t: np.ndarray, a: float) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def _taps(
    x: np.ndarray, in_len: int, scale: float, mode: str, a: float, antialias: bool,
    exclude_outside: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``(index, weight)``, each ``(out, taps)``: the input pixels and weights of every output
    pixel along one axis for linear / cubic interpolation."""
    # the base tap is the pixel at or left of x, taken strictly left for integral x (ratio 1)
    base = np.ceil(x) - 1
    ratio = x - base
    filter_scale = min(scale, 1.0) if antialias else 1.0
    if mode == "linear":
        start = int(math.floor(-1 / filter_scale) + 1)
        offsets = np.arange(start, 2 - start)
        w = np.clip(1 - np.abs((offsets[None, :] - ratio[:, None]) * filter_scale), 0, 1)
    else:
        start = int(math.floor(-2 / filter_scale) + 1)
        offsets = np.arange(start, 2 - start)
        w = _cubic_kernel((offsets[None, :] - ratio[:, None]) * filter_scale, a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = base[:, None].astype(np.int64) + offsets[None, :]
    if exclude_outside:
        w = np.where((idx >= 0) & (idx < in_len), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, in_len - 1), w


_BLOCK_ELEMENTS = 1 << 20  # per block of output rows: bounds the temporaries of one tap sum


def _interpolate(
    data: np.ndarray, idx: np.ndarray, w: np.ndarray, axis: int, out_dtype: np.dtype
) -> np.ndarray:
    """Sum of ``w[:, j] * data[idx[:, j]]`` over taps along ``axis``, written into an array of
    ``out_dtype`` block by block (integer outputs rounded and saturated)."""
    compute = _compute_dtype(data.dtype)
    shape = list(data.shape)
    shape[axis] = len(idx)
    out = np.empty(shape, out_dtype)
    row = math.prod(shape) // max(len(idx), 1)  # elements per output index along the axis
    step = max(1, _BLOCK_ELEMENTS // max(row, 1))
    weights = w.astype(compute)
    view = [1] * data.ndim
    for lo in range(0, len(idx), step):
        hi = min(lo + step, len(idx))
        view[axis] = hi - lo
        acc: np.ndarray | None = None
        for j in range(idx.shape[1]):
            part = np.take(data, idx[lo:hi, j], axis=axis).astype(compute, copy=False)
            part *= weights[lo:hi, j].reshape(view)
            if acc is None:
                acc = part
            else:
                acc += part
        assert acc is not None  # every interpolation has at least one tap
        where: list[Any] = [slice(None)] * data.ndim
        where[axis] = slice(lo, hi)
        out[tuple(where)] = _to_dtype(acc, out_dtype)
    return out


def _compute_dtype(dtype: np.dtype) -> np.dtype:
    """FP16 and the narrow floats interpolate in FP32, integer images in float64."""
    if dtype.kind in "iub":
        return np.dtype(np.float64)
    return np.result_type(dtype, np.float32)


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``values`` (float, overwritten) in ``dtype``; integers rounded to nearest and saturated."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        np.rint(values, out=values)
        np.clip(values, info.min, info.max, out=values)
    return values.astype(dtype, copy=False)


@register("Resize", "Upsample")
def resize(node: Node, inputs: list[Any]) -> np.ndarray:
    x_in = inputs[0]
    rank = x_in.ndim
    if node.op == "Upsample":  # opset 9: (X, scales)
        roi, scales_in, sizes_in = None, inputs[1], None
    else:
        roi = inputs[1] if len(inputs) > 1 else None
        scales_in = inputs[2] if len(inputs) > 2 else None
        sizes_in = inputs[3] if len(inputs) > 3 else None
    if scales_in is None and "scales" in node.attrs:  # opset 7 Upsample / Resize attrs
        scales_in = np.asarray(node.attrs["scales"], np.float32)
    mode = attr_str(node, "mode", "nearest")
    coord_mode = attr_str(node, "coordinate_transformation_mode", "half_pixel")
    nearest_mode = attr_str(node, "nearest_mode", "round_prefer_floor")
    if node.op == "Upsample":  # Upsample's index mapping: asymmetric, rounding down
        coord_mode, nearest_mode = "asymmetric", "floor"
    if mode == "bilinear":
        mode = "linear"
    axes = attr_ints(node, "axes")
    axes = [normalize_axis(a, rank) for a in axes] if axes else list(range(rank))
    scales, sizes = _scales_and_sizes(node, x_in, axes, scales_in, sizes_in)
    roi_pairs = _roi_pairs(roi, axes, rank)

    if mode not in ("nearest", "linear", "cubic"):
        raise ValueError(f"unknown Resize mode '{mode}'")
    extrapolation = float(node.attrs.get("extrapolation_value", 0.0))
    resized = [
        a for a in axes
        if not (sizes[a] == x_in.shape[a] and math.isclose(scales[a], 1.0)
                and roi_pairs[a] in (None, (0.0, 1.0)))
    ]  # fmt: skip
    data = x_in
    for axis in resized:
        in_len, out_len, scale = data.shape[axis], sizes[axis], scales[axis]
        x = _source_coords(coord_mode, out_len, in_len, scale, roi_pairs[axis])
        if mode == "nearest":
            data = np.take(data, _nearest_index(x, in_len, nearest_mode), axis=axis)
        else:
            idx, w = _taps(
                x, in_len, scale, mode, float(node.attrs.get("cubic_coeff_a", -0.75)),
                bool(int(node.attrs.get("antialias", 0))),
                bool(int(node.attrs.get("exclude_outside", 0))),
            )
            # axes before the last stay in the compute dtype: rounding in between would differ
            last = axis == resized[-1]
            data = _interpolate(
                data, idx, w, axis, x_in.dtype if last else _compute_dtype(x_in.dtype)
            )
        if coord_mode == "tf_crop_and_resize":
            outside = (x < 0) | (x > in_len - 1)
            if outside.any():
                index: list[Any] = [slice(None)] * rank
                index[axis] = outside
                data[tuple(index)] = _to_dtype(np.array(extrapolation), data.dtype)
    return np.ascontiguousarray(data).astype(x_in.dtype, copy=False)


def _scales_and_sizes(
    node: Node, x: np.ndarray, axes: list[int], scales_in: Any, sizes_in: Any
) -> tuple[list[float], list[int]]:
    """Per-axis scale factors and output sizes over all ``rank`` axes."""
    rank = x.ndim
    scales = [1.0] * rank
    sizes = list(x.shape)
    given_sizes = const_ints(sizes_in) if sizes_in is not None and np.size(sizes_in) else None
    given_scales = (
        [float(s) for s in np.asarray(scales_in).reshape(-1)]
        if scales_in is not None and np.size(scales_in)
        else None
    )
    # the importer checks constant scales / sizes; computed ones are checked here (as ORT does)
    if given_sizes is not None:
        if min(given_sizes) <= 0:
            raise ValueError(f"sizes {given_sizes} must be > 0")
        if len(given_sizes) == rank and len(axes) != rank:
            given_sizes = [given_sizes[a] for a in axes]
        for a, s in zip(axes, given_sizes, strict=True):
            sizes[a] = s
            scales[a] = s / x.shape[a]
        policy = attr_str(node, "keep_aspect_ratio_policy", "stretch")
        if policy != "stretch":
            picked = [scales[a] for a in axes]
            scale = min(picked) if policy == "not_larger" else max(picked)
            for a in axes:
                scales[a] = scale
                sizes[a] = int(scale * x.shape[a] + 0.5)
    elif given_scales is not None:
        if not all(math.isfinite(f) and f > 0 for f in given_scales):
            raise ValueError(f"scales {given_scales} must be finite and > 0")
        if len(given_scales) == rank and len(axes) != rank:
            given_scales = [given_scales[a] for a in axes]
        for a, factor in zip(axes, given_scales, strict=True):
            scales[a] = factor
            # float32 product, as ONNX Runtime and onnx shape inference compute it
            # (2.6f * 5 is 13 in float32 but 12.99999 in float64)
            sizes[a] = int(math.floor(np.float32(factor) * np.float32(x.shape[a])))
    else:
        raise ValueError("Resize needs either scales or sizes")
    return scales, sizes


def _roi_pairs(roi: Any, axes: list[int], rank: int) -> list[tuple[float, float] | None]:
    pairs: list[tuple[float, float] | None] = [None] * rank
    if roi is None or np.size(roi) == 0:
        return pairs
    values = [float(v) for v in np.asarray(roi).reshape(-1)]
    n = len(values) // 2
    targets = axes if n == len(axes) else list(range(rank))
    for i, a in enumerate(targets):
        pairs[a] = (values[i], values[i + n])
    return pairs
