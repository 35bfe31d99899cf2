"""Constant folding: nodes computed only from constants become constants.

The numpy op implementations live in ``devices/cpu``, which the partitioner may not import, so
the caller injects ``evaluate(node, inputs) -> outputs`` (``devices.cpu.evaluate_node``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from partitioner.errors import ExecutionError
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.passes._rewrite import replace_with_constants
from partitioner.shape_inference import static_values

Evaluate = Callable[[Node, Sequence["np.ndarray | None"]], Sequence[np.ndarray]]

# Ops that make a large tensor out of small inputs; folding them would bloat the model.
_EXPANDING = frozenset({"Expand", "Tile", "ConstantOfShape", "Range", "Resize", "Pad"})
# Q/DQ pairs carry the INT8 scales that the int8 path needs; folding them would lose them.
_NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear"})
MAX_EXPANDED_ELEMENTS = 1 << 20
# Ops that compute small host values (shapes, indices, scales) from other host values.
_SHAPE_ARITHMETIC = frozenset(
    """Gather Slice Squeeze Unsqueeze Concat Cast Identity Reshape Mul Div Add Sub Mod Neg Abs
    Floor Ceil Max Min Equal Greater Less Not And Or Where Range ReduceProd ReduceSum
    ConstantOfShape Expand""".split()
)
#: ``node.meta`` key set on the layers of shape computations (see :func:`mark_shape_computations`)
HOST_SHAPE = "host_shape"
_MAX_HOST_VALUES = 64


def host_math(node: Node) -> bool:
    """True for a layer whose values the host computes: a shape computation (``HOST_SHAPE``),
    integer-only math (every input and output an int or bool tensor: token-id reshapes,
    position ids from a mask's cumulative sum), or the Cast of such integers to float
    (DeBERTa's relative positions). No GPU or DLA kernel computes or converts integers; a GPU
    layer may still read them, as a segment input (an embedding's indices, the Cast's float)."""
    if node.meta.get(HOST_SHAPE):
        return True
    tensors = [t for t in (*node.inputs, *node.outputs) if t is not None]
    x = node.input(0) if node.op == "Cast" else None
    if x is not None and x.dtype is not None and np.dtype(x.dtype).kind in "iu":
        return True  # integers converted (to float, or to other integers)
    return bool(tensors) and all(integer_tensor(t) for t in tensors)


def integer_tensor(t: Tensor) -> bool:
    """An int or bool tensor (a constant by its values' dtype)."""
    if isinstance(t, Constant):
        return t.values.dtype.kind in "iub"
    return t.dtype is not None and np.dtype(t.dtype).kind in "iub"


def fold_constants(graph: Graph, evaluate: Evaluate) -> bool:
    """Fold every node whose inputs are all Constants, and ``Shape`` of static-shape tensors.

    With shapes static, ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` subgraphs vanish;
    with a symbolic batch, the parts that read only static dims still fold.
    Expanding ops (Expand, Tile, ConstantOfShape, ...), and any op whose result outgrows its
    inputs, stay nodes when their result would exceed ``MAX_EXPANDED_ELEMENTS``; results keep
    the names of the tensors they replace.
    """
    changed = False
    known = static_values(graph)
    for node in graph.topological_order():
        if node.op in _NEVER_FOLD or node.domain not in ("", "ai.onnx"):
            continue
        if node.op == "Shape":
            value = _static_shape_value(node)
            if value is not None:
                replace_with_constants(graph, node, [value])
                changed = True
            continue
        if len(node.outputs) == 1 and node.outputs[0].name in known:
            # Known from shapes alone although an input is not constant (symbolic batch).
            replace_with_constants(graph, node, [known[node.outputs[0].name]])
            changed = True
            continue
        ins = node.inputs
        if not ins or not all(t is None or isinstance(t, Constant) for t in ins):
            continue
        if _too_big(node):
            continue
        args = [t.values if isinstance(t, Constant) else None for t in ins]
        try:
            outputs = list(evaluate(node, args))
        except (NotImplementedError, ExecutionError):
            continue  # folding is an optimisation: the node stays and fails (or runs) later
        sizes = [np.asarray(o).size for o in outputs]
        if node.op in _EXPANDING and max(sizes, default=0) > MAX_EXPANDED_ELEMENTS:
            continue
        for i, out in enumerate(node.outputs):
            # Keep the inferred dtype: the evaluator may widen (e.g. int32 arithmetic to int64).
            if out.dtype is not None and str(np.asarray(outputs[i]).dtype) != out.dtype:
                outputs[i] = np.asarray(outputs[i]).astype(out.dtype)
        replace_with_constants(graph, node, outputs)
        changed = True
    return changed


def _static_shape_value(node: Node) -> np.ndarray | None:
    x = node.inputs[0]
    if x is None or x.shape is None:
        return None
    rank = len(x.shape)
    start = int(node.attrs.get("start", 0))
    end = int(node.attrs.get("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    dims = x.shape[start:end]
    if not all(isinstance(d, int) for d in dims):
        return None
    return np.array(dims, dtype=np.int64)


def _too_big(node: Node) -> bool:
    """True when an (inferred) output exceeds the cap and the node is an expanding op, or any op
    making more elements than all its inputs hold (a MatMul of a column by a row): folding would
    compute it at import, from a file of kilobytes, and store it."""
    held = sum(t.values.size for t in node.inputs if isinstance(t, Constant))
    for out in node.outputs:
        if out.shape is not None and all(isinstance(d, int) for d in out.shape):
            size = math.prod([int(d) for d in out.shape if d is not None])
            if size > MAX_EXPANDED_ELEMENTS and (node.op in _EXPANDING or size > held):
                return True
    return False


def mark_shape_computations(graph: Graph) -> bool:
    """Mark (``node.meta[HOST_SHAPE]``) every layer whose outputs depend on tensor *shapes*
    only: ``Shape``, then Gather / Slice / Concat / Cast / arithmetic ... of such values and
    constants, as long as the values stay small (<= 64 elements).

    Once input shapes are static these fold away (:func:`fold_constants`). While a dim stays
    dynamic (an optimisation profile's range) they remain, and are host values, not device
    tensors: they belong with the segment that reads their shapes, which evaluates them when
    its input shapes are known (``devices.runtime`` specialises a segment per shape). Returns
    True when a mark changed (it never changes semantics)."""
    host: set[str] = set()
    changed = False
    for node in graph.topological_order():
        shape_only = node.op in ("Shape", "Size") or (
            node.op in _SHAPE_ARITHMETIC
            and all(t is None or isinstance(t, Constant) or t.name in host for t in node.inputs)
            and any(t is not None and t.name in host for t in node.inputs)
            and all(_small(t.shape) for t in node.outputs)
        )
        if shape_only:
            host.update(t.name for t in node.outputs)
        if bool(node.meta.get(HOST_SHAPE)) != shape_only:
            changed = True
            if shape_only:
                node.meta[HOST_SHAPE] = True
            else:
                node.meta.pop(HOST_SHAPE, None)
    return changed


def _small(shape: tuple[object, ...] | None) -> bool:
    """A tensor of rank <= 1 whose length, when known, is at most ``_MAX_HOST_VALUES``."""
    if shape is None or len(shape) > 1:
        return shape is not None and len(shape) == 0
    d = shape[0] if shape else 1
    return not isinstance(d, int) or d <= _MAX_HOST_VALUES
