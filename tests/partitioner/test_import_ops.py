"""Every supported op imports at opsets 11..21, normalises to the opset-21 form, infers the
shapes ONNX Runtime produces, and exports back to a model ONNX Runtime runs identically."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from partitioner.ir import Constant
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import SUPPORTED_OPS, import_onnx
from tests.partitioner.onnx_cases import CASES, Case

PARAMS = [pytest.param(c, o, id=f"{c.id}-op{o}") for c in CASES for o in c.opsets()]

# Attributes that opset 21 takes as inputs: after import they must never be attributes.
MOVED_TO_INPUTS = {"Split": "split", "Squeeze": "axes", "Unsqueeze": "axes",
                   "ReduceMean": "axes", "ReduceSum": "axes", "ReduceMax": "axes",
                   "ReduceMin": "axes", "ReduceProd": "axes", "ReduceL1": "axes",
                   "ReduceL2": "axes", "ReduceLogSum": "axes", "ReduceLogSumExp": "axes",
                   "ReduceSumSquare": "axes"}  # fmt: skip
EXPLICIT = {
    "Conv": {"kernel_shape", "strides", "dilations", "pads", "group"},
    "ConvTranspose": {"kernel_shape", "strides", "dilations", "pads", "group", "output_padding"},
    "MaxPool": {"kernel_shape", "strides", "dilations", "pads", "ceil_mode", "storage_order"},
    "AveragePool": {"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad"},
    "Gemm": {"alpha", "beta", "transA", "transB"},
    "LRN": {"alpha", "beta", "bias", "size"},
}


def ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(g, w)


def test_case_table_covers_every_supported_op() -> None:
    # Upsample exists only in old opsets: tests/partitioner/test_old_opsets.py
    covered = {n.op_type for c in CASES for n in c.nodes(21)[0]} | {"Upsample"}
    assert SUPPORTED_OPS - covered == set()


@pytest.mark.parametrize("case,opset", PARAMS)
def test_op_imports_normalises_and_round_trips(case: Case, opset: int) -> None:
    model = case.model(opset)
    feeds = case.feeds()
    want = ort_run(model, feeds)

    graph = import_onnx(model)
    graph.lint()
    assert graph.opset == 21 and graph.metadata["source_opset"] == str(opset)
    for n in graph.nodes:
        assert n.op in SUPPORTED_OPS and n.op not in ("Constant", "Upsample")
        assert MOVED_TO_INPUTS.get(n.op) not in n.attrs, f"{n.op} kept an attribute"
        missing = EXPLICIT.get(n.op, set()) - set(n.attrs)
        assert not missing, f"{n.op} lacks explicit {missing}"
        assert "auto_pad" not in n.attrs  # static shapes: always resolved
        assert "output_shape" not in n.attrs
    # Shape inference agrees with what ONNX Runtime actually produced.
    for t, w in zip(graph.outputs, want):
        shape = t.shape
        if case.data_dependent:  # a None dim is set by the values at run time
            assert shape is not None and len(shape) == w.ndim
            shape = tuple(w.shape[i] if d is None else d for i, d in enumerate(shape))
        assert shape == w.shape, f"{t.name}: inferred {t.shape}, ORT gave {w.shape}"
        assert t.dtype == str(w.dtype)

    exported = export_onnx(graph)
    onnx.checker.check_model(exported, full_check=True)
    assert [o.name for o in exported.graph.output] == [n for n, _ in case.outputs]
    assert_same(ort_run(exported, feeds), want)


def test_opset11_split_without_sizes_gets_num_outputs() -> None:
    case = next(c for c in CASES if c.id == "Split-equal")
    g = import_onnx(case.model(11))
    (split,) = g.nodes
    assert split.attrs["num_outputs"] == 2 and split.input(1) is None


@pytest.mark.parametrize(
    "case_id,opset,ops",
    [
        ("Softmax-axis1", 11, ["Flatten", "Softmax", "Shape", "Reshape"]),
        ("Softmax-axis1", 13, ["Softmax"]),
        ("Softmax-last", 11, ["Softmax"]),
        ("Softmax-default", 11, ["Flatten", "Softmax", "Shape", "Reshape"]),
        ("LogSoftmax-axis2", 12, ["Flatten", "LogSoftmax", "Shape", "Reshape"]),
    ],
)
def test_legacy_softmax_is_rewritten_exactly(case_id: str, opset: int, ops: list[str]) -> None:
    case = next(c for c in CASES if c.id == case_id)
    g = import_onnx(case.model(opset))
    assert [n.op for n in g.nodes] == ops
    soft = next(n for n in g.nodes if n.op.endswith("Softmax"))
    assert soft.attrs["axis"] == -1 or opset >= 13
    assert g.outputs[0].name == "y"


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_becomes_resize(mode: str) -> None:
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    def model(opset: int) -> onnx.ModelProto:
        g = helper.make_graph(
            [helper.make_node("Upsample", ["x", "s"], ["y"], mode=mode)],
            "up",
            [helper.make_tensor_value_info("x", TP.FLOAT, [1, 2, 3, 4])],
            [helper.make_tensor_value_info("y", TP.FLOAT, None)],
            [numpy_helper.from_array(np.array([1, 1, 2, 3], np.float32), "s")],
        )
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7
        return m

    feeds = {"x": np.random.default_rng(0).standard_normal((1, 2, 3, 4)).astype(np.float32)}
    want = ort_run(model(9), feeds)  # ORT runs Upsample only at the opsets that define it
    g = import_onnx(model(11))
    (resize,) = g.nodes
    assert resize.op == "Resize" and resize.attrs["coordinate_transformation_mode"] == "asymmetric"
    assert g.outputs[0].shape == (1, 2, 6, 12)
    assert_same(ort_run(export_onnx(g), feeds), want)


@pytest.mark.parametrize(
    "case_id,pads",
    [("Conv-same", [0, 0, 1, 1]), ("Conv-same-lower", [1, 1, 1, 1]), ("Conv-valid", [0, 0, 0, 0]),
     ("MaxPool-same", [0, 0, 1, 1])],
)  # fmt: skip
def test_auto_pad_resolved_to_explicit_pads(case_id: str, pads: list[int]) -> None:
    case = next(c for c in CASES if c.id == case_id)
    (n,) = import_onnx(case.model(17)).nodes
    assert n.attrs["pads"] == pads and "auto_pad" not in n.attrs


def test_auto_pad_kept_when_spatial_dims_are_symbolic() -> None:
    case = next(c for c in CASES if c.id == "Conv-same")
    case = Case(case.id, case.nodes, {"x": ((1, 3, "h", "w"), np.float32)})
    (n,) = import_onnx(case.model(17)).nodes
    assert n.attrs["auto_pad"] == "SAME_UPPER"
    assert n.outputs[0].shape == (1, 4, None, None)


def test_conv_kernel_shape_taken_from_weight() -> None:
    case = next(c for c in CASES if c.id == "Conv")
    (n,) = import_onnx(case.model(13)).nodes
    assert n.attrs["kernel_shape"] == [3, 3] and n.attrs["dilations"] == [1, 1]
    assert isinstance(n.input(1), Constant) and n.input(1).values.shape == (4, 3, 3, 3)


def test_dropout_mask_dropped_when_unused() -> None:
    case = next(c for c in CASES if c.id == "Dropout")
    (n,) = import_onnx(case.model(13)).nodes
    assert len(n.outputs) == 1 and "mask" not in import_onnx(case.model(13)).tensors
