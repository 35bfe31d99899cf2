"""Element-wise ops: activations, arithmetic with numpy broadcasting, comparisons, logic.

FP16 inputs are computed in FP32 and rounded back once, so a chain of FP16 layers rounds once
per layer, as an FP16 kernel with FP32 accumulation would.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import numpy as np
from scipy import special

from devices.cpu import parallel
from devices.cpu.registry import as_compute, attr_str, cast_back, register
from partitioner.ir import Node

# ----- unary float functions -----------------------------------------------------------------


def _unary(
    fn: Callable[[np.ndarray], np.ndarray], split: bool
) -> Callable[[Node, list[Any]], np.ndarray]:
    """An op applying ``fn``; ``split``: worth spreading over the workers (transcendentals).

    Memory-bound ops (Relu, Neg, Add, Mul...) are not split: measured on 6.5 M float32, a
    two-way split of Mul took 4.0 ms against 1.7 ms plain, while Sigmoid went 16.8 -> 12.4 ms.
    """

    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        x = inputs[0]
        xc = as_compute(x)
        y = parallel.elementwise(fn, xc) if split else fn(xc)
        return cast_back(np.asarray(y), x)

    return run


def _attr(node: Node, name: str, default: float) -> float:
    return float(node.attrs.get(name, default))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, np.zeros((), x.dtype))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) in place on one buffer: numpy's SIMD exp makes this ~3x faster than
    scipy's expit on float32; exp overflow to inf gives exactly 0, as it should."""
    if x.dtype.kind != "f":
        return special.expit(x)
    y = np.negative(x)
    np.exp(y, out=y)
    y += 1
    np.reciprocal(y, out=y)
    return y


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros((), x.dtype), x)


_SIMPLE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Relu": _relu,
    "Sigmoid": _sigmoid,
    "Tanh": np.tanh,
    "Abs": np.abs,
    "Neg": np.negative,
    "Sqrt": np.sqrt,
    "Exp": np.exp,
    "Log": np.log,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Erf": special.erf,
    "Softplus": _softplus,
    "Mish": lambda x: x * np.tanh(_softplus(x)),
    "Sin": np.sin,
    "Cos": np.cos,
    "Tan": np.tan,
    "Asin": np.arcsin,
    "Acos": np.arccos,
    "Atan": np.arctan,
    "Sinh": np.sinh,
    "Cosh": np.cosh,
    "Asinh": np.arcsinh,
    "Acosh": np.arccosh,
    "Atanh": np.arctanh,
    "Sign": np.sign,
    "Round": np.rint,  # ONNX Round is round-half-to-even, as np.rint
    "Softsign": lambda x: x / (1 + np.abs(x)),
}

_MEMORY_BOUND = {"Relu", "Abs", "Neg", "Floor", "Ceil", "Sign", "Round"}
for _op, _fn in _SIMPLE.items():
    register(_op)(_unary(_fn, split=_op not in _MEMORY_BOUND))


@register("IsNaN")
def is_nan(node: Node, inputs: list[Any]) -> np.ndarray:
    return np.isnan(inputs[0])  # bool, whatever the input type


