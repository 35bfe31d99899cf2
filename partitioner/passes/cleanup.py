"""Drop Identity / inference Dropout, and nodes whose results nobody reads."""

from __future__ import annotations

import numpy as np

from partitioner.ir import Constant, Graph, Node
from partitioner.passes._rewrite import is_used, remove_unused_constants, rename_tensor


def _is_passthrough(node: Node) -> bool:
    if node.op == "Identity":
        return True
    if node.op != "Dropout" or len(node.outputs) != 1:
        return False
    mode = node.input(2)
    if mode is None:
        return True
    return isinstance(mode, Constant) and not bool(np.asarray(mode.values).reshape(-1)[0])


def drop_identity(graph: Graph) -> bool:
    """Remove Identity and inference-mode Dropout, rewiring their readers to the input.

    When the dropped output is a graph output, the input tensor takes over its name, so the
    model's output names do not change; where that cannot be (the input is itself a graph input
    or output), the node stays.
    """
    changed = False
    for node in list(graph.nodes):
        if not _is_passthrough(node):
            continue
        x, y = node.inputs[0], node.outputs[0]
        if x is None:
            continue
        y_is_output = y in graph.outputs
        if y_is_output and (x in graph.inputs or x in graph.outputs):
            continue
        name = y.name
        graph.replace_all_uses(y, x)
        graph.remove_node(node)
        if y_is_output:
            rename_tensor(graph, x, name)
        changed = True
    return changed


def eliminate_dead_nodes(graph: Graph) -> bool:
    """Remove nodes none of whose outputs is read or is a graph output; then unused constants."""
    changed = False
    for node in reversed(graph.topological_order()):
        if not any(is_used(graph, t) for t in node.outputs):
            graph.remove_node(node)
            changed = True
    return remove_unused_constants(graph) or changed
