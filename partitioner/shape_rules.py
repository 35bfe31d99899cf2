"""Shape rules for the ops real exporters emit beyond the core set: index-driven ops (GatherND,
ScatterND, OneHot, ...), Einsum, GridSample, NonZero / NonMaxSuppression (data-dependent
sizes: a ``None`` dim), block rearrangements and the extra element-wise math.

``shape_inference`` merges :data:`RULES` into its table; the rules here use the context and dim
helpers of ``shape_context`` and reuse the generic rules of ``shape_rules_math``.
"""

from __future__ import annotations

from partitioner.ir import Dim, Shape
from partitioner.shape_context import Result, Rule, RuleContext, broadcast_shapes, norm_axis
from partitioner.shape_rules_math import argmax, bool_like, elementwise, reduce, same


def _times(d: Dim, k: int) -> Dim:
    return d * k if isinstance(d, int) else (d if k == 1 else None)


def _divided(d: Dim, k: int, ctx: RuleContext, what: str) -> Dim:
    if not isinstance(d, int):
        return d if k == 1 else None
    if d % k:
        raise ctx.fail(f"{what} {d} is not divisible by {k}")
    return d // k


def _block(ctx: RuleContext) -> int:
    b = int(ctx.attr("blocksize", 0))
    if b < 1:
        raise ctx.fail(f"blocksize {b} must be >= 1")
    return b


