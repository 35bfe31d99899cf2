"""A Q/DQ (QAT) model builds for the DLA at INT8 without calibration data: its Q/DQ layers are
stripped and their scales become the DLA's per-tensor scales (TensorRT's qdq-translator)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tandem.cli import main
from tandem.metrics import closeness
from tests.models import ort_run


def _qat_model(path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (8, 16, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w1, "w1"),
        numpy_helper.from_array(w2, "w2"),
        numpy_helper.from_array(np.array(2.0 / 127, np.float32), "s_in"),
        numpy_helper.from_array(np.array(4.0 / 127, np.float32), "s_mid"),
        numpy_helper.from_array(np.array(0, np.int8), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "zp"], ["xq"], name="q_in"),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "zp"], ["xd"], name="dq_in"),
        helper.make_node("Conv", ["xd", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("QuantizeLinear", ["r1", "s_mid", "zp"], ["rq"], name="q_mid"),
        helper.make_node("DequantizeLinear", ["rq", "s_mid", "zp"], ["rd"], name="dq_mid"),
        helper.make_node("Conv", ["rd", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "qat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_qat_model_runs_int8_on_the_dla_with_its_own_scales(tmp_path, capsys):
    model = tmp_path / "qat.onnx"
    _qat_model(model)
    plan = tmp_path / "qat.plan"
    assert main(["build", str(model), "--target", "orin-agx-64gb", "--int8", "-o", str(plan)]) == 0
    capsys.readouterr()
    assert main(["inspect", str(plan), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    placed = {row["name"]: (row["device"], row["precision"]) for row in doc["layers"]}
    assert placed["conv1"] == ("dla0", "int8") and placed["conv2"][0] == "dla0"
    assert not any(name.startswith(("q_", "dq_")) for name in placed)
    x = np.random.default_rng(1).uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "in.npz", x=x)
    assert (
        main(
            [
                "run",
                str(plan),
                "--inputs",
                str(tmp_path / "in.npz"),
                "--save-outputs",
                str(tmp_path / "out.npz"),
            ]
        )
        == 0
    )
    with np.load(tmp_path / "out.npz") as out:
        c = closeness(out["y"], ort_run(model, {"x": x})["y"])
    assert c.cosine >= 0.98, c
