"""Reductions over any set of axes (ReduceMean / Sum / Max / Min / Prod / L1 / L2 / SumSquare /
LogSum / LogSumExp) and Softmax / LogSoftmax over any axis, as kernels of ``reduce.cu``.

One general strided reduction rather than special cases: the input's axes split into kept and
reduced ones, neighbours merged where memory allows, and the kernel reads the input in place
whatever its layout (NHWC, a transposed or sliced view). A mean over H, W that keeps its dims
on NHWC data stays the global average pool (its own kernel, 8 channels a thread). Either
pool, as the squeeze of a squeeze-and-excitation block, starts that block's kernels (:mod:`.se`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.norms import lower_global_avgpool, lower_global_maxpool, scaled
from gpu_kernels.lowering.program import MAXR, Launch, Value, grid1d
from gpu_kernels.lowering.registry import constant, register
from gpu_kernels.lowering.se import lower_squeeze_excitation
from gpu_kernels.lowering.values import is_dense, loop_dims
from partitioner.capability import Verdict
from partitioner.ir import Node

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

# as reduce.cu's R_* codes
REDUCE_OPS = {"ReduceSum": 0, "ReduceMean": 0, "ReduceMax": 1, "ReduceMin": 2, "ReduceProd": 3,
              "ReduceL1": 4, "ReduceL2": 5, "ReduceSumSquare": 6, "ReduceLogSum": 7,
              "ReduceLogSumExp": 8}


def reduce_axes(node: Node) -> tuple[int, ...] | None:
    """The reduced axes of a Reduce* node (sorted, non-negative; ``()`` for
    noop_with_empty_axes), or None when they are not known before run time."""
    x = node.input(0)
    assert x is not None
    rank = len(x.static_shape())
    if node.input(1) is not None:
        axes = constant(node, 1)
        if axes is None:
            return None
        listed = [int(a) for a in axes.reshape(-1)]
    else:
        listed = [int(a) for a in node.attrs.get("axes", [])]
    if not listed:
        return () if int(node.attrs.get("noop_with_empty_axes", 0)) else tuple(range(rank))
    return tuple(sorted({a % rank for a in listed}))


def _reduce_ok(node: Node, arch: int, precision: str) -> Verdict:
    if reduce_axes(node) is None:
        return Verdict.no("run-time axes unsupported (the axes input must be a constant)")
    return Verdict.yes()


def _merge(dims: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """(size, stride) loops, outermost first: size-1 ones dropped, a loop merged into the one
    outside it where the outer stride is the inner's times its size."""
    out: list[tuple[int, int]] = []
    for n, s in dims:
        if n == 1:
            continue
        if out and out[-1][1] == s * n:
            out[-1] = (out[-1][0] * n, s)
        else:
            out.append((n, s))
    return [d for d, _ in out], [s for _, s in out]


def _global_pool_ok(node: Node, arch: int, precision: str) -> Verdict:
    x = node.input(0)
    rank = len(x.static_shape()) if x is not None else 0
    if rank < 3:
        return Verdict.no(f"needs an (N, C, ...) input, got rank {rank}")
    return Verdict.yes()


@register("GlobalAveragePool", "GlobalMaxPool", supports=_global_pool_ok)
def lower_global_pool(lw: Lowering, node: Node) -> None:
    """2-D pooling of 4-D input: the pool kernels; any other rank (Swin's (N, C, L) tokens):
    the general reduction over every axis after the channels, keeping them as ONNX does."""
    x = node.input(0)
    assert x is not None
    rank = len(x.static_shape())
    if node.op == "GlobalAveragePool" and lower_squeeze_excitation(lw, node):
        return
    if rank == 4:
        pool = lower_global_avgpool if node.op == "GlobalAveragePool" else lower_global_maxpool
        pool(lw, node)
        return
    op = "ReduceMean" if node.op == "GlobalAveragePool" else "ReduceMax"
    _reduce(lw, node, op, tuple(range(2, rank)), keep=1)


@register(*REDUCE_OPS, supports=_reduce_ok)
def lower_reduce(lw: Lowering, node: Node) -> None:
    axes = reduce_axes(node)
    assert axes is not None  # _reduce_ok made sure
    if node.op == "ReduceMean" and lower_squeeze_excitation(lw, node):
        return
    _reduce(lw, node, node.op, axes, int(node.attrs.get("keepdims", 1)))


