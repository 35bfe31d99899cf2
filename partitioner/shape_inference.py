"""Shape and dtype inference over a graph: the walk that runs one rule per op, with symbolic dims.

Rules are per op and read the opset-21 form; they live in ``shape_rules_math`` (compute ops),
``shape_rules_layout`` (data movement) and ``shape_rules`` (the ops beyond the core set), on the
context and dim helpers of ``shape_context``. A dim is an ``int`` when known, the symbol ``str``
when it passes through unchanged (``"batch"``), ``None`` when unknown. Small integer tensors built
from shapes (``Shape -> Gather -> Concat``) are tracked by value here, symbols included, so that a
``Reshape`` fed by such a subgraph keeps the batch symbol instead of losing the shape.

A layer whose inputs cannot fit together (a Conv channel mismatch, shapes that do not broadcast)
raises :class:`ShapeError` naming the layer; so do the checks of ``partitioner.validate`` on each
layer's attributes and each shape (a negative dim, a tensor no machine holds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from partitioner.errors import ShapeError, TandemError
from partitioner.ir import Constant, Dim, Graph, Node, Shape
from partitioner.plugins import PLUGINS
from partitioner.shape_context import Result, Rule, RuleContext
from partitioner.shape_rules import RULES as _EXTRA_RULES
from partitioner.shape_rules_layout import RULES as _LAYOUT_RULES
from partitioner.shape_rules_layout import shape_values
from partitioner.shape_rules_math import RULES as _MATH_RULES
from partitioner.validate import check_input, check_layer, check_outputs

# The three tables name disjoint ops; were one to repeat an op, the later table would win.
_RULES: dict[str, Rule] = {**_MATH_RULES, **_LAYOUT_RULES, **_EXTRA_RULES}

ShapeRule = Callable[[Node], Sequence[Result]]
"""A plugin's shape rule: the node (inputs carry shapes and dtypes) -> (shape, dtype) per output."""


def op_key(node: Node) -> str:
    """``Op`` for the default ONNX domain, ``domain::Op`` otherwise."""
    return node.op if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op}"


def infer_shapes(graph: Graph, custom_rules: Mapping[str, ShapeRule] | None = None) -> None:
    """Set ``shape`` and ``dtype`` on every node output, in topological order.

    ``custom_rules`` adds rules for plugin ops, keyed like :func:`op_key`. An op without a rule
    keeps whatever its outputs already carry (the model file's value_info, say).
    """
    _infer(graph, custom_rules)


def static_values(graph: Graph) -> dict[str, np.ndarray]:
    """Re-infer shapes and return the small int tensors whose values are known from shapes
    alone, e.g. ``Gather(Shape(x), 1)`` when dim 1 of ``x`` is static though its batch is not."""
    out: dict[str, np.ndarray] = {}
    for name, dims in _infer(graph, None).items():
        t = graph.tensors.get(name)
        if t is None or not t.is_static or t.dtype not in ("int64", "int32"):
            continue
        if all(isinstance(d, int) for d in dims) and len(dims) == math.prod(t.static_shape()):
            out[name] = np.array(dims, dtype=t.dtype).reshape(t.static_shape())
    return out


def _infer(graph: Graph, custom_rules: Mapping[str, ShapeRule] | None) -> dict[str, list[Dim]]:
    values: dict[str, list[Dim]] = {}
    for graph_input in graph.inputs:
        check_input(graph_input)
    for node in graph.topological_order():
        check_layer(node)
        custom = custom_rules.get(op_key(node)) if custom_rules else None
        rule = _RULES.get(node.op) if node.domain in ("", "ai.onnx") else None
        if custom is None and rule is None and (plugin := PLUGINS.find(node)) is not None:
            custom = plugin.shape_rule
        ctx = RuleContext(node, values)
        if rule is None and custom is None:
            results: list[Result] = [(None, None)] * len(node.outputs)
        else:
            try:
                results = list(custom(node)) if custom is not None else rule(ctx)  # type: ignore[misc]
            except TandemError:
                raise
            except (ArithmeticError, IndexError, KeyError, TypeError, ValueError) as err:
                shapes = [t.shape if t else None for t in node.inputs]
                raise ctx.fail(f"cannot infer output shapes from inputs {shapes}: {err}") from None
        for t, (shape, dtype) in zip(node.outputs, results):
            t.shape = _merge(shape, t.shape)
            t.dtype = dtype or t.dtype
        check_outputs(node)
        _track_values(ctx, values)
    return values


