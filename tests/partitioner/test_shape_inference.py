"""Shape inference: agrees with onnx's own on zoo models, keeps symbols, names bad layers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from partitioner.errors import ShapeError
from partitioner.ir import Graph, Shape
from partitioner.onnx_import import import_onnx
from partitioner.shape_inference import infer_shapes
from tandem.zoo import ZOO_MODELS, build_model
from tests.partitioner.onnx_cases import CASES, Case

SMALL = {"resnet18": 64, "resnet50": 64, "mobilenetv2": 64, "mobilenetv3-small": 64,
         "yolov5s": 64, "ssd-mobilenet": 96, "unet-small": 64, "vit-tiny": 32}  # fmt: skip


def onnx_shapes(model: onnx.ModelProto) -> dict[str, tuple[object, ...]]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.tensor_type.HasField("shape"):
            out[vi.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in vi.type.tensor_type.shape.dim
            )
    return out


def compare(graph: Graph, reference: dict[str, tuple[object, ...]]) -> int:
    """Assert every tensor both sides know agrees; return how many were compared."""
    compared = 0
    for name, t in graph.tensors.items():
        if name not in reference or t.shape is None:
            continue
        ref = reference[name]
        assert len(ref) == len(t.shape), f"{name}: rank {t.shape} vs onnx {ref}"
        for mine, theirs in zip(t.shape, ref):
            if isinstance(mine, int) and isinstance(theirs, int):
                assert mine == theirs, f"{name}: {t.shape} vs onnx {ref}"
        compared += 1
    return compared


@pytest.mark.parametrize("opset", [11, 17, 21])
@pytest.mark.parametrize("name", sorted(ZOO_MODELS))
def test_zoo_shapes_match_onnx_shape_inference(name: str, opset: int) -> None:
    model = build_model(name, batch=2, resolution=SMALL[name], opset=opset)
    graph = import_onnx(model)
    assert compare(graph, onnx_shapes(model)) > 0.9 * len(graph.nodes)
    assert all(t.is_static for t in graph.tensors.values() if t.producer is not None)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "unet-small"])
def test_symbolic_batch_flows_through_zoo_models(name: str) -> None:
    model = build_model(name, resolution=SMALL[name], opset=17)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    for out in model.graph.output:
        out.type.tensor_type.shape.dim[0].dim_param = "N"
    graph = import_onnx(model)
    for t in graph.outputs:
        assert t.shape is not None and t.shape[0] == "N", (t.name, t.shape)
    fixed = import_onnx(model, fixed_dims={"N": 3})
    assert all(t.is_static and t.shape[0] == 3 for t in fixed.outputs)  # type: ignore[index]


@pytest.mark.parametrize("case", [c for c in CASES if c.id != "Constant"], ids=lambda c: c.id)
def test_op_table_matches_onnx_shape_inference(case: Case) -> None:
    model = case.model(max(case.opsets()))
    compare(import_onnx(model), onnx_shapes(model))


# ----- symbolic rules, built directly on the IR -------------------------------------------------
def graph_with(op: str, shapes: list[Shape], attrs: dict[str, object] | None = None,
               consts: dict[int, np.ndarray] | None = None, outputs: int = 1) -> Graph:  # fmt: skip
    g = Graph("g")
    ins = []
    for i, s in enumerate(shapes):
        if consts and i in consts:
            ins.append(g.add_constant(f"c{i}", consts[i]))
        else:
            ins.append(g.add_input(f"in{i}", s))
    node = g.add_node(op, ins, outputs, attrs or {}, name="layer")
    for t in node.outputs:
        g.mark_output(t)
    return g


I64 = np.int64


@pytest.mark.parametrize(
    "op,shapes,attrs,consts,expected",
    [
        ("Add", [("N", 3, 1), (1, 3, "W")], {}, {}, ("N", 3, "W")),
        ("Add", [("N", 3), ("M", 3)], {}, {}, (None, 3)),
        ("Add", [("N", 3), (5, 1)], {}, {}, (5, 3)),
        ("Transpose", [("N", "C", 4)], {"perm": [2, 0, 1]}, {}, (4, "N", "C")),
        ("Concat", [("N", 2), ("N", 3)], {"axis": 1}, {}, ("N", 5)),
        ("Concat", [("N", 2), ("M", 2)], {"axis": 0}, {}, (None, 2)),
        ("Reshape", [("N", 4, 6), (3,)], {}, {1: np.array([0, -1, 2], I64)}, ("N", 12, 2)),
        ("Reshape", [("N", 4, 6), (2,)], {}, {1: np.array([-1, 24], I64)}, ("N", 24)),
        ("Flatten", [("N", 4, 6)], {"axis": 1}, {}, ("N", 24)),
        ("MatMul", [("N", 1, 4, 5), (7, 5, 3)], {}, {}, ("N", 7, 4, 3)),
        ("Gather", [("N", 10, 4), (2, 3)], {"axis": 1}, {}, ("N", 2, 3, 4)),
        ("Slice", [("N", 10), (1,), (1,), (1,)], {},
         {1: np.array([2], I64), 2: np.array([-1], I64), 3: np.array([1], I64)},
         ("N", 7)),  # fmt: skip
        ("Slice", [("N", 10), (1,), (1,)], {},
         {1: np.array([2], I64), 2: np.array([-1], I64)}, (None, 10)),  # fmt: skip
        ("Unsqueeze", [("N", 4), (2,)], {}, {1: np.array([0, -1], I64)}, (1, "N", 4, 1)),
        ("ReduceMean", [("N", 4, 5), (1,)], {"keepdims": 0}, {1: np.array([1], I64)}, ("N", 5)),
        ("GlobalAveragePool", [("N", 8, "H", "W")], {}, {}, ("N", 8, 1, 1)),
        ("Shape", [("N", 8, 3)], {}, {}, (3,)),
        ("Conv", [("N", 3, "H", "W"), (8, 3, 1, 1)], {}, {1: np.ones((8, 3, 1, 1), np.float32)},
         ("N", 8, "H", "W")),  # fmt: skip
        ("Conv", [("N", 3, 9, 9), (6, 1, 3, 3)], {"group": 3, "strides": [2, 2]},
         {1: np.ones((6, 1, 3, 3), np.float32)}, ("N", 6, 4, 4)),
    ],
)
def test_symbolic_rule(op: str, shapes: list[Shape], attrs: dict[str, object],
                       consts: dict[int, np.ndarray], expected: Shape) -> None:  # fmt: skip
    g = graph_with(op, shapes, attrs, consts)
    infer_shapes(g)
    assert g.outputs[0].shape == expected


@pytest.mark.parametrize(
    "op,shapes,attrs,consts,message",
    [
        ("Conv", [(1, 3, 8, 8), (4, 5, 3, 3)], {}, {1: np.ones((4, 5, 3, 3), np.float32)},
         "input has 3 channels but the weight"),  # fmt: skip
        ("Add", [(2, 3), (4, 3)], {}, {}, "not broadcastable"),
        ("MatMul", [(2, 3), (4, 5)], {}, {}, "inner dims differ"),
        ("Gemm", [(2, 3), (4, 5)], {}, {}, "inner dims differ"),
        ("Concat", [(2, 3), (4, 5)], {"axis": 0}, {}, "dim 1 differs"),
        ("Reshape", [(2, 3), (2,)], {}, {1: np.array([4, 2], I64)}, "element counts differ"),
        ("Squeeze", [(2, 3), (1,)], {}, {1: np.array([0], I64)}, "cannot squeeze dim 0"),
        ("Transpose", [(2, 3)], {"perm": [0, 0]}, {}, "not a permutation"),
        ("Flatten", [(2, 3)], {"axis": 5}, {}, "out of range"),
    ],
)
def test_inconsistent_shapes_raise_naming_the_layer(
    op: str, shapes: list[Shape], attrs: dict[str, object], consts: dict[int, np.ndarray],
    message: str,
) -> None:
    with pytest.raises(ShapeError, match=rf"layer 'layer' \({op}\): .*{message}"):
        infer_shapes(graph_with(op, shapes, attrs, consts))


def test_value_info_hints_fill_what_inference_cannot() -> None:
    g = Graph("g")
    x = g.add_input("x", ("N", 4))
    shp = g.add_input("shape", (2,), "int64")
    out = g.add_variable("y", ("N", 8), "float32")  # as if from the file's value_info
    g.add_node("Reshape", [x, shp], [out], name="reshape")
    g.mark_output(out)
    infer_shapes(g)
    assert out.shape == ("N", 8)


# ----- fixing input shapes after import -------------------------------------------------
def test_fix_input_shapes_binds_symbols_everywhere_and_resolves_padding() -> None:
    from partitioner.passes import resolve_auto_pad
    from partitioner.shape_inference import fix_input_shapes
    from tests.partitioner.onnx_cases import CASES

    case = next(c for c in CASES if c.id == "Conv-same")
    case = Case(case.id, case.nodes, {"x": (("N", 3, "H", "W"), np.float32)})
    g = import_onnx(case.model(17))
    assert g.outputs[0].shape == ("N", 4, None, None) and "auto_pad" in g.nodes[0].attrs
    fix_input_shapes(g, {"x": (2, 3, 9, 8)})
    assert g.outputs[0].shape == (2, 4, 5, 4)
    assert resolve_auto_pad(g) and g.nodes[0].attrs["pads"] == [1, 0, 1, 1]


@pytest.mark.parametrize(
    "shapes,message",
    [
        ({"nope": (1, 3, 4, 4)}, "no input 'nope'; its inputs are: x"),
        ({"x": (1, 3, 4)}, "has rank 4"),
        ({"x": (1, 5, 4, 4)}, "fixes dim 1 to 3"),
    ],
)
def test_fix_input_shapes_errors(shapes: dict[str, tuple[int, ...]], message: str) -> None:
    from partitioner.shape_inference import fix_input_shapes

    g = Graph("g")
    x = g.add_input("x", ("N", 3, "H", "H"))
    g.mark_output(g.add_node("Relu", [x], 1).outputs[0])
    with pytest.raises(ShapeError, match=message):
        fix_input_shapes(g, shapes)


def test_fix_input_shapes_refuses_two_values_for_one_symbol() -> None:
    from partitioner.shape_inference import fix_input_shapes

    g = Graph("g")
    x = g.add_input("x", ("N", 3, "H", "H"))
    g.mark_output(g.add_node("Relu", [x], 1).outputs[0])
    with pytest.raises(ShapeError, match="symbol 'H' is given two values: 4 and 5"):
        fix_input_shapes(g, {"x": (1, 3, 4, 5)})


@pytest.mark.parametrize("fill", [-np.inf, np.nan, 0.5])
def test_float_constants_that_are_not_whole_numbers_are_not_shape_values(fill: float) -> None:
    """An additive attention mask (-inf where masked) added to a float input: value tracking
    for shape arithmetic once turned every constant into ints and raised OverflowError on the
    infinity (a traceback from ``tandem inspect``)."""
    mask = np.array([[0.0, fill, 1.0, 2.0]], np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Add", ["x", "mask"], ["y"])], "masked",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [onnx.numpy_helper.from_array(mask, "mask")],
    )  # fmt: skip
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    g = import_onnx(model)
    assert g.tensors["y"].static_shape() == (1, 4)
