"""Subgraph extraction: cut pieces run in sequence give the whole model's outputs."""

from __future__ import annotations

import numpy as np
import pytest

from devices.cpu.registry import evaluate_node
from partitioner.errors import GraphError
from partitioner.ir import Constant, Graph
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify
from partitioner.subgraph import extract_between, extract_subgraph
from tandem.zoo import build_model
from tests.partitioner.test_import_ops import ort_run


def run(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = ort_run(export_onnx(graph), {t.name: feeds[t.name] for t in graph.inputs})
    return {t.name: v for t, v in zip(graph.outputs, out)}


def model(name: str) -> tuple[Graph, dict[str, np.ndarray], dict[str, np.ndarray]]:
    g = simplify(import_onnx(build_model(name, resolution=64)), evaluate_node)
    rng = np.random.default_rng(3)
    feeds = {t.name: rng.standard_normal(t.static_shape()).astype(np.float32) for t in g.inputs}
    return g, feeds, run(g, feeds)


@pytest.mark.parametrize("name,cuts", [("resnet18", [7, 20, 33]), ("yolov5s", [40, 120, 200])])
def test_pieces_run_in_sequence_reproduce_the_model(name: str, cuts: list[int]) -> None:
    g, feeds, want = model(name)
    order = [n.name for n in g.topological_order()]
    bounds = [0, *cuts, len(order)]
    values = dict(feeds)
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        piece = extract_subgraph(g, order[lo:hi], f"piece{i}")
        piece.lint()
        assert all(not isinstance(t, Constant) for t in piece.inputs)
        for t in piece.inputs:  # shapes and dtypes are carried over
            assert t.shape == g.tensors[t.name].shape and t.dtype == g.tensors[t.name].dtype
        values.update(run(piece, values))
    for name_, ref in want.items():
        np.testing.assert_allclose(values[name_], ref, rtol=1e-5, atol=1e-5)


def test_inputs_outputs_and_constants_of_a_cut() -> None:
    g = Graph("g")
    x = g.add_input("x", (1, 4))
    w = g.add_constant("w", np.ones((4, 4), np.float32))
    a = g.add_node("MatMul", [x, w], 1, name="a").outputs[0]
    b = g.add_node("Relu", [a], 1, name="b").outputs[0]
    c = g.add_node("Sigmoid", [b], 1, name="c").outputs[0]
    d = g.add_node("Add", [c, a], 1, name="d").outputs[0]
    g.mark_output(d)
    g.mark_output(b)
    sub = extract_subgraph(g, ["b", "c"], "mid")
    assert [t.name for t in sub.inputs] == [a.name]
    assert [t.name for t in sub.outputs] == [b.name, c.name]  # b is a graph output, c read by d
    head = extract_subgraph(g, ["a"], "head")
    assert "w" in head.tensors and isinstance(head.tensors["w"], Constant)
    assert [t.name for t in head.inputs] == ["x"]


def test_unknown_layer_name() -> None:
    g, _, _ = model("resnet18")
    with pytest.raises(GraphError, match="no layer.* named nope"):
        extract_subgraph(g, ["nope"], "x")


def test_extract_between_tensors() -> None:
    g, feeds, want = model("resnet18")
    order = g.topological_order()
    # A residual block's output (Relu after the Add) is a cut every path crosses.
    block_ends = [n for n in order if n.op == "Relu" and n.inputs[0].producer.op == "Add"]  # type: ignore[union-attr]
    mid = block_ends[len(block_ends) // 2].outputs[0].name
    first = extract_between(g, [g.inputs[0].name], [mid])
    second = extract_between(g, [mid], [t.name for t in g.outputs])
    assert len(first) + len(second) == len(g)
    values = {**feeds, **run(first, feeds)}
    got = run(second, values)
    for name, ref in want.items():
        np.testing.assert_allclose(got[name], ref, rtol=1e-5, atol=1e-5)


def test_extract_between_needs_every_input() -> None:
    g, _, _ = model("resnet18")
    order = g.topological_order()
    mid = order[10].outputs[0].name
    with pytest.raises(GraphError, match=f"depend on '{g.inputs[0].name}'"):
        extract_between(g, [mid], [order[20].outputs[0].name])
