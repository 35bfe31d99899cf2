"""Tandem's own well-formedness checks of layers and tensor shapes, on the IR.

The ONNX checker (run by the importer on each node of a file) knows each op's inputs and
attribute types, not their values: a Conv with negative pads, a Resize with a scale of -2 or 1e30,
an input with a negative dim all pass it, then fail deep in a backend or ask for terabytes. Shape
inference calls these checks on every layer before its rule and on every tensor it shapes, so
graphs from any front end (ONNX, the network API, a plan's segments) and every re-inference after
dims are bound (``--dim``, profiles) are held to them. Each error names the input or the layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from partitioner.errors import ShapeError
from partitioner.ir import Node, Shape, Tensor

#: No tensor may hold more than this: more than any machine Tandem builds for or runs on has
#: (Jetson boards have up to 64 GB). Running a model is further bounded by the memory budget of
#: the runtime (devices.runtime), which knows this machine.
MAX_TENSOR_BYTES = 2**40

_WINDOW_OPS = frozenset({"Conv", "ConvTranspose", "MaxPool", "AveragePool"})


@cache
def itemsize(dtype: str | None) -> int:
    """Bytes per element of an IR dtype name (float32's 4 when unknown)."""
    try:
        return int(np.dtype(dtype or "float32").itemsize)
    except TypeError:
        return 4


def tensor_bytes(shape: Shape | None, dtype: str | None) -> int | None:
    """Bytes of a tensor whose dims are all known ints, else None (exact Python ints)."""
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(shape) * itemsize(dtype)  # type: ignore[arg-type]


def human_bytes(n: int) -> str:
    if n >= 2**50:
        return f"{float(n):.3g} bytes"
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} B"


def shape_problem(shape: Shape | None, dtype: str | None) -> str | None:
    """What is wrong with a tensor shape (a negative dim, a size past MAX_TENSOR_BYTES)."""
    if shape is None:
        return None
    for i, d in enumerate(shape):
        if isinstance(d, int) and d < 0:
            return f"dim {i} is {d}; dims must be >= 0"
    size = tensor_bytes(shape, dtype)
    if size is not None and size > MAX_TENSOR_BYTES:
        largest = max(range(len(shape)), key=lambda i: shape[i])  # type: ignore[arg-type,return-value]
        return (
            f"dim {largest} is {shape[largest]}: shape {_text(shape)} ({dtype or 'float32'}) "
            f"needs {human_bytes(size)}; no tensor may exceed {human_bytes(MAX_TENSOR_BYTES)}"
        )
    return None


def check_input(t: Tensor) -> None:
    """A graph input's shape, before anything is inferred from it."""
    problem = shape_problem(t.shape, t.dtype)
    if problem:
        raise ShapeError(f"input '{t.name}': {problem}")


def check_outputs(node: Node) -> None:
    """The shapes shape inference gave a layer's outputs."""
    for t in node.outputs:
        problem = shape_problem(t.shape, t.dtype)
        if problem:
            raise _fail(node, f"output '{t.name}': {problem}")


def check_layer(node: Node) -> None:
    """Attribute and constant-input values a layer must have before its shapes are inferred."""
    if node.domain not in ("", "ai.onnx"):
        return
    if node.op in _WINDOW_OPS:
        _check_window(node)
    elif node.op == "Resize":
        _check_resize(node)


def _check_window(node: Node) -> None:
    kernel = _ints(node, "kernel_shape")
    k = len(kernel) if kernel is not None else None
    for name, low, per_dim in (
        ("kernel_shape", 1, 1),
        ("strides", 1, 1),
        ("dilations", 1, 1),
        ("pads", 0, 2),
        ("output_padding", 0, 1),
    ):
        values = _ints(node, name)
        if values is None:
            continue
        if any(v < low for v in values):
            raise _fail(node, f"{name} {values} must all be >= {low}")
        if k is not None and len(values) != per_dim * k:
            raise _fail(
                node,
                f"{name} {values} has {len(values)} values; {per_dim * k} expected for a "
                f"{k}-d kernel_shape {kernel}",
            )
    group = node.attrs.get("group")
    if group is not None and int(group) < 1:
        raise _fail(node, f"group {group} must be >= 1")


def _check_resize(node: Node) -> None:
    scales = node.constant_input(2)
    if scales is not None and scales.size:
        values = np.asarray(scales, np.float64).reshape(-1)
        if not (np.isfinite(values).all() and (values > 0).all()):
            raise _fail(node, f"scales {values.tolist()} must be finite and > 0")
    sizes = node.constant_input(3)
    if sizes is not None and sizes.size and (np.asarray(sizes) <= 0).any():
        raise _fail(node, f"sizes {np.asarray(sizes).reshape(-1).tolist()} must be > 0")


def _ints(node: Node, name: str) -> list[int] | None:
    value: Any = node.attrs.get(name)
    if value is None:
        return None
    return [int(v) for v in np.asarray(value).reshape(-1)]


def _text(shape: Sequence[Any]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def _fail(node: Node, what: str) -> ShapeError:
    return ShapeError(f"layer '{node.name}' ({node.op}): {what}")