def _depth_to_space(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    if len(x) != 4:
        raise ctx.fail(f"input must be 4-D (N, C, H, W), got {x}")
    b = _block(ctx)
    c = _divided(x[1], b * b, ctx, "channels")
    return [((x[0], c, _times(x[2], b), _times(x[3], b)), ctx.dtype(0))]


def _space_to_depth(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    if len(x) != 4:
        raise ctx.fail(f"input must be 4-D (N, C, H, W), got {x}")
    b = _block(ctx)
    h, w = _divided(x[2], b, ctx, "height"), _divided(x[3], b, ctx, "width")
    return [((x[0], _times(x[1], b * b), h, w), ctx.dtype(0))]


def _cast_like(ctx: RuleContext) -> list[Result]:
    return [(ctx.shape(0), ctx.dtype(1))]


def _size(ctx: RuleContext) -> list[Result]:
    return [((), "int64")]


def _gather_elements(ctx: RuleContext) -> list[Result]:
    x, idx = ctx.shape(0), ctx.shape(1)
    if x is not None and idx is not None and len(x) != len(idx):
        raise ctx.fail(f"indices {idx} must have the rank of the data {x}")
    return [(idx, ctx.dtype(0))]


def _gather_nd(ctx: RuleContext) -> list[Result]:
    x, idx = ctx.shape(0), ctx.shape(1)
    b = int(ctx.attr("batch_dims", 0))
    if x is None or idx is None or not idx or not isinstance(idx[-1], int):
        return [(None, ctx.dtype(0))]
    k = idx[-1]
    if b + k > len(x) or b >= len(idx):
        raise ctx.fail(f"batch_dims {b} and index depth {k} do not fit data {x}, indices {idx}")
    return [((*idx[:-1], *x[b + k :]), ctx.dtype(0))]


def _scatter_nd(ctx: RuleContext) -> list[Result]:
    x, idx = ctx.shape(0), ctx.shape(1)
    if x is not None and idx is not None and idx and isinstance(idx[-1], int) and idx[-1] > len(x):
        raise ctx.fail(f"index depth {idx[-1]} exceeds the rank of data {x}")
    return [(x, ctx.dtype(0))]


def _one_hot(ctx: RuleContext) -> list[Result]:
    idx, depth = ctx.shape(0), ctx.static_ints(1)
    dtype = ctx.dtype(2)
    if idx is None:
        return [(None, dtype)]
    axis = norm_axis(int(ctx.attr("axis", -1)), len(idx) + 1, ctx)
    d: Dim = depth[0] if depth is not None and len(depth) == 1 else None
    if isinstance(d, int) and d < 1:
        raise ctx.fail(f"depth {d} must be >= 1")
    out = list(idx)
    out.insert(axis, d)
    return [(tuple(out), dtype)]


def _trilu(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is not None and len(x) < 2:
        raise ctx.fail(f"input must have rank >= 2, got {x}")
    return [(x, ctx.dtype(0))]


def _nonzero(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    rank: Dim = max(len(x), 1) if x is not None else None
    return [((rank, None), "int64")]


def _nms(ctx: RuleContext) -> list[Result]:
    return [((None, 3), "int64")]


def _grid_sample(ctx: RuleContext) -> list[Result]:
    x, grid = ctx.shape(0), ctx.shape(1)
    if x is None or grid is None:
        return [(None, ctx.dtype(0))]
    if len(x) != len(grid) or (isinstance(grid[-1], int) and grid[-1] != len(x) - 2):
        raise ctx.fail(f"grid {grid} does not fit input {x}: expected (N, *out, {len(x) - 2})")
    return [((x[0], x[1], *grid[1:-1]), ctx.dtype(0))]


def _einsum(ctx: RuleContext) -> list[Result]:
    n = len(ctx.node.inputs)
    shapes = [ctx.shape(i) for i in range(n)]
    dtype = ctx.dtype(0)
    if any(s is None for s in shapes):
        return [(None, dtype)]
    equation = str(ctx.attr("equation", "")).replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != n:
        raise ctx.fail(f"equation '{equation}' has {len(terms)} operands, the layer {n} inputs")
    sizes: dict[str, Dim] = {}
    counts: dict[str, int] = {}
    ellipses: list[tuple[Dim, ...]] = []
    for term, shape in zip(terms, shapes):
        assert shape is not None
        head, dots, tail = term.partition("...")
        n_ell = len(shape) - len(head) - len(tail) if dots else 0
        if n_ell < 0 or (not dots and len(term) != len(shape)):
            raise ctx.fail(f"subscripts '{term}' do not fit an input of shape {shape}")
        if dots:
            ellipses.append(tuple(shape[len(head) : len(head) + n_ell]))
        labelled = [*zip(head, shape[: len(head)]), *zip(tail, shape[len(shape) - len(tail) :])]
        for ch, d in labelled:
            counts[ch] = counts.get(ch, 0) + 1
            prev = sizes.get(ch)
            if isinstance(prev, int) and isinstance(d, int) and prev != d and 1 not in (prev, d):
                raise ctx.fail(f"subscript '{ch}' has sizes {prev} and {d}")
            sizes[ch] = d if prev is None or prev == 1 else prev
    ell = broadcast_shapes(ellipses, ctx) if ellipses else ()
    if not arrow:
        rhs = ("..." if ellipses else "") + "".join(sorted(c for c, k in counts.items() if k == 1))
    head, dots, tail = rhs.partition("...")
    out = [sizes[c] for c in head] + (list(ell or ()) if dots else []) + [sizes[c] for c in tail]
    return [(tuple(out), dtype)]


def _recurrent(ctx: RuleContext) -> list[Result]:
    """RNN / GRU / LSTM: Y, Y_h (and LSTM's Y_c), in the layout the node asks for."""
    x, dtype = ctx.shape(0), ctx.dtype(0)
    layout = int(ctx.attr("layout", 0))
    dirs = 2 if str(ctx.attr("direction", "forward")) == "bidirectional" else 1
    r = ctx.shape(2)
    hidden: Dim = ctx.attr("hidden_size", None)
    if hidden is None and r is not None:
        hidden = r[-1]
    if x is None:
        return [(None, dtype)] * len(ctx.node.outputs)
    if len(x) != 3:
        raise ctx.fail(f"X must be 3-D, got {x}")
    steps, batch = (x[1], x[0]) if layout else (x[0], x[1])
    y: Shape = (batch, steps, dirs, hidden) if layout else (steps, dirs, batch, hidden)
    state: Shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    results: list[Result] = [(y, dtype), (state, dtype), (state, dtype)]
    return results[: len(ctx.node.outputs)]


_UNARY = """Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Sign Round Softsign Celu
ThresholdedRelu Hardmax CumSum ScatterElements""".split()

RULES: dict[str, Rule] = {op: same for op in _UNARY}
RULES.update({op: elementwise() for op in ("Mod", "Mean")})
RULES.update({op: elementwise("bool") for op in "And Or Xor GreaterOrEqual LessOrEqual".split()})
RULES.update({op: reduce for op in """ReduceProd ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
ReduceSumSquare""".split()})  # fmt: skip
RULES.update(
    {
        "IsNaN": bool_like,
        "IsInf": bool_like,
        "ArgMin": argmax,
        "CastLike": _cast_like,
        "Size": _size,
        "DepthToSpace": _depth_to_space,
        "SpaceToDepth": _space_to_depth,
        "GatherElements": _gather_elements,
        "GatherND": _gather_nd,
        "ScatterND": _scatter_nd,
        "OneHot": _one_hot,
        "Trilu": _trilu,
        "NonZero": _nonzero,
        "NonMaxSuppression": _nms,
        "GridSample": _grid_sample,
        "Einsum": _einsum,
        "RNN": _recurrent,
        "GRU": _recurrent,
        "LSTM": _recurrent,
    }
)
