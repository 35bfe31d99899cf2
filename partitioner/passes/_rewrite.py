"""Small graph edits that passes share: rename a tensor, swap a node for a constant."""

from __future__ import annotations

import numpy as np

from partitioner.errors import InternalError
from partitioner.ir import Constant, Graph, Node, Tensor


def rename_tensor(graph: Graph, tensor: Tensor, new_name: str) -> None:
    """Give ``tensor`` a free name; links are object references, so only the index changes.

    Passes use it to keep the model's tensor names (graph outputs above all) stable when the
    node that produced a name goes away.
    """
    if new_name != tensor.name and new_name in graph.tensors:
        raise InternalError(f"cannot rename '{tensor.name}' to '{new_name}': the name is taken")
    graph.rename_tensor(tensor, new_name)


def replace_with_constants(graph: Graph, node: Node, values: list[np.ndarray]) -> list[Constant]:
    """Drop ``node``; each output becomes a Constant of the same name holding ``values[i]``."""
    if len(values) < len(node.outputs):
        raise InternalError(
            f"folding '{node.name}' gave {len(values)} values for {len(node.outputs)} outputs"
        )
    pending: list[tuple[str, Constant]] = []
    for out, value in zip(node.outputs, values):
        const = graph.add_constant(graph.unique_name(f"{out.name}_folded"), np.asarray(value))
        graph.replace_all_uses(out, const)
        pending.append((out.name, const))
    graph.remove_node(node)
    for name, const in pending:
        rename_tensor(graph, const, name)
    return [c for _, c in pending]


def is_used(graph: Graph, tensor: Tensor) -> bool:
    return bool(tensor.consumers) or tensor in graph.outputs


def remove_unused_constants(graph: Graph) -> bool:
    dead = [
        t
        for t in graph.tensors.values()
        if isinstance(t, Constant) and not is_used(graph, t) and t not in graph.inputs
    ]
    for t in dead:
        graph.remove_tensor(t)
    return bool(dead)
