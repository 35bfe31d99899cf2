"""Shape rules of the data-movement ops: concatenation and splits, slicing, reshapes and
transposes, padding and resizing, gathers, and the ops that build or consume shape tensors
(Shape, ConstantOfShape, Expand, Tile, Range).

Compute ops live in ``shape_rules_math``; ``shape_inference`` merges :data:`RULES` into its
table and reuses :func:`shape_values` to track the values of shape subgraphs.
"""

from __future__ import annotations

import math

import numpy as np

from partitioner.ir import Constant, Dim, Shape
from partitioner.shape_context import (
    Result,
    Rule,
    RuleContext,
    all_known,
    broadcast_shapes,
    dim_product,
    norm_axis,
)

_INT_MAX = 2**62


def _concat(ctx: RuleContext) -> list[Result]:
    shapes = [t.shape if t is not None else None for t in ctx.node.inputs]
    if any(s is None for s in shapes):
        return [(None, ctx.dtype(0))]
    rank = len(shapes[0])  # type: ignore[arg-type]
    axis = norm_axis(int(ctx.attr("axis", 0)), rank, ctx)
    out: list[Dim] = list(shapes[0])  # type: ignore[arg-type]
    for s in shapes[1:]:
        assert s is not None
        if len(s) != rank:
            raise ctx.fail(f"inputs have different ranks: {', '.join(str(x) for x in shapes)}")
        for i, d in enumerate(s):
            if i == axis:
                continue
            if all_known(out[i], d) and out[i] != d:
                raise ctx.fail(f"dim {i} differs between inputs: {', '.join(map(str, shapes))}")
            if not isinstance(out[i], int) and isinstance(d, int):
                out[i] = d
    along = [s[axis] for s in shapes]  # type: ignore[index]
    out[axis] = sum(along) if all_known(*along) else None  # type: ignore[arg-type]
    return [(tuple(out), ctx.dtype(0))]