def _reduce(lw: Lowering, node: Node, op: str, axes: tuple[int, ...], keep: int) -> None:
    x = lw.value(node.input(0), node)
    if op == "ReduceMean" and axes == (2, 3) and x.layout == "nhwc":
        lower_global_avgpool(lw, node)  # the SE block's squeeze: its own kernel
        if not keep:  # (N, C, 1, 1) NHWC is (N, C) row-major
            v = lw.values[node.outputs[0].name]
            assert isinstance(v, Value)
            lw.bind(node, Value(v.buf, lw.out_shape(node), "plain", v.dtype, v.offset))
        return
    x = lw.ensure(x, None, lw.dt, node.name, keep_strided=True)  # any strides, compute dtype
    xs = x.strides()
    kept = [(d, s) for a, (d, s) in enumerate(zip(x.shape, xs)) if a not in axes]
    # the reduced loops in memory order (the order of a sum does not matter; locality does)
    red = sorted(((d, s) for a, (d, s) in enumerate(zip(x.shape, xs)) if a in axes),
                 key=lambda ds: -ds[1])
    kd, ks = _merge(kept)
    rd, rs = _merge(red)
    nk, nr = int(np.prod(kd)), int(np.prod(rd))
    # a block per output where the reduced elements are the nearer ones in memory
    per_block = bool(rd) and (not ks or min(rs) < min(ks)) and nr >= 32
    pad_k, pad_r = [0] * (MAXR - len(kd)), [0] * (MAXR - len(rd))
    ints = [REDUCE_OPS[op], int(per_block), len(kd), *kd, *pad_k, *ks, *pad_k,
            len(rd), *rd, *pad_r, *rs, *pad_r]
    scale = 1.0 / max(nr, 1) if op == "ReduceMean" and axes else 1.0
    y = lw.new_value(lw.out_shape(node), "plain")
    if per_block:
        block = min(256, (nr + 31) // 32 * 32)
        grid = (max(1, min(nk, 65535 * 8)), 1, 1)
    else:
        block, grid = 256, grid1d(nk)
    lw.emit(Launch(node.name, f"reduce_axes_{lw.dt}", grid, block, [lw.ref(x), lw.ref(y)],
                   ints, [scale]))
    lw.bind(node, y)


def _softmax_ok(node: Node, arch: int, precision: str) -> Verdict:
    return Verdict.yes()  # any axis (the importer rewrote opset < 13's coerced-2D form)


@register("Softmax", "LogSoftmax", supports=_softmax_ok)
def lower_softmax(lw: Lowering, node: Node) -> None:
    """softmax(s * x) along one axis; s: a constant factor of a deferred Mul / Div before it
    (attention's 1 / sqrt(d)), folded in rather than run as a kernel."""
    x, s = scaled(lw, node.input(0), node)
    x = lw.ensure(x, None, lw.dt, node.name, keep_strided=True)
    rank = len(x.shape)
    axis = int(node.attrs.get("axis", -1)) % rank
    log = int(node.op == "LogSoftmax")
    L = x.shape[axis]
    xs = x.strides()
    if all(d == 1 for d in x.shape[axis + 1:]) and x.layout != "nhwc" and is_dense(x):
        rows = x.size // L
        y = lw.new_value(x.shape, "plain")
        lw.emit(Launch(node.name, f"softmax_lastdim_{lw.dt}", (rows, 1, 1), 256,
                       [lw.ref(x), lw.ref(y)], [rows, L, log], [s]))
        lw.bind(node, y)
        return
    # any other axis: a thread per row; NHWC data stays NHWC
    nhwc = x.layout == "nhwc" and x.cs in (0, x.shape[1])
    y = lw.new_value(x.shape, "nhwc" if nhwc else "plain")
    ys = y.strides()
    others = [a for a in range(rank) if a != axis]
    kd, (kys, kxs) = loop_dims([x.shape[a] for a in others],
                               [[ys[a] for a in others], [xs[a] for a in others]], node.name)
    pad = [0] * (5 - len(kd))
    ints = [len(kd), *kd, *pad, *kxs, *pad, *kys, *pad, L, xs[axis], ys[axis], log]
    lw.emit(Launch(node.name, f"softmax_axis_{lw.dt}", grid1d(max(1, int(np.prod(kd)))), 256,
                   [lw.ref(x), lw.ref(y)], ints, [s]))
    lw.bind(node, y)

