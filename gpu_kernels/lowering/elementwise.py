"""Element-wise layers, deferred and fused: each extends a :class:`Lazy` chain instead of
emitting a kernel; chains of them, with the views between, become one ``fused`` kernel when a
reader needs the values in memory (YOLO's decode head: 3 kernels a scale instead of 11).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import (
    ACT,
    BINARY_OPS,
    COMPARE_OPS,
    FUSED_IN,
    FUSED_OPS,
    FUSED_PIECES,
    FUSED_V,
    IMM_LEFT,
    IMM_RIGHT,
    MAXR,
    SELECT,
    UNARY,
    UNARY_OPS,
    GpuLoweringError,
    Launch,
    Lazy,
    Leaf,
    Op,
    Value,
    grid1d,
)
from gpu_kernels.lowering.registry import bool_ok, constant, register, tensor_ok
from gpu_kernels.lowering.values import linearise, linearise_pieces, loop_dims
from partitioner.capability import Verdict
from partitioner.ir import Constant, Node, Tensor
from partitioner.passes.fusion import activation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


def _broadcast(lw: Lowering, e: Leaf | Op, shape: tuple[int, ...], layer: str) -> Leaf | Op:
    if isinstance(e, Leaf):
        return lw.leaf(e.value, shape, layer)
    return Op(e.code, tuple(_broadcast(lw, x, shape, layer) for x in e.args), e.imm)


def operand(lw: Lowering, t: Tensor | None, node: Node, shape: tuple[int, ...]
            ) -> Leaf | Op | float:
    """An element-wise layer's input broadcast to its output ``shape``: an immediate for a
    scalar constant, the producer's deferred chain, or a leaf reading memory."""
    if isinstance(t, Constant) and t.values.size == 1 and t.values.dtype.kind == "f":
        return float(t.values.reshape(-1)[0])
    v = lw.lazy(t, node)
    if isinstance(v, Lazy):
        return v.root if v.shape == shape else _broadcast(lw, v.root, shape, node.name)
    return lw.leaf(v, shape, node.name)


def _layout_of(lw: Lowering, node: Node, shape: tuple[int, ...]) -> str:
    """NHWC when a full-size input is NHWC (the chain then reads and writes in order)."""
    if len(shape) != 4:
        return "plain"
    for t in node.inputs:
        v = lw.values.get(t.name) if t is not None else None
        if v is not None and v.layout == "nhwc" and v.shape == shape:
            return "nhwc"
    return "plain"


def _apply(lw: Lowering, code: int, args: list[Leaf | Op | float], shape: tuple[int, ...],
           layer: str, imm: tuple[float, float] = (0.0, 0.0)) -> Leaf | Op:
    """One instruction over ``args``; a scalar becomes an immediate. Chains longer than the
    kernel takes are cut: the operands are computed into memory first."""
    if code >= UNARY or code == SELECT:  # operands that are all expressions
        assert not any(isinstance(a, float) for a in args), layer
        op = Op(code, tuple(a for a in args if not isinstance(a, float)), imm)
    else:
        x, y = args
        if isinstance(x, float) and isinstance(y, float):
            raise GpuLoweringError(f"layer '{layer}': constant expression not folded")
        if isinstance(y, float):
            assert not isinstance(x, float)
            op = Op(IMM_RIGHT + code, (x,), (y, 0.0))
        elif isinstance(x, float):
            op = Op(IMM_LEFT + code, (y,), (x, 0.0))
        else:
            op = Op(code, (x, y))
    leaves, ops = linearise(op)
    if len(leaves) > FUSED_IN or len(ops) > FUSED_OPS:
        cut = [a if isinstance(a, Leaf) else
               lw.leaf(lw.materialise(Lazy(shape, a, "plain", lw.dt), layer),
                          shape, layer) for a in op.args]
        op = Op(op.code, tuple(cut), op.imm)
    return op


def _define(lw: Lowering, node: Node, root: Leaf | Op, shape: tuple[int, ...]) -> None:
    lw.values[node.outputs[0].name] = Lazy(shape, root, _layout_of(lw, node, shape),
                                             lw.dt)


def _is_scalar(t: Tensor | None) -> bool:
    """A scalar float constant: it becomes an immediate operand of the fused kernel."""
    return isinstance(t, Constant) and t.values.size == 1 and t.values.dtype.kind == "f"


