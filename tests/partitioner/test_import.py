"""ONNX import: errors (one test per case), external data, symbolic dims, stable names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from partitioner.errors import GraphError, ModelError, ShapeError, TandemError, UnsupportedOpError
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import import_onnx
from tests.partitioner.test_import_ops import ort_run


def make_model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto] | None = None,
               inits: list[onnx.TensorProto] | None = None, opset: int = 17,
               outputs: list[str] | None = None) -> onnx.ModelProto:  # fmt: skip
    inputs = inputs or [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4])]
    outs = [helper.make_tensor_value_info(o, TP.FLOAT, None) for o in (outputs or ["y"])]
    g = helper.make_graph(nodes, "m", inputs, outs, inits or [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def relu_model(opset: int = 17) -> onnx.ModelProto:
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="r")], opset=opset)


# ----- errors: each names the file and says what was expected ---------------------------------
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.onnx"
    with pytest.raises(ModelError, match=r"nope\.onnx: no such file; expected an ONNX model"):
        import_onnx(path)


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.onnx"
    path.write_text("this is a text file, not a protobuf\n" * 5, encoding="utf-8")
    with pytest.raises(ModelError, match=r"notes\.onnx: not an ONNX model"):
        import_onnx(path)


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_protobuf(tmp_path: Path, fraction: float) -> None:
    w = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])], inits=[w])
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(ModelError, match=r"cut\.onnx: (not an ONNX model or a truncated|trunc)"):
        import_onnx(path)


def test_truncated_at_a_field_boundary_is_still_caught(tmp_path: Path) -> None:
    model = relu_model()
    data = model.SerializeToString()
    del model.opset_import[:]  # what a file cut right after the graph field parses to
    path = tmp_path / "cut.onnx"
    path.write_bytes(model.SerializeToString())
    assert len(path.read_bytes()) < len(data)
    with pytest.raises(ModelError, match="truncated"):
        import_onnx(path)


def test_unsupported_ops_are_all_listed_in_one_message() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("RoiAlign", ["a"], ["b"], name="roi1"),
        helper.make_node("Loop", ["b"], ["c"], name="loop"),
        helper.make_node("RoiAlign", ["c"], ["d"], name="roi2"),
        helper.make_node("Custom", ["d"], ["y"], name="mine", domain="com.example"),
    ]
    with pytest.raises(UnsupportedOpError) as err:
        import_onnx(make_model(nodes))
    msg = str(err.value)
    assert "\n" not in msg
    assert "RoiAlign (2: roi1, roi2)" in msg
    assert "Loop (1: loop)" in msg and "com.example::Custom (1: mine)" in msg
    assert "Relu" not in msg


# Optional outputs the CPU reference computes: (node, output element types), checked vs ORT.
_EXTRA_OUTPUTS = {
    "dropout_mask": (helper.make_node("Dropout", ["x"], ["y", "mask"]), [TP.FLOAT, TP.BOOL]),
    "maxpool_indices": (
        helper.make_node("MaxPool", ["x"], ["y", "idx"], kernel_shape=[2, 2], strides=[2, 2]),
        [TP.FLOAT, TP.INT64],
    ),
}


@pytest.mark.parametrize("case", sorted(_EXTRA_OUTPUTS))
def test_used_optional_outputs_import_and_match_ort(case: str) -> None:
    from devices.cpu import CpuRunner

    node, types = _EXTRA_OUTPUTS[case]
    outs = [helper.make_tensor_value_info(o, t, None) for o, t in zip(node.output, types)]
    graph = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4])], outs
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    g = import_onnx(model)
    assert [t.name for t in g.outputs] == list(node.output)
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4)).astype(np.float32)
    with CpuRunner(g) as runner:
        got = runner.infer({"x": x})
    want = ort_run(model, {"x": x})
    for t, w in zip(g.outputs, want):
        assert t.dtype == w.dtype.name and tuple(t.shape or ()) == w.shape
        np.testing.assert_array_equal(got[t.name], w)


def test_batchnorm_training_mode_keeps_running_statistics() -> None:
    from devices.cpu import CpuRunner

    c = 3
    rng = np.random.default_rng(1)
    params = {n: rng.uniform(0.5, 1.5, c).astype(np.float32) for n in ("s", "b", "m", "v")}
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"],
                            ["y", "rm", "rv"], training_mode=1, momentum=0.8)  # fmt: skip
    model = make_model([node], inits=[numpy_helper.from_array(v, n) for n, v in params.items()],
                       opset=15, outputs=["y", "rm", "rv"])  # fmt: skip
    g = import_onnx(model)
    bn = next(n for n in g.nodes if n.op == "BatchNormalization")
    assert bn.attrs["training_mode"] == 1 and [t.shape for t in g.outputs[1:]] == [(c,), (c,)]
    x = rng.standard_normal((1, c, 4, 4)).astype(np.float32)
    with CpuRunner(g) as runner:
        got = runner.infer({"x": x})
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    y = (x - mean.reshape(1, c, 1, 1)) / np.sqrt(var.reshape(1, c, 1, 1) + 1e-5)
    y = y * params["s"].reshape(1, c, 1, 1) + params["b"].reshape(1, c, 1, 1)
    np.testing.assert_allclose(got["y"], y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["rm"], params["m"] * 0.8 + mean * 0.2, rtol=1e-6)
    np.testing.assert_allclose(got["rv"], params["v"] * 0.8 + var * 0.2, rtol=1e-6)


def test_batchnorm_statistics_outside_training_mode_are_unsupported() -> None:
    """Opset < 14 lists saved mean / var outputs that only training computes."""
    c = 3
    inits = [numpy_helper.from_array(np.ones(c, np.float32), n) for n in ("s", "b", "m", "v")]
    node = helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["y", "mean"],
                            name="bn")  # fmt: skip
    with pytest.raises(UnsupportedOpError, match=r"statistics outputs outside training mode"):
        import_onnx(make_model([node], inits=inits, opset=13, outputs=["y", "mean"]))


@pytest.mark.parametrize("opset", [6, 22])
def test_opset_out_of_range(opset: int) -> None:
    with pytest.raises(ModelError, match=rf"opset {opset} is not supported; .*opsets 7\.\.21") \
            as info:
        import_onnx(relu_model(opset))
    # an old file: the upgrade path is named with what it changes (Upsample's linear resizing)
    assert ("re-export" in str(info.value) and "Upsample" in str(info.value)) == (opset < 7)


def test_cyclic_graph_names_the_layers() -> None:
    nodes = [
        helper.make_node("Add", ["x", "t"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["t"], name="loop_back"),
        helper.make_node("Relu", ["a"], ["y"], name="out"),
    ]
    with pytest.raises(GraphError, match=r"model 'm'.*cycle through layers: add, loop_back, out"):
        import_onnx(make_model(nodes))


def test_tensor_produced_twice() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="a"),
             helper.make_node("Sigmoid", ["x"], ["y"], name="b")]  # fmt: skip
    with pytest.raises(GraphError, match="tensor name 'y' is defined twice"):
        import_onnx(make_model(nodes))


def test_dangling_input_is_named() -> None:
    nodes = [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")]
    with pytest.raises(GraphError, match="layer 'add' reads 'ghost'"):
        import_onnx(make_model(nodes))


def test_shape_mismatch_is_a_shape_error_naming_the_layer() -> None:
    w = numpy_helper.from_array(np.ones((8, 5, 3, 3), np.float32), "w")
    with pytest.raises(TandemError, match=r"layer 'conv' \(Conv\): input has 3 channels"):
        import_onnx(make_model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                               inits=[w]))  # fmt: skip


def test_unknown_fixed_dim_name_is_reported() -> None:
    with pytest.raises(ShapeError, match="no dynamic dim 'bacth'.*dynamic dims are: none"):
        import_onnx(relu_model(), fixed_dims={"bacth": 1})


# ----- names ------------------------------------------------------------------------------------
def test_empty_and_duplicate_node_names_become_op_n() -> None:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name=""),
        helper.make_node("Relu", ["a"], ["b"], name="Relu_0"),  # collides with a generated name
        helper.make_node("Sigmoid", ["b"], ["c"], name="dup"),
        helper.make_node("Tanh", ["c"], ["y"], name="dup"),
    ]
    g = import_onnx(make_model(nodes))
    assert [n.name for n in g.nodes] == ["Relu_1", "Relu_0", "dup", "Tanh_0"]
    again = import_onnx(make_model(nodes))
    assert [n.name for n in again.nodes] == [n.name for n in g.nodes]


def test_nodes_out_of_order_in_the_file_are_sorted() -> None:
    nodes = [helper.make_node("Sigmoid", ["a"], ["y"], name="second"),
             helper.make_node("Relu", ["x"], ["a"], name="first")]  # fmt: skip
    assert [n.name for n in import_onnx(make_model(nodes)).nodes] == ["first", "second"]


# ----- external data, paths, symbolic dims -----------------------------------------------
def test_external_data_is_loaded_from_the_model_directory(tmp_path: Path) -> None:
    weights = np.random.default_rng(0).standard_normal((8, 3, 3, 3)).astype(np.float32)
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
                       inits=[numpy_helper.from_array(weights, "w")])  # fmt: skip
    feeds = {"x": np.ones((1, 3, 4, 4), np.float32)}
    want = ort_run(model, feeds)[0]
    sub = tmp_path / "model"
    sub.mkdir()
    onnx.save(model, sub / "big.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="big.weights", size_threshold=0)  # fmt: skip
    assert (sub / "big.weights").exists()
    g = import_onnx(sub / "big.onnx")
    np.testing.assert_array_equal(g.tensors["w"].values, weights)
    np.testing.assert_allclose(ort_run(export_onnx(g), feeds)[0], want, rtol=1e-6)


def test_missing_external_data_file(tmp_path: Path) -> None:
    model = make_model([helper.make_node("Conv", ["x", "w"], ["y"])],
                       inits=[numpy_helper.from_array(np.ones((2, 3, 1, 1), np.float32), "w")])
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, location="w.bin",
              size_threshold=0)  # fmt: skip
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ModelError, match=r"m\.onnx: cannot read its external weight data"):
        import_onnx(tmp_path / "m.onnx")


def symbolic_model() -> onnx.ModelProto:
    """Conv -> Shape/Gather/Concat -> Reshape: the batch symbol must survive the shape subgraph."""
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    idx = numpy_helper.from_array(np.array([0], np.int64), "i0")
    rest = numpy_helper.from_array(np.array([-1], np.int64), "m1")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["b"], name="gather"),
        helper.make_node("Concat", ["b", "m1"], ["shp"], axis=0, name="concat"),
        helper.make_node("Reshape", ["c", "shp"], ["y"], name="reshape"),
    ]
    x = helper.make_tensor_value_info("x", TP.FLOAT, ["batch", 3, "h", 5])
    return make_model(nodes, inputs=[x], inits=[w, idx, rest])


def test_symbolic_dims_stay_symbolic() -> None:
    g = import_onnx(symbolic_model())
    assert g.inputs[0].shape == ("batch", 3, "h", 5)
    assert g.tensors["c"].shape == ("batch", 4, "h", 5)
    assert g.outputs[0].shape == ("batch", None)


def test_fixed_dims_replace_symbols() -> None:
    g = import_onnx(symbolic_model(), fixed_dims={"batch": 2, "h": 7})
    assert g.inputs[0].shape == (2, 3, 7, 5)
    assert g.outputs[0].shape == (2, 140)


def test_accepts_str_path_and_pathlike(tmp_path: Path) -> None:
    onnx.save(relu_model(), tmp_path / "r.onnx")
    assert [n.op for n in import_onnx(str(tmp_path / "r.onnx"))] == ["Relu"]
    g = import_onnx(tmp_path / "r.onnx")
    assert g.metadata["source"] == str(tmp_path / "r.onnx")


def test_initializers_listed_as_inputs_stay_constants() -> None:
    w = numpy_helper.from_array(np.ones((3, 1, 1), np.float32), "w")
    inputs = [helper.make_tensor_value_info("x", TP.FLOAT, [1, 3, 4, 4]),
              helper.make_tensor_value_info("w", TP.FLOAT, [3, 1, 1])]  # fmt: skip
    g = import_onnx(make_model([helper.make_node("Add", ["x", "w"], ["y"])], inputs, [w]))
    assert [t.name for t in g.inputs] == ["x"]


# ----- plugin ops -----------------------------------------------------------------------------
def plugin_model(with_value_info: bool) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Swizzle", ["a"], ["b"], name="swz", domain="com.example", factor=2),
        helper.make_node("Sigmoid", ["b"], ["y"], name="sig"),
    ]
    m = make_model(nodes)
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    if with_value_info:
        m.graph.value_info.append(helper.make_tensor_value_info("b", TP.FLOAT, [1, 6, 4, 4]))
    return m


def test_plugin_op_imports_with_its_shape_rule_and_exports_with_its_domain() -> None:
    def swizzle_shape(node: Any) -> list[tuple[Any, Any]]:
        n, c, h, w = node.inputs[0].shape
        return [((n, c * node.attrs["factor"], h, w), node.inputs[0].dtype)]

    g = import_onnx(plugin_model(False), custom_ops={"com.example::Swizzle": swizzle_shape})
    swz = g.node("swz")
    assert (swz.op, swz.domain, swz.attrs) == ("Swizzle", "com.example", {"factor": 2})
    assert g.outputs[0].shape == (1, 6, 4, 4)
    exported = export_onnx(g)
    onnx.checker.check_model(exported)
    assert {(o.domain, o.version) for o in exported.opset_import} == {("", 21), ("com.example", 1)}
    assert exported.graph.node[1].domain == "com.example"


def test_plugin_op_without_a_rule_keeps_the_files_shapes() -> None:
    g = import_onnx(plugin_model(True), custom_ops={"com.example::Swizzle": None})
    assert g.tensors["b"].shape == (1, 6, 4, 4) and g.outputs[0].shape == (1, 6, 4, 4)
