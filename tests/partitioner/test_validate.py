"""Model validation at import: onnx.checker on each node and tensor, Tandem's own checks of dims,
window attributes and Resize scales, and of every shape when dims are bound later. Each bad
model is refused with one message naming the file and the input, tensor or layer; the valid
neighbours of each case still import (and ONNX Runtime agrees they are valid)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from partitioner.errors import ModelError, ShapeError, TandemError
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.shape_inference import fix_input_shapes, infer_shapes
from partitioner.validate import MAX_TENSOR_BYTES, shape_problem
from tests.partitioner.test_import_ops import ort_run

X = [1, 3, 8, 8]


def model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto] = (),  # type: ignore[assignment]
          x: list[Any] = X, opset: int = 17) -> onnx.ModelProto:  # fmt: skip
    g = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TP.FLOAT, x)],
        [helper.make_tensor_value_info("y", TP.FLOAT, None)], list(inits),
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def relu(x: list[Any]) -> onnx.ModelProto:
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")], x=x)


def conv(**attrs: Any) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    return model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)], [w])


def pool(op: str = "MaxPool", **attrs: Any) -> onnx.ModelProto:
    attrs.setdefault("kernel_shape", [2, 2])
    return model([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)])


def resize(scales: list[float] | None = None, sizes: list[int] | None = None) -> onnx.ModelProto:
    inits, names = [], ["x", ""]
    if scales is not None:
        inits.append(numpy_helper.from_array(np.array(scales, np.float32), "scales"))
        names.append("scales")
    if sizes is not None:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        names += ["", "sizes"] if scales is None else ["sizes"]
    return model([helper.make_node("Resize", names, ["y"], name="resize", mode="nearest")],
                 inits)  # fmt: skip


def constant_with_short_data() -> onnx.ModelProto:
    """A Constant declaring 1e9 floats and holding 16 bytes."""
    value = onnx.TensorProto()
    value.name, value.data_type = "c", TP.FLOAT
    value.dims.extend([10**9])
    value.raw_data = b"\0" * 16
    return model([helper.make_node("Constant", [], ["c"], name="bigconst", value=value),
                  helper.make_node("Add", ["x", "c"], ["y"], name="add")], x=[1])  # fmt: skip


def initializer_with_short_data() -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    w.raw_data = w.raw_data[:20]
    return model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], [w])


def constant_of_shape(shape: list[int]) -> onnx.ModelProto:
    target = numpy_helper.from_array(np.array(shape, np.int64), "shape")
    return model([helper.make_node("ConstantOfShape", ["shape"], ["y"], name="fill")], [target])


INVALID: list[tuple[str, Callable[[], onnx.ModelProto], list[str]]] = [
    ("negative input dim", lambda: relu([1, -3, 4]), ["input 'x'", "dim 1 is -3"]),
    ("input of 4 TB", lambda: relu([1, 10**12]),
     ["input 'x'", "dim 1 is 1000000000000", "3.64 TiB", "1 TiB"]),
    ("Constant data shorter than dims", constant_with_short_data,
     ["layer 'bigconst' (Constant)", "16 bytes", "4000000000 bytes required"]),
    ("initializer data shorter than dims", initializer_with_short_data,
     ["initializer 'w'", "too small for the declared shape"]),
    ("empty input name", lambda: model([helper.make_node("Relu", [""], ["y"], name="relu")]),
     ["layer 'relu' (Relu)", "input 0", "empty string"]),
    ("node without inputs", lambda: model([helper.make_node("Relu", ["x"], ["a"], name="r0"),
                                           helper.make_node("Add", [], ["y"], name="add")]),
     ["layer 'add' (Add)", "input size 0"]),
    ("Conv without its weight", lambda: model([helper.make_node("Conv", ["x"], ["y"], name="c")]),
     ["layer 'c' (Conv)", "input size 1"]),
    ("Conv negative pads", lambda: conv(pads=[-1, -1, -1, -1]),
     ["layer 'conv' (Conv)", "pads [-1, -1, -1, -1] must all be >= 0"]),
    ("Conv stride 0", lambda: conv(strides=[0, 1]), ["layer 'conv'", "strides [0, 1]", ">= 1"]),
    ("Conv dilation 0", lambda: conv(dilations=[1, 0]), ["layer 'conv'", "dilations"]),
    ("Conv group 0", lambda: conv(group=0), ["layer 'conv'", "group 0"]),
    ("Conv pads of the wrong length", lambda: conv(pads=[1, 1]),
     ["layer 'conv'", "pads [1, 1] has 2 values; 4 expected"]),
    ("MaxPool negative pads", lambda: pool(pads=[0, -2, 0, 0]), ["layer 'pool' (MaxPool)", "pads"]),
    ("AveragePool kernel 0", lambda: pool("AveragePool", kernel_shape=[0, 2]),
     ["layer 'pool'", "kernel_shape [0, 2]"]),
    ("Resize negative scale", lambda: resize([1, 1, -2, 2]),
     ["layer 'resize' (Resize)", "scales [1.0, 1.0, -2.0, 2.0] must be finite and > 0"]),
    ("Resize infinite scale", lambda: resize([1, 1, np.inf, 2]), ["layer 'resize'", "inf"]),
    ("Resize NaN scale", lambda: resize([1, 1, np.nan, 2]), ["layer 'resize'", "nan"]),
    ("Resize scale 1e30", lambda: resize([1, 1, 1e30, 1e30]),
     ["layer 'resize'", "output 'y'", "no tensor may exceed 1 TiB"]),
    ("Resize size 0", lambda: resize(sizes=[1, 3, 0, 8]), ["layer 'resize'", "sizes", "> 0"]),
    ("ConstantOfShape with a negative dim", lambda: constant_of_shape([1, -3, 8]),
     ["layer 'fill' (ConstantOfShape)", "output 'y'", "dim 1 is -3"]),
    ("ConstantOfShape of 4e18 floats", lambda: constant_of_shape([10**6] * 3),
     ["layer 'fill' (ConstantOfShape)", "output 'y'", "needs 4e+18 bytes"]),
]


@pytest.mark.parametrize("make, needles", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_model_is_refused_naming_what(tmp_path, make, needles) -> None:
    path = tmp_path / "bad.onnx"
    onnx.save(make(), str(path))
    with pytest.raises(TandemError) as info:
        import_onnx(path)
    message = str(info.value)
    assert isinstance(info.value, ModelError | ShapeError)
    assert message.startswith(f"{path}: ") and "\n" not in message
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


VALID = [
    ("Conv with pads", lambda: conv(pads=[1, 1, 1, 1], strides=[2, 2])),
    ("MaxPool with pads", lambda: pool(pads=[0, 1, 0, 1])),
    ("Resize x2", lambda: resize([1, 1, 2, 2])),
    ("Resize to sizes", lambda: resize(sizes=[1, 3, 4, 16])),
    # negative pads are valid for Pad itself (they crop)
    ("Pad cropping", lambda: model(
        [helper.make_node("Pad", ["x", "pads"], ["y"], name="pad")],
        [numpy_helper.from_array(np.array([0, 0, -1, -1, 0, 0, -1, 0], np.int64), "pads")])),
]


@pytest.mark.parametrize("make", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_neighbours_import_and_match_onnxruntime(make) -> None:
    m = make()
    x = np.random.default_rng(0).standard_normal(X).astype(np.float32)
    from devices.cpu import run_graph

    got = run_graph(import_onnx(m), {"x": x})["y"]
    np.testing.assert_allclose(got, ort_run(m, {"x": x})[0], rtol=1e-5, atol=1e-5)


def test_what_onnx_runtime_runs_but_check_model_refuses_still_imports() -> None:
    """Nodes out of topological order and a graph output without a shape: ONNX Runtime runs
    both; onnx.checker.check_model refuses both, which is why the importer checks per node."""
    m = model([helper.make_node("Neg", ["a"], ["y"], name="neg"),
               helper.make_node("Relu", ["x"], ["a"], name="relu")])  # fmt: skip
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(m)
    x = np.random.default_rng(1).standard_normal(X).astype(np.float32)
    from devices.cpu import run_graph

    np.testing.assert_array_equal(run_graph(import_onnx(m), {"x": x})["y"], ort_run(m, {"x": x})[0])


def test_plugin_ops_are_not_checked_against_onnx_schemas() -> None:
    m = model([helper.make_node("MyOp", ["x"], ["y"], name="mine", domain="my.domain")])
    m.opset_import.append(helper.make_opsetid("my.domain", 1))
    graph = import_onnx(m, custom_ops={"my.domain::MyOp": None})
    assert graph.node("mine").domain == "my.domain"


def test_dims_bound_after_import_are_checked_too() -> None:
    """A symbolic dim is only a number once bound (--dim, profiles): checked then."""
    graph = import_onnx(relu(["n", 3, 4]))
    with pytest.raises(ShapeError, match=r"input 'x': dim 0 is 100000000000000: shape "
                                         r"100000000000000x3x4 \(float32\)"):  # fmt: skip
        fix_input_shapes(graph, {"x": (10**14, 3, 4)})
    fixed = import_onnx(relu(["n", 3, 4]), fixed_dims={"n": 5})
    assert fixed.inputs[0].shape == (5, 3, 4)


def test_graphs_built_without_onnx_are_held_to_the_same_checks() -> None:
    g = Graph("api")
    x = g.add_input("x", (1, 3, 8, 8))
    w = g.add_constant("w", np.ones((2, 3, 3, 3), np.float32))
    g.add_node("Conv", [x, w], 1, {"kernel_shape": [3, 3], "strides": [1, -1]}, name="conv")
    with pytest.raises(ShapeError, match=r"layer 'conv' \(Conv\): strides \[1, -1\] must all be"):
        infer_shapes(g)


def test_shape_bound_is_exact_at_the_limit() -> None:
    assert shape_problem((MAX_TENSOR_BYTES,), "uint8") is None
    assert "no tensor may exceed" in str(shape_problem((MAX_TENSOR_BYTES + 1,), "uint8"))
    assert shape_problem(("batch", None, 3), "float32") is None
    assert shape_problem(("batch", -1), "float32") == "dim 1 is -1; dims must be >= 0"
