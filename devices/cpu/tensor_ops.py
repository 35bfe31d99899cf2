"""Data-movement and shape ops: reshape, slicing, gathering, padding, constants, casts.

Outputs may be views of their inputs (Reshape, Transpose, Squeeze...): the interpreter never
writes into a tensor in place, so sharing memory is safe and saves copies.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.cpu.quant import saturate
from devices.cpu.registry import (
    attr_ints,
    attr_str,
    check_output_bytes,
    const_ints,
    normalize_axis,
    register,
)
from partitioner.dtypes import NARROW_FLOATS, numpy_dtype_name
from partitioner.ir import Node


@register("Identity")
def identity(node: Node, inputs: list[Any]) -> np.ndarray:
    return inputs[0]


@register("Dropout")
def dropout(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    # Inference semantics: the output is the input; the mask (when asked for) is all ones.
    x = inputs[0]
    training = len(inputs) > 2 and inputs[2] is not None and bool(np.asarray(inputs[2]))
    ratio = float(np.asarray(inputs[1])) if len(inputs) > 1 and inputs[1] is not None else 0.5
    if training and ratio > 0:
        raise ValueError("Dropout in training mode is random; the CPU backend runs inference only")
    outs = [x]
    if len(node.outputs) > 1:
        outs.append(np.ones(x.shape, dtype=bool))
    return outs


@register("Reshape")
def reshape(node: Node, inputs: list[Any]) -> np.ndarray:
    x, shape = inputs[0], const_ints(inputs[1])
    assert shape is not None
    if not int(node.attrs.get("allowzero", 0)):
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@register("Flatten")
def flatten(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axis = int(node.attrs.get("axis", 1))
    if not -x.ndim <= axis <= x.ndim:
        raise ValueError(f"Flatten axis {axis} is out of range for a rank-{x.ndim} tensor")
    axis = axis + x.ndim if axis < 0 else axis
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, -1) if x.size else x.reshape(outer, int(np.prod(x.shape[axis:])))


@register("Transpose")
def transpose(node: Node, inputs: list[Any]) -> np.ndarray:
    perm = attr_ints(node, "perm")
    return np.transpose(inputs[0], perm)


def _axes(node: Node, inputs: list[Any], index: int = 1) -> list[int] | None:
    """Axes from input ``index`` (opset >= 13 form) or from the ``axes`` attribute."""
    if len(inputs) > index and inputs[index] is not None:
        return const_ints(inputs[index])
    return attr_ints(node, "axes")


@register("Squeeze")
def squeeze(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axes = _axes(node, inputs)
    if axes is None:
        return np.squeeze(x)
    return np.squeeze(x, axis=tuple(normalize_axis(a, x.ndim) for a in axes))


@register("Unsqueeze")
def unsqueeze(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axes = _axes(node, inputs) or []
    rank = x.ndim + len(axes)
    return np.expand_dims(x, tuple(sorted(normalize_axis(a, rank) for a in axes)))


@register("Concat")
def concat(node: Node, inputs: list[Any]) -> np.ndarray:
    arrays = [a for a in inputs if a is not None]
    axis = normalize_axis(int(node.attrs["axis"]), arrays[0].ndim)
    return np.concatenate(arrays, axis=axis)


@register("Split")
def split(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    x = inputs[0]
    axis = normalize_axis(int(node.attrs.get("axis", 0)), x.ndim)
    sizes = const_ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
    sizes = sizes if sizes is not None else attr_ints(node, "split")
    if sizes is None:
        n = int(node.attrs.get("num_outputs", len(node.outputs)))
        chunk = -(-x.shape[axis] // n)  # ceil: the last chunk may be smaller (opset 18)
        sizes = [min(chunk, x.shape[axis] - i * chunk) for i in range(n)]
    if sum(sizes) != x.shape[axis]:
        raise ValueError(f"split sizes {sizes} do not add up to dimension {x.shape[axis]}")
    return np.split(x, np.cumsum(sizes)[:-1], axis=axis)


@register("Slice")
def slice_(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    starts, ends = const_ints(inputs[1]), const_ints(inputs[2])
    assert starts is not None and ends is not None
    axes = const_ints(inputs[3]) if len(inputs) > 3 else None
    steps = const_ints(inputs[4]) if len(inputs) > 4 else None
    axes = axes if axes is not None else list(range(len(starts)))
    steps = steps if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = normalize_axis(axis, x.ndim)
        index[axis] = _clamped_slice(start, end, step, x.shape[axis])
    return x[tuple(index)]


def _clamped_slice(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX Slice bounds (negative = from the end, clamped) as a python slice."""
    if step == 0:
        raise ValueError("Slice step cannot be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    if dim == 0:
        return slice(0, 0)
    start = min(max(start, 0), dim - 1)
    end = min(max(end, -1), dim - 1)
    # python reads -1 as "last"; ONNX's clamped -1 means "before the first element"
    return slice(start, None if end < 0 else end, step)


@register("Gather")
def gather(node: Node, inputs: list[Any]) -> np.ndarray:
    x, indices = inputs[0], np.asarray(inputs[1]).astype(np.int64)
    axis = normalize_axis(int(node.attrs.get("axis", 0)), x.ndim)
    dim = x.shape[axis]
    if indices.size and (indices.min() < -dim or indices.max() >= dim):
        raise ValueError(f"Gather index out of range [-{dim}, {dim - 1}]")
    return np.take(x, np.where(indices < 0, indices + dim, indices), axis=axis)


@register("GatherElements")
def gather_elements(node: Node, inputs: list[Any]) -> np.ndarray:
    x, indices = inputs[0], np.asarray(inputs[1]).astype(np.int64)
    axis = normalize_axis(int(node.attrs.get("axis", 0)), x.ndim)
    indices = np.where(indices < 0, indices + x.shape[axis], indices)
    return np.take_along_axis(x, indices, axis=axis)


@register("Shape")
def shape(node: Node, inputs: list[Any]) -> np.ndarray:
    dims = np.array(inputs[0].shape, dtype=np.int64)
    rank = len(dims)
    start = int(node.attrs.get("start", 0))
    end = node.attrs.get("end")
    start = min(max(start + rank if start < 0 else start, 0), rank)
    stop = rank if end is None else int(end)
    stop = min(max(stop + rank if stop < 0 else stop, 0), rank)
    return dims[start:stop]


@register("Size")
def size(node: Node, inputs: list[Any]) -> np.ndarray:
    return np.array(inputs[0].size, dtype=np.int64)


@register("Constant")
def constant(node: Node, inputs: list[Any]) -> np.ndarray:
    a = node.attrs
    if "value" in a:
        return np.asarray(a["value"])
    if "value_float" in a:
        return np.array(a["value_float"], dtype=np.float32)
    if "value_floats" in a:
        return np.array(a["value_floats"], dtype=np.float32)
    if "value_int" in a:
        return np.array(a["value_int"], dtype=np.int64)
    if "value_ints" in a:
        return np.array(a["value_ints"], dtype=np.int64)
    raise ValueError(f"Constant has none of the supported value attributes (has {sorted(a)})")


@register("ConstantOfShape")
def constant_of_shape(node: Node, inputs: list[Any]) -> np.ndarray:
    dims = const_ints(inputs[0]) or []
    value = node.attrs.get("value")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(dims, fill[0], dtype=fill.dtype)


def _dtype_attr(value: Any) -> np.dtype:
    """An ONNX element-type code (``Cast.to``) or a numpy dtype name as a numpy dtype."""
    if isinstance(value, (int, np.integer)):
        return np.dtype(numpy_dtype_name(int(value)))
    return np.dtype(str(value))


@register("Cast")
def cast(node: Node, inputs: list[Any]) -> np.ndarray:
    return _cast_to(inputs[0], _dtype_attr(node.attrs["to"]), int(node.attrs.get("saturate", 1)))


@register("CastLike")
def cast_like(node: Node, inputs: list[Any]) -> np.ndarray:
    return _cast_to(inputs[0], inputs[1].dtype, int(node.attrs.get("saturate", 1)))


# float8 types whose casts saturate by default (ONNX ``saturate`` attribute, opset 19+)
_SATURATING = frozenset({"float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz"})


def _cast_to(x: np.ndarray, dtype: np.dtype, saturate_float8: int = 1) -> np.ndarray:
    if saturate_float8 and dtype.name in _SATURATING and (
        x.dtype.kind == "f" or x.dtype.name in NARROW_FLOATS
    ):
        x = saturate(x, dtype)
    if dtype.name in ("int4", "uint4") and (x.dtype.kind == "f" or x.dtype.name in NARROW_FLOATS):
        # as ONNX Runtime: round half away from zero, then keep the low 4 bits (two's complement)
        # like any integer narrowing; NaN / inf (undefined in the spec) become 0 as in ORT
        r = x.astype(np.float64)
        r = np.sign(r) * np.floor(np.abs(r) + 0.5)
        r = np.clip(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0), -(2.0**62), 2.0**62)
        return r.astype(np.int64).astype(dtype)
    if x.dtype.kind == "f" and dtype.kind in "iu":
        # float -> int truncates toward zero; nan/inf have no defined value, keep them finite
        x = np.trunc(np.nan_to_num(x, nan=0.0))
    return x.astype(dtype)


