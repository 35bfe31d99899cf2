"""The op table of the numpy reference backend and the one entry point that runs a layer.

Every op is a plain function ``fn(node, inputs) -> array | list[array]`` registered under its
ONNX op type. ``inputs`` follow ONNX order with ``None`` for omitted optional inputs; attributes
are read with their ONNX defaults (``node.attrs.get(name, default)``) so that the same function
serves the importer's opset-21 normalised graphs and raw ONNX node tests alike.

:func:`evaluate_node` is what the constant folder and the interpreter call. It turns any failure
inside an op into :class:`~partitioner.errors.ExecutionError` naming the layer and its op.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from partitioner.errors import ExecutionError, TandemError
from partitioner.ir import Node
from partitioner.plugins import PLUGINS

OpResult = np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...]
OpFn = Callable[[Node, list[Any]], OpResult]

_OPS: dict[str, OpFn] = {}


def register(*op_types: str) -> Callable[[OpFn], OpFn]:
    """Decorator: make ``fn`` the implementation of each of ``op_types``."""

    def wrap(fn: OpFn) -> OpFn:
        for op in op_types:
            if op in _OPS:
                raise RuntimeError(f"op {op} is registered twice in the CPU backend")
            _OPS[op] = fn
        return fn

    return wrap


def supported_ops() -> frozenset[str]:
    """Every ONNX op type the CPU backend implements."""
    _load_all()
    return frozenset(_OPS)


def evaluate_node(node: Node, inputs: Sequence[np.ndarray | None]) -> list[np.ndarray]:
    """Run one layer on numpy arrays and return its outputs in ONNX order.

    Raises :class:`ExecutionError` (``layer 'conv3' (Conv): ...``) when the op is unknown or
    its computation fails (bad shapes, unsupported attribute values, ...).
    """
    _load_all()
    fn = _OPS.get(node.op)
    if fn is None or node.domain not in ("", "ai.onnx"):
        plugin = PLUGINS.find(node)  # a registered custom op runs its numpy reference
        fn = plugin.evaluate if plugin is not None else None
    if fn is None:
        raise ExecutionError(
            f"layer '{node.name}' ({node.op}): the CPU backend has no implementation for "
            f"{node.domain + '::' if node.domain else ''}{node.op}"
        )
    try:
        with np.errstate(all="ignore"):  # inf/nan are valid ONNX results, not errors
            result = fn(node, list(inputs))
    except TandemError as err:
        raise ExecutionError(f"layer '{node.name}' ({node.op}): {err}") from err
    except Exception as err:  # numpy raises many types; the user needs the layer name
        detail = str(err) or type(err).__name__
        raise ExecutionError(f"layer '{node.name}' ({node.op}): {detail}") from err
    if isinstance(result, (np.ndarray, np.generic)):  # reductions may hand back numpy scalars
        return [np.asarray(result)]
    return [np.asarray(r) for r in result]


_LOADED = False


def _load_all() -> None:
    """Import the op modules once; they fill ``_OPS`` through :func:`register`."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from devices.cpu import (  # noqa: F401  (imported for their registrations)
        conv,
        detection,
        elementwise,
        grid_sample,
        indexing,
        nn,
        quant,
        recurrent,
        resize,
        tensor_ops,
    )


# ----- helpers shared by the op modules ------------------------------------------------------


def attr_ints(node: Node, name: str, default: Sequence[int] | None = None) -> list[int] | None:
    """An int-list attribute, or ``default`` when absent."""
    value = node.attrs.get(name)
    if value is None:
        return None if default is None else list(default)
    return [int(v) for v in np.asarray(value).reshape(-1)]


def attr_str(node: Node, name: str, default: str) -> str:
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else str(value)


def const_ints(value: np.ndarray | None) -> list[int] | None:
    """A 1-D integer input (axes, pads, shape, ...) as a python list, or None when omitted."""
    if value is None:
        return None
    return [int(v) for v in np.asarray(value).reshape(-1)]


def as_compute(x: np.ndarray) -> np.ndarray:
    """``x`` in its compute dtype (FP16 widened to FP32, no copy otherwise)."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def cast_back(y: np.ndarray, like: np.ndarray | np.dtype) -> np.ndarray:
    """``y`` in the dtype of ``like`` (no copy when it already is)."""
    dtype = like.dtype if isinstance(like, np.ndarray) else np.dtype(like)
    y = np.asarray(y)  # numpy reductions of 1-D inputs return scalars
    return y if y.dtype == dtype else y.astype(dtype)


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"axis {axis} is out of range for a rank-{rank} tensor")
    return axis + rank if axis < 0 else axis


def check_output_bytes(count: int, dtype: Any, what: str) -> None:
    """Refuse to allocate a data-dependent output (NonZero, Range, NonMaxSuppression) of
    ``count`` elements when it alone exceeds the run's memory budget (``TANDEM_MEMORY_BUDGET``);
    shape inference cannot size such outputs, so the runtime's up-front check does not cover
    them."""
    from devices.runtime import MemoryBudgetError, memory_budget  # runtime imports this package
    from partitioner.validate import human_bytes

    need = int(count) * np.dtype(dtype).itemsize
    budget = memory_budget()
    if need > budget.bytes:
        raise MemoryBudgetError(
            f"{what} would need {human_bytes(need)}, more than the memory budget of "
            f"{human_bytes(budget.bytes)} ({budget.source}); check the inputs that size it"
        )
