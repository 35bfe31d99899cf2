"""Cut a standalone Graph out of a larger one: by layer names, or between tensors.

Used for device segments (a DLA segment exported as its own ONNX model) and ``tandem surgeon
extract``. Constants that the cut nodes read are copied in; tensors produced outside become
graph inputs; tensors produced inside and read outside (or graph outputs) become outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

from partitioner.errors import GraphError
from partitioner.ir import Constant, Graph, Node, Tensor


def extract_subgraph(graph: Graph, node_names: Sequence[str], name: str) -> Graph:
    """The layers ``node_names`` of ``graph`` as a standalone Graph named ``name``.

    Inputs appear in order of first use, outputs in order of production (both topological).
    """
    chosen = _nodes_by_name(graph, node_names)
    order = [n for n in graph.topological_order() if id(n) in chosen]
    inside = {id(t) for n in order for t in n.outputs}
    inputs: list[Tensor] = []
    for n in order:
        for t in n.inputs:
            if t is not None and not isinstance(t, Constant) and id(t) not in inside:
                if t not in inputs:
                    inputs.append(t)
    outputs = [
        t
        for n in order
        for t in n.outputs
        if t in graph.outputs or any(id(c) not in chosen for c in t.consumers)
    ]
    if not outputs:  # nothing leaves the cut: expose its leaves so the graph computes something
        outputs = [t for n in order for t in n.outputs if not t.consumers]
    return _build(graph, order, inputs, outputs, name)


def extract_between(
    graph: Graph,
    input_names: Sequence[str],
    output_names: Sequence[str],
    name: str | None = None,
) -> Graph:
    """The layers needed to compute ``output_names`` from ``input_names`` (and constants)."""
    inputs = [graph.tensor(n) for n in input_names]
    outputs = [graph.tensor(n) for n in output_names]
    stop = {id(t) for t in inputs}
    needed: dict[int, Node] = {}
    stack = [t for t in outputs if id(t) not in stop]
    while stack:
        t = stack.pop()
        node = t.producer
        if node is None:
            if not isinstance(t, Constant):
                raise GraphError(
                    f"output(s) {', '.join(output_names)} depend on '{t.name}', which is not "
                    f"among the given inputs ({', '.join(input_names) or 'none'})"
                )
            continue
        if id(node) in needed:
            continue
        needed[id(node)] = node
        stack.extend(i for i in node.inputs if i is not None and id(i) not in stop)
    order = [n for n in graph.topological_order() if id(n) in needed]
    return _build(graph, order, inputs, outputs, name or f"{graph.name}_extract")


def _nodes_by_name(graph: Graph, names: Sequence[str]) -> dict[int, Node]:
    by_name = {n.name: n for n in graph.nodes}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise GraphError(f"graph '{graph.name}' has no layer(s) named {', '.join(missing)}")
    return {id(by_name[n]): by_name[n] for n in names}


def _build(
    graph: Graph, order: list[Node], inputs: list[Tensor], outputs: list[Tensor], name: str
) -> Graph:
    sub = Graph(name, opset=graph.opset)
    sub.metadata = dict(graph.metadata)

    def copy(t: Tensor) -> Tensor:
        if t.name in sub.tensors:
            return sub.tensors[t.name]
        if isinstance(t, Constant):
            return sub.add_constant(t.name, t.values)
        return sub.add_variable(t.name, t.shape, t.dtype)

    for t in inputs:
        if isinstance(t, Constant):
            raise GraphError(f"'{t.name}' is a constant and cannot be a subgraph input")
        v = copy(t)
        sub.inputs.append(v)  # type: ignore[arg-type]
    for n in order:
        new = sub.add_node(
            n.op,
            [copy(t) if t is not None else None for t in n.inputs],
            [copy(t) for t in n.outputs],
            dict(n.attrs),
            name=n.name,
            domain=n.domain,
        )
        new.meta = dict(n.meta)
    for t in outputs:
        sub.mark_output(copy(t))
    sub.lint()
    return sub
