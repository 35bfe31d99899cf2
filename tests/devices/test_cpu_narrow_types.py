"""bfloat16 / float8 / int4 casts and quantisation on the CPU backend, against ONNX Runtime.

ONNX Runtime's Python binding cannot hand back these element types, so each case is a chain
that ends in float32: ``Cast(to=T) -> Cast(to=FLOAT)`` or ``QuantizeLinear -> DequantizeLinear``.
The inputs include what the narrow types cannot hold: out-of-range values (saturation or
wrap-around), +-inf, NaN, halves (rounding) and values below the smallest subnormal.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from devices.cpu import CpuRunner
from partitioner.onnx_import import import_onnx

X = np.array([0.3, -1.7, 500, -1e6, np.inf, -np.inf, np.nan, 2.5, -0.01, 1e-9, 7.49, -8.5],
             np.float32)  # fmt: skip
FLOAT8 = [TP.FLOAT8E4M3FN, TP.FLOAT8E4M3FNUZ, TP.FLOAT8E5M2, TP.FLOAT8E5M2FNUZ]


def _both(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> tuple[np.ndarray, ...]:
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TP.FLOAT, [X.size])],
        [helper.make_tensor_value_info("y", TP.FLOAT, None)], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"x": X})[0]
    with CpuRunner(import_onnx(model)) as runner:
        got = runner.infer({"x": X})["y"]
    return got, want


CASTS = [(to, {"saturate": s}) for to in FLOAT8 for s in (1, 0)]
CASTS += [(to, {}) for to in (TP.BFLOAT16, TP.INT4, TP.UINT4, TP.FLOAT16)]


@pytest.mark.parametrize(
    ("to", "attrs"), CASTS, ids=[f"{TP.DataType.Name(t)}-{a}" for t, a in CASTS]
)
def test_cast_round_trip_matches_ort(to: int, attrs: dict[str, int]) -> None:
    got, want = _both([helper.make_node("Cast", ["x"], ["t"], to=to, **attrs),
                       helper.make_node("Cast", ["t"], ["y"], to=TP.FLOAT)], [])  # fmt: skip
    np.testing.assert_array_equal(got, want)  # NaN positions must agree too


QDQ = [(TP.INT4, -2), (TP.UINT4, 3), (TP.FLOAT8E4M3FN, 0), (TP.FLOAT8E5M2, 0), (TP.INT8, 1),
       (TP.UINT8, 3), (TP.INT16, -5), (TP.UINT16, 9)]  # fmt: skip


@pytest.mark.parametrize(("to", "zero"), QDQ, ids=[TP.DataType.Name(t) for t, _ in QDQ])
def test_quantize_dequantize_matches_ort(to: int, zero: int) -> None:
    dtype = helper.tensor_dtype_to_np_dtype(to)
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "s"),
             numpy_helper.from_array(np.array(zero).astype(dtype), "z")]  # fmt: skip
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"])]  # fmt: skip
    got, want = _both(nodes, inits)
    np.testing.assert_array_equal(got, want)


def test_narrow_constants_import_with_their_dtype() -> None:
    """An int4 / bfloat16 initializer keeps its element type in the IR and round-trips."""
    from partitioner.onnx_export import export_onnx

    w = np.array([-8, -1, 0, 7], np.int8)
    inits = [numpy_helper.from_array(np.array(0.25, np.float32), "s"),
             helper.make_tensor("w", TP.INT4, [4], w.tolist())]  # fmt: skip
    node = helper.make_node("DequantizeLinear", ["w", "s"], ["y"])
    graph = helper.make_graph([node], "m", [], [helper.make_tensor_value_info("y", TP.FLOAT, [4])],
                              inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    g = import_onnx(model)  # no constant folding here: the importer builds the graph only
    assert g.tensors["w"].dtype == "int4"
    back = export_onnx(g)
    assert {i.name: i.data_type for i in back.graph.initializer}["w"] == TP.INT4
    w_back = next(i for i in back.graph.initializer if i.name == "w")
    assert numpy_helper.to_array(w_back).astype(np.int8).tolist() == w.tolist()
    with CpuRunner(g) as runner:
        np.testing.assert_array_equal(runner.infer({})["y"], w.astype(np.float32) * 0.25)
