"""What a shape rule works with: the per-node context, the result type and dim arithmetic.

A dim is an ``int`` when known, the symbol ``str`` when it passes through unchanged
(``"batch"``), ``None`` when unknown. The rule modules (``shape_rules_math``,
``shape_rules_layout``, ``shape_rules``) build on these helpers; ``shape_inference`` runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from partitioner.dtypes import numpy_dtype_name
from partitioner.errors import ModelError, ShapeError
from partitioner.ir import Constant, Dim, Node, Shape, Tensor

Result = tuple[Shape | None, str | None]
_MAX_VALUES = 1024  # elements of a constant read as a list of values (shapes, pads, scales)


class RuleContext:
    """What a rule sees of one node: input shapes, dtypes, constant values and known values."""

    def __init__(self, node: Node, values: dict[str, list[Dim]]) -> None:
        self.node = node
        self.values = values

    def t(self, i: int) -> Tensor | None:
        return self.node.input(i)

    def shape(self, i: int) -> Shape | None:
        t = self.t(i)
        return t.shape if t is not None else None

    def dtype(self, i: int) -> str | None:
        t = self.t(i)
        return t.dtype if t is not None else None

    def ints(self, i: int) -> list[Dim] | None:
        """Values of a small integer input: a Constant, or tracked from a shape subgraph.

        Constants past ``_MAX_VALUES`` elements are weights, not shapes: listing a folded
        (10000, 10000) product element by element would take minutes."""
        t = self.t(i)
        if t is None:
            return None
        if isinstance(t, Constant):
            if t.values.size > _MAX_VALUES:
                return None
            flat = np.asarray(t.values).reshape(-1)
            # a float constant is a shape value only where it holds whole numbers (exporters
            # do size arithmetic in float); an attention mask's -inf or a 0.5 is not one
            if flat.dtype.kind == "f" and not np.all(np.isfinite(flat) & (flat == np.trunc(flat))):
                return None
            return [int(v) for v in flat]
        return self.values.get(t.name)

    def static_ints(self, i: int) -> list[int] | None:
        v = self.ints(i)
        if v is None or not all(isinstance(d, int) for d in v):
            return None
        return [int(d) for d in v]  # type: ignore[arg-type]

    def floats(self, i: int) -> list[float] | None:
        t = self.t(i)
        if isinstance(t, Constant) and t.values.size <= _MAX_VALUES:
            return [float(v) for v in np.asarray(t.values).reshape(-1)]
        return None

    def attr(self, name: str, default: Any) -> Any:
        return self.node.attrs.get(name, default)

    def fail(self, what: str) -> ShapeError:
        return ShapeError(f"layer '{self.node.name}' ({self.node.op}): {what}")


Rule = Callable[[RuleContext], list[Result]]
"""A built-in rule: the node's context -> (shape, dtype) per output."""


# ----- dim arithmetic -------------------------------------------------------------------------
def all_known(*dims: Dim) -> bool:
    return all(isinstance(d, int) for d in dims)


def _broadcast_dim(a: Dim, b: Dim, ctx: RuleContext) -> Dim:
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if isinstance(a, int) and isinstance(b, int):
        raise ctx.fail(f"dims {a} and {b} do not broadcast")
    if isinstance(a, int):
        return a
    if isinstance(b, int):
        return b
    return None


def broadcast_shapes(shapes: Sequence[Shape | None], ctx: RuleContext) -> Shape | None:
    if any(s is None for s in shapes):
        return None
    rank = max(len(s) for s in shapes)  # type: ignore[arg-type]
    out: list[Dim] = [1] * rank
    for s in shapes:
        assert s is not None
        padded = (1,) * (rank - len(s)) + tuple(s)
        try:
            out = [_broadcast_dim(a, b, ctx) for a, b in zip(out, padded)]
        except ShapeError:
            raise ctx.fail(
                f"input shapes {', '.join(str(x) for x in shapes)} are not broadcastable"
            ) from None
    return tuple(out)


def dim_product(dims: Sequence[Dim]) -> Dim:
    if not all_known(*dims):
        return dims[0] if len(dims) == 1 else None
    return int(np.prod([int(d) for d in dims if d is not None], dtype=np.int64))


def norm_axis(axis: int, rank: int, ctx: RuleContext) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


def dtype_attr(ctx: RuleContext, name: str, default: int) -> str:
    try:
        return numpy_dtype_name(int(ctx.attr(name, default)))
    except ModelError as err:
        raise ctx.fail(f"attribute {name}: {err}") from None
