"""Epilogue matching: which layers after a convolution or a GEMM fuse into its epilogue.

An activation (incl. x * sigmoid(x) = SiLU and PyTorch's erf-GELU), then a residual Add, then
an activation after the Add. Pure functions of the graph (and, for the residual, of the values
already lowered), so the INT8 decisions can ask them before anything is emitted.
"""

from __future__ import annotations

from gpu_kernels.lowering.program import Lazy, Value
from partitioner.ir import Constant, Graph, Node, Tensor

Activation = tuple[str, float, float]  # (kind, alpha, beta), kinds as program.ACT


def sole_reader(graph: Graph, t: Tensor) -> Node | None:
    if t in graph.outputs or len(t.consumers) != 1:
        return None
    return t.consumers[0]


def activation(node: Node) -> Activation | None:
    """(kind, alpha, beta) when ``node`` is a fusible activation."""
    op = node.op
    if op == "Relu":
        return "relu", 0.0, 0.0
    if op == "LeakyRelu":
        return "leaky", float(node.attrs.get("alpha", 0.01)), 0.0
    if op == "Sigmoid":
        return "sigmoid", 0.0, 0.0
    if op == "Tanh":
        return "tanh", 0.0, 0.0
    if op == "HardSwish":
        return "hardswish", 0.0, 0.0
    if op == "HardSigmoid":
        return "hardsigmoid", float(node.attrs.get("alpha", 0.2)), \
            float(node.attrs.get("beta", 0.5))
    if op == "Gelu":  # opset 20: the erf form, or its tanh approximation
        approximate = node.attrs.get("approximate", "none")
        if approximate in ("none", "tanh"):
            return ("gelu_tanh" if approximate == "tanh" else "gelu"), 0.0, 0.0
        return None
    if op == "Clip":
        lo, hi = node.input(1), node.input(2)
        if (lo is not None and not isinstance(lo, Constant)) or (
                hi is not None and not isinstance(hi, Constant)):
            return None
        lo_v = float(lo.values.reshape(-1)[0]) if isinstance(lo, Constant) else -3.0e38
        hi_v = float(hi.values.reshape(-1)[0]) if isinstance(hi, Constant) else 3.0e38
        return "clip", lo_v, hi_v
    return None


def const_is(t: Tensor | None, value: float) -> bool:
    return isinstance(t, Constant) and t.values.size == 1 and \
        abs(float(t.values.reshape(-1)[0]) - value) < 1e-4 * max(1.0, abs(value))


def match_gelu(graph: Graph, t: Tensor) -> tuple[list[Node], Tensor] | None:
    """x * 0.5 * (1 + erf(x / sqrt(2))) as exported from PyTorch (two orders)."""
    readers = t.consumers
    if len(readers) != 2:
        return None
    div = next((n for n in readers if n.op == "Div" and n.inputs[0] is t
                and const_is(n.input(1), 2 ** 0.5)), None)
    other = next((n for n in readers if n is not div), None)
    if div is None or other is None or other.op != "Mul":
        return None
    erf = sole_reader(graph, div.outputs[0])
    add = sole_reader(graph, erf.outputs[0]) if erf is not None and erf.op == "Erf" else None
    if add is None or add.op != "Add" or not any(const_is(x, 1.0) for x in add.inputs):
        return None
    final = sole_reader(graph, add.outputs[0])
    if final is None or final.op != "Mul":
        return None
    half_const = any(const_is(x, 0.5) for x in other.inputs)
    if half_const and sole_reader(graph, other.outputs[0]) is final and \
            {id(x) for x in final.inputs} == {id(other.outputs[0]), id(add.outputs[0])}:
        return [div, erf, add, other, final], final.outputs[0]  # (x * 0.5) * (1 + erf)
    if other is final:  # x * (1 + erf), then * 0.5
        last = sole_reader(graph, final.outputs[0])
        if last is not None and last.op == "Mul" and \
                any(const_is(x, 0.5) for x in last.inputs):
            return [div, erf, add, final, last], last.outputs[0]
    return None


def match_act(graph: Graph, t: Tensor) -> tuple[list[Node], Activation, Tensor] | None:
    """The activation reading ``t`` that fuses: (its layers, the activation, its output)."""
    if t in graph.outputs:
        return None
    gelu = match_gelu(graph, t)
    if gelu is not None and all(n.outputs[0] not in graph.outputs for n in gelu[0][:-1]):
        return gelu[0], ("gelu", 0.0, 0.0), gelu[1]
    readers = t.consumers
    if len(readers) == 2:  # SiLU: x * sigmoid(x)
        sig = next((n for n in readers if n.op == "Sigmoid"), None)
        mul = next((n for n in readers if n.op == "Mul"), None)
        if sig is not None and mul is not None and sig.outputs[0].consumers == [mul] \
                and sig.outputs[0] not in graph.outputs \
                and {id(x) for x in mul.inputs} == {id(t), id(sig.outputs[0])}:
            return [sig, mul], ("silu", 0.0, 0.0), mul.outputs[0]
        return None
    node = sole_reader(graph, t)
    if node is None or node.inputs[0] is not t:
        return None
    act = activation(node)
    return ([node], act, node.outputs[0]) if act else None


def match_residual(graph: Graph, values: dict[str, Value | Lazy], t: Tensor,
                   shape: tuple[int, ...]) -> tuple[Node, Tensor] | None:
    """The Add reading ``t`` that fuses as a residual: (the Add, its other input)."""
    add = sole_reader(graph, t)
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is t else add.inputs[0]
    if other is None or isinstance(other, Constant) or other.name not in values:
        return None
    if values[other.name].shape != shape:
        return None
    return add, other