@register("Expand")
def expand(node: Node, inputs: list[Any]) -> np.ndarray:
    x, dims = inputs[0], const_ints(inputs[1]) or []
    return np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(dims))).copy()


@register("Tile")
def tile(node: Node, inputs: list[Any]) -> np.ndarray:
    return np.tile(inputs[0], const_ints(inputs[1]) or [])


@register("Range")
def range_(node: Node, inputs: list[Any]) -> np.ndarray:
    start, limit, delta = (np.asarray(v).reshape(()) for v in inputs[:3])
    if delta == 0:
        raise ValueError("delta is 0; Range needs a non-zero step")
    span = (limit.astype(np.float64) - start.astype(np.float64)) / delta.astype(np.float64)
    if not np.isfinite(span):
        raise ValueError(f"start {start}, limit {limit}, delta {delta} give no finite length")
    n = max(int(np.ceil(span)), 0)
    check_output_bytes(n, start.dtype, f"an output of {n} elements")
    return (start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


@register("Pad")
def pad(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    pads = const_ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
    pads = pads if pads is not None else attr_ints(node, "pads", [0] * (2 * x.ndim))
    assert pads is not None
    value = inputs[2] if len(inputs) > 2 and inputs[2] is not None else node.attrs.get("value", 0)
    axes = const_ints(inputs[3]) if len(inputs) > 3 else None
    axes = [normalize_axis(a, x.ndim) for a in axes] if axes is not None else list(range(x.ndim))
    mode = attr_str(node, "mode", "constant")
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad mode '{mode}' is not one of {sorted(_PAD_MODES)}")
    n = len(axes)
    widths = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + n])
    # negative pads crop: apply the crop first, then pad the non-negative remainder
    crop = tuple(
        slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths)
    )
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        fill = np.asarray(value).reshape(-1)
        scalar = fill[0] if fill.size else 0
        return np.pad(x, widths, mode="constant", constant_values=scalar)
    return np.pad(x, widths, mode=_PAD_MODES[mode])  # type: ignore[call-overload]


@register("NonZero")
def nonzero(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    count = int(np.count_nonzero(x))
    check_output_bytes(count * max(x.ndim, 1), np.int64, f"{count} non-zero positions")
    if x.ndim == 0:  # a scalar reads as a 1-element vector (ONNX Runtime's output: (1, count))
        return np.zeros((1, count), np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register("DepthToSpace")
def depth_to_space(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    if attr_str(node, "mode", "DCR") == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (b * b), h * b, w * b)


@register("SpaceToDepth")
def space_to_depth(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    b = int(node.attrs["blocksize"])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)
