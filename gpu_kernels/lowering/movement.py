"""Data movement: reshapes, casts, transposes, slices, splits, gathers, concatenations, pads,
expands, tiles, depth / space rearrangements, grid sampling and resizes. Most are views (no
kernel): a reader that needs the data contiguous copies it once; a Concat lets the producers of
its inputs write straight into their slices of its buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.elementwise import define_nonzero, emit_concat
from gpu_kernels.lowering.program import (
    ALIAS_OPS,
    INDEX_DTYPES,
    MAXR,
    Launch,
    Lazy,
    Leaf,
    Op,
    Value,
    grid1d,
    reshaped,
)
from gpu_kernels.lowering.registry import bool_ok, constant, element_dtype, register
from partitioner.capability import Verdict
from partitioner.ir import Constant, Node
from partitioner.passes import host_math

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


def _any(node: Node, arch: int, precision: str) -> Verdict:
    """Views of any float tensor (the checks every op gets are all there is)."""
    return Verdict.yes()


def _concat_ok(node: Node, arch: int, precision: str) -> Verdict:
    if "axis" not in node.attrs:
        return Verdict.no("needs the axis attribute")
    return Verdict.yes()


def _view(x: Value | Lazy, shape: tuple[int, ...], view: Callable[[Value], Value]
          ) -> Value | Lazy:
    """A view (transpose, slice) of a value, or of a deferred chain: of each of its leaves."""
    if isinstance(x, Value):
        return view(x)

    def walk(e: Leaf | Op) -> Leaf | Op:
        if isinstance(e, Leaf):
            return Leaf(view(e.value))
        return Op(e.code, tuple(walk(a) for a in e.args), e.imm)
    return Lazy(shape, walk(x.root), "plain", x.dtype)


def _alias_ok(node: Node, arch: int, precision: str) -> Verdict:
    if node.op == "Dropout" and len(node.outputs) > 1:
        return Verdict.no("mask output unsupported")
    if isinstance(node.input(0), Constant):
        return Verdict.no("constant input not folded")
    return Verdict.yes()


@register(*ALIAS_OPS, supports=_alias_ok)
def lower_alias(lw: Lowering, node: Node) -> None:
    """Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout: the same bytes, another shape
    (a contiguous copy first where the input is NHWC or a view)."""
    x = lw.value(node.input(0), node)
    out = lw.out_shape(node)
    if x.layout == "nhwc" and len(out) == 5 and out[0] == x.shape[0] \
            and out[3:] == x.shape[2:] and out[1] * out[2] == x.shape[1]:
        # (N, a*b, H, W) -> (N, a, b, H, W) (a detect head): a view of the NHWC data
        n_s, _, h_s, w_s = x.strides()
        lw.bind(node, Value(x.buf, out, "strided", x.dtype, x.offset, x.cs,
                              (n_s, out[2], 1, h_s, w_s)))
        return
    view = reshaped(x, out) if x.layout == "strided" else None
    if view is not None:  # e.g. a detection scale written into its slice of the output
        lw.bind(node, view)
        return
    dst = lw.destination(node.outputs[0])
    into = reshaped(dst, x.shape) if dst is not None else None
    if into is not None:  # copied once, straight to where its reader wants it
        lw.copy(lw.ensure(x, None, None, node.name, keep_strided=True), into, node.name)
        lw.bind(node, dst)
        return
    x = lw.ensure(x, "plain", None, node.name)
    lw.bind(node, Value(x.buf, out, "plain", x.dtype, x.offset))


_TO_FLOAT = (1, 10, "float32", "float16", "float")
_TO_BOOL = (9, "bool")


def _cast_ok(node: Node, arch: int, precision: str) -> Verdict:
    if node.attrs.get("to") not in _TO_FLOAT + _TO_BOOL:
        return Verdict.no(f"to={node.attrs.get('to')}: only casts to float types and bool run "
                          "on the GPU")
    return bool_ok(node.input(0))


@register("Cast", supports=_cast_ok, data=())
def lower_cast(lw: Lowering, node: Node) -> None:
    """Float to float, a comparison's bool to float or to bool: inside a segment every float
    is the compute precision and a bool is already 0 / 1 in it. A float to bool is x != 0
    (DeBERTa's attention mask)."""
    x = node.input(0)
    if node.attrs.get("to") in _TO_BOOL and x is not None and element_dtype(x).kind != "b":
        define_nonzero(lw, node)
        return
    lw.values[node.outputs[0].name] = lw.lazy(x, node)


@register("Transpose", supports=_any)
def lower_transpose(lw: Lowering, node: Node) -> None:
    x = lw.lazy(node.input(0), node)
    perm = list(node.attrs.get("perm", list(range(len(x.shape)))[::-1]))
    out_shape = lw.out_shape(node)
    if isinstance(x, Value) and x.layout == "nhwc" and perm == [0, 2, 3, 1] \
            and x.cs in (0, x.shape[1]):
        lw.bind(node, Value(x.buf, out_shape, "plain", x.dtype, x.offset))  # free
        return

    def transposed(v: Value) -> Value:  # a view: whoever needs it contiguous copies it once
        vs = v.strides()
        return Value(v.buf, out_shape, "strided", v.dtype, v.offset, v.cs,
                     tuple(vs[p] for p in perm))
    lw.values[node.outputs[0].name] = _view(x, out_shape, transposed)


@register("Concat", supports=_concat_ok, data=None)
def lower_concat(lw: Lowering, node: Node) -> None:
    # raw: an INT8 input written in place must be recognised as such
    ins = [lw.lazy(t, node, raw=True) for t in node.inputs if t is not None]
    out_shape = lw.out_shape(node)
    axis = int(node.attrs["axis"]) % len(out_shape)
    layout = "nhwc" if len(out_shape) == 4 and all(v.layout == "nhwc" for v in ins) \
        else "plain"

    def put(v: Value | Lazy, part: Value, strides: list[int]) -> None:
        if isinstance(v, Lazy):  # a deferred chain computes straight into its slice
            lw.materialise(v, node.name, part, strides)
        else:
            if v.buf.kind != "weight":
                v = lw.ensure(v, None, lw.dt, node.name, keep_strided=True)
            lw.copy(v, part, node.name, list(v.shape), None, strides)

    chain = lw.concat_chain.get(node.name)
    if chain is not None and (len(chain.members) > 1 or any(
            slot[0] is chain.root for slot in lw.concat_slot.values())):
        # the chain's buffer: each input lands in its slice once (written there by its
        # producer, else copied by the first Concat of the chain that has it)
        y = lw.concat_value(chain.root)
        ys = y.strides()
        off = 0
        for v in ins:
            if (chain.root.name, off) not in lw.concat_filled:
                # written there by its producer (its slot), or a view of what was (a Split)
                in_place = isinstance(v, Value) and v.buf is y.buf and v.layout == "nhwc" \
                    and v.offset == y.offset + off and v.dtype == y.dtype \
                    and (v.cs or v.shape[1]) == (y.cs or y.shape[1])
                if not in_place:  # produced by a kernel that cannot write a channel slice
                    put(v, Value(y.buf, y.shape, "nhwc", y.dtype, y.offset + off, y.cs,
                                 scale=y.scale), ys)
                lw.concat_filled.add((chain.root.name, off))
            off += v.shape[1]
        # a narrower Concat of the chain: its leading channels, the same pixel stride
        lw.bind(node, y if node is chain.root else Value(
            y.buf, out_shape, "nhwc", y.dtype, y.offset, y.cs or y.shape[1], scale=y.scale))
        return
    # where its reader wants it (a wider Concat's slice, an FP32 graph output), else its own
    y = lw.concat_buffer(node, layout)
    ys = y.strides()
    placed = any(isinstance(v, Value) and v.buf is y.buf for v in ins)
    if not placed and emit_concat(lw, ins, axis, y, ys, node.name):  # one kernel
        lw.bind(node, y)
        return
    start = 0
    for v in ins:
        part = Value(y.buf, y.shape, y.layout, y.dtype, y.offset + start * ys[axis], y.cs,
                     y.custom)
        in_place = isinstance(v, Value) and v.buf is y.buf and v.offset == part.offset \
            and v.dtype == y.dtype and all(d == 1 or a == b for d, a, b in zip(
                v.shape, v.strides(), ys))
        if not in_place:  # else its producer wrote it there (Lowering.destination)
            put(v, part, ys)
        start += v.shape[axis]
    lw.bind(node, y)


def _slice(lw: Lowering, node: Node, x: Value | Lazy, starts: list[int], steps: list[int],
           out_shape: tuple[int, ...], i: int) -> None:
    def sliced(v: Value) -> Value:
        vs = v.strides()
        off = v.offset + sum(s * st for s, st in zip(starts, vs))
        if v.layout == "nhwc" and steps == [1, 1, 1, 1] and out_shape[0] == v.shape[0] \
                and out_shape[2:] == v.shape[2:]:
            # a channel range of NHWC data (YOLOv8's C2f Split) is NHWC with the same pixel
            # stride, as a Concat's channel slice is: convolutions and pools read it in place
            return Value(v.buf, out_shape, "nhwc", v.dtype, off, v.cs or v.shape[1],
                         scale=v.scale)
        return Value(v.buf, out_shape, "strided", v.dtype, off, v.cs,
                     tuple(st * s for st, s in zip(vs, steps)))
    lw.values[node.outputs[i].name] = _view(x, out_shape, sliced)


def _slice_ok(node: Node, arch: int, precision: str) -> Verdict:
    if any(node.input(i) is not None and constant(node, i) is None for i in range(1, 5)) \
            or node.input(1) is None or node.input(2) is None:
        return Verdict.no("run-time bounds unsupported (starts, ends, axes and steps must be "
                          "constants)")
    return Verdict.yes()


@register("Slice", supports=_slice_ok)
def lower_slice(lw: Lowering, node: Node) -> None:
    x = lw.lazy(node.input(0), node)
    rank = len(x.shape)
    starts, ends = constant(node, 1), constant(node, 2)
    axes, steps = constant(node, 3), constant(node, 4)
    assert starts is not None and ends is not None  # _slice_ok made sure
    axes_l = [int(a) % rank for a in (axes if axes is not None else range(len(starts)))]
    steps_l = [int(s) for s in (steps if steps is not None else [1] * len(starts))]
    st_all, sp_all = [0] * rank, [1] * rank
    for a, s0, e0, sp in zip(axes_l, starts, ends, steps_l):
        dim = x.shape[a]
        s0, e0 = int(s0), int(e0)
        s0 = s0 + dim if s0 < 0 else s0
        if sp > 0:
            s0 = min(max(s0, 0), dim)
        else:
            s0 = min(max(s0, -1), dim - 1)
        st_all[a], sp_all[a] = s0, sp
    _slice(lw, node, x, st_all, sp_all, lw.out_shape(node), 0)


@register("Split", supports=_any)
def lower_split(lw: Lowering, node: Node) -> None:
    x = lw.lazy(node.input(0), node)
    axis = int(node.attrs.get("axis", 0)) % len(x.shape)
    start = 0
    for i, t in enumerate(node.outputs):
        shape = tuple(int(d) for d in t.static_shape())
        st = [0] * len(x.shape)
        st[axis] = start
        _slice(lw, node, x, st, [1] * len(x.shape), shape, i)
        start += shape[axis]


def _gather_ok(node: Node, arch: int, precision: str) -> Verdict:
    if constant(node, 1) is not None:
        return Verdict.yes()
    t = node.input(1)
    if t is None or not t.is_static or np.dtype(t.dtype or "float32") not in INDEX_DTYPES:
        return Verdict.no("run-time indices must be int64 or int32 of static shape")
    if int(node.attrs.get("axis", 0)) != 0:
        return Verdict.no("run-time indices only along axis 0 (an embedding lookup)")
    if t.producer is not None and not host_math(t.producer):
        return Verdict.no("run-time indices only from a graph input or integer math on the "
                          "host (the GPU computes no integers)")
    # host-computed indices (GPT-2's reshaped token ids, RoBERTa's position ids from the
    # mask) reach the GPU segment as an input, as token ids do
    return Verdict.yes()


@register("Gather", supports=_gather_ok)
def lower_gather(lw: Lowering, node: Node) -> None:
    """Gather with constant indices: a view for a scalar index or for indices that step
    evenly (torch.export writes ``as_strided`` as a Gather of an ``arange``), else one strided
    copy per index; with run-time integer indices from a graph input (token ids), one
    row-gather kernel (an embedding lookup)."""
    x = lw.value(node.input(0), node)
    idx = constant(node, 1)
    if idx is None:  # run-time indices: rows of the table
        _gather_rows(lw, node, x)
        return
    axis = int(node.attrs.get("axis", 0)) % len(x.shape)
    out_shape = lw.out_shape(node)
    xs = x.strides()
    flat = idx.reshape(-1).astype(np.int64) % x.shape[axis]
    step = int(flat[1] - flat[0]) if flat.size > 1 else 1
    if flat.size and step > 0 and bool(np.all(np.diff(flat) == step)):
        # the index dims replace the axis; index element j sits (start + j * step) rows in
        dims = idx.shape
        in_idx = [int(np.prod(dims[i + 1:], dtype=np.int64)) * step * xs[axis]
                  for i in range(len(dims))]
        strides = (*xs[:axis], *in_idx, *xs[axis + 1:])
        lw.bind(node, Value(x.buf, out_shape, "strided", x.dtype,
                            x.offset + int(flat[0]) * xs[axis], x.cs, tuple(strides)))
        return
    y = lw.new_value(out_shape, "plain", x.dtype)
    ys = y.strides()
    k = max(idx.ndim, 1)  # the index dims take the axis's place in y
    unit = ys[axis + k - 1] if idx.ndim else 0
    rest_shape = [d for a, d in enumerate(x.shape) if a != axis]
    rest_strides = [st for a, st in enumerate(xs) if a != axis]
    dst_strides = [*ys[:axis], *ys[axis + idx.ndim:]]
    for j, i in enumerate(flat):
        src = Value(x.buf, x.shape, x.layout, x.dtype, x.offset + int(i) * xs[axis], x.cs)
        dst = Value(y.buf, y.shape, "plain", y.dtype, y.offset + j * unit)
        lw.copy(src, dst, node.name, rest_shape, rest_strides, dst_strides)
    lw.bind(node, y)


def _gather_rows(lw: Lowering, node: Node, table: Value) -> None:
    t = node.input(1)
    assert t is not None  # _gather_ok made sure
    ids = lw.values[t.name]
    assert isinstance(ids, Value) and ids.dtype in ("i32", "i64"), node.name
    table = lw.ensure(table, "plain", lw.dt, node.name)
    row = int(np.prod(table.shape[1:], dtype=np.int64))
    y = lw.new_value(lw.out_shape(node), "plain")
    lw.emit(Launch(node.name, f"gather_rows_{lw.dt}_{ids.dtype}", grid1d(y.size), 256,
                   [lw.ref(table), lw.ref(ids), lw.ref(y)], [ids.size, row, table.shape[0]]))
    lw.bind(node, y)


_CTM = {"half_pixel": 0, "asymmetric": 1, "align_corners": 2, "pytorch_half_pixel": 3,
        "tf_half_pixel_for_nn": 0}
_NEAREST = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}


