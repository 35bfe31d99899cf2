"""Export: Graph -> checked ONNX model that ONNX Runtime runs like the original, at opset 21
and back down at the model's own opset."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from partitioner.errors import ModelError
from partitioner.ir import Graph
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import import_onnx
from tandem.zoo import ZOO_MODELS, build_model
from tests.partitioner.onnx_cases import Case
from tests.partitioner.test_import_ops import PARAMS, assert_same, ort_run

SMALL = {"vit-tiny": 32, "ssd-mobilenet": 96}


def zoo_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        vi.name: rng.standard_normal([d.dim_value for d in vi.type.tensor_type.shape.dim]).astype(
            np.float32
        )
        for vi in model.graph.input
    }


# resnet50 adds nothing over resnet18 but 9 s; each model runs at two opsets so that all four
# (11, 13, 17, 21) are covered across the zoo.
ZOO_PARAMS = [
    (name, opset)
    for i, name in enumerate(sorted(set(ZOO_MODELS) - {"resnet50"}))
    for opset in ((11, 21) if i % 2 else (13, 17))
]


@pytest.mark.parametrize("name,opset", ZOO_PARAMS)
def test_zoo_round_trip_at_the_source_opset(name: str, opset: int) -> None:
    model = build_model(name, resolution=SMALL.get(name, 64), opset=opset)
    exported = export_onnx(import_onnx(model), opset=opset)
    onnx.checker.check_model(exported, full_check=True)
    assert exported.opset_import[0].version == opset
    feeds = zoo_feeds(model)
    assert_same(ort_run(exported, feeds), ort_run(model, feeds))


@pytest.mark.parametrize("case,opset", PARAMS)
def test_op_round_trip_at_the_source_opset(case: Case, opset: int) -> None:
    model = case.model(opset)
    exported = export_onnx(import_onnx(model), opset=opset)
    onnx.checker.check_model(exported, full_check=True)
    feeds = case.feeds()
    assert_same(ort_run(exported, feeds), ort_run(model, feeds))


def symbolic_graph() -> Graph:
    g = Graph("sym")
    x = g.add_input("x", ("N", 3, None))
    r = g.add_node("Relu", [x], 1, name="relu")
    r.outputs[0].shape, r.outputs[0].dtype = ("N", 3, None), "float32"
    g.mark_output(r.outputs[0])
    return g


def test_symbolic_and_unknown_dims_are_written_as_dim_param_and_empty() -> None:
    model = export_onnx(symbolic_graph())
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and dims[1].dim_value == 3
    assert not dims[2].HasField("dim_param") and not dims[2].HasField("dim_value")
    onnx.checker.check_model(model, full_check=True)
    out = ort_run(model, {"x": -np.ones((2, 3, 5), np.float32)})[0]
    assert out.shape == (2, 3, 5) and not out.any()


def test_value_info_and_metadata_are_written() -> None:
    model = build_model("resnet18", resolution=32)
    g = import_onnx(model)
    exported = export_onnx(g)
    named = {vi.name for vi in exported.graph.value_info}
    internal = {t.name for n in g.nodes for t in n.outputs} - {t.name for t in g.outputs}
    assert internal <= named
    assert {p.key: p.value for p in exported.metadata_props}["source_opset"] == "17"


def test_constant_graph_output_becomes_a_constant_node() -> None:
    g = Graph("c")
    g.add_input("x", (2,))
    g.mark_output(g.add_constant("y", np.array([1.0, 2.0], np.float32)))
    model = export_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node[0].op_type == "Constant"
    np.testing.assert_array_equal(ort_run(model, {"x": np.zeros(2, np.float32)})[0], [1, 2])


@pytest.mark.parametrize(
    "op,attrs,opset,message",
    [
        ("Gelu", {}, 17, "Gelu exists from opset 20"),
        ("HardSwish", {}, 13, "HardSwish exists from opset 14"),
        ("Softmax", {"axis": 1}, 11, "only the last axis"),
        ("Relu", {}, 10, "expected 11"),
    ],
)
def test_ops_an_older_opset_cannot_express_are_refused(
    op: str, attrs: dict[str, object], opset: int, message: str
) -> None:
    g = Graph("g")
    x = g.add_input("x", (2, 3, 4))
    n = g.add_node(op, [x], 1, attrs, name="layer")
    g.mark_output(n.outputs[0])
    with pytest.raises(ModelError, match=message):
        export_onnx(g, opset=opset)
