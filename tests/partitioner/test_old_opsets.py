"""Opsets 7..10 import as their opset-21 form (partitioner.onnx_opset): each op whose signature
changed before opset 11, in its old form, against ONNX Runtime running the same file -- ONNX
Model Zoo files and older exporters write them (TensorRT's parser takes them too)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from devices.cpu import CpuRunner
from devices.io import run_onnxruntime_model
from partitioner.errors import UnsupportedOpError
from partitioner.onnx_import import import_onnx


@dataclass
class Old:
    name: str
    opset: int
    op: str
    attrs: dict[str, Any]
    x: tuple[int, ...] = (1, 3, 4, 5)
    consts: dict[str, np.ndarray] = field(default_factory=dict)  # extra inputs, in order
    outputs: int = 1


RNG = np.random.default_rng(4)
CASES = [
    Old("slice9", 9, "Slice", {"starts": [1, 0], "ends": [3, -1], "axes": [1, 3]}),
    Old("slice9_no_axes", 9, "Slice", {"starts": [0, 1, 1, 2], "ends": [1, 3, 4, 5]}),
    Old("pad10_constant", 10, "Pad", {"pads": [0, 0, 1, 2, 0, 0, 2, 1], "value": 1.5}),
    Old("pad10_reflect", 10, "Pad", {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "reflect"}),
    Old("clip10", 10, "Clip", {"min": -0.5, "max": 0.75}),
    Old("clip7_max_only", 7, "Clip", {"max": 0.25}),
    Old("topk9", 9, "TopK", {"k": 2, "axis": 3}, outputs=2),
    Old("resize10_nearest", 10, "Resize", {"mode": "nearest"},
        consts={"scales": np.array([1, 1, 2, 3], np.float32)}),
    Old("resize10_linear", 10, "Resize", {"mode": "linear"},
        consts={"scales": np.array([1, 1, 2, 1.5], np.float32)}),
    Old("upsample7", 7, "Upsample", {"mode": "nearest", "scales": [1.0, 1.0, 2.0, 2.0]}),
    Old("upsample9_linear", 9, "Upsample", {"mode": "linear"},
        consts={"scales": np.array([1, 1, 2, 2], np.float32)}),
    Old("batchnorm7", 7, "BatchNormalization", {"spatial": 1, "epsilon": 1e-3},
        consts={k: v.astype(np.float32) for k, v in (
            ("s", RNG.uniform(0.5, 2, 3)), ("b", RNG.standard_normal(3)),
            ("m", RNG.standard_normal(3)), ("v", RNG.uniform(0.5, 2, 3)))}),
    Old("scatter9", 9, "Scatter", {"axis": 1}, x=(2, 5),
        consts={"i": np.array([[0, 2], [4, 1]], np.int64),
                "u": np.array([[9, 8], [7, 6]], np.float32)}),
    Old("relu7", 7, "Relu", {}),
]  # fmt: skip


def model_of(case: Old) -> Any:
    inits = [numpy_helper.from_array(v, k) for k, v in case.consts.items()]
    outs = [f"y{i}" for i in range(case.outputs)]
    node = helper.make_node(case.op, ["x", *case.consts], outs, name=case.name, **case.attrs)
    graph = helper.make_graph(
        [node], case.name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, case.x)],
        [helper.make_tensor_value_info(o, TensorProto.INT64 if i else TensorProto.FLOAT, None)
         for i, o in enumerate(outs)], inits)  # a second output: TopK's indices
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_old_form_matches_onnx_runtime(case: Old) -> None:
    model = model_of(case)
    x = RNG.standard_normal(case.x).astype(np.float32)
    expected = run_onnxruntime_model(model, {"x": x}, case.name)
    graph = import_onnx(model)
    with CpuRunner(graph) as runner:
        got = runner.infer({"x": x})
    for name, ref in expected.items():
        assert got[name].shape == ref.shape, name
        np.testing.assert_allclose(got[name], ref, rtol=1e-6, atol=1e-6, err_msg=name)


def test_per_element_batchnorm_of_opset_7_is_refused_by_name() -> None:
    case = next(c for c in CASES if c.name == "batchnorm7")
    case = Old("bn_spatial0", 7, case.op, {"spatial": 0}, consts=case.consts)
    with pytest.raises(UnsupportedOpError, match="bn_spatial0.*spatial=0"):
        import_onnx(model_of(case))
