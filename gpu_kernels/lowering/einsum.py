"""Einsum where it is a batched matrix product (MaxViT's attention: ``bghid,bghjd->bghij``):
the operands are read through views ordered (batch, m, k) and (batch, k, n), one ``bmm``
launch computes (batch, m, n), and the output is a view of that in the equation's order.

Taken: two operands; every index is a batch index (both operands and the output), an m index
(first operand and output), an n index (second operand and output) or a contracted k index
(both operands, not the output), at most one each of m, n and k. Refused with the reason: an
ellipsis, a repeated index (a diagonal), an index summed over one operand only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpu_kernels.lowering.gemm import batched_product
from gpu_kernels.lowering.program import Value
from gpu_kernels.lowering.registry import register, tensor_ok
from partitioner.capability import Verdict
from partitioner.ir import Node

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


def parse(equation: str | bytes) -> tuple[list[str], str]:
    """(the operands' index strings, the output's); implicit outputs as ONNX defines them."""
    eq = equation.decode() if isinstance(equation, bytes) else str(equation)
    eq = eq.replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    ins = lhs.split(",")
    if not arrow:  # implicit: the indices seen once, in alphabetical order
        seen = "".join(ins)
        out = "".join(sorted(c for c in set(seen) if seen.count(c) == 1))
    return ins, out


def _plan(node: Node) -> tuple[list[str], str, str] | str:
    """(operand indices, output indices, batch indices), or why the equation is refused."""
    ins, out = parse(node.attrs.get("equation", ""))
    if len(ins) != 2 or len(node.inputs) != 2:
        return "only two-operand products run on the GPU"
    if "." in "".join(ins) + out:
        return "ellipsis ('...') unsupported"
    a, b = ins
    if any(len(set(s)) != len(s) for s in (a, b, out)):
        return "a repeated index (a diagonal) is unsupported"
    if any(c not in a + b for c in out):
        return f"output index not in any operand ({out})"
    if any(c not in b and c not in out for c in a) or any(c not in a and c not in out for c in b):
        return "an index summed over one operand only is unsupported"
    ms = [c for c in a if c not in b]
    ns = [c for c in b if c not in a]
    ks = [c for c in a if c in b and c not in out]
    if len(ms) > 1 or len(ns) > 1 or len(ks) > 1:
        return "more than one m, n or contracted index (not one batched matrix product)"
    batch = "".join(c for c in out if c in a and c in b)
    return ins, out, batch


def _einsum_ok(node: Node, arch: int, precision: str) -> Verdict:
    plan = _plan(node)
    if isinstance(plan, str):
        return Verdict.no(f"equation '{node.attrs.get('equation')}': {plan}")
    return tensor_ok(node.input(1), is_output=False)


def _view(v: Value, idx: list[str], order: list[str | None]) -> Value:
    """``v`` (axes named by ``idx``) seen with axes ``order``; None: a size-1 axis."""
    st = v.strides()
    shape = tuple(v.shape[idx.index(c)] if c is not None and c in idx else 1 for c in order)
    strides = tuple(st[idx.index(c)] if c is not None and c in idx else 0 for c in order)
    return Value(v.buf, shape, "strided", v.dtype, v.offset, v.cs, strides)


@register("Einsum", supports=_einsum_ok, data=None)
def lower_einsum(lw: Lowering, node: Node) -> None:
    plan = _plan(node)
    assert not isinstance(plan, str)  # _einsum_ok made sure
    (a_idx, b_idx), out, batch = plan
    m = next((c for c in a_idx if c not in b_idx), None)
    n = next((c for c in b_idx if c not in a_idx), None)
    k = next((c for c in a_idx if c in b_idx and c not in out), None)
    a = lw.ensure(lw.value(node.input(0), node), None, lw.dt, node.name, keep_strided=True)
    b = lw.ensure(lw.value(node.input(1), node), None, lw.dt, node.name, keep_strided=True)
    if a.layout == "nhwc" or b.layout == "nhwc":  # views name logical axes: plain first
        a, b = (lw.ensure(v, "plain", lw.dt, node.name) for v in (a, b))
    final = lw.out_shape(node)
    size = {c: final[out.index(c)] for c in out}
    bshape = tuple(size[c] for c in batch)
    shape = (*bshape, size[m] if m else 1, size[n] if n else 1)
    va = _view(a, list(a_idx), [*batch, m, k])
    vb = _view(b, list(b_idx), [*batch, k, n])
    y = batched_product(lw, node, va, vb, shape, lw.new_value(shape, "plain"))
    # the output: a view of (batch, m, n) in the equation's order (absent m / n: size 1)
    lw.bind(node, _view(y, [*batch, m or "<m>", n or "<n>"], list(out)))
