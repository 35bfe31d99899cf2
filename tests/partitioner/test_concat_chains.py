"""concat_chains: which channel Concats nest as prefixes of a wider one (one buffer, the narrower
ones views), and the concat_view marks mark_fusions writes from it."""

from __future__ import annotations

import numpy as np

from partitioner.ir import Graph, Tensor
from partitioner.passes import mark_fusions
from partitioner.passes.concat_chains import channel_concat, concat_chains


def maps(g: Graph, n: int, channels: int = 8) -> list[Tensor]:
    """``n`` feature maps (1, channels, 4, 4), each a Relu of the graph input."""
    x = g.add_input("x", (1, channels, 4, 4))
    out = []
    for i in range(n):
        t = g.add_node("Relu", [x], 1, name=f"f{i}").outputs[0]
        t.shape = (1, channels, 4, 4)
        out.append(t)
    return out


def concat(g: Graph, name: str, ins: list[Tensor], axis: int = 1) -> Tensor:
    t = g.add_node("Concat", ins, 1, {"axis": axis}, name=name).outputs[0]
    shape = list(ins[0].static_shape())
    shape[axis] = sum(int(u.static_shape()[axis]) for u in ins)
    t.shape = tuple(shape)
    g.mark_output(t)
    return t


def members(g: Graph, name: str) -> list[str]:
    return [n.name for n in concat_chains(g)[name].members]


def test_prefixes_share_the_widest_and_only_it_keeps_a_price() -> None:
    g = Graph("g")
    f = maps(g, 4)
    for i in range(1, 5):  # [f0], [f0 f1], ... as a dense block
        concat(g, f"c{i}", f[:i])
    chains = concat_chains(g)
    assert {chains[f"c{i}"].root.name for i in range(1, 5)} == {"c4"}
    assert members(g, "c1") == ["c1", "c2", "c3", "c4"]
    assert mark_fusions(g)
    roles = {n.name: n.meta["fusion"]["role"] for n in g.nodes if "fusion" in n.meta}
    assert roles == {"c1": "concat_view", "c2": "concat_view", "c3": "concat_view"}
    assert not mark_fusions(g)


def test_diverging_extensions_take_the_prefix_into_the_wider() -> None:
    g = Graph("g")
    f = maps(g, 4)
    concat(g, "ab", f[:2])
    concat(g, "abc", f[:3])
    concat(g, "abdd", [f[0], f[1], f[3], f[3]])  # wider: takes ab
    assert members(g, "ab") == ["ab", "abdd"]
    assert members(g, "abc") == ["abc"]


def test_other_orders_axes_and_ranks_are_no_chain() -> None:
    g = Graph("g")
    f = maps(g, 3)
    concat(g, "ab", f[:2])
    concat(g, "ba", [f[1], f[0]])  # not a prefix
    concat(g, "ab_h", f[:2], axis=2)  # along H: not a channel Concat
    w = g.add_constant("w", np.ones((1, 8, 4, 4), np.float32))
    concat(g, "with_const", [f[0], w])
    chains = concat_chains(g)
    assert members(g, "ab") == ["ab"] and members(g, "ba") == ["ba"]
    assert "ab_h" not in chains and "with_const" not in chains
    assert not channel_concat(g.node("ab_h")) and channel_concat(g.node("ab"))
