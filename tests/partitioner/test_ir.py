import numpy as np
import pytest

from partitioner.errors import GraphError
from partitioner.ir import Graph


def small_graph() -> Graph:
    g = Graph("g")
    x = g.add_input("x", (1, 3, 8, 8))
    w = g.add_constant("w", np.ones((4, 3, 3, 3), np.float32))
    conv = g.add_node("Conv", [x, w], 1, {"pads": [1, 1, 1, 1]}, name="conv")
    relu = g.add_node("Relu", [conv.outputs[0]], 1, name="relu")
    g.mark_output(relu.outputs[0])
    return g


def test_links_are_kept_consistent():
    g = small_graph()
    conv, relu = g.nodes
    assert conv.outputs[0].consumers == [relu]
    assert relu.inputs[0].producer is conv
    g.lint()


def test_replace_all_uses_and_remove_node():
    g = small_graph()
    conv, relu = g.nodes
    g.replace_all_uses(relu.outputs[0], conv.outputs[0])
    g.remove_node(relu)
    assert g.outputs == [conv.outputs[0]]
    assert conv.outputs[0].consumers == []
    g.lint()


def test_cycle_is_reported_with_layer_names():
    g = Graph("cyc")
    x = g.add_input("x", (1,))
    t = g.add_variable("t")
    a = g.add_node("Add", [x, t], 1, name="a")
    g.add_node("Relu", [a.outputs[0]], [t], name="b")
    with pytest.raises(GraphError, match="cycle through layers: a, b"):
        g.lint()


def test_topological_order_is_stable():
    g = Graph("g")
    x = g.add_input("x", (1,))
    late = g.add_variable("late")
    consumer = g.add_node("Relu", [late], 1, name="consumer")
    g.add_node("Neg", [x], [late], name="producer")
    g.mark_output(consumer.outputs[0])
    g.toposort()
    assert [n.name for n in g.nodes] == ["producer", "consumer"]


def test_duplicate_tensor_name_refused():
    g = Graph("g")
    g.add_input("x", (1,))
    with pytest.raises(GraphError, match="used twice"):
        g.add_variable("x")


def test_clone_is_independent():
    g = small_graph()
    c = g.clone()
    c.lint()
    assert [n.name for n in c.nodes] == ["conv", "relu"]
    assert c.nodes[0] is not g.nodes[0]
