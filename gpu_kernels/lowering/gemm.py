"""Matrix products: Gemm and MatMul with constant weights as one GEMM (the tensor-core
convolution kernel over 1x1 pixels) with bias Add + activation (incl. erf-GELU) + residual Add in
its epilogue; MatMul of two run-time operands (attention) as one batched ``bmm`` that reads and
writes the head split / K^T / head merge views in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.conv import conv_launch
from gpu_kernels.lowering.norms import scaled
from gpu_kernels.lowering.program import GpuLoweringError, Launch, Value
from gpu_kernels.lowering.registry import constant, register, tensor_ok
from gpu_kernels.tactics import ConvProblem
from partitioner.capability import Verdict
from partitioner.ir import Node
from partitioner.passes.fusion import sole_reader

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


def _gemm_const(lw: Lowering, node: Node, a: Value, wkn: np.ndarray, bias: np.ndarray | None,
                out_shape: tuple[int, ...]) -> None:
    """A (.., K) @ W (K, N) + bias as a 1x1 convolution over M = prod(leading) pixels."""
    Kd, Nd = wkn.shape
    a = lw.ensure(a, "plain", lw.dt, node.name)
    M = a.size // Kd
    ep = lw.fuse_epilogue(node, out_shape)
    act, t, res_after = ep.act, ep.out, ep.res_after
    if ep.bias is not None:  # a following bias Add (MatMul + Add as exported)
        extra = ep.bias.values.reshape(-1).astype(np.float32)
        bias = extra if bias is None else bias + extra
    res = None
    if ep.residual is not None:
        rv = lw.ensure(lw.value(ep.residual, node), "plain", lw.dt, node.name)
        res = Value(rv.buf, (M, Nd, 1, 1), "nhwc", rv.dtype, rv.offset)
    x4 = Value(a.buf, (M, Kd, 1, 1), "nhwc", a.dtype, a.offset)
    y = lw.new_value(out_shape, "plain")
    y4 = Value(y.buf, (M, Nd, 1, 1), "nhwc", y.dtype, y.offset)
    p = ConvProblem(M, 1, 1, Kd, Nd, 1, 1, 1, 1,
                    dtype="float16" if lw.dt == "f16" else "float32")
    wref = lw.weight(wkn.T, lw.dt)
    bref = lw.weight(np.ascontiguousarray(bias, np.float32)) if bias is not None else None
    conv_launch(lw, node.name, p, x4, wref, bref, res, y4, act, res_after)
    lw.values[t.name] = y


def _gemm_ok(node: Node, arch: int, precision: str) -> Verdict:
    bw, c = constant(node, 1), constant(node, 2)
    if bw is None or bw.ndim != 2:
        return Verdict.no("B must be a 2-D constant")
    if node.input(2) is not None and c is None:
        return Verdict.no("C must be a constant")
    n = bw.shape[0] if int(node.attrs.get("transB", 0)) else bw.shape[1]
    if c is not None and (c.size not in (1, n) or (c.ndim == 2 and c.shape[0] != 1)):
        return Verdict.no("C must broadcast per column")
    return Verdict.yes()


@register("Gemm", supports=_gemm_ok)
def lower_gemm(lw: Lowering, node: Node) -> None:
    a = lw.value(node.input(0), node)
    bw = constant(node, 1)
    assert bw is not None  # _gemm_ok made sure
    alpha = float(node.attrs.get("alpha", 1.0))
    beta = float(node.attrs.get("beta", 1.0))
    if int(node.attrs.get("transA", 0)):
        a = lw.ensure(a, "plain", lw.dt, node.name)
        at = lw.new_value((a.shape[1], a.shape[0]), "plain")
        lw.copy(a, at, node.name, [a.shape[1], a.shape[0]], a.strides()[::-1])
        a = at
    wkn = bw.T if int(node.attrs.get("transB", 0)) else bw
    c = constant(node, 2)
    Nd = wkn.shape[1]
    bias = None
    if c is not None:
        bias = np.broadcast_to(beta * c.reshape(-1).astype(np.float32), (Nd,))
    wkn = np.asarray(wkn, np.float32)  # no copy when it is FP32 already (hundreds of MB)
    _gemm_const(lw, node, a, wkn if alpha == 1.0 else alpha * wkn, bias, lw.out_shape(node))


def _matmul_ok(node: Node, arch: int, precision: str) -> Verdict:
    bw = constant(node, 1)
    if bw is not None and bw.ndim == 2:
        return Verdict.yes()  # a GEMM with constant weights
    b = node.input(1)
    verdict = tensor_ok(b, is_output=False)
    if not verdict:
        return verdict
    assert b is not None
    a_shape, b_shape = node.inputs[0].static_shape(), b.static_shape()  # type: ignore[union-attr]
    if len(a_shape) < 2 or len(b_shape) < 2:
        return Verdict.no("1-D operands not supported")
    if not node.outputs[0].is_static:
        return Verdict.yes()  # supports() refuses the output
    bshape = node.outputs[0].static_shape()[:-2]
    for shape in (a_shape, b_shape):
        if any(d not in (1, o) for d, o in zip(shape[-3::-1], bshape[::-1])):
            return Verdict.no(f"batch broadcasting of {a_shape} x {b_shape} is not supported")
    return Verdict.yes()


@register("MatMul", supports=_matmul_ok)
def lower_matmul(lw: Lowering, node: Node) -> None:
    bw = constant(node, 1)
    if bw is not None and bw.ndim == 2:
        a = lw.value(node.input(0), node)
        _gemm_const(lw, node, a, np.asarray(bw, np.float32), None, lw.out_shape(node))
        return
    # attention's 1/sqrt(d), as torchvision's MultiheadAttention export applies it (sqrt of it
    # on Q and on K^T, each a deferred Mul by a constant): the kernel's alpha, not two copies
    a, fa = scaled(lw, node.input(0), node)
    b, fb = scaled(lw, node.input(1), node)
    out_shape = lw.out_shape(node)
    lw.bind(node, batched_product(lw, node, a, b, out_shape, _bmm_output(lw, node, out_shape),
                                  fa * fb))


def batched_product(lw: Lowering, node: Node, a: Value, b: Value, out_shape: tuple[int, ...],
                    y: Value, alpha: float = 1.0) -> Value:
    """alpha x a @ b over the batch axes of ``out_shape`` into ``y`` (or, where ``y`` is a view
    the kernel cannot write, a new contiguous value), as one ``bmm`` launch; returns the
    result."""
    M, Kd = a.shape[-2:]
    Nd = b.shape[-1]
    bshape = out_shape[:-2]
    # in place where the views allow (attention's head split, K^T, head merge); else the
    # operands, then the result too, are made contiguous, which always fits
    for attempt in range(3):
        va = lw.ensure(a, "plain", lw.dt, node.name) if attempt else a
        vb = lw.ensure(b, "plain", lw.dt, node.name) if attempt else b
        if attempt == 2 and y.layout == "strided":
            y = lw.new_value(out_shape, "plain")
        views = [_matrix_view(lw, v, len(bshape)) for v in (va, vb, y)]
        if any(vw is None for vw in views):
            continue
        groups = _batch_groups(bshape, [vw[0] for vw in views if vw is not None])
        if len(groups) <= 2:
            break
    else:  # unreachable: contiguous operands merge into one batch group
        raise GpuLoweringError(f"layer '{node.name}' (MatMul): operands of shapes {a.shape}"
                               f" x {b.shape} cannot be laid out for the batched GEMM")
    (_, lda, at), (_, ldb, bt), (_, ldc, _) = views  # type: ignore[misc]
    outer = groups[0][1] if len(groups) == 2 else [0, 0, 0]
    inner_n, inner = groups[-1] if groups else (1, [0, 0, 0])
    batch = int(np.prod(bshape, dtype=np.int64))
    ints = [batch, M, Nd, Kd, lda, ldb, ldc, *outer, 0, at, bt, inner_n, *inner]
    lw.emit(Launch(node.name, f"bmm_{lw.dt}",
                     ((Nd + 31) // 32, (M + 31) // 32, batch), 256,
                     [lw.ref(va), lw.ref(vb), None, lw.ref(y)], ints, [0.0, 0.0, alpha]))
    return y


def _bmm_output(lw: Lowering, node: Node, shape: tuple[int, ...]) -> Value:
    """Where a batched product goes: when its only reader is a Transpose that keeps the
    last axis (attention's head merge), straight into the transposed layout, so that the
    Transpose and the Reshape after it are views instead of a copy."""
    reader = sole_reader(lw.graph, node.outputs[0])
    perm = list(reader.attrs.get("perm", [])) if reader is not None \
        and reader.op == "Transpose" else []
    if len(perm) != len(shape) or perm[-1] != len(shape) - 1:
        return lw.new_value(shape, "plain")
    final = lw.new_value(tuple(shape[p] for p in perm), "plain")
    strides = [0] * len(shape)
    for i, p in enumerate(perm):
        strides[p] = final.strides()[i]
    return Value(final.buf, shape, "strided", final.dtype, final.offset,
                 custom=tuple(strides))


def _matrix_view(lw: Lowering, v: Value, nbatch: int) -> tuple[list[int], int, int] | None:
    """How ``bmm`` reads (or writes) ``v`` in place: its strides over the product's
    ``nbatch`` batch axes (0 where broadcast), its leading dimension and whether it is
    transposed; None when neither matrix axis is contiguous."""
    if v.dtype != lw.dt or v.layout == "nhwc":
        return None
    st, shape = v.strides(), v.shape
    batch = [0] * (nbatch - len(shape) + 2) + [
        s if d != 1 else 0 for d, s in zip(shape[:-2], st[:-2])]
    rows, cols = st[-2], st[-1]
    if cols == 1 or shape[-1] == 1:
        return batch, rows, 0
    if rows == 1 or shape[-2] == 1:
        return batch, cols, 1
    return None


def _batch_groups(shape: tuple[int, ...], strides: list[list[int]]
                  ) -> list[tuple[int, list[int]]]:
    """The batch axes of a batched product merged where every operand's strides allow:
    (count, stride per operand) per group, outermost first (``bmm`` takes two groups)."""
    groups: list[tuple[int, list[int]]] = []
    for i, d in enumerate(shape):
        if d == 1:
            continue
        ss = [st[i] for st in strides]
        if groups and all(g == s * d for g, s in zip(groups[-1][1], ss)):
            groups[-1] = (groups[-1][0] * d, ss)
        else:
            groups.append((d, ss))
    return groups

