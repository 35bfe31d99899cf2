"""Mark Conv + activation (+ residual Add, + activation) fusion candidates.

Marking only annotates ``node.meta["fusion"]`` = ``{"group", "role", "pattern", ...}``; graph
semantics never change. Device backends decide whether to fuse a marked group.
Roles: ``conv``, ``activation`` (with ``"activation"`` naming the kind), ``residual``,
``post_activation``. The group id is the conv's layer name, so it is stable across edits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from partitioner.ir import Constant, Graph, Node, Tensor

_SIMPLE_ACTIVATIONS = {
    "Relu": "relu",
    "LeakyRelu": "leaky_relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "HardSwish": "hard_swish",
    "Mish": "mish",
}


def _only_reader(graph: Graph, t: Tensor) -> Node | None:
    if t in graph.outputs or len(t.consumers) != 1:
        return None
    return t.consumers[0]


def _clip_kind(node: Node) -> str | None:
    lo, hi = node.input(1), node.input(2)
    if (lo is not None and not isinstance(lo, Constant)) or (
        hi is not None and not isinstance(hi, Constant)
    ):
        return None  # run-time bounds are not a fixed activation
    lo_v = float(np.asarray(lo.values).reshape(-1)[0]) if isinstance(lo, Constant) else None
    hi_v = float(np.asarray(hi.values).reshape(-1)[0]) if isinstance(hi, Constant) else None
    if lo_v == 0.0 and hi_v == 6.0:
        return "relu6"
    return "clip"


def _activation_after(graph: Graph, t: Tensor) -> tuple[list[Node], str, Tensor] | None:
    """The activation reading ``t`` (its nodes, kind, output), if ``t`` feeds exactly one."""
    if t in graph.outputs:
        return None
    readers = t.consumers
    if len(readers) == 2:  # SiLU x * sigmoid(x); hard-swish x * hard_sigmoid(x) (opset < 14)
        gate = next((n for n in readers if n.op in ("Sigmoid", "HardSigmoid")), None)
        mul = next((n for n in readers if n.op == "Mul"), None)
        if gate is None or mul is None or gate.outputs[0].consumers != [mul]:
            return None
        if gate.outputs[0] in graph.outputs or set(mul.inputs) != {t, gate.outputs[0]}:
            return None
        if gate.op == "Sigmoid":
            return [gate, mul], "silu", mul.outputs[0]
        alpha, beta = gate.attrs.get("alpha", 0.2), gate.attrs.get("beta", 0.5)
        if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
            return [gate, mul], "hard_swish", mul.outputs[0]
        return None
    node = _only_reader(graph, t)
    if node is None or node.inputs[0] is not t:
        return None
    if node.op in _SIMPLE_ACTIVATIONS:
        return [node], _SIMPLE_ACTIVATIONS[node.op], node.outputs[0]
    if node.op == "Clip":
        kind = _clip_kind(node)
        if kind is not None:
            return [node], kind, node.outputs[0]
    return None


def _residual_after(graph: Graph, t: Tensor, members: list[Node]) -> tuple[Node, Tensor] | None:
    add = _only_reader(graph, t)
    if add is None or add.op != "Add" or len(add.inputs) != 2:
        return None
    other = add.inputs[1] if add.inputs[0] is t else add.inputs[0]
    if other is None or other is t or (other.producer is not None and other.producer in members):
        return None
    if t.shape is None or other.shape is None or tuple(t.shape) != tuple(other.shape):
        return None  # a broadcasting Add (a bias, a scale) is not a residual connection
    return add, add.outputs[0]


def mark_fusions(graph: Graph) -> bool:
    """Annotate fusion groups; returns True when the annotations differ from before."""
    before = {n.name: n.meta.get("fusion") for n in graph.nodes}
    for n in graph.nodes:
        n.meta.pop("fusion", None)
    claimed: set[int] = set()
    for conv in graph.topological_order():
        if conv.op != "Conv" or id(conv) in claimed:
            continue
        roles: list[tuple[Node, dict[str, Any]]] = [(conv, {"role": "conv"})]
        pattern = ["Conv"]
        t = conv.outputs[0]
        act = _activation_after(graph, t)
        if act is not None:
            nodes, kind, t = act
            roles += [(n, {"role": "activation", "activation": kind}) for n in nodes]
            pattern.append(kind)
        res = _residual_after(graph, t, [n for n, _ in roles])
        if res is not None:
            add, t = res
            roles.append((add, {"role": "residual"}))
            pattern.append("Add")
            post = _activation_after(graph, t)
            if post is not None:
                nodes, kind, t = post
                roles += [(n, {"role": "post_activation", "activation": kind}) for n in nodes]
                pattern.append(kind)
        if len(roles) == 1 or any(id(n) in claimed for n, _ in roles):
            continue
        for n, info in roles:
            n.meta["fusion"] = {"group": conv.name, "pattern": "+".join(pattern), **info}
            claimed.add(id(n))
    return before != {n.name: n.meta.get("fusion") for n in graph.nodes}
