"""Channel Concats that share one buffer: the one decision the GPU lowering and the cost model
read.

A DenseNet dense block concatenates every earlier feature map before each layer
(``torch.cat(features, 1)``), so Concat i's inputs are a prefix of Concat i+1's. Copying each
new feature map into every later Concat moves O(L^2) bytes in O(L^2) kernels (torchvision's
densenet121: 589 of its 779 kernels at FP16 were such copies). Instead the widest Concat of
such a chain owns the buffer, each producer writes its channel slice of it once, and every
narrower Concat of the chain is a channel-prefix view of it (the same pixel stride, fewer
channels): no kernel and no traffic (:func:`concat_chains`; :func:`mark_concat_views` writes
role ``concat_view`` for the cost model).
"""

from __future__ import annotations

from dataclasses import dataclass

from partitioner.ir import Constant, Graph, Node, Tensor


@dataclass(frozen=True)
class ConcatChain:
    """Channel Concats whose input lists are prefixes of the widest one's (``root``)."""

    root: Node  # the widest: its output is the buffer
    members: tuple[Node, ...]  # every Concat of the chain, the root included, in graph order


def channel_concat(node: Node) -> bool:
    """A Concat of static 4-D tensors along the channel axis (NHWC on the GPU: each input is a
    channel slice of the output, every pixel)."""
    if node.op != "Concat" or not node.outputs[0].is_static:
        return False
    if len(node.outputs[0].static_shape()) != 4 or int(node.attrs.get("axis", 1)) % 4 != 1:
        return False
    return all(
        t is not None and not isinstance(t, Constant) and t.is_static and len(t.static_shape()) == 4
        for t in node.inputs
    )


def _is_prefix(short: list[Tensor | None], long: list[Tensor | None]) -> bool:
    return len(short) <= len(long) and all(a is b for a, b in zip(short, long))


def concat_chains(graph: Graph) -> dict[str, ConcatChain]:
    """The chain of every channel Concat of ``graph`` (by name; a Concat nested in no other is
    a chain of one). Concats with the same first input are taken widest first; each takes
    every Concat not yet in a chain whose input list is a prefix of its own (a Concat nested
    in two diverging wider ones goes with the wider, the other keeps its own buffer)."""
    by_first: dict[int, list[Node]] = {}
    for node in graph.nodes:
        if channel_concat(node):
            by_first.setdefault(id(node.inputs[0]), []).append(node)
    chains: dict[str, ConcatChain] = {}
    for group in by_first.values():
        position = {id(n): i for i, n in enumerate(group)}
        left = sorted(group, key=lambda n: (-len(n.inputs), position[id(n)]))
        while left:
            root = left.pop(0)
            inside = [n for n in left if _is_prefix(list(n.inputs), list(root.inputs))]
            left = [n for n in left if n not in inside]
            chain = ConcatChain(root, tuple(sorted([root, *inside], key=lambda n: position[id(n)])))
            chains.update((n.name, chain) for n in chain.members)
    return chains


def mark_concat_views(graph: Graph) -> None:
    """Mark every Concat of a chain but its root as a view of the root (role ``concat_view``,
    group: the root's name): the GPU runs no kernel for it. Call on unmarked nodes (after
    :func:`~partitioner.passes.fusion.mark_fusions` cleared the marks)."""
    for chain in concat_chains(graph).values():
        for node in chain.members:
            if node is not chain.root:
                node.meta["fusion"] = {
                    "group": chain.root.name,
                    "pattern": "Concat",
                    "role": "concat_view",
                }
