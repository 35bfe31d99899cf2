"""What fuses into a convolution's or a GEMM's epilogue: the one decision.

:func:`epilogue` answers it for one layer; the GPU lowering (``gpu_kernels/lowering/conv.py``,
``gemm.py``) emits exactly that kernel, and :func:`mark_fusions` writes the same answer into
``node.meta["fusion"]`` for the GPU cost model (``devices/cost.py``), so the cost model prices
only fusions the kernels make. Graph semantics never change.

An epilogue folds, in order: an activation (incl. x * sigmoid(x) = SiLU and PyTorch's erf-GELU);
for a GEMM without one, a following per-column bias Add and then an activation; a residual Add
of a tensor already computed when the kernel runs; for a convolution without a first activation,
an activation after the Add. A ConvTranspose fuses the activation only.

Marks: ``{"group", "pattern", "role", ...}`` with roles ``conv`` (the main layer, also for a
GEMM), ``activation`` (with ``"activation"`` naming the kind), ``bias``, ``residual``,
``post_activation``. The group id is the main layer's name, so it is stable across edits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partitioner.ir import Constant, Graph, Node, Tensor

Activation = tuple[str, float, float]  # (kind, alpha, beta), kinds as the GPU's ACT table
NO_ACTIVATION: Activation = ("none", 0.0, 0.0)
# The shape a tensor has where the kernel runs, None while it is not computed yet.
ShapeOf = Callable[[Tensor], "tuple[int, ...] | None"]


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
        return (
            "hardsigmoid",
            float(node.attrs.get("alpha", 0.2)),
            float(node.attrs.get("beta", 0.5)),
        )
    if op == "Gelu":  # opset 20: the erf form, or its tanh approximation
        approximate = node.attrs.get("approximate", "none")
        if approximate in ("none", "tanh"):
            return ("gelu_tanh" if approximate == "tanh" else "gelu"), 0.0, 0.0
        return None
    if op == "Clip":
        lo, hi = node.input(1), node.input(2)
        if (lo is not None and not isinstance(lo, Constant)) or (
            hi is not None and not isinstance(hi, Constant)
        ):
            return None  # run-time bounds are not a fixed activation
        lo_v = float(lo.values.reshape(-1)[0]) if isinstance(lo, Constant) else -3.0e38
        hi_v = float(hi.values.reshape(-1)[0]) if isinstance(hi, Constant) else 3.0e38
        return "clip", lo_v, hi_v
    return None


def const_is(t: Tensor | None, value: float) -> bool:
    return (
        isinstance(t, Constant)
        and t.values.size == 1
        and abs(float(t.values.reshape(-1)[0]) - value) < 1e-4 * max(1.0, abs(value))
    )


def match_gelu(graph: Graph, t: Tensor) -> tuple[list[Node], Tensor] | None:
    """x * 0.5 * (1 + erf(x / sqrt(2))) as exported from PyTorch (two orders)."""
    readers = t.consumers
    if len(readers) != 2:
        return None
    div = next(
        (n for n in readers if n.op == "Div" and n.inputs[0] is t and const_is(n.input(1), 2**0.5)),
        None,
    )
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
    assert erf is not None
    half_const = any(const_is(x, 0.5) for x in other.inputs)
    if (
        half_const
        and sole_reader(graph, other.outputs[0]) is final
        and {id(x) for x in final.inputs} == {id(other.outputs[0]), id(add.outputs[0])}
    ):
        return [div, erf, add, other, final], final.outputs[0]  # (x * 0.5) * (1 + erf)
    if other is final:  # x * (1 + erf), then * 0.5
        last = sole_reader(graph, final.outputs[0])
        if last is not None and last.op == "Mul" and any(const_is(x, 0.5) for x in last.inputs):
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
        if (
            sig is not None
            and mul is not None
            and sig.outputs[0].consumers == [mul]
            and sig.outputs[0] not in graph.outputs
            and {id(x) for x in mul.inputs} == {id(t), id(sig.outputs[0])}
        ):
            return [sig, mul], ("silu", 0.0, 0.0), mul.outputs[0]
        return None
    node = sole_reader(graph, t)
    if node is None or node.inputs[0] is not t:
        return None
    act = activation(node)
    return ([node], act, node.outputs[0]) if act else None


def epilogue_kind(node: Node) -> str | None:
    """``conv``, ``deconv`` or ``gemm`` for a layer whose GPU kernel has an epilogue (the GPU
    runs those with constant weights only)."""
    w = node.input(1)
    if not isinstance(w, Constant):
        return None  # MatMul of two run-time operands: a batched product, no epilogue
    if node.op == "Conv":
        return "conv"
    if node.op == "ConvTranspose":
        return "deconv"
    if node.op in ("Gemm", "MatMul") and w.values.ndim == 2:
        return "gemm"
    return None


@dataclass
class Epilogue:
    """What one kernel folds after its main loop, and the tensor it finally writes."""

    out: Tensor
    act: Activation = NO_ACTIVATION
    bias: Constant | None = None  # a following per-column constant Add (GEMM)
    residual: Tensor | None = None  # the other operand of a residual Add
    res_after: int = 0  # 1: the residual is added after the activation
    layers: tuple[tuple[Node, str, str], ...] = ()  # (layer, role, activation kind) in order


def epilogue(graph: Graph, node: Node, out_shape: tuple[int, ...], shape_of: ShapeOf) -> Epilogue:
    """The layers that fold into ``node``'s epilogue (``node`` has an :func:`epilogue_kind`).
    ``out_shape`` is the shape the kernel writes; ``shape_of`` says which tensors are computed
    before the kernel runs (a residual must be) and their shapes."""
    kind = epilogue_kind(node)
    ep = Epilogue(node.outputs[0])
    layers: list[tuple[Node, str, str]] = []

    def fuse_act(role: str) -> None:
        m = match_act(graph, ep.out)
        if m:
            nodes, ep.act, ep.out = m
            layers.extend((n, role, ep.act[0]) for n in nodes)

    fuse_act("activation")
    if kind == "gemm" and ep.act[0] == "none":
        add = sole_reader(graph, ep.out)
        if add is not None and add.op == "Add" and len(add.inputs) == 2:
            columns = out_shape[-1]
            c = next((x for x in add.inputs if isinstance(x, Constant)), None)
            if c is not None and c.values.size == columns and c.values.shape[-1] == columns:
                ep.bias, ep.out = c, add.outputs[0]
                layers.append((add, "bias", ""))
                fuse_act("activation")
    if kind in ("conv", "gemm"):
        r = _residual_after(graph, ep.out, out_shape, shape_of)
        if r:
            add, ep.residual = r
            ep.res_after = 1 if ep.act[0] != "none" else 0
            ep.out = add.outputs[0]
            layers.append((add, "residual", ""))
            if kind == "conv" and ep.act[0] == "none":
                fuse_act("post_activation")
    ep.layers = tuple(layers)
    return ep


def _residual_after(
    graph: Graph, t: Tensor, shape: tuple[int, ...], shape_of: ShapeOf
) -> tuple[Node, Tensor] | None:
    """The Add reading ``t`` that fuses as a residual: (the Add, its other input)."""
    add = sole_reader(graph, t)
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is t else add.inputs[0]
    if other is None or isinstance(other, Constant):
        return None
    # a broadcasting Add (a bias, a scale) is not a residual connection
    return (add, other) if shape_of(other) == shape else None


def mark_fusions(graph: Graph) -> bool:
    """Write each epilogue into the marks; returns True when they differ from before."""
    before = {n.name: n.meta.get("fusion") for n in graph.nodes}
    for n in graph.nodes:
        n.meta.pop("fusion", None)
    order = graph.topological_order()
    position = {id(n): i for i, n in enumerate(order)}
    fused: set[int] = set()
    inside: set[int] = set()  # tensors a kernel keeps in registers: never in memory
    for node in order:
        kind = epilogue_kind(node)
        if kind is None or id(node) in fused or not node.outputs[0].is_static:
            continue
        here = position[id(node)]

        def shape_of(t: Tensor, here: int = here) -> tuple[int, ...] | None:
            # computed before the kernel runs, as the lowering walks the same order
            if id(t) in inside or (t.producer is not None and position[id(t.producer)] > here):
                return None
            return t.static_shape() if t.is_static else None

        out_shape = node.outputs[0].static_shape()
        if kind == "conv" and len(out_shape) == 3:
            out_shape = (out_shape[0], out_shape[1], 1, out_shape[2])  # 1-D as (N, K, 1, L)
        ep = epilogue(graph, node, out_shape, shape_of)
        if not ep.layers:
            continue
        pattern = [node.op]
        marks: list[tuple[Node, dict[str, Any]]] = [(node, {"role": "conv"})]
        for i, (n, role, act) in enumerate(ep.layers):
            marks.append((n, {"role": role, "activation": act} if act else {"role": role}))
            if role != "bias" and (i == 0 or ep.layers[i - 1][1] != role):
                pattern.append(act or n.op)  # a multi-layer activation (SiLU, GELU) once
        for n, info in marks:
            n.meta["fusion"] = {"group": node.name, "pattern": "+".join(pattern), **info}
            fused.add(id(n))
            inside.update(id(t) for t in n.outputs if t is not ep.out)
    return before != {n.name: n.meta.get("fusion") for n in graph.nodes}
