"""Which DLA engine runs each ONNX op, and how layers fuse into one hardware operation.

The DLA pipelines its convolution core into the single-point data processor (SDP: bias, batch-norm
scale, activations, element-wise with a second tensor, LUT sigmoid/tanh) and the SDP into the
planar data processor (PDP: pooling "on the fly"). A chain of layers therefore runs as one
engine operation when each intermediate tensor has exactly one consumer and is not a segment
output: nobody else needs it in memory. Both the compiler and the latency model group layers
with :func:`group_nodes`, so what is timed is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from partitioner.ir import Constant, Graph, Node, Tensor

CONV_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
# SDP ops that take one variable input (and constant parameters).
SDP_UNARY_OPS = frozenset(
    {
        "BatchNormalization",
        "Relu",
        "Clip",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "Abs",
        "Identity",
        "Neg",
        "Sin",
        "Cos",
        "Atanh",
        "Atan",
        "Cast",
        "Dropout",
    }
)
SDP_BINARY_OPS = frozenset(
    {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow", "Equal", "Greater", "Less"}
)
LUT_OPS = frozenset({"Sigmoid", "Tanh", "Sin", "Cos", "Atanh", "Atan"})
PDP_OPS = frozenset({"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMax"})
CDP_OPS = frozenset({"LRN"})
RUBIK_OPS = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Resize"})
BDMA_OPS = frozenset({"Concat", "Slice", "Split"})
SOFTMAX_OPS = frozenset({"Softmax"})
# SDP post-operations per fused group: X1, X2 (ALU/multiplier) and Y (LUT) sub-units, with
# some room for folded constants; more than this starts a new operation.
MAX_FUSED_SDP = 4


def engine_of(node: Node) -> str | None:
    """``conv`` | ``sdp`` | ``pdp`` | ``cdp`` | ``rubik`` | ``bdma`` | ``softmax``, or None."""
    op = node.op
    if op in ("Gemm", "MatMul"):
        return "conv" if node.constant_input(1) is not None else None
    if op in CONV_OPS:
        return "conv"
    if op in SDP_UNARY_OPS or op in SDP_BINARY_OPS:
        return "sdp"
    if op in PDP_OPS:
        return "pdp"
    if op in CDP_OPS:
        return "cdp"
    if op in RUBIK_OPS:
        return "rubik"
    if op in BDMA_OPS:
        return "bdma"
    if op in SOFTMAX_OPS:
        return "softmax"
    return None


def variable_inputs(node: Node) -> list[Tensor]:
    """The inputs that are computed at run time (not Constants, not omitted)."""
    return [t for t in node.inputs if t is not None and not isinstance(t, Constant)]


@dataclass
class Group:
    """Layers that run as one engine operation: an anchor and fused followers, in order."""

    engine: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def anchor(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> Tensor:
        return self.nodes[-1].outputs[0]

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.nodes]


def _fusable_follower(node: Node, graph: Graph, group: Group) -> Node | None:
    """The node that can join ``group`` after ``node``, or None."""
    if len(node.outputs) != 1:
        return None
    out = node.outputs[0]
    if len(out.consumers) != 1 or out in graph.outputs:
        return None
    nxt = out.consumers[0]
    if nxt not in graph:
        return None
    post = [n for n in group.nodes if engine_of(n) == "sdp"]
    has_pool = any(engine_of(n) == "pdp" for n in group.nodes)
    if engine_of(nxt) == "sdp" and not has_pool and len(post) < MAX_FUSED_SDP:
        if nxt.op == "Sum" and len(variable_inputs(nxt)) > 2:
            return None
        variables = variable_inputs(nxt)
        if nxt.op in SDP_BINARY_OPS and len(variables) == 2:
            # One second operand per operation (the SDP's element-wise read port), and it must
            # be another tensor: x*x or x+x needs the value twice and does not stream.
            if variables[0] is variables[1]:
                return None
            if any(len(variable_inputs(n)) == 2 for n in post if n.op in SDP_BINARY_OPS):
                return None
            other = variables[1] if variables[0] is out else variables[0]
            if other.shape != out.shape:
                return None
        if nxt.op in LUT_OPS and any(n.op in LUT_OPS for n in post):
            return None
        return nxt
    if (
        engine_of(nxt) == "pdp"
        and group.engine in ("conv", "sdp")
        and not has_pool
        and nxt.op in ("MaxPool", "AveragePool")
    ):
        return nxt  # PDP "on-flying" mode: pooling reads the SDP's output stream
    return None


def group_nodes(graph: Graph) -> list[Group]:
    """Partition the graph's layers into engine operations, in a valid execution order.

    Raises nothing for unknown ops: those become a group with engine ``"unsupported"`` so
    callers decide how to report them.
    """
    order = graph.topological_order()
    taken: set[int] = set()
    groups: list[Group] = []
    for node in order:
        if id(node) in taken:
            continue
        engine = engine_of(node) or "unsupported"
        group = Group(engine, [node])
        taken.add(id(node))
        if engine in ("conv", "sdp"):
            current = node
            while (nxt := _fusable_follower(current, graph, group)) is not None:
                if id(nxt) in taken:
                    break
                group.nodes.append(nxt)
                taken.add(id(nxt))
                current = nxt
        groups.append(group)
    # Execute a group once all of its layers' inputs exist: order by its last layer.
    position = {id(n): i for i, n in enumerate(order)}
    groups.sort(key=lambda g: position[id(g.nodes[-1])])
    return groups


def group_of(node: Node, graph: Graph) -> Group:
    """The group that ``node`` belongs to, found from its neighbourhood only (cheap)."""
    # Walk up while the producer would fuse this node, then grow the group forward from there.
    anchor = node
    while True:
        ins = variable_inputs(anchor)
        if engine_of(anchor) not in ("sdp", "pdp") or not ins:
            break
        # Only a producer whose one output feeds this node alone (and is no graph output) can
        # have it as a fused follower (see _fusable_follower); skipping the others keeps the
        # walk to the chain above the node instead of every branch of a multi-branch block
        # (RepVGG's 3x3 + 1x1 + identity sums made it exponential in the depth).
        producers = [
            t.producer
            for t in ins
            if t.producer is not None
            and t.producer in graph
            and len(t.producer.outputs) == 1
            and len(t.consumers) == 1
            and t.consumers[0] is anchor
            and t not in graph.outputs
        ]
        moved = False
        for p in producers:
            if engine_of(p) in ("conv", "sdp", "pdp"):
                candidate = group_of_anchor_upto(p, graph, anchor)
                if candidate is not None:
                    anchor = candidate
                    moved = True
                    break
        if not moved:
            break
    return _grow(anchor, graph)


def group_of_anchor_upto(producer: Node, graph: Graph, target: Node) -> Node | None:
    """If the group grown from ``producer``'s own anchor reaches ``target``, that anchor."""
    start = producer
    # The producer may itself be a follower: find its anchor first (recursion bounded by depth).
    if engine_of(producer) in ("sdp", "pdp"):
        start = group_of(producer, graph).anchor
    group = _grow(start, graph)
    return start if target in group.nodes else None


def _grow(anchor: Node, graph: Graph) -> Group:
    engine = engine_of(anchor) or "unsupported"
    group = Group(engine, [anchor])
    if engine in ("conv", "sdp"):
        current = anchor
        while (nxt := _fusable_follower(current, graph, group)) is not None:
            group.nodes.append(nxt)
            current = nxt
    return group
