"""Matrix products, normalisations, softmax, reductions and index-returning ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from devices.cpu import parallel
from devices.cpu.registry import (
    as_compute,
    attr_ints,
    attr_str,
    cast_back,
    const_ints,
    normalize_axis,
    register,
)
from partitioner.ir import Node

# ----- matrix products -----------------------------------------------------------------------


@register("Einsum")
def einsum(node: Node, inputs: list[Any]) -> np.ndarray:
    """numpy's einsum reads ONNX equations as they are (implicit output in alphabetical order,
    ``...`` for broadcast dims); ``optimize`` contracts pairwise through BLAS."""
    equation = attr_str(node, "equation", "").replace(" ", "")
    if not equation:
        raise ValueError("the equation attribute is missing or empty")
    # numpy's einsum has no loops for ml_dtypes' narrow floats (bfloat16, ...): widen them
    operands = [as_compute(x) if x.dtype.kind in "fiub" else x.astype(np.float32) for x in inputs]
    y = np.einsum(equation, *operands, optimize=len(operands) > 1)
    return cast_back(np.asarray(y), inputs[0])


@register("MatMul")
def matmul(node: Node, inputs: list[Any]) -> np.ndarray:
    a, b = inputs[0], inputs[1]
    a_c, b_c = as_compute(a), as_compute(b)
    if a_c.ndim >= 2 and b_c.ndim >= 2:
        return cast_back(parallel.matmul(a_c, b_c), a)
    return cast_back(np.matmul(a_c, b_c), a)


@register("Gemm")
def gemm(node: Node, inputs: list[Any]) -> np.ndarray:
    a_in, b_in = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    a, b = as_compute(a_in), as_compute(b_in)
    if int(node.attrs.get("transA", 0)):
        a = a.T
    if int(node.attrs.get("transB", 0)):
        b = b.T
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    y = parallel.matmul(a, b)
    if alpha != 1.0:
        y = y * y.dtype.type(alpha)
    if c is not None and beta != 0.0:
        y = y + as_compute(c).astype(y.dtype) * y.dtype.type(beta)
    return cast_back(np.asarray(y), a_in)


# ----- normalisations ------------------------------------------------------------------------


def _channel(v: np.ndarray, ndim: int, dtype: np.dtype) -> np.ndarray:
    """A per-channel vector shaped to broadcast over NC* tensors."""
    return as_compute(v).astype(dtype, copy=False).reshape((1, -1) + (1,) * (ndim - 2))


@register("BatchNormalization")
def batch_norm(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    x_in, scale, bias, mean, var = inputs[:5]
    x = as_compute(x_in)
    eps = float(node.attrs.get("epsilon", 1e-5))
    training = int(node.attrs.get("training_mode", 0))
    stats_dtype = as_compute(mean).dtype
    if training:
        axes = (0,) + tuple(range(2, x.ndim))
        batch_mean = x.mean(axis=axes)
        batch_var = x.var(axis=axes)
        momentum = float(node.attrs.get("momentum", 0.9))
        y = (x - _channel(batch_mean, x.ndim, x.dtype)) / np.sqrt(
            _channel(batch_var, x.ndim, x.dtype) + eps
        )
        y = y * _channel(scale, x.ndim, x.dtype) + _channel(bias, x.ndim, x.dtype)
        running_mean = as_compute(mean) * momentum + batch_mean * (1 - momentum)
        running_var = as_compute(var) * momentum + batch_var * (1 - momentum)
        return [
            cast_back(y, x_in),
            cast_back(running_mean.astype(stats_dtype), mean),
            cast_back(running_var.astype(stats_dtype), var),
        ][: max(len(node.outputs), 1)]
    # fold to one multiply-add: y = x * a + b
    a = as_compute(scale) / np.sqrt(as_compute(var) + eps)
    b = as_compute(bias) - as_compute(mean) * a
    y = x * _channel(a, x.ndim, x.dtype)
    y += _channel(b, x.ndim, x.dtype)  # in place: y is a fresh array
    return [cast_back(y, x_in)]


@register("InstanceNormalization")
def instance_norm(node: Node, inputs: list[Any]) -> np.ndarray:
    x_in, scale, bias = inputs[:3]
    x = as_compute(x_in)
    eps = float(node.attrs.get("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    y = y * _channel(scale, x.ndim, x.dtype) + _channel(bias, x.ndim, x.dtype)
    return cast_back(y, x_in)


@register("LayerNormalization")
def layer_norm(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    x_in, scale = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    axis = normalize_axis(int(node.attrs.get("axis", -1)), x_in.ndim)
    eps = float(node.attrs.get("epsilon", 1e-5))
    x = as_compute(x_in)
    axes = tuple(range(axis, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    y = (x - mean) * inv_std * as_compute(scale)
    if bias is not None:
        y = y + as_compute(bias)
    outs = [cast_back(y, x_in)]
    if len(node.outputs) > 1:
        outs += [mean.astype(np.float32), inv_std.astype(np.float32)]
    return outs[: len(node.outputs)] if node.outputs else outs


@register("GroupNormalization")
def group_norm(node: Node, inputs: list[Any]) -> np.ndarray:
    x_in, scale, bias = inputs[:3]
    x = as_compute(x_in)
    groups = int(node.attrs["num_groups"])
    eps = float(node.attrs.get("epsilon", 1e-5))
    n, c = x.shape[:2]
    xg = x.reshape(n, groups, -1)
    mean = xg.mean(axis=2, keepdims=True)
    var = ((xg - mean) ** 2).mean(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    y = y * _channel(scale, x.ndim, x.dtype) + _channel(bias, x.ndim, x.dtype)
    return cast_back(y, x_in)


@register("LRN")
def lrn(node: Node, inputs: list[Any]) -> np.ndarray:
    x_in = inputs[0]
    x = as_compute(x_in)
    size = int(node.attrs["size"])
    alpha = float(node.attrs.get("alpha", 1e-4))
    beta = float(node.attrs.get("beta", 0.75))
    bias = float(node.attrs.get("bias", 1.0))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = x * x
    # windowed channel sum via a cumulative sum over the zero-padded channel axis
    widths = [(0, 0), (before + 1, after)] + [(0, 0)] * (x.ndim - 2)
    csum = np.cumsum(np.pad(sq, widths), axis=1)
    c = x.shape[1]
    window = csum[:, size : size + c] - csum[:, :c]
    return cast_back(x / (bias + alpha / size * window) ** beta, x_in)


# ----- softmax family ------------------------------------------------------------------------


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@register("Softmax")
def softmax(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axis = normalize_axis(int(node.attrs.get("axis", -1)), x.ndim)
    return cast_back(_softmax(as_compute(x), axis), x)


@register("LogSoftmax")
def log_softmax(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axis = normalize_axis(int(node.attrs.get("axis", -1)), x.ndim)
    xc = as_compute(x)
    shifted = xc - xc.max(axis=axis, keepdims=True)
    return cast_back(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)), x)


@register("Hardmax")
def hardmax(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    axis = normalize_axis(int(node.attrs.get("axis", -1)), x.ndim)
    idx = np.expand_dims(np.argmax(x, axis=axis), axis)
    y = np.zeros_like(x)
    np.put_along_axis(y, idx, 1, axis=axis)
    return y


# ----- reductions ----------------------------------------------------------------------------


def _reduce_axes(node: Node, inputs: list[Any], ndim: int) -> tuple[int, ...] | None:
    """Reduced axes; ``()`` means "reduce nothing" (noop_with_empty_axes), None means all."""
    axes = const_ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else None
    if axes is None:
        axes = attr_ints(node, "axes")
    if not axes:
        return () if int(node.attrs.get("noop_with_empty_axes", 0)) else None
    return tuple(sorted(normalize_axis(a, ndim) for a in axes))


def _reduction(kind: str):  # type: ignore[no-untyped-def]
    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        x = inputs[0]
        keep = bool(int(node.attrs.get("keepdims", 1)))
        axes = _reduce_axes(node, inputs, x.ndim)
        xc = as_compute(x)
        if axes == ():
            return _reduce_noop(kind, x)
        if xc.size == 0 and kind in ("ReduceMax", "ReduceMin"):
            return _empty_extreme(kind, xc, axes, keep, x)
        if kind == "ReduceMean":
            y = xc.mean(axis=axes, keepdims=keep)
        elif kind == "ReduceSum":
            y = xc.sum(axis=axes, keepdims=keep)
        elif kind == "ReduceMax":
            y = xc.max(axis=axes, keepdims=keep)
        elif kind == "ReduceMin":
            y = xc.min(axis=axes, keepdims=keep)
        elif kind == "ReduceProd":
            y = xc.prod(axis=axes, keepdims=keep)
        elif kind == "ReduceSumSquare":
            y = (xc * xc).sum(axis=axes, keepdims=keep)
        elif kind == "ReduceL1":
            y = np.abs(xc).sum(axis=axes, keepdims=keep)
        elif kind == "ReduceL2":
            y = np.sqrt((xc * xc).sum(axis=axes, keepdims=keep))
        elif kind == "ReduceLogSum":
            y = np.log(xc.sum(axis=axes, keepdims=keep))
        else:  # ReduceLogSumExp
            m = xc.max(axis=axes, keepdims=True) if xc.size else np.zeros((), xc.dtype)
            m = np.where(np.isfinite(m), m, 0)
            y = np.log(np.exp(xc - m).sum(axis=axes, keepdims=True)) + m
            if not keep:
                y = np.squeeze(y, axis=axes)
        return cast_back(np.asarray(y), x)

    return run


def _reduce_noop(kind: str, x: np.ndarray) -> np.ndarray:
    """noop_with_empty_axes: the input passes through the element-wise part of the reduction."""
    xc = as_compute(x)
    if kind in ("ReduceSumSquare",):
        return cast_back(xc * xc, x)
    if kind in ("ReduceL1", "ReduceL2"):
        return cast_back(np.abs(xc), x)
    if kind == "ReduceLogSum":
        return cast_back(np.log(xc), x)
    return x


def _empty_extreme(
    kind: str, xc: np.ndarray, axes: tuple[int, ...] | None, keep: bool, x: np.ndarray
) -> np.ndarray:
    """Max / Min over an empty set: the identity of the reduction (-inf / +inf or int limits)."""
    shape = [1 if (axes is None or i in axes) else d for i, d in enumerate(xc.shape)]
    if not keep:
        shape = [d for i, d in enumerate(xc.shape) if not (axes is None or i in axes)]
    fill: bool | float | int
    if xc.dtype == np.bool_:
        fill = kind != "ReduceMax"
    elif xc.dtype.kind == "f":
        fill = -np.inf if kind == "ReduceMax" else np.inf
    else:
        info = np.iinfo(xc.dtype)
        fill = info.min if kind == "ReduceMax" else info.max
    return cast_back(np.full(shape, fill, dtype=xc.dtype), x)


for _kind in (
    "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare",
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
):
    register(_kind)(_reduction(_kind))


# ----- index-returning ops -------------------------------------------------------------------


def _arg(find_max: bool):  # type: ignore[no-untyped-def]
    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        x = inputs[0]
        axis = normalize_axis(int(node.attrs.get("axis", 0)), x.ndim)
        keep = bool(int(node.attrs.get("keepdims", 1)))
        fn = np.argmax if find_max else np.argmin
        if int(node.attrs.get("select_last_index", 0)):
            flipped = np.flip(x, axis=axis)
            idx = x.shape[axis] - 1 - fn(flipped, axis=axis)
        else:
            idx = fn(x, axis=axis)
        idx = idx.astype(np.int64)
        return np.expand_dims(idx, axis) if keep else idx

    return run


register("ArgMax")(_arg(True))
register("ArgMin")(_arg(False))


@register("TopK")
def topk(node: Node, inputs: list[Any]) -> list[np.ndarray]:
    x = inputs[0]
    k = int(np.asarray(inputs[1]).reshape(-1)[0])
    axis = normalize_axis(int(node.attrs.get("axis", -1)), x.ndim)
    largest = int(node.attrs.get("largest", 1))
    if not 0 <= k <= x.shape[axis]:
        raise ValueError(f"TopK k={k} is outside [0, {x.shape[axis]}]")
    # stable sort keeps the lower index first among equal values, as ONNX requires
    key = as_compute(x)
    if largest:
        key = -key.astype(np.float64) if key.dtype.kind in "iu" else -key
    order = np.argsort(key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(k), axis=axis)
    values = np.take_along_axis(x, idx, axis=axis)
    return [values, idx.astype(np.int64)]