@register("IsInf")
def is_inf(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    positive = int(node.attrs.get("detect_positive", 1))
    negative = int(node.attrs.get("detect_negative", 1))
    if x.dtype.kind != "f":
        return np.zeros(x.shape, bool)
    inf = np.isinf(x)
    return (inf & (x > 0) & bool(positive)) | (inf & (x < 0) & bool(negative))


@register("Reciprocal")
def reciprocal(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    xc = as_compute(x)
    return cast_back(1 // xc if xc.dtype.kind in "iu" else np.reciprocal(xc), x)


@register("LeakyRelu")
def leaky_relu(node: Node, inputs: list[Any]) -> np.ndarray:
    x, alpha = as_compute(inputs[0]), _attr(node, "alpha", 0.01)
    return cast_back(np.where(x >= 0, x, x * x.dtype.type(alpha)), inputs[0])


@register("Elu")
def elu(node: Node, inputs: list[Any]) -> np.ndarray:
    x, alpha = as_compute(inputs[0]), _attr(node, "alpha", 1.0)
    return cast_back(np.where(x > 0, x, x.dtype.type(alpha) * np.expm1(x)), inputs[0])


@register("Selu")
def selu(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    alpha = x.dtype.type(_attr(node, "alpha", 1.67326319217681884765625))
    gamma = x.dtype.type(_attr(node, "gamma", 1.05070102214050292968750))
    return cast_back(gamma * np.where(x > 0, x, alpha * np.expm1(x)), inputs[0])


@register("Celu")
def celu(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    alpha = x.dtype.type(_attr(node, "alpha", 1.0))
    return cast_back(np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(x / alpha)), inputs[0])


@register("ThresholdedRelu")
def thresholded_relu(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    return cast_back(np.where(x > _attr(node, "alpha", 1.0), x, 0), inputs[0])


@register("HardSigmoid")
def hard_sigmoid(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    alpha, beta = _attr(node, "alpha", 0.2), _attr(node, "beta", 0.5)
    t = x.dtype.type
    return cast_back(np.clip(x * t(alpha) + t(beta), 0, 1), inputs[0])


@register("HardSwish")
def hard_swish(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    t = x.dtype.type
    return cast_back(x * np.clip(x * t(1 / 6) + t(0.5), 0, 1), inputs[0])


@register("Gelu")
def gelu(node: Node, inputs: list[Any]) -> np.ndarray:
    x = as_compute(inputs[0])
    if attr_str(node, "approximate", "none") == "tanh":
        inner = np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)
        y = 0.5 * x * (1 + np.tanh(inner))
    else:
        y = 0.5 * x * (1 + special.erf(x / np.sqrt(2)))
    return cast_back(y, inputs[0])


@register("PRelu")
def prelu(node: Node, inputs: list[Any]) -> np.ndarray:
    x, slope = as_compute(inputs[0]), as_compute(inputs[1])
    return cast_back(np.where(x < 0, x * slope, x), inputs[0])


@register("Clip")
def clip(node: Node, inputs: list[Any]) -> np.ndarray:
    x = inputs[0]
    lo = inputs[1] if len(inputs) > 1 else None
    hi = inputs[2] if len(inputs) > 2 else None
    # opset < 11 carried the bounds as attributes
    if lo is None and "min" in node.attrs:
        lo = np.asarray(node.attrs["min"], x.dtype)
    if hi is None and "max" in node.attrs:
        hi = np.asarray(node.attrs["max"], x.dtype)
    if lo is None and hi is None:
        return x.copy()
    lo_v = None if lo is None else np.asarray(lo, x.dtype)
    hi_v = None if hi is None else np.asarray(hi, x.dtype)
    return np.clip(x, lo_v, hi_v).astype(x.dtype, copy=False)


# ----- binary and variadic arithmetic --------------------------------------------------------


def _int_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer division truncating toward zero (C semantics, as ONNX Runtime has it)."""
    if a.dtype.kind == "u":
        return a // b
    q = np.floor_divide(a, b)
    fix = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return q + fix.astype(q.dtype)


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return _int_div(a, b) if a.dtype.kind in "iu" else np.divide(a, b)  # bfloat16: kind "V"


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        a, b = inputs[0], inputs[1]
        return cast_back(np.asarray(fn(as_compute(a), as_compute(b))), a)

    return run


register("Add")(_binary(np.add))
register("Sub")(_binary(np.subtract))
register("Mul")(_binary(np.multiply))
register("Div")(_binary(_div))


@register("Mod")
def mod(node: Node, inputs: list[Any]) -> np.ndarray:
    """fmod=1: C's fmod (the sign of the dividend); fmod=0: the sign of the divisor, for floats
    too, as opset 28 defines it (ONNX Runtime refuses float fmod=0 before opset 28)."""
    a, b = as_compute(inputs[0]), as_compute(inputs[1])
    if int(node.attrs.get("fmod", 0)):
        return cast_back(np.fmod(a, b), inputs[0])
    return cast_back(np.mod(a, b), inputs[0])


@register("Pow")
def power(node: Node, inputs: list[Any]) -> np.ndarray:
    base, exponent = inputs[0], inputs[1]
    if base.dtype.kind == "f":
        y = np.power(as_compute(base), as_compute(exponent).astype(compute_float(base)))
    else:
        y = np.power(base.astype(np.float64), exponent.astype(np.float64))
    return cast_back(np.asarray(y), base)


def compute_float(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float32) if x.dtype == np.float16 else x.dtype


def _variadic(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        arrays = [as_compute(a) for a in inputs if a is not None]
        y = reduce(fn, arrays)
        # one input: a copy, never the input itself; else the new array (numpy 2 refuses
        # copy=False where a scalar result needs one)
        return cast_back(np.array(y) if len(arrays) == 1 else np.asarray(y), inputs[0])

    return run


register("Sum")(_variadic(np.add))
register("Max")(_variadic(np.maximum))
register("Min")(_variadic(np.minimum))


@register("Mean")
def mean(node: Node, inputs: list[Any]) -> np.ndarray:
    arrays = [as_compute(a) for a in inputs if a is not None]
    return cast_back(reduce(np.add, arrays) / len(arrays), inputs[0])


# ----- comparisons and logic (outputs are bool) ----------------------------------------------

_COMPARE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Equal": np.equal,
    "Greater": np.greater,
    "Less": np.less,
    "GreaterOrEqual": np.greater_equal,
    "LessOrEqual": np.less_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}


def _compare(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Callable[..., np.ndarray]:
    def run(node: Node, inputs: list[Any]) -> np.ndarray:
        return np.asarray(fn(inputs[0], inputs[1]), dtype=bool)

    return run


for _op, _cmp in _COMPARE.items():
    register(_op)(_compare(_cmp))


@register("Not")
def logical_not(node: Node, inputs: list[Any]) -> np.ndarray:
    return np.logical_not(inputs[0])


@register("Where")
def where(node: Node, inputs: list[Any]) -> np.ndarray:
    cond, a, b = inputs
    return np.where(np.asarray(cond, dtype=bool), a, b).astype(a.dtype, copy=False)


@register("BitShift")
def bit_shift(node: Node, inputs: list[Any]) -> np.ndarray:
    a, b = inputs
    if attr_str(node, "direction", "LEFT") == "LEFT":
        return np.left_shift(a, b).astype(a.dtype)
    return np.right_shift(a, b).astype(a.dtype)
