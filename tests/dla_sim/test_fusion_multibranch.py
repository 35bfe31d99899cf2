"""Fused-group lookup on multi-branch networks (RepVGG / MobileOne blocks).

Each block sums a 3x3 conv + BN, a 1x1 conv + BN and an identity BN of its input. ``group_of``
used to walk every branch of every earlier block from each layer (exponential in the depth: a
20 MB RepVGG took 13.8 minutes to build for Orin). It now skips producers that cannot have the
layer as a fused follower; the groups it finds are the exhaustive walk's, at bounded work.

(``group_of`` and the compiler's ``group_nodes`` can still differ where two chains reach one
Add: ``group_nodes`` gives it to the first anchor in execution order, ``group_of`` to the chain
it starts from. Changing that changes predictions; it belongs to the latency-model work.)
"""

from __future__ import annotations

import pytest

from dla_sim import fusion
from partitioner.onnx_import import import_onnx
from tandem.zoo.builder import GraphBuilder


def _multibranch(blocks: int, branches_3x3: int, width: int = 16, resolution: int = 32):
    """RepVGG (one 3x3 branch) or MobileOne (several 3x3 branches) style stack."""
    g = GraphBuilder(f"multibranch{branches_3x3}", seed=0)
    x = g.input("input", [1, 3, resolution, resolution])
    x = g.act(g.bn(g.conv(x, 3, width, 3, 2, bias=False, name="stem"), width, name="stem.bn"),
              "relu", "stem.relu")  # fmt: skip
    for i in range(blocks):
        name = f"block{i}"
        terms = [
            g.bn(g.conv(x, width, width, 3, 1, bias=False, name=f"{name}.conv3_{k}"), width,
                 name=f"{name}.bn3_{k}")  # fmt: skip
            for k in range(branches_3x3)
        ]
        terms.append(g.bn(g.conv(x, width, width, 1, 1, bias=False, name=f"{name}.conv1"),
                          width, name=f"{name}.bn1"))  # fmt: skip
        terms.append(g.bn(x, width, name=f"{name}.bnid"))
        y = terms[0]
        for k, term in enumerate(terms[1:]):
            y = g.op("Add", [y, term], f"{name}.add{k}")
        x = g.act(y, "relu", f"{name}.relu")
    return import_onnx(g.build([x]))


def _exhaustive_group_of(node, graph):  # type: ignore[no-untyped-def]
    """The walk as it was: every computed producer of every fusable layer is tried."""
    anchor = node
    while fusion.engine_of(anchor) in ("sdp", "pdp") and fusion.variable_inputs(anchor):
        for t in fusion.variable_inputs(anchor):
            p = t.producer
            if p is None or p not in graph or fusion.engine_of(p) not in ("conv", "sdp", "pdp"):
                continue
            start = _exhaustive_group_of(p, graph).anchor if fusion.engine_of(p) != "conv" else p
            if anchor in fusion._grow(start, graph).nodes:
                anchor = start
                break
        else:
            break
    return fusion._grow(anchor, graph)


@pytest.mark.parametrize("branches_3x3", [1, 3], ids=["repvgg", "mobileone"])
def test_group_of_equals_the_exhaustive_walk(branches_3x3) -> None:  # type: ignore[no-untyped-def]
    graph = _multibranch(blocks=4, branches_3x3=branches_3x3)  # small: the walk is exponential
    for node in graph.topological_order():
        want = _exhaustive_group_of(node, graph).names
        assert fusion.group_of(node, graph).names == want, node.name
        assert node.name in want


@pytest.mark.parametrize("branches_3x3", [1, 3], ids=["repvgg", "mobileone"])
def test_group_of_work_is_linear_in_depth(branches_3x3, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    grows = 0
    real_grow = fusion._grow

    def counting_grow(anchor, graph):  # type: ignore[no-untyped-def]
        nonlocal grows
        grows += 1
        return real_grow(anchor, graph)

    monkeypatch.setattr(fusion, "_grow", counting_grow)
    work = {}
    for blocks in (12, 24):
        graph = _multibranch(blocks=blocks, branches_3x3=branches_3x3)
        grows = 0
        for node in graph.topological_order():
            assert node in fusion.group_of(node, graph).nodes, node.name
        work[blocks] = grows
    # Twice the blocks, twice the work (the exhaustive walk multiplied it by 3^12 and more).
    assert work[24] <= 2.2 * work[12], work