def _binary_ok(node: Node, arch: int, precision: str) -> Verdict:
    ins = [t for t in node.inputs if t is not None]
    if len(ins) >= 2 and _is_scalar(ins[0]) and _is_scalar(ins[1]):
        return Verdict.no("constant expression not folded")
    if node.op == "Mod" and not int(node.attrs.get("fmod", 0)):
        # the kernel is C's fmod (the dividend's sign); fmod=0 takes the divisor's sign, which
        # ONNX defines for floats only from opset 28: that one runs on the CPU reference
        return Verdict.no("float Mod with fmod=0 (the divisor's sign) has no GPU kernel; "
                          "fmod=1 runs on the GPU")
    return Verdict.yes()


@register("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mod", *COMPARE_OPS[:5],
          supports=_binary_ok, data=None)
def lower_binary(lw: Lowering, node: Node) -> None:
    """Arithmetic, float Mod with fmod=1 (C's fmod, as ONNX defines float Mod) and comparisons
    (their bool result is 0 / 1 in the compute precision: it feeds a Where, a logic op or a
    Cast)."""
    ins = [t for t in node.inputs if t is not None]
    if len(ins) == 1:  # a one-input Sum / Max / Min is its input
        lw.values[node.outputs[0].name] = lw.lazy(ins[0], node)
        return
    op = BINARY_OPS["Add" if node.op == "Sum" else node.op]
    shape = lw.out_shape(node)
    root = operand(lw, ins[0], node, shape)
    for t in ins[1:]:  # variadic Sum / Max / Min: a chain
        root = _apply(lw, op, [root, operand(lw, t, node, shape)], shape, node.name)
    assert not isinstance(root, float)
    _define(lw, node, root, shape)


def _logic_operand(lw: Lowering, t: Tensor | None, node: Node, shape: tuple[int, ...]
                   ) -> Leaf | Op | float:
    """A bool (or float) input as 0 / 1: a constant mask goes to the weight arena as floats."""
    if isinstance(t, Constant) and t.values.dtype.kind != "f":
        v = t.values.astype(np.float32)
        return float(v.reshape(-1)[0]) if v.size == 1 else \
            lw.leaf(lw.const_value(v, id(t)), shape, node.name)
    return operand(lw, t, node, shape)


def _logic_ok(node: Node, arch: int, precision: str) -> Verdict:
    """Conditions and logic inputs bool (or float); Where's x and y float (int Where is
    host-side shape math)."""
    where = node.op == "Where"
    for i, t in enumerate(node.inputs):
        verdict = tensor_ok(t, is_output=False) if where and i else bool_ok(t)
        if not verdict:
            return verdict
    if all(isinstance(t, Constant) for t in node.inputs):
        return Verdict.no("constant expression not folded")
    return Verdict.yes()


@register("And", "Or", "Not", "Where", supports=_logic_ok, data=())
def lower_logic(lw: Lowering, node: Node) -> None:
    """Logic on 0 / 1 values, and Where as a select in the fused chain (attention masks,
    Swin's shifted-window mask): x where the condition is non-zero, else y."""
    shape = lw.out_shape(node)
    args = [_logic_operand(lw, t, node, shape) for t in node.inputs]
    if node.op == "Not":
        root = _apply(lw, BINARY_OPS["Equal"], [args[0], 0.0], shape, node.name)
    elif node.op == "Where":
        if isinstance(args[0], float):  # a constant condition picks one side
            pick = node.input(1 if args[0] != 0 else 2)
            lw.values[node.outputs[0].name] = Lazy(shape, _as_expr(
                lw, operand(lw, pick, node, shape), shape, node.name), "plain", lw.dt)
            return
        ops = [_as_expr(lw, a, shape, node.name) for a in args]
        root = _apply(lw, SELECT, list(ops), shape, node.name)
    else:
        root = _apply(lw, BINARY_OPS[node.op], args, shape, node.name)
    _define(lw, node, root, shape)


def _isnan_ok(node: Node, arch: int, precision: str) -> Verdict:
    return tensor_ok(node.input(0), is_output=False)


@register("IsNaN", supports=_isnan_ok)
def lower_isnan(lw: Lowering, node: Node) -> None:
    """IsNaN as ``(x == x) == 0`` in the fused chain: NaN is the one value unequal to itself
    (transformers' SDPA guards its softmax with it). The 0 / 1 result stays in the segment."""
    shape = lw.out_shape(node)
    x = operand(lw, node.input(0), node, shape)
    same = _apply(lw, BINARY_OPS["Equal"], [x, x], shape, node.name)
    _define(lw, node, _apply(lw, BINARY_OPS["Equal"], [same, 0.0], shape, node.name), shape)