def fix_input_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give graph inputs concrete shapes, then re-infer every shape.

    A symbol fixed on an input (``"N"`` -> 4) takes that value in every tensor that carries it.
    Raises :class:`ShapeError` for an unknown input, a rank change, a change of a dim the model
    fixes, or one symbol given two values.
    """
    by_name = {t.name: t for t in graph.inputs}
    binding: dict[str, int] = {}
    for name, shape in shapes.items():
        t = by_name.get(name)
        if t is None:
            known = ", ".join(by_name) or "none"
            raise ShapeError(f"graph '{graph.name}' has no input '{name}'; its inputs are: {known}")
        new = tuple(int(d) for d in shape)
        if t.shape is not None and len(t.shape) != len(new):
            raise ShapeError(f"input '{name}' has rank {len(t.shape)} {t.shape}, got shape {new}")
        for i, (old, value) in enumerate(zip(t.shape or new, new)):
            if value < 0:
                raise ShapeError(f"input '{name}': dim {i} must be >= 0, got {value}")
            if isinstance(old, int) and old != value:
                raise ShapeError(f"input '{name}' fixes dim {i} to {old}; cannot set it to {value}")
            if isinstance(old, str):
                if binding.setdefault(old, value) != value:
                    raise ShapeError(
                        f"symbol '{old}' is given two values: {binding[old]} and {value}"
                    )
        t.shape = new
    for tensor in graph.tensors.values():
        if tensor.shape is not None and not isinstance(tensor, Constant):
            tensor.shape = tuple(
                binding.get(d, d) if isinstance(d, str) else d for d in tensor.shape
            )
    infer_shapes(graph)


def _merge(inferred: Shape | None, hint: Shape | None) -> Shape | None:
    """Inferred dims win; a hint (from the file's value_info) fills what inference left open."""
    if inferred is None:
        return hint
    if hint is None or len(hint) != len(inferred):
        return inferred
    out: list[Dim] = []
    for a, b in zip(inferred, hint):
        if isinstance(a, int):
            out.append(a)
        elif isinstance(b, int):
            out.append(b)
        else:
            out.append(a if a is not None else b)
    return tuple(out)


# ----- value tracking for shape subgraphs -------------------------------------------------------
def _track_values(ctx: RuleContext, values: dict[str, list[Dim]]) -> None:
    """Record the values of small int tensors computed from shapes (symbols included)."""
    node = ctx.node
    out = node.outputs[0] if node.outputs else None
    if out is None:
        return
    result: list[Dim] | None = None
    op = node.op
    if op == "Shape":
        x = ctx.shape(0)
        result = shape_values(ctx, x) if x is not None else None
    elif op in ("Identity", "Cast", "Squeeze", "Unsqueeze") and ctx.dtype(0) in ("int64", "int32"):
        result = ctx.ints(0)
    elif op == "Concat" and out.shape is not None and len(out.shape) == 1:
        parts = [ctx.ints(i) for i in range(len(node.inputs))]
        if all(p is not None for p in parts):
            result = [d for p in parts for d in p]  # type: ignore[union-attr]
    elif op == "Gather" and int(ctx.attr("axis", 0)) == 0:
        data, idx = ctx.ints(0), ctx.static_ints(1)
        if data is not None and idx is not None:
            result = [data[i] for i in idx]
    elif op == "Slice":
        data, s, e = ctx.ints(0), ctx.static_ints(1), ctx.static_ints(2)
        steps = ctx.static_ints(4) if ctx.t(4) is not None else [1]
        if data is not None and s and e and steps and len(s) == 1:
            result = data[slice(s[0], e[0], steps[0])]
    elif op in ("Mul", "Add", "Sub", "Div"):
        a, b = ctx.static_ints(0), ctx.static_ints(1)
        if a is not None and b is not None and len(a) == len(b) == 1:
            p, q = a[0], b[0]
            value = {"Mul": p * q, "Add": p + q, "Sub": p - q, "Div": p // q if q else None}[op]
            result = [value] if value is not None else None
    if result is not None and len(result) <= 64:
        values[out.name] = result
