"""Index-driven ops: scatter and gather by index tuples, one-hot, running sums, triangles.

Indices follow ONNX: negative values count from the end of their dim, and a value outside
``[-dim, dim)`` is an error naming the op and the dim (not numpy's IndexError).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.cpu.registry import as_compute, attr_str, cast_back, normalize_axis, register
from partitioner.ir import Node

# reduction attribute -> the ufunc that combines an update into the data
_REDUCTIONS: dict[str, np.ufunc | None] = {
    "none": None,
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


def _checked(indices: np.ndarray, dims: np.ndarray | int, what: str) -> np.ndarray:
    """``indices`` as int64 with negative values wrapped; raises on any out-of-range value."""
    idx = np.asarray(indices).astype(np.int64)
    bad = (idx < -dims) | (idx >= dims)
    if bad.any():
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{what} index {int(idx[at])} at {list(at)} is out of range for dim "
                         f"size {int(np.broadcast_to(dims, idx.shape)[at])}")  # fmt: skip
    return np.where(idx < 0, idx + dims, idx)


def _reduction(node: Node) -> np.ufunc | None:
    name = attr_str(node, "reduction", "none")
    if name not in _REDUCTIONS:
        raise ValueError(f"reduction '{name}' is not one of {sorted(_REDUCTIONS)}")
    return _REDUCTIONS[name]


def _scatter(out: np.ndarray, key: tuple[Any, ...], updates: np.ndarray, node: Node) -> None:
    """``out[key] = updates`` or combined with the node's reduction; repeated indices apply
    one after another (numpy's ``ufunc.at``), the last write winning for ``none``."""
    fn = _reduction(node)
    if fn is None:
        out[key] = updates
    else:
        fn.at(out, key, updates)


@register("ScatterND")
def scatter_nd(node: Node, inputs: list[Any]) -> np.ndarray:
    data, indices, updates = inputs[:3]
    k = indices.shape[-1]
    if k > data.ndim:
        raise ValueError(f"indices' last dim {k} exceeds the data rank {data.ndim}")
    want = indices.shape[:-1] + data.shape[k:]
    if updates.shape != want:
        raise ValueError(f"updates have shape {updates.shape}, expected {want}")
    idx = _checked(indices.reshape(-1, k), np.array(data.shape[:k], np.int64), "ScatterND")
    out = data.copy()
    upd = updates.reshape((idx.shape[0],) + data.shape[k:])
    if k == 0:  # every update covers the whole tensor
        for row in upd:
            _scatter(out, (Ellipsis,), row, node)
        return out
    _scatter(out, tuple(idx.T), upd, node)
    return out


def _element_key(indices: np.ndarray, data_shape: tuple[int, ...], axis: int) -> tuple[Any, ...]:
    """Full index arrays for ScatterElements / GatherElements: the position itself on every
    axis but ``axis``, where the (checked) index value is used."""
    idx = _checked(indices, data_shape[axis], f"axis-{axis}")
    grid = list(np.indices(indices.shape, sparse=True))
    grid[axis] = idx
    return tuple(grid)


@register("ScatterElements")
def scatter_elements(node: Node, inputs: list[Any]) -> np.ndarray:
    data, indices, updates = inputs[:3]
    if indices.shape != updates.shape or indices.ndim != data.ndim:
        raise ValueError(f"indices {indices.shape} and updates {updates.shape} must have the same "
                         f"shape and the rank of data {data.shape}")  # fmt: skip
    axis = normalize_axis(int(node.attrs.get("axis", 0)), data.ndim)
    out = data.copy()
    _scatter(out, _element_key(indices, data.shape, axis), updates, node)
    return out


@register("GatherND")
def gather_nd(node: Node, inputs: list[Any]) -> np.ndarray:
    data, indices = inputs[:2]
    b = int(node.attrs.get("batch_dims", 0))
    k = indices.shape[-1]
    if data.shape[:b] != indices.shape[:b]:
        raise ValueError(f"the first {b} dims of data {data.shape} and indices {indices.shape} "
                         "(batch_dims) differ")  # fmt: skip
    if b + k > data.ndim:
        raise ValueError(f"batch_dims {b} + indices' last dim {k} exceed the data rank {data.ndim}")
    batch = int(np.prod(data.shape[:b], dtype=np.int64))
    flat = data.reshape((batch,) + data.shape[b:])
    idx = indices.reshape(batch, -1, k)
    idx = _checked(idx, np.array(data.shape[b : b + k], np.int64), "GatherND")
    key = (np.arange(batch)[:, None], *np.moveaxis(idx, -1, 0))
    return flat[key].reshape(indices.shape[:-1] + data.shape[b + k :])


@register("OneHot")
def one_hot(node: Node, inputs: list[Any]) -> np.ndarray:
    indices, depth_t, values = inputs[:3]
    depth = int(np.asarray(depth_t).reshape(-1)[0])
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    values = np.asarray(values).reshape(-1)
    if values.size != 2:
        raise ValueError(f"values must hold [off_value, on_value], got {values.size} elements")
    idx = np.asarray(indices)
    axis = normalize_axis(int(node.attrs.get("axis", -1)), idx.ndim + 1)
    idx = np.trunc(idx).astype(np.int64) if idx.dtype.kind == "f" else idx.astype(np.int64)
    idx = np.where(idx < 0, idx + depth, idx)  # out-of-range indices give an all-off row
    classes = np.arange(depth).reshape((depth,) + (1,) * (idx.ndim - axis))
    hot = np.expand_dims(idx, axis) == classes
    return np.where(hot, values[1], values[0]).astype(values.dtype)


@register("CumSum")
def cumsum(node: Node, inputs: list[Any]) -> np.ndarray:
    x, axis_t = inputs[:2]
    axis = normalize_axis(int(np.asarray(axis_t).reshape(-1)[0]), x.ndim)
    xc = as_compute(x)
    if int(node.attrs.get("reverse", 0)):
        xc = np.flip(xc, axis)
    y = np.cumsum(xc, axis=axis, dtype=xc.dtype)
    if int(node.attrs.get("exclusive", 0)):
        y = np.concatenate(
            [np.zeros_like(np.take(y, [0], axis=axis)), np.delete(y, -1, axis=axis)], axis=axis
        ) if x.shape[axis] else y  # fmt: skip
    if int(node.attrs.get("reverse", 0)):
        y = np.flip(y, axis)
    return cast_back(y, x)


@register("Trilu")
def trilu(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    if x.ndim < 2:
        raise ValueError(f"the input must have rank >= 2, got {x.shape}")
    given = len(inputs) > 1 and inputs[1] is not None
    k = int(np.asarray(inputs[1]).reshape(-1)[0]) if given else 0
    return np.triu(x, k) if int(node.attrs.get("upper", 1)) else np.tril(x, k)