def define_nonzero(lw: Lowering, node: Node) -> None:
    """``node``'s output as ``x != 0`` in the fused chain, i.e. ``(x == 0) == 0``: a Cast of a
    float to bool, whose 0 / 1 result stays in the segment as every comparison's does."""
    shape = lw.out_shape(node)
    x = operand(lw, node.input(0), node, shape)
    zero = _apply(lw, BINARY_OPS["Equal"], [x, 0.0], shape, node.name)
    _define(lw, node, _apply(lw, BINARY_OPS["Equal"], [zero, 0.0], shape, node.name), shape)


def _as_expr(lw: Lowering, a: Leaf | Op | float, shape: tuple[int, ...], layer: str
             ) -> Leaf | Op:
    """An immediate as a broadcast constant leaf (a select takes registers only)."""
    if isinstance(a, float):
        return lw.leaf(lw.const_value(np.array(a, np.float32)), shape, layer)
    return a


def _unary_ok(node: Node, arch: int, precision: str) -> Verdict:
    if _is_scalar(node.input(0)):
        return Verdict.no("constant input not folded")
    if node.op == "Clip" and activation(node) is None:
        return Verdict.no("Clip with run-time min / max is not supported (constant bounds only)")
    if node.op == "Gelu" and activation(node) is None:
        return Verdict.no(f"approximate '{node.attrs.get('approximate')}' unsupported (none or "
                          "tanh)")
    return Verdict.yes()


@register(*UNARY_OPS, supports=_unary_ok)
def lower_unary(lw: Lowering, node: Node) -> None:
    act = activation(node)
    if act is None:
        a = node.attrs
        alpha, beta = {
            "Elu": (a.get("alpha", 1.0), 0.0), "Celu": (a.get("alpha", 1.0), 0.0),
            "ThresholdedRelu": (a.get("alpha", 1.0), 0.0),
            "Selu": (a.get("alpha", 1.67326319217681884765625),
                     a.get("gamma", 1.05070102214050292968750)),
        }.get(node.op, (0.0, 0.0))
        act = (UNARY_OPS[node.op], float(alpha), float(beta))
    shape = lw.out_shape(node)
    x = operand(lw, node.input(0), node, shape)
    assert not isinstance(x, float)  # _unary_ok made sure
    _define(lw, node, _apply(lw, UNARY + ACT[act[0]], [x], shape, node.name,
                                   (act[1], act[2])), shape)


def _batchnorm_ok(node: Node, arch: int, precision: str) -> Verdict:
    if int(node.attrs.get("training_mode", 0)) or len(node.outputs) > 1:
        return Verdict.no("training mode (training_mode=1: batch statistics, running mean / "
                          "var) unsupported")
    if any(constant(node, i) is None for i in range(1, 5)):
        return Verdict.no("needs constant scale, bias, mean and var")
    return Verdict.yes()


@register("BatchNormalization", supports=_batchnorm_ok)
def lower_batchnorm(lw: Lowering, node: Node) -> None:
    """Inference BatchNormalization (when not folded into a convolution): x * s + b."""
    scale, b, mean, var = (constant(node, i) for i in range(1, 5))
    assert scale is not None and b is not None and mean is not None and var is not None
    eps = float(node.attrs.get("epsilon", 1e-5))
    s = scale / np.sqrt(var + eps)
    shape = lw.out_shape(node)
    per_channel = (-1,) + (1,) * (len(shape) - 2)
    x = operand(lw, node.input(0), node, shape)
    root = _apply(lw, BINARY_OPS["Mul"], [x, lw.leaf(
        lw.const_value(s.reshape(per_channel)), shape, node.name)], shape, node.name)
    root = _apply(lw, BINARY_OPS["Add"], [root, lw.leaf(
        lw.const_value((b - mean * s).reshape(per_channel)), shape, node.name)], shape,
        node.name)
    _define(lw, node, root, shape)

# ----- pooling -------------------------------------------------------------------------


def _prelu_ok(node: Node, arch: int, precision: str) -> Verdict:
    if _is_scalar(node.input(0)):
        return Verdict.no("constant input not folded")
    return Verdict.yes()


@register("PRelu", supports=_prelu_ok, data=None)
def lower_prelu(lw: Lowering, node: Node) -> None:
    """max(x, 0) + slope * min(x, 0): exact, and four instructions of the fused chain (the
    slope a per-channel leaf or an immediate)."""
    shape = lw.out_shape(node)
    x = operand(lw, node.input(0), node, shape)
    slope = operand(lw, node.input(1), node, shape)
    pos = _apply(lw, BINARY_OPS["Max"], [x, 0.0], shape, node.name)
    neg = _apply(lw, BINARY_OPS["Min"], [x, 0.0], shape, node.name)
    neg = _apply(lw, BINARY_OPS["Mul"], [neg, slope], shape, node.name)
    _define(lw, node, _apply(lw, BINARY_OPS["Add"], [pos, neg], shape, node.name), shape)


