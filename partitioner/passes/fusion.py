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

A squeeze-and-excitation block (:func:`squeeze_excitation`: global average pool -> 1x1 conv ->
activation -> 1x1 conv -> sigmoid / hard sigmoid -> Mul over the block's input, as torchvision's
EfficientNet, MobileNetV3 and RegNetY export it) runs as two kernels: the pool (role ``conv``,
the group's main layer) and one kernel that computes both small FCs and the gate per CTA and
scales the input while streaming it (the Mul: role ``scale``). The FCs (role ``se_fc``) and
their activations (``activation``) have no kernel of their own. Where a depthwise convolution
writes the block's input (:func:`se_pooled_by`, EfficientNet's and MobileNetV3's MBConv), it
also sums its output per channel and the pool has no kernel either (role ``pooled``).

A channel Concat nested in a wider one (DenseNet's dense blocks) is a view of the wider one's
buffer, with no kernel (role ``concat_view``: :mod:`partitioner.passes.concat_chains`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.passes.concat_chains import mark_concat_views

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


# The SE kernels' shared memory (FP32), within the 48 KiB a kernel gets without opting in to
# more: the pool's is at most 256 x 8 floats whatever C; se_scale's holds the hidden layer, its
# rows' second-FC sums and the gate, S + (256 + CT) x 8 floats, where its tiles are 8 vectors
# (CT = 8) once S > 256 (gpu_kernels/lowering/se.py: scale_tiling); below that, S + 2304.
SE_SMEM_FLOATS = 48 * 1024 // 4
SE_SCALE_SMEM_FLOATS = (256 + 8) * 8


@dataclass(frozen=True)
class SqueezeExcitation:
    """One squeeze-and-excitation block: ``out = x * gate(fc2(act(fc1(mean_hw(x)))))``."""

    pool: Node
    fc1: Node
    act: Activation
    fc2: Node
    gate: Activation
    scale: Node  # the Mul
    x: Tensor
    out: Tensor
    layers: tuple[tuple[Node, str, str], ...]  # (layer, role, activation kind), pool excluded


def _pools_hw(node: Node) -> bool:
    """GlobalAveragePool, or ReduceMean over (H, W) keeping them, of a 4-D tensor."""
    x = node.input(0)
    if x is None or not x.is_static or len(x.static_shape()) != 4:
        return False
    if node.op == "GlobalAveragePool":
        return True
    if node.op != "ReduceMean" or int(node.attrs.get("keepdims", 1)) != 1:
        return False
    axes_in = node.input(1)
    if axes_in is not None:
        if not isinstance(axes_in, Constant):
            return False
        axes = [int(a) for a in axes_in.values.reshape(-1)]
    else:
        axes = [int(a) for a in node.attrs.get("axes", [])]
    return sorted(a % 4 for a in axes) == [2, 3]


def _fc_1x1(node: Node | None, t: Tensor, c_in: int) -> int | None:
    """Output channels of ``node`` when it is a plain 1x1 Conv of ``t`` (``c_in`` channels,
    constant weight and bias), else None."""
    if node is None or node.op != "Conv" or node.inputs[0] is not t:
        return None
    w, b = node.input(1), node.input(2)
    if (
        not isinstance(w, Constant)
        or w.values.dtype.kind != "f"
        or w.values.ndim != 4
        or w.values.shape[1:] != (c_in, 1, 1)
    ):
        return None
    if b is not None and (not isinstance(b, Constant) or b.values.size != w.values.shape[0]):
        return None
    a = node.attrs
    plain = (
        int(a.get("group", 1)) == 1
        and all(int(v) == 1 for v in a.get("strides", [1]))
        and all(int(v) == 0 for v in a.get("pads", [0]))
        and all(int(v) == 1 for v in a.get("dilations", [1]))
        and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
    )
    return int(w.values.shape[0]) if plain else None


def squeeze_excitation(graph: Graph, pool: Node) -> SqueezeExcitation | None:
    """The squeeze-and-excitation block whose squeeze is ``pool``, when the SE kernels run it:
    every intermediate has one reader and is no graph output, the FCs are plain 1x1 Convs with
    constant weights, the gate is a sigmoid or hard sigmoid, and the hidden layer fits
    se_scale's shared memory."""
    if not _pools_hw(pool):
        return None
    x = pool.inputs[0]
    assert x is not None  # _pools_hw made sure
    n, c, h, w = x.static_shape()
    fc1 = sole_reader(graph, pool.outputs[0])
    s = _fc_1x1(fc1, pool.outputs[0], c)
    if fc1 is None or s is None or s + SE_SCALE_SMEM_FLOATS > SE_SMEM_FLOATS:
        return None
    layers: list[tuple[Node, str, str]] = [(fc1, "se_fc", "")]
    hidden, act = fc1.outputs[0], NO_ACTIVATION
    m = match_act(graph, hidden)
    if m:
        nodes, act, hidden = m
        layers.extend((node, "activation", act[0]) for node in nodes)
    fc2 = sole_reader(graph, hidden)
    if fc2 is None or _fc_1x1(fc2, hidden, s) != c:
        return None
    layers.append((fc2, "se_fc", ""))
    g = match_act(graph, fc2.outputs[0])
    if not g or g[1][0] not in ("sigmoid", "hardsigmoid"):
        return None
    gate_nodes, gate, gated = g
    layers.extend((node, "activation", gate[0]) for node in gate_nodes)
    mul = sole_reader(graph, gated)
    if (
        mul is None
        or mul.op != "Mul"
        or len(mul.inputs) != 2
        or {id(t) for t in mul.inputs} != {id(x), id(gated)}
    ):
        return None
    out = mul.outputs[0]
    if not out.is_static or out.static_shape() != (n, c, h, w):
        return None
    layers.append((mul, "scale", ""))
    return SqueezeExcitation(pool, fc1, act, fc2, gate, mul, x, out, tuple(layers))


def se_pooled_by(graph: Graph, conv: Node, ep: Epilogue) -> SqueezeExcitation | None:
    """The squeeze-and-excitation block whose input ``conv`` writes (``ep`` being its
    epilogue) when ``conv`` is depthwise: its kernel then also sums its output per channel, so
    the pool needs no kernel of its own (role ``pooled``)."""
    w = conv.input(1)
    if conv.op != "Conv" or not isinstance(w, Constant) or w.values.ndim != 4:
        return None
    k = int(w.values.shape[0])
    if w.values.shape[1] != 1 or int(conv.attrs.get("group", 1)) != k:
        return None
    for pool in ep.out.consumers:
        se = squeeze_excitation(graph, pool)
        if se is not None and se.x is ep.out:
            return se
    return None


def _mark(
    group: str, pattern: str, marks: list[tuple[Node, dict[str, Any]]], fused: set[int]
) -> None:
    for n, info in marks:
        n.meta["fusion"] = {"group": group, "pattern": pattern, **info}
        fused.add(id(n))


def mark_fusions(graph: Graph) -> bool:
    """Write each epilogue into the marks; returns True when they differ from before."""
    before = {n.name: n.meta.get("fusion") for n in graph.nodes}
    for n in graph.nodes:
        n.meta.pop("fusion", None)
    order = graph.topological_order()
    position = {id(n): i for i, n in enumerate(order)}
    fused: set[int] = set()
    inside: set[int] = set()  # tensors a kernel keeps in registers: never in memory
    for node in order:  # SE blocks first: their FCs are Convs the loop below would claim
        se = squeeze_excitation(graph, node)
        if se is not None:
            se_marks: list[tuple[Node, dict[str, Any]]] = [(node, {"role": "conv"})]
            se_marks += [
                (n, {"role": r, "activation": a} if a else {"role": r}) for n, r, a in se.layers
            ]
            kinds = [node.op, "Conv", se.act[0], "Conv", se.gate[0], "Mul"]
            _mark(node.name, "+".join(k for k in kinds if k != "none"), se_marks, fused)
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
        se = se_pooled_by(graph, node, ep)
        if se is not None:
            se.pool.meta["fusion"] = {**se.pool.meta["fusion"], "role": "pooled"}
        if not ep.layers:
            continue
        pattern = [node.op]
        marks: list[tuple[Node, dict[str, Any]]] = [(node, {"role": "conv"})]
        for i, (n, role, act) in enumerate(ep.layers):
            marks.append((n, {"role": role, "activation": act} if act else {"role": role}))
            if role != "bias" and (i == 0 or ep.layers[i - 1][1] != role):
                pattern.append(act or n.op)  # a multi-layer activation (SiLU, GELU) once
        _mark(node.name, "+".join(pattern), marks, fused)
        for n, _ in marks:
            inside.update(id(t) for t in n.outputs if t is not ep.out)
    mark_concat_views(graph)
    return before != {n.name: n.meta.get("fusion") for n in graph.nodes}
