"""QuantizeLinear / DequantizeLinear: per-tensor, per-axis and blocked scales.

Quantisation rounds half to even (``np.rint``) and saturates to the integer type (int4 / int2
included), as the ONNX specification says; float8 / float4 targets round in the cast and
saturate unless ``saturate=0``; the division runs in FP32 (FP64 for FP64 inputs) like ONNX Runtime.
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np

from devices.cpu.registry import normalize_axis, register
from partitioner.dtypes import NARROW_FLOATS, SUB_BYTE_INTS, numpy_dtype_name
from partitioner.ir import Node


def _broadcast_param(
    param: np.ndarray, x: np.ndarray, axis_attr: int, block_size: int
) -> np.ndarray:
    """A scale / zero point shaped to broadcast against ``x`` (per-tensor, per-axis, blocked)."""
    param = np.asarray(param)
    if param.ndim == 0 or param.size == 1 and param.ndim <= 1:
        return param.reshape(())
    axis = normalize_axis(axis_attr, x.ndim)
    if param.ndim == 1 and block_size <= 0:
        if param.shape[0] != x.shape[axis]:
            raise ValueError(
                f"per-axis parameter has {param.shape[0]} values, axis {axis} has {x.shape[axis]}"
            )
        shape = [1] * x.ndim
        shape[axis] = -1
        return param.reshape(shape)
    # blocked quantisation: param has x's rank, axis dim = ceil(dim / block_size)
    if block_size <= 0:
        raise ValueError(f"parameter of shape {param.shape} needs a block_size attribute")
    expanded = np.repeat(param, block_size, axis=axis)
    return np.take(expanded, np.arange(x.shape[axis]), axis=axis)


@register("QuantizeLinear")
def quantize_linear(node: Node, inputs: list[Any]) -> np.ndarray:
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 else None
    axis = int(node.attrs.get("axis", 1))
    block = int(node.attrs.get("block_size", 0))
    if zero_point is not None:
        out_dtype = np.asarray(zero_point).dtype
    elif "output_dtype" in node.attrs and int(node.attrs["output_dtype"]):
        out_dtype = np.dtype(numpy_dtype_name(int(node.attrs["output_dtype"])))
    else:
        out_dtype = np.dtype(np.uint8)
    work = np.float64 if x.dtype == np.float64 else np.float32
    s = _broadcast_param(scale, x, axis, block).astype(work)
    q = x.astype(work) / s
    zp = None if zero_point is None else _broadcast_param(zero_point, x, axis, block).astype(work)
    if out_dtype.name in NARROW_FLOATS:
        # float8 / float4 targets: no rounding to integers; the cast itself rounds to nearest
        # even, and ``saturate`` (default 1) clamps what would overflow to the largest finite
        q = q if zp is None else q + zp
        if int(node.attrs.get("saturate", 1)):
            q = saturate(q, out_dtype)
        return q.astype(out_dtype)
    if out_dtype.kind not in "iu" and out_dtype.name not in SUB_BYTE_INTS:
        raise ValueError(f"QuantizeLinear to {out_dtype} is not supported (int8/uint8/int16/...)")
    q = np.rint(q)
    if zp is not None:
        q = q + zp
    info = ml_dtypes.iinfo(out_dtype)
    # NaN has no integer value; ONNX Runtime's conversion lands it on the type's minimum
    q = np.where(np.isnan(q), info.min, q)
    return np.clip(q, info.min, info.max).astype(out_dtype)


def saturate(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``x`` clamped to ``dtype``'s finite range (NaN stays NaN), as ONNX's saturating casts."""
    info = ml_dtypes.finfo(dtype)
    if x.dtype.name in NARROW_FLOATS:
        x = x.astype(np.float32)
    return np.clip(x, float(info.min), float(info.max))


@register("DequantizeLinear")
def dequantize_linear(node: Node, inputs: list[Any]) -> np.ndarray:
    x, scale = inputs[0], inputs[1]
    zero_point = inputs[2] if len(inputs) > 2 else None
    axis = int(node.attrs.get("axis", 1))
    block = int(node.attrs.get("block_size", 0))
    out_dtype = np.asarray(scale).dtype
    if "output_dtype" in node.attrs and int(node.attrs["output_dtype"]):
        out_dtype = np.dtype(numpy_dtype_name(int(node.attrs["output_dtype"])))
    work = np.float64 if out_dtype == np.float64 else np.float32
    values = x.astype(work)
    if zero_point is not None:
        values = values - _broadcast_param(zero_point, x, axis, block).astype(work)
    y = values * _broadcast_param(scale, x, axis, block).astype(work)
    return y.astype(out_dtype)
