"""Small fake device capabilities and graph builders for the partitioning tests (pure logic).

The real capabilities live in ``devices/``; these answer from tables given by each test so a test
states exactly which layer the "DLA" refuses and what each layer costs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from partitioner.capability import Precision, Verdict
from partitioner.ir import Graph, Node, Tensor
from partitioner.segments import Segment


class FakeCap:
    """A device that refuses the layers (by name or op) listed in ``refuse`` with that reason."""

    def __init__(
        self,
        kind: str,
        refuse: Mapping[str, str] | None = None,
        costs: Mapping[str, float] | None = None,
        default_cost: float = 1e-4,
        precisions: Sequence[Precision] = ("fp32", "fp16", "int8"),
    ) -> None:
        self._kind = kind
        self.refuse = dict(refuse or {})
        self.costs = dict(costs or {})
        self.default_cost = default_cost
        self.precisions = tuple(precisions)

    @property
    def kind(self) -> str:
        return self._kind

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        for key in (node.name, node.op):
            if key in self.refuse:
                return Verdict.no(f"{node.op} '{node.name}': {self.refuse[key]}")
        if precision not in self.precisions:
            return Verdict.no(f"{node.op} '{node.name}': no {precision} on {self._kind}")
        return Verdict.yes()

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        return self.costs.get(node.name, self.costs.get(node.op, self.default_cost))


def dla(refuse: Mapping[str, str] | None = None, **kw: object) -> FakeCap:
    return FakeCap("dla", refuse, precisions=("fp16", "int8"), **kw)  # type: ignore[arg-type]


def gpu(**kw: object) -> FakeCap:
    return FakeCap("gpu", **kw)  # type: ignore[arg-type]


def dag(edges: str, ops: Mapping[str, str] | None = None, outputs: Sequence[str] = ()) -> Graph:
    """Build a graph from ``"a>b b>c a>c"``: each layer has one output tensor named after it.

    Layers without a predecessor read the graph input ``x``; layers without successors (and those
    in ``outputs``) are graph outputs. ``ops`` maps layer -> op type (default ``Relu``, or ``Add``
    for layers with several inputs).
    """
    ops = dict(ops or {})
    names: list[str] = []
    preds: dict[str, list[str]] = {}
    for pair in edges.split():
        a, _, b = pair.partition(">")
        for n in (a, b) if b else (a,):
            if n not in preds:
                names.append(n)
                preds[n] = []
        if b:
            preds[b].append(a)
    g = Graph("test")
    x = g.add_input("x", (1, 8, 16, 16), "float32")
    out: dict[str, Tensor] = {}
    pending = list(names)
    while pending:  # add in an order where producers come first
        for n in list(pending):
            if all(p in out for p in preds[n]):
                ins = [out[p] for p in preds[n]] or [x]
                op = ops.get(n, "Add" if len(ins) > 1 else "Relu")
                t = g.add_variable(f"{n}_out", (1, 8, 16, 16), "float32")
                g.add_node(op, ins, [t], name=n)
                out[n] = t
                pending.remove(n)
    for n in names:
        if not out[n].consumers or n in outputs:
            g.mark_output(out[n])
    return g


def chain(*names: str, ops: Mapping[str, str] | None = None) -> Graph:
    return dag(" ".join(f"{a}>{b}" for a, b in zip(names, names[1:])) or names[0], ops)


def segment_graph_is_acyclic(graph: Graph, segments: Sequence[Segment]) -> bool:
    """The quotient graph (segments as vertices) is a DAG: the invariant every partition keeps."""
    seg_of = {name: i for i, s in enumerate(segments) for name in s.nodes}
    succ: dict[int, set[int]] = {i: set() for i in range(len(segments))}
    for n in graph.nodes:
        for s in graph.successors(n):
            if seg_of[n.name] != seg_of[s.name]:
                succ[seg_of[n.name]].add(seg_of[s.name])
    indegree = {i: 0 for i in succ}
    for vs in succ.values():
        for v in vs:
            indegree[v] += 1
    ready = [i for i, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for v in succ[i]:
            indegree[v] -= 1
            if indegree[v] == 0:
                ready.append(v)
    return seen == len(segments)