@register("Mean", supports=_binary_ok, data=None)
def lower_mean(lw: Lowering, node: Node) -> None:
    """The element-wise average of its inputs: a Sum chain times 1 / n."""
    ins = [t for t in node.inputs if t is not None]
    shape = lw.out_shape(node)
    root = operand(lw, ins[0], node, shape)
    for t in ins[1:]:
        root = _apply(lw, BINARY_OPS["Add"], [root, operand(lw, t, node, shape)], shape,
                      node.name)
    if len(ins) > 1:
        root = _apply(lw, BINARY_OPS["Mul"], [root, 1.0 / len(ins)], shape, node.name)
    assert not isinstance(root, float)  # _binary_ok made sure
    _define(lw, node, root, shape)


# ----- a Concat of chains as one kernel ----------------------------------------------------------


def _widen(e: Leaf | Op, start: int, axis: int, shape: tuple[int, ...]) -> Leaf | Op:
    """An input's expression over the whole Concat ``shape``: each leaf indexed by the Concat's
    coordinate (its offset moved back by ``start`` along ``axis``; possibly before its buffer,
    a key only: :func:`emit_concat` passes a pointer inside it and a shift)."""
    if isinstance(e, Leaf):
        v = e.value
        st = v.strides()
        return Leaf(Value(v.buf, shape, "strided", v.dtype, v.offset - start * st[axis], v.cs,
                          tuple(st)))
    return Op(e.code, tuple(_widen(a, start, axis, shape) for a in e.args), e.imm)


def emit_concat(lw: Lowering, ins: list[Value | Lazy], axis: int, y: Value, ys: list[int],
                layer: str) -> bool:
    """A Concat of element-wise chains (and views) along ``axis`` as one ``fused`` kernel with
    a piece per input: each element runs its own input's instructions. YOLO's xy / wh / conf
    become one pass writing whole rows, instead of a kernel per input each writing a few
    columns; the sigmoid's input, read by all three, is one register. False (nothing emitted)
    when there is no deferred chain among two or more inputs, or the pieces do not fit one
    kernel: then each input is written on its own."""
    parts, start = [], 0
    for v in ins:
        if v.shape[axis]:
            parts.append((start, v))
        start += v.shape[axis]
    if y.dtype not in ("f16", "f32") or not 2 <= len(parts) <= FUSED_PIECES \
            or not any(isinstance(v, Lazy) for _, v in parts):
        return False
    roots = [_widen(v.root if isinstance(v, Lazy) else lw.leaf(v, v.shape, layer), s0, axis,
                    y.shape) for s0, v in parts]
    leaves, ops, results, used, op_ends = linearise_pieces(roots)
    if len(leaves) > FUSED_IN or len(ops) > FUSED_OPS:
        return False
    ends = [s0 + v.shape[axis] for s0, v in parts]
    refs, ltab = [], []
    for j, leaf in enumerate(leaves):
        mine = [k for k in range(len(parts)) if j in used[k]]
        step = leaf.strides()[axis]
        # the pointer: the leaf's first element read, inside its buffer (the key may not be)
        low = min(min(parts[k][0] * step, (ends[k] - 1) * step) for k in mine)
        refs.append(lw.ref(Value(leaf.buf, leaf.shape, "strided", leaf.dtype,
                                 leaf.offset + low, leaf.cs, leaf.custom)))
        ltab += [-low, sum(1 << k for k in mine)]
    coord = [int(a == axis) for a in range(len(y.shape))]
    dims, strides = loop_dims(list(y.shape), [ys, coord] + [lf.strides() for lf in leaves],
                              layer)
    pad = [0] * (MAXR - len(dims))
    desc = dims + pad + strides[0] + pad + [x for st in strides[2:] for x in st + pad]
    desc += strides[1] + pad + [x for o in ops for x in o]
    desc += [x for k in range(len(parts)) for x in (ends[k], op_ends[k], results[k])] + ltab
    n = int(np.prod(dims))
    kernel = f"fused_{lw.dt}" if y.dtype == lw.dt else f"fused_{lw.dt}_{y.dtype}"
    lw.emit(Launch(layer, kernel, grid1d((n + FUSED_V - 1) // FUSED_V), 256,
                   [lw.weight(np.asarray(desc, np.int32)), lw.ref(y), *refs],
                   [len(dims), len(leaves), len(ops), len(parts)]))
    return True