def _resize_ok(node: Node, arch: int, precision: str) -> Verdict:
    x = node.input(0)
    assert x is not None  # supports() made sure
    if not node.outputs[0].is_static:
        return Verdict.yes()  # supports() refuses the output
    shape, out = x.static_shape(), node.outputs[0].static_shape()
    if len(shape) != 4 or out[:2] != shape[:2]:
        return Verdict.no("only H/W resizing on GPU")
    mode = node.attrs.get("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return Verdict.no(f"mode '{mode}' unsupported (nearest or linear)")
    ctm = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if ctm not in _CTM:
        return Verdict.no(f"coordinate_transformation_mode '{ctm}' unsupported")
    nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
    if nearest not in _NEAREST:
        return Verdict.no(f"nearest_mode '{nearest}' unsupported")
    return Verdict.yes()


@register("Resize", supports=_resize_ok)
def lower_resize(lw: Lowering, node: Node) -> None:
    x = lw.conv_input(lw.value(node.input(0), node), node.name, align=1)  # slices too
    out = lw.out_shape(node)
    N, C, H, W = x.shape
    mode = node.attrs.get("mode", "nearest")
    ctm = _CTM[node.attrs.get("coordinate_transformation_mode", "half_pixel")]
    nmode = _NEAREST[node.attrs.get("nearest_mode", "round_prefer_floor")]
    scales = constant(node, 2)
    if scales is not None and scales.size == 4:
        sh, sw = float(scales[2]), float(scales[3])
    else:
        sh, sw = out[2] / H, out[3] / W
    y = lw.out_nhwc(node.outputs[0], out)  # a Concat's channel slice when one awaits it
    # nearest in FP16 with 16-byte aligned channel runs: 8 channels a thread
    x8 = mode == "nearest" and lw.dt == "f16" and y.dtype == "f16" and all(
        v % 8 == 0 for v in (C, x.cs or C, y.cs or out[1], x.offset, y.offset))
    lw.emit(Launch(node.name, f"resize_nhwc_{'x8_' if x8 else ''}{lw.dt}",
                   grid1d(int(np.prod(out)) // (8 if x8 else 1)), 256,
                     [lw.ref(x), lw.ref(y)],
                     [N, H, W, C, out[2], out[3], int(mode == "linear"), ctm, nmode,
                      x.cs or C, y.cs or out[1]],
                     [sh, sw]))
    lw.bind(node, y)


_PAD_MODES = {"constant": 0, "reflect": 1, "edge": 2, "wrap": 3}


def pad_widths(node: Node) -> list[tuple[int, int]] | None:
    """(begin, end) per axis of a Pad node (negative: a crop), None when not constant."""
    x = node.input(0)
    assert x is not None
    rank = len(x.static_shape())
    pads = constant(node, 1) if node.input(1) is not None else \
        np.asarray(node.attrs.get("pads", [0] * 2 * rank))
    axes = constant(node, 3) if node.input(3) is not None else np.arange(rank)
    if pads is None or axes is None:
        return None
    n = len(axes)
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes.reshape(-1)):
        widths[int(a) % rank] = (int(pads[i]), int(pads[i + n]))
    return widths


def _pad_value(node: Node) -> float | None:
    if node.input(2) is None:
        return float(node.attrs.get("value", 0.0))
    v = constant(node, 2)
    if v is None:
        return None
    return float(v.reshape(-1)[0]) if v.size else 0.0


def _pad_ok(node: Node, arch: int, precision: str) -> Verdict:
    mode = node.attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        return Verdict.no(f"mode '{mode}' unsupported (constant, reflect, edge or wrap)")
    if pad_widths(node) is None:
        return Verdict.no("run-time pads or axes unsupported (they must be constants)")
    if mode == "constant" and _pad_value(node) is None:
        return Verdict.no("run-time constant_value unsupported (it must be a constant)")
    return Verdict.yes()


def conv_pad_fold(lw: Lowering, node: Node) -> Node | None:
    """The Conv this zero Pad folds into: its sole reader, padding only H and W, by no more
    than grows the convolution's own (begin) padding -- what TensorRT does with TF-style
    "same" padding. The kernels take any begin padding; the end is implied by the output
    size."""
    widths = pad_widths(node)
    t = node.outputs[0]
    if node.attrs.get("mode", "constant") != "constant" or _pad_value(node) != 0.0 \
            or widths is None or len(widths) != 4 or any(widths[0] + widths[1]) \
            or any(b < 0 or e < 0 for b, e in widths) or t in lw.graph.outputs \
            or len(t.consumers) != 1:
        return None
    conv = t.consumers[0]
    if conv.op != "Conv" or conv.input(0) is not t or list(conv.inputs).count(t) != 1 \
            or conv.name in lw.pad_fold:
        return None
    return conv


@register("Pad", supports=_pad_ok)
def lower_pad(lw: Lowering, node: Node) -> None:
    widths = pad_widths(node)
    assert widths is not None  # _pad_ok made sure
    conv = conv_pad_fold(lw, node)
    if conv is not None:  # no kernel: the convolution pads
        lw.pad_fold[conv.name] = (widths[2][0], widths[3][0])
        lw.values[node.outputs[0].name] = lw.value(node.input(0), node)
        return
    x = lw.ensure(lw.value(node.input(0), node), None, lw.dt, node.name, keep_strided=True)
    xs = x.strides()
    # a negative pad crops: a view of x, then only non-negative pads remain
    off = x.offset + sum(max(-b, 0) * s for (b, _), s in zip(widths, xs))
    xd = [d - max(-b, 0) - max(-e, 0) for d, (b, e) in zip(x.shape, widths)]
    out = lw.out_shape(node)
    nhwc = x.layout == "nhwc" and x.cs in (0, x.shape[1])
    y = lw.new_value(out, "nhwc" if nhwc else "plain")
    pad = [0] * (MAXR - len(out))
    ints = [len(out), _PAD_MODES[node.attrs.get("mode", "constant")], *out, *pad, *xd, *pad,
            *xs, *pad, *y.strides(), *pad, *(max(b, 0) for b, _ in widths), *pad]
    src = Value(x.buf, tuple(xd), "strided", x.dtype, off, x.cs, tuple(xs))
    lw.emit(Launch(node.name, f"pad_nd_{lw.dt}", grid1d(int(np.prod(out))), 256,
                   [lw.ref(src), lw.ref(y)], ints, [_pad_value(node) or 0.0]))
    lw.bind(node, y)


def _expand_ok(node: Node, arch: int, precision: str) -> Verdict:
    if isinstance(node.input(0), Constant):
        return Verdict.no("constant input not folded")
    return Verdict.yes()  # the output's static shape is all the lowering needs


@register("Expand", supports=_expand_ok)
def lower_expand(lw: Lowering, node: Node) -> None:
    """A broadcast view (stride 0 on the expanded axes), deferred: a reader in the fused
    chain reads it in place; anything else copies it once."""
    shape = lw.out_shape(node)
    x = lw.lazy(node.input(0), node)
    if isinstance(x, Lazy) and x.shape == shape:
        lw.values[node.outputs[0].name] = x
        return
    root = lw.leaf(lw.value(node.input(0), node), shape, node.name)
    lw.values[node.outputs[0].name] = Lazy(shape, root, "plain", lw.dt)


def _tile_ok(node: Node, arch: int, precision: str) -> Verdict:
    x = node.input(0)
    assert x is not None  # supports() made sure
    if isinstance(x, Constant):
        return Verdict.no("constant input not folded")
    if not node.outputs[0].is_static:
        return Verdict.yes()  # supports() refuses the output
    shape, out = x.static_shape(), node.outputs[0].static_shape()
    loops = sum(d > 1 for d in shape) + sum(o // d > 1 for d, o in zip(shape, out) if d)
    if loops > MAXR:
        return Verdict.no(f"tiling {shape} to {out} takes {loops} loops; the copy kernel "
                          f"runs at most {MAXR}")
    return Verdict.yes()


@register("Tile", supports=_tile_ok)
def lower_tile(lw: Lowering, node: Node) -> None:
    """One strided copy: x seen as (r0, d0, r1, d1, ...) with stride 0 over each repeat r,
    written densely."""
    x = lw.ensure(lw.value(node.input(0), node), None, lw.dt, node.name, keep_strided=True)
    out = lw.out_shape(node)
    y = lw.new_value(out, "plain")
    xs, ys = x.strides(), y.strides()
    shape: list[int] = []
    src: list[int] = []
    dst: list[int] = []
    for d, o, s, t in zip(x.shape, out, xs, ys):
        shape += [o // d, d]
        src += [0, s]
        dst += [d * t, t]
    lw.copy(x, y, node.name, shape, src, dst)
    lw.bind(node, y)


def _blocks_ok(node: Node, arch: int, precision: str) -> Verdict:
    x = node.input(0)
    assert x is not None  # supports() made sure
    if len(x.static_shape()) != 4:
        return Verdict.no("needs a 4-D input")
    if node.op == "DepthToSpace" and node.attrs.get("mode", "DCR") not in ("DCR", "CRD"):
        return Verdict.no(f"mode '{node.attrs.get('mode')}' unsupported (DCR or CRD)")
    return Verdict.yes()


@register("DepthToSpace", "SpaceToDepth", supports=_blocks_ok)
def lower_blocks(lw: Lowering, node: Node) -> None:
    """One strided copy over (N, C', H, b, W, b) (DepthToSpace) or (N, b, b, C, H, W)
    (SpaceToDepth); NHWC data stays NHWC."""
    x = lw.ensure(lw.value(node.input(0), node), None, lw.dt, node.name, keep_strided=True)
    out = lw.out_shape(node)
    b = int(node.attrs["blocksize"])
    y = lw.new_value(out, "nhwc" if x.layout == "nhwc" else "plain")
    (xn, xc, xh, xw), (yn, yc, yh, yw) = x.strides(), y.strides()
    if node.op == "DepthToSpace":
        c2 = out[1]
        # input channel of (c', i, j): DCR (i * b + j) * C' + c'; CRD c' * b * b + i * b + j
        ci, cj, cc = (b * c2 * xc, c2 * xc, xc) if node.attrs.get("mode", "DCR") == "DCR" \
            else (b * xc, xc, b * b * xc)
        shape = [out[0], c2, x.shape[2], b, x.shape[3], b]
        src = [xn, cc, xh, ci, xw, cj]
        dst = [yn, yc, b * yh, yh, b * yw, yw]
    else:
        c = x.shape[1]
        shape = [out[0], b, b, c, out[2], out[3]]
        src = [xn, xh, xw, xc, b * xh, b * xw]
        dst = [yn, b * c * yc, c * yc, yc, yh, yw]
    lw.copy(x, y, node.name, shape, src, dst)
    lw.bind(node, y)


def _grid_sample_ok(node: Node, arch: int, precision: str) -> Verdict:
    x, grid = node.input(0), node.input(1)
    assert x is not None and grid is not None  # supports() made sure
    if len(x.static_shape()) != 4 or len(grid.static_shape()) != 4:
        return Verdict.no("only 2-D sampling (4-D input and grid) runs on the GPU")
    mode = node.attrs.get("mode", "bilinear")
    if mode not in ("bilinear", "linear", "nearest"):
        return Verdict.no(f"mode '{mode}' unsupported (bilinear / linear or nearest)")
    padding = node.attrs.get("padding_mode", "zeros")
    if padding not in ("zeros", "border"):
        return Verdict.no(f"padding_mode '{padding}' unsupported (zeros or border)")
    return Verdict.yes()


@register("GridSample", supports=_grid_sample_ok, data=None)
def lower_grid_sample(lw: Lowering, node: Node) -> None:
    """One kernel; x read in place in any layout (NHWC stays NHWC), the grid any strides."""
    x = lw.ensure(lw.value(node.input(0), node), None, lw.dt, node.name, keep_strided=True)
    grid = lw.ensure(lw.value(node.input(1), node), None, lw.dt, node.name, keep_strided=True)
    out = lw.out_shape(node)
    y = lw.new_value(out, "nhwc" if x.layout == "nhwc" else "plain")
    N, C, H, W = x.shape
    ints = [N, C, H, W, out[2], out[3], *x.strides(), *grid.strides(), *y.strides(),
            int(node.attrs.get("mode", "bilinear") == "nearest"),
            int(node.attrs.get("padding_mode", "zeros") == "border"),
            int(node.attrs.get("align_corners", 0))]
    lw.emit(Launch(node.name, f"grid_sample_{lw.dt}", grid1d(y.size), 256,
                   [lw.ref(x), lw.ref(grid), lw.ref(y)], ints))
    lw.bind(node, y)