def _split(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    n = len(ctx.node.outputs)
    if x is None:
        return [(None, ctx.dtype(0))] * n
    axis = norm_axis(int(ctx.attr("axis", 0)), len(x), ctx)
    sizes: list[Dim] | None = ctx.static_ints(1)  # type: ignore[assignment]
    total = x[axis]
    if sizes is None and ctx.t(1) is None and isinstance(total, int):
        chunk = -(-total // n)
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    if sizes is not None:
        if len(sizes) != n:
            raise ctx.fail(f"split sizes {sizes} do not match {n} outputs")
        if isinstance(total, int) and all_known(*sizes) and sum(sizes) != total:  # type: ignore[arg-type]
            raise ctx.fail(f"split sizes {sizes} do not add up to dim {total}")
    out: list[Result] = []
    for i in range(n):
        dims = list(x)
        dims[axis] = sizes[i] if sizes is not None else None
        out.append((tuple(dims), ctx.dtype(0)))
    return out


def _slice_dim(size: Dim, start: int, end: int, step: int) -> Dim:
    if not isinstance(size, int):
        if start == 0 and step == 1 and end >= _INT_MAX // 4:
            return size
        return None
    return len(range(*slice(start, end, step).indices(size)))


def _slice(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    starts, ends = ctx.static_ints(1), ctx.static_ints(2)
    if x is None:
        return [(None, ctx.dtype(0))]
    if starts is None or ends is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    axes = ctx.static_ints(3) if ctx.t(3) is not None else list(range(len(starts)))
    steps = ctx.static_ints(4) if ctx.t(4) is not None else [1] * len(starts)
    if axes is None or steps is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail("starts, ends, axes and steps have different lengths")
    out = list(x)
    for s, e, a, st in zip(starts, ends, axes, steps):
        if st == 0:
            raise ctx.fail("a slice step is 0")
        a = norm_axis(a, len(x), ctx)
        out[a] = _slice_dim(x[a], s, e, st)
    return [(tuple(out), ctx.dtype(0))]


def _reshape(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    target = ctx.ints(1)
    if target is None:
        t = ctx.shape(1)
        n = t[0] if t is not None and len(t) == 1 else None
        return [(tuple(None for _ in range(n)) if isinstance(n, int) else None, ctx.dtype(0))]
    allowzero = bool(ctx.attr("allowzero", 0))
    out: list[Dim] = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if x is None or i >= len(x):
                raise ctx.fail(f"shape {target} copies dim {i}, which the input {x} lacks")
            out.append(x[i])
        else:
            out.append(d)
    if sum(1 for d in out if d == -1) > 1:
        raise ctx.fail(f"shape {target} has more than one -1")
    if -1 in out:
        i = out.index(-1)
        rest = [d for j, d in enumerate(out) if j != i]
        total = dim_product(x) if x is not None else None
        if isinstance(total, int) and all_known(*rest):
            known = math.prod(rest)  # type: ignore[arg-type]
            if known == 0 or total % known:
                raise ctx.fail(f"cannot reshape {x} ({total} elements) to {target}")
            out[i] = total // known
        else:
            out[i] = _reshape_symbolic_rest(x, out, i)
    elif x is not None and all_known(*x, *out) and math.prod(x) != math.prod(out):  # type: ignore[arg-type]
        raise ctx.fail(f"cannot reshape {x} to {tuple(out)}: element counts differ")
    return [(tuple(out), ctx.dtype(0))]


def _reshape_symbolic_rest(x: Shape | None, out: list[Dim], i: int) -> Dim:
    """-1 with symbols: when the known dims cancel, the one leftover symbol is the answer."""
    if x is None:
        return None
    xs = list(x)
    rest = [d for j, d in enumerate(out) if j != i]
    for d in list(rest):
        if d in xs:
            xs.remove(d)
            rest.remove(d)
    x_syms = [d for d in xs if not isinstance(d, int)]
    rest_syms = [d for d in rest if not isinstance(d, int)]
    num = math.prod(d for d in xs if isinstance(d, int))
    den = math.prod(d for d in rest if isinstance(d, int))
    if rest_syms or not den or num % den:
        return None
    if not x_syms:
        return num // den
    if len(x_syms) == 1 and num == den:
        return x_syms[0]  # e.g. (N, 4, 6) -> (-1, 24): the leftover is N
    return None


def _flatten(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axis = int(ctx.attr("axis", 1))
    if not -len(x) <= axis <= len(x):
        raise ctx.fail(f"axis {axis} is out of range for rank {len(x)}")
    axis = axis % len(x) if axis < 0 else axis
    return [((dim_product(x[:axis]) if axis else 1, dim_product(x[axis:]) if axis < len(x) else 1),
             ctx.dtype(0))]  # fmt: skip


def _transpose(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    perm = ctx.attr("perm", list(reversed(range(len(x)))))
    if sorted(perm) != list(range(len(x))):
        raise ctx.fail(f"perm {perm} is not a permutation of {len(x)} dims")
    return [(tuple(x[p] for p in perm), ctx.dtype(0))]


def _squeeze(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axes = ctx.static_ints(1)
    if axes is None:
        if ctx.t(1) is not None:
            return [(None, ctx.dtype(0))]
        if not all_known(*x):
            return [(None, ctx.dtype(0))]
        return [(tuple(d for d in x if d != 1), ctx.dtype(0))]
    norm = {norm_axis(a, len(x), ctx) for a in axes}
    for a in norm:
        if isinstance(x[a], int) and x[a] != 1:
            raise ctx.fail(f"cannot squeeze dim {a} of size {x[a]}")
    return [(tuple(d for i, d in enumerate(x) if i not in norm), ctx.dtype(0))]


def _unsqueeze(ctx: RuleContext) -> list[Result]:
    x, axes = ctx.shape(0), ctx.static_ints(1)
    if x is None or axes is None:
        return [(None, ctx.dtype(0))]
    rank = len(x) + len(axes)
    norm = sorted(norm_axis(a, rank, ctx) for a in axes)
    out: list[Dim] = list(x)
    for a in norm:
        out.insert(a, 1)
    return [(tuple(out), ctx.dtype(0))]


def _pad(ctx: RuleContext) -> list[Result]:
    x, pads = ctx.shape(0), ctx.static_ints(1)
    if x is None:
        return [(None, ctx.dtype(0))]
    if pads is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    axes = ctx.static_ints(3) if ctx.t(3) is not None else list(range(len(x)))
    if axes is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    if len(pads) != 2 * len(axes):
        raise ctx.fail(f"pads {pads} do not fit {len(axes)} axes")
    out = list(x)
    for j, a in enumerate(axes):
        a = norm_axis(a, len(x), ctx)
        d = out[a]
        out[a] = d + pads[j] + pads[j + len(axes)] if isinstance(d, int) else None
    return [(tuple(out), ctx.dtype(0))]


def _resize(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axes = ctx.attr("axes", list(range(len(x))))
    axes = [norm_axis(a, len(x), ctx) for a in axes]
    sizes = ctx.static_ints(3) if ctx.t(3) is not None else None
    scales = ctx.floats(2) if ctx.t(2) is not None else None
    out: list[Dim] = list(x)
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ctx.fail(f"sizes {sizes} do not fit {len(axes)} axes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch" and all_known(*(x[a] for a in axes)):
            ratios = [s / int(x[a]) for s, a in zip(sizes, axes)]  # type: ignore[call-overload]
            r = min(ratios) if policy == "not_larger" else max(ratios)
            sizes = [int(round(r * int(x[a]) + 1e-9)) for a in axes]  # type: ignore[call-overload]
        for a, s in zip(axes, sizes):
            out[a] = s
    elif scales is not None:
        if len(scales) != len(axes):
            raise ctx.fail(f"scales {scales} do not fit {len(axes)} axes")
        for a, scale in zip(axes, scales):
            d = x[a]
            if isinstance(d, int):
                out[a] = int(math.floor(d * scale + 1e-6))
            else:
                out[a] = d if scale == 1 else None
    else:
        out = [None] * len(x)
    return [(tuple(out), ctx.dtype(0))]


def _gather(ctx: RuleContext) -> list[Result]:
    x, idx = ctx.shape(0), ctx.shape(1)
    if x is None or idx is None:
        return [(None, ctx.dtype(0))]
    a = norm_axis(int(ctx.attr("axis", 0)), len(x), ctx)
    return [((*x[:a], *idx, *x[a + 1 :]), ctx.dtype(0))]


def _shape(ctx: RuleContext) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, "int64")]
    dims = shape_values(ctx, x)
    return [((len(dims),), "int64")]


def shape_values(ctx: RuleContext, x: Shape) -> list[Dim]:
    rank = len(x)
    start = int(ctx.attr("start", 0))
    end = int(ctx.attr("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return list(x[start:end])


def _constant_of_shape(ctx: RuleContext) -> list[Result]:
    dims = ctx.ints(0)
    value = ctx.attr("value", None)
    dtype = str(np.asarray(value).dtype) if value is not None else "float32"
    if dims is None:
        t = ctx.shape(0)
        n = t[0] if t is not None and t else None
        return [(tuple(None for _ in range(n)) if isinstance(n, int) else None, dtype)]
    return [(tuple(dims), dtype)]


def _expand(ctx: RuleContext) -> list[Result]:
    target = ctx.ints(1)
    if target is None:
        return [(None, ctx.dtype(0))]
    return [(broadcast_shapes([ctx.shape(0), tuple(target)], ctx), ctx.dtype(0))]


def _tile(ctx: RuleContext) -> list[Result]:
    x, reps = ctx.shape(0), ctx.static_ints(1)
    if x is None:
        return [(None, ctx.dtype(0))]
    if reps is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    if len(reps) != len(x):
        raise ctx.fail(f"repeats {reps} do not fit input rank {len(x)}")
    out = [d * r if isinstance(d, int) else (d if r == 1 else None) for d, r in zip(x, reps)]
    return [(tuple(out), ctx.dtype(0))]


def _range(ctx: RuleContext) -> list[Result]:
    t = [ctx.t(i) for i in range(3)]
    if all(isinstance(v, Constant) for v in t):
        start, limit, delta = (float(np.asarray(v.values).reshape(-1)[0]) for v in t)  # type: ignore[union-attr]
        if delta == 0:
            raise ctx.fail("delta is 0")
        return [((max(int(math.ceil((limit - start) / delta)), 0),), ctx.dtype(0))]
    return [((None,), ctx.dtype(0))]


RULES: dict[str, Rule] = {
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Pad": _pad,
    "Resize": _resize,
    "Gather": _gather,
    "Shape": _shape,
    "ConstantOfShape": _constant_of_shape,
    "Expand": _expand,
    "Tile": _tile,
    "Range": _range,
}
