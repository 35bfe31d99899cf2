"""Shape and dtype inference for every imported op, with symbolic dimensions.

Rules are per op and read the opset-21 form. A dim is an ``int`` when known, the symbol ``str``
when it passes through unchanged (``"batch"``), ``None`` when unknown. Small integer tensors built
from shapes (``Shape -> Gather -> Concat``) are tracked by value, symbols included, so that a
``Reshape`` fed by such a subgraph keeps the batch symbol instead of losing the shape.

A layer whose inputs cannot fit together (a Conv channel mismatch, shapes that do not broadcast)
raises :class:`ShapeError` naming the layer; so do the checks of ``partitioner.validate`` on each
layer's attributes and each shape (a negative dim, a tensor no machine holds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from partitioner.dtypes import numpy_dtype_name
from partitioner.errors import ModelError, ShapeError, TandemError
from partitioner.ir import Constant, Dim, Graph, Node, Shape, Tensor
from partitioner.plugins import PLUGINS
from partitioner.validate import check_input, check_layer, check_outputs

Result = tuple[Shape | None, str | None]
_INT_MAX = 2**62
_MAX_VALUES = 1024  # elements of a constant read as a list of values (shapes, pads, scales)


class _Ctx:
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
            return [int(v) for v in np.asarray(t.values).reshape(-1)]
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
        ctx = _Ctx(node, values)
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


# ----- dim arithmetic -------------------------------------------------------------------------
def _known(*dims: Dim) -> bool:
    return all(isinstance(d, int) for d in dims)


def _broadcast_dim(a: Dim, b: Dim, ctx: _Ctx) -> Dim:
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


def broadcast_shapes(shapes: Sequence[Shape | None], ctx: _Ctx) -> Shape | None:
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


def _prod(dims: Sequence[Dim]) -> Dim:
    if not _known(*dims):
        return dims[0] if len(dims) == 1 else None
    return int(np.prod([int(d) for d in dims if d is not None], dtype=np.int64))


def _axis(axis: int, rank: int, ctx: _Ctx) -> int:
    if not -rank <= axis < max(rank, 1):
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    return axis % rank if rank else 0


# ----- rules ----------------------------------------------------------------------------------
def _same(ctx: _Ctx) -> list[Result]:
    return [(ctx.shape(0), ctx.dtype(0))]


def _bool_like(ctx: _Ctx) -> list[Result]:
    return [(ctx.shape(0), "bool")]


def _dropout(ctx: _Ctx) -> list[Result]:
    """The output, and the optional mask (bool, same shape)."""
    return [(ctx.shape(0), ctx.dtype(0)), (ctx.shape(0), "bool")][: len(ctx.node.outputs)]


def _elementwise(dtype: str | None = None) -> Callable[[_Ctx], list[Result]]:
    def rule(ctx: _Ctx) -> list[Result]:
        shapes = [t.shape if t is not None else None for t in ctx.node.inputs]
        return [(broadcast_shapes(shapes, ctx), dtype or ctx.dtype(0))]

    return rule


def _where(ctx: _Ctx) -> list[Result]:
    return [(broadcast_shapes([ctx.shape(0), ctx.shape(1), ctx.shape(2)], ctx), ctx.dtype(1))]


def _prelu(ctx: _Ctx) -> list[Result]:
    shape = broadcast_shapes([ctx.shape(0), ctx.shape(1)], ctx)
    x = ctx.shape(0)
    if shape is not None and x is not None and len(shape) != len(x):
        raise ctx.fail(f"slope {ctx.shape(1)} has more dims than the input {x}")
    return [(x, ctx.dtype(0))]


def _dtype_attr(ctx: _Ctx, name: str, default: int) -> str:
    try:
        return numpy_dtype_name(int(ctx.attr(name, default)))
    except ModelError as err:
        raise ctx.fail(f"attribute {name}: {err}") from None


def _cast(ctx: _Ctx) -> list[Result]:
    return [(ctx.shape(0), _dtype_attr(ctx, "to", 1))]


def _window_out(size: Dim, k: int, s: int, d: int, pb: int, pe: int, ceil: bool,
                mode: str) -> Dim:  # fmt: skip
    eff = (k - 1) * d + 1
    if not isinstance(size, int):
        # A symbol passes through windows that keep the size (1x1 stride 1, SAME stride 1).
        if mode in ("SAME_UPPER", "SAME_LOWER"):
            keeps = s == 1
        elif mode == "VALID":
            keeps = s == 1 and eff == 1
        else:
            keeps = s == 1 and eff - 1 == pb + pe
        return size if keeps else None
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        return -(-size // s)
    if mode == "VALID":
        return (size - eff) // s + 1
    span = size + pb + pe - eff
    if span < 0:
        # A window larger than the padded input: ONNX Runtime accepts it for pools and divides
        # with C++ truncation toward zero; match it, since it is the reference.
        return int(span / s) + 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + pb:
        out -= 1  # the last window must start inside the input or its left padding
    return out


def _conv(ctx: _Ctx) -> list[Result]:
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None:
        return [(None, ctx.dtype(0))]
    if len(x) != len(w):
        raise ctx.fail(f"input rank {len(x)} and weight rank {len(w)} differ")
    group = int(ctx.attr("group", 1))
    c, wc = x[1], w[1]
    if isinstance(c, int) and isinstance(wc, int) and c != wc * group:
        raise ctx.fail(
            f"input has {c} channels but the weight {w} with group={group} expects {wc * group}"
        )
    b = ctx.shape(2)
    if b is not None and (len(b) != 1 or (_known(b[0], w[0]) and b[0] != w[0])):
        raise ctx.fail(f"bias shape {b} does not match {w[0]} output channels")
    k = len(x) - 2
    kernel = ctx.attr("kernel_shape", list(w[2:]))
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    mode = ctx.attr("auto_pad", "NOTSET")
    spatial = [
        _window_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[k + i], False, mode)
        if isinstance(kernel[i], int) else None
        for i in range(k)
    ]  # fmt: skip
    return [((x[0], w[0], *spatial), ctx.dtype(0))]


def _conv_transpose(ctx: _Ctx) -> list[Result]:
    x, w = ctx.shape(0), ctx.shape(1)
    if x is None or w is None:
        return [(None, ctx.dtype(0))]
    group = int(ctx.attr("group", 1))
    if _known(x[1], w[0]) and x[1] != w[0]:
        raise ctx.fail(f"input has {x[1]} channels but the weight {w} expects {w[0]}")
    k = len(x) - 2
    m: Dim = w[1] * group if isinstance(w[1], int) else None
    if "output_shape" in ctx.node.attrs:
        spatial: list[Dim] = list(ctx.attr("output_shape", []))[-k:]
        return [((x[0], m, *spatial), ctx.dtype(0))]
    kernel = ctx.attr("kernel_shape", list(w[2:]))
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    out_pad = ctx.attr("output_padding", [0] * k)
    mode = ctx.attr("auto_pad", "NOTSET")
    spatial = []
    for i in range(k):
        size = x[2 + i]
        if not isinstance(size, int) or not isinstance(kernel[i], int):
            spatial.append(None)
        elif mode in ("SAME_UPPER", "SAME_LOWER"):
            spatial.append(size * strides[i])
        else:
            eff = (kernel[i] - 1) * dil[i] + 1
            spatial.append(strides[i] * (size - 1) + out_pad[i] + eff - pads[i] - pads[k + i])
    return [((x[0], m, *spatial), ctx.dtype(0))]


def _pool(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0)), (None, "int64")]
    k = len(x) - 2
    kernel = ctx.attr("kernel_shape", [1] * k)
    if len(kernel) != k:
        raise ctx.fail(f"kernel_shape {kernel} does not fit input rank {len(x)}")
    strides, dil = ctx.attr("strides", [1] * k), ctx.attr("dilations", [1] * k)
    pads = ctx.attr("pads", [0] * 2 * k)
    ceil, mode = bool(ctx.attr("ceil_mode", 0)), ctx.attr("auto_pad", "NOTSET")
    spatial = [
        _window_out(x[2 + i], kernel[i], strides[i], dil[i], pads[i], pads[k + i], ceil, mode)
        for i in range(k)
    ]
    shape = (x[0], x[1], *spatial)
    return [(shape, ctx.dtype(0)), (shape, "int64")]


def _global_pool(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    return [((*x[:2], *([1] * (len(x) - 2))) if x is not None else None, ctx.dtype(0))]


def _gemm(ctx: _Ctx) -> list[Result]:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [(None, ctx.dtype(0))]
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"expects 2-D inputs, got {a} and {b}")
    m, ka = (a[1], a[0]) if ctx.attr("transA", 0) else (a[0], a[1])
    kb, n = (b[1], b[0]) if ctx.attr("transB", 0) else (b[0], b[1])
    if _known(ka, kb) and ka != kb:
        raise ctx.fail(f"inner dims differ: A {a} and B {b} (transA/transB applied)")
    if ctx.shape(2) is not None:
        broadcast_shapes([ctx.shape(2), (m, n)], ctx)
    return [((m, n), ctx.dtype(0))]


def _matmul(ctx: _Ctx) -> list[Result]:
    a, b = ctx.shape(0), ctx.shape(1)
    if a is None or b is None:
        return [(None, ctx.dtype(0))]
    if not a or not b:
        raise ctx.fail("MatMul needs inputs of rank >= 1")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if _known(a2[-1], b2[-2]) and a2[-1] != b2[-2]:
        raise ctx.fail(f"inner dims differ: {a} @ {b}")
    batch = broadcast_shapes([a2[:-2], b2[:-2]], ctx)
    assert batch is not None
    out = [*batch, a2[-2], b2[-1]]
    if len(a) == 1:
        out.pop(-2)
    if len(b) == 1:
        out.pop(-1)
    return [(tuple(out), ctx.dtype(0))]


def _norm_outputs(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    results: list[Result] = [(x, ctx.dtype(0))]
    if ctx.node.op == "LayerNormalization" and len(ctx.node.outputs) > 1:
        axis = int(ctx.attr("axis", -1))
        stat: Shape | None = None
        if x is not None:
            a = _axis(axis, len(x), ctx)
            stat = (*x[:a], *([1] * (len(x) - a)))
        stash = _dtype_attr(ctx, "stash_type", 1)
        results += [(stat, stash), (stat, stash)]
    return results


def _concat(ctx: _Ctx) -> list[Result]:
    shapes = [t.shape if t is not None else None for t in ctx.node.inputs]
    if any(s is None for s in shapes):
        return [(None, ctx.dtype(0))]
    rank = len(shapes[0])  # type: ignore[arg-type]
    axis = _axis(int(ctx.attr("axis", 0)), rank, ctx)
    out: list[Dim] = list(shapes[0])  # type: ignore[arg-type]
    for s in shapes[1:]:
        assert s is not None
        if len(s) != rank:
            raise ctx.fail(f"inputs have different ranks: {', '.join(str(x) for x in shapes)}")
        for i, d in enumerate(s):
            if i == axis:
                continue
            if _known(out[i], d) and out[i] != d:
                raise ctx.fail(f"dim {i} differs between inputs: {', '.join(map(str, shapes))}")
            if not isinstance(out[i], int) and isinstance(d, int):
                out[i] = d
    along = [s[axis] for s in shapes]  # type: ignore[index]
    out[axis] = sum(along) if _known(*along) else None  # type: ignore[arg-type]
    return [(tuple(out), ctx.dtype(0))]


def _split(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    n = len(ctx.node.outputs)
    if x is None:
        return [(None, ctx.dtype(0))] * n
    axis = _axis(int(ctx.attr("axis", 0)), len(x), ctx)
    sizes: list[Dim] | None = ctx.static_ints(1)  # type: ignore[assignment]
    total = x[axis]
    if sizes is None and ctx.t(1) is None and isinstance(total, int):
        chunk = -(-total // n)
        sizes = [min(chunk, total - i * chunk) for i in range(n)]
    if sizes is not None:
        if len(sizes) != n:
            raise ctx.fail(f"split sizes {sizes} do not match {n} outputs")
        if isinstance(total, int) and _known(*sizes) and sum(sizes) != total:  # type: ignore[arg-type]
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


def _slice(ctx: _Ctx) -> list[Result]:
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
        a = _axis(a, len(x), ctx)
        out[a] = _slice_dim(x[a], s, e, st)
    return [(tuple(out), ctx.dtype(0))]


def _reshape(ctx: _Ctx) -> list[Result]:
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
        total = _prod(x) if x is not None else None
        if isinstance(total, int) and _known(*rest):
            known = math.prod(rest)  # type: ignore[arg-type]
            if known == 0 or total % known:
                raise ctx.fail(f"cannot reshape {x} ({total} elements) to {target}")
            out[i] = total // known
        else:
            out[i] = _reshape_symbolic_rest(x, out, i)
    elif x is not None and _known(*x, *out) and math.prod(x) != math.prod(out):  # type: ignore[arg-type]
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


def _flatten(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axis = int(ctx.attr("axis", 1))
    if not -len(x) <= axis <= len(x):
        raise ctx.fail(f"axis {axis} is out of range for rank {len(x)}")
    axis = axis % len(x) if axis < 0 else axis
    return [((_prod(x[:axis]) if axis else 1, _prod(x[axis:]) if axis < len(x) else 1),
             ctx.dtype(0))]  # fmt: skip


def _transpose(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    perm = ctx.attr("perm", list(reversed(range(len(x)))))
    if sorted(perm) != list(range(len(x))):
        raise ctx.fail(f"perm {perm} is not a permutation of {len(x)} dims")
    return [(tuple(x[p] for p in perm), ctx.dtype(0))]


def _squeeze(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axes = ctx.static_ints(1)
    if axes is None:
        if ctx.t(1) is not None:
            return [(None, ctx.dtype(0))]
        if not _known(*x):
            return [(None, ctx.dtype(0))]
        return [(tuple(d for d in x if d != 1), ctx.dtype(0))]
    norm = {_axis(a, len(x), ctx) for a in axes}
    for a in norm:
        if isinstance(x[a], int) and x[a] != 1:
            raise ctx.fail(f"cannot squeeze dim {a} of size {x[a]}")
    return [(tuple(d for i, d in enumerate(x) if i not in norm), ctx.dtype(0))]


def _unsqueeze(ctx: _Ctx) -> list[Result]:
    x, axes = ctx.shape(0), ctx.static_ints(1)
    if x is None or axes is None:
        return [(None, ctx.dtype(0))]
    rank = len(x) + len(axes)
    norm = sorted(_axis(a, rank, ctx) for a in axes)
    out: list[Dim] = list(x)
    for a in norm:
        out.insert(a, 1)
    return [(tuple(out), ctx.dtype(0))]


def _pad(ctx: _Ctx) -> list[Result]:
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
        a = _axis(a, len(x), ctx)
        d = out[a]
        out[a] = d + pads[j] + pads[j + len(axes)] if isinstance(d, int) else None
    return [(tuple(out), ctx.dtype(0))]


def _resize(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    axes = ctx.attr("axes", list(range(len(x))))
    axes = [_axis(a, len(x), ctx) for a in axes]
    sizes = ctx.static_ints(3) if ctx.t(3) is not None else None
    scales = ctx.floats(2) if ctx.t(2) is not None else None
    out: list[Dim] = list(x)
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ctx.fail(f"sizes {sizes} do not fit {len(axes)} axes")
        policy = ctx.attr("keep_aspect_ratio_policy", "stretch")
        if policy != "stretch" and _known(*(x[a] for a in axes)):
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


def _reduce(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, ctx.dtype(0))]
    keep = bool(ctx.attr("keepdims", 1))
    axes = ctx.static_ints(1)
    if axes is None and ctx.t(1) is not None:
        return [(None, ctx.dtype(0))]
    if not axes:
        if ctx.attr("noop_with_empty_axes", 0):
            return [(x, ctx.dtype(0))]
        axes = list(range(len(x)))
    norm = {_axis(a, len(x), ctx) for a in axes}
    out = [1 if i in norm else d for i, d in enumerate(x) if keep or i not in norm]
    return [(tuple(out), ctx.dtype(0))]


def _argmax(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, "int64")]
    a = _axis(int(ctx.attr("axis", 0)), len(x), ctx)
    keep = bool(ctx.attr("keepdims", 1))
    out = [1 if i == a else d for i, d in enumerate(x) if keep or i != a]
    return [(tuple(out), "int64")]


def _topk(ctx: _Ctx) -> list[Result]:
    x, k = ctx.shape(0), ctx.static_ints(1)
    if x is None:
        return [(None, ctx.dtype(0)), (None, "int64")]
    a = _axis(int(ctx.attr("axis", -1)), len(x), ctx)
    out = list(x)
    out[a] = k[0] if k is not None else None
    size = x[a]
    if k is not None and isinstance(size, int) and k[0] > size:
        raise ctx.fail(f"k={k[0]} is larger than dim {a} of size {size}")
    return [(tuple(out), ctx.dtype(0)), (tuple(out), "int64")]


def _gather(ctx: _Ctx) -> list[Result]:
    x, idx = ctx.shape(0), ctx.shape(1)
    if x is None or idx is None:
        return [(None, ctx.dtype(0))]
    a = _axis(int(ctx.attr("axis", 0)), len(x), ctx)
    return [((*x[:a], *idx, *x[a + 1 :]), ctx.dtype(0))]


def _shape(ctx: _Ctx) -> list[Result]:
    x = ctx.shape(0)
    if x is None:
        return [(None, "int64")]
    dims = _shape_values(ctx, x)
    return [((len(dims),), "int64")]


def _shape_values(ctx: _Ctx, x: Shape) -> list[Dim]:
    rank = len(x)
    start = int(ctx.attr("start", 0))
    end = int(ctx.attr("end", rank))
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    return list(x[start:end])


def _constant_of_shape(ctx: _Ctx) -> list[Result]:
    dims = ctx.ints(0)
    value = ctx.attr("value", None)
    dtype = str(np.asarray(value).dtype) if value is not None else "float32"
    if dims is None:
        t = ctx.shape(0)
        n = t[0] if t is not None and t else None
        return [(tuple(None for _ in range(n)) if isinstance(n, int) else None, dtype)]
    return [(tuple(dims), dtype)]


def _expand(ctx: _Ctx) -> list[Result]:
    target = ctx.ints(1)
    if target is None:
        return [(None, ctx.dtype(0))]
    return [(broadcast_shapes([ctx.shape(0), tuple(target)], ctx), ctx.dtype(0))]


def _tile(ctx: _Ctx) -> list[Result]:
    x, reps = ctx.shape(0), ctx.static_ints(1)
    if x is None:
        return [(None, ctx.dtype(0))]
    if reps is None:
        return [(tuple(None for _ in x), ctx.dtype(0))]
    if len(reps) != len(x):
        raise ctx.fail(f"repeats {reps} do not fit input rank {len(x)}")
    out = [d * r if isinstance(d, int) else (d if r == 1 else None) for d, r in zip(x, reps)]
    return [(tuple(out), ctx.dtype(0))]


def _range(ctx: _Ctx) -> list[Result]:
    t = [ctx.t(i) for i in range(3)]
    if all(isinstance(v, Constant) for v in t):
        start, limit, delta = (float(np.asarray(v.values).reshape(-1)[0]) for v in t)  # type: ignore[union-attr]
        if delta == 0:
            raise ctx.fail("delta is 0")
        return [((max(int(math.ceil((limit - start) / delta)), 0),), ctx.dtype(0))]
    return [((None,), ctx.dtype(0))]


def _quantize(ctx: _Ctx) -> list[Result]:
    if int(ctx.attr("output_dtype", 0)):
        dtype: str | None = _dtype_attr(ctx, "output_dtype", 0)
    else:
        dtype = ctx.dtype(2) if ctx.t(2) is not None else "uint8"
    return [(ctx.shape(0), dtype)]


def _dequantize(ctx: _Ctx) -> list[Result]:
    return [(ctx.shape(0), ctx.dtype(1) or "float32")]


def _batchnorm(ctx: _Ctx) -> list[Result]:
    x, scale = ctx.shape(0), ctx.shape(1)
    if x is not None and scale is not None and len(x) > 1 and _known(x[1], *scale):
        if tuple(scale) != (x[1],):
            raise ctx.fail(f"scale {scale} does not match {x[1]} channels of input {x}")
    # training mode: running mean / var, shaped and typed like the mean / var inputs
    return [(x, ctx.dtype(0))] + [(ctx.shape(3), ctx.dtype(3))] * (len(ctx.node.outputs) - 1)


_UNARY = """Relu LeakyRelu Sigmoid Tanh Clip HardSigmoid HardSwish Elu Selu Softplus Gelu Erf Mish
Sqrt Exp Log Abs Neg Reciprocal Floor Ceil Identity Softmax LogSoftmax LRN InstanceNormalization
""".split()
_RULES: dict[str, Callable[[_Ctx], list[Result]]] = {op: _same for op in _UNARY}
_RULES.update({op: _elementwise() for op in "Add Sub Mul Div Pow Max Min Sum".split()})
_RULES.update({op: _elementwise("bool") for op in "Equal Greater Less".split()})
_RULES.update({op: _reduce for op in "ReduceMean ReduceSum ReduceMax ReduceMin".split()})
_RULES.update(
    {
        "Not": _bool_like,
        "Dropout": _dropout,
        "Where": _where,
        "PRelu": _prelu,
        "Cast": _cast,
        "Conv": _conv,
        "ConvTranspose": _conv_transpose,
        "MaxPool": _pool,
        "AveragePool": _pool,
        "GlobalAveragePool": _global_pool,
        "GlobalMaxPool": _global_pool,
        "Gemm": _gemm,
        "MatMul": _matmul,
        "BatchNormalization": _batchnorm,
        "LayerNormalization": _norm_outputs,
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
        "ArgMax": _argmax,
        "TopK": _topk,
        "Gather": _gather,
        "Shape": _shape,
        "ConstantOfShape": _constant_of_shape,
        "Expand": _expand,
        "Tile": _tile,
        "Range": _range,
        "QuantizeLinear": _quantize,
        "DequantizeLinear": _dequantize,
    }
)


# ----- value tracking for shape subgraphs -------------------------------------------------------
def _track_values(ctx: _Ctx, values: dict[str, list[Dim]]) -> None:
    """Record the values of small int tensors computed from shapes (symbols included)."""
    node = ctx.node
    out = node.outputs[0] if node.outputs else None
    if out is None:
        return
    result: list[Dim] | None = None
    op = node.op
    if op == "Shape":
        x = ctx.shape(0)
        result = _shape_values(ctx, x) if x is not None else None
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


# Rules of the ops beyond the core set live in their own module, which builds on the helpers
# above; imported last so that those exist when it loads.
from partitioner.shape_rules import RULES as _MORE_RULES  # noqa: E402

_RULES.update(_MORE_RULES)
