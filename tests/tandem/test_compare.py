"""compare: tolerances per output, saved/loaded inputs, value ranges, and --bisect naming the
layer whose weights a test perturbed inside a plan."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devices.plan import Blob, read_plan, write_plan
from tandem.cli import main


def _json(capsys, *argv: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(list(argv))
    return code, json.loads(capsys.readouterr().out)


def test_per_output_tolerance_and_exit_code(capsys, zoo_model):
    model = str(zoo_model("resnet18"))
    code, doc = _json(capsys, "compare", model, "--target", "orin-agx-64gb", "--fp16", "--json")
    assert code == 3  # FP16 on the DLA emulator is not within the default 1e-4
    logits = doc["outputs"]["logits"]
    assert not logits["match"] and logits["cosine"] > 0.9999
    code, doc = _json(
        capsys,
        "compare",
        model,
        "--target",
        "orin-agx-64gb",
        "--fp16",
        "--json",
        "--rtol",
        "logits:1e-2",
    )
    assert code == 0 and doc["outputs"]["logits"]["rtol"] == 1e-2


def test_saved_inputs_load_back_and_val_range_applies(tmp_path, capsys, zoo_model):
    model = str(zoo_model("resnet18"))
    saved = tmp_path / "inputs.npz"
    assert main(["compare", model, "--val-range", "0,2", "--save-inputs", str(saved)]) == 0
    with np.load(saved) as data:
        x = data["input"]
    assert x.min() >= 0 and x.max() <= 2 and x.max() > 1
    assert main(["compare", model, "--load-inputs", str(saved)]) == 0


def test_bad_tolerance_is_a_clear_error(capsys, zoo_model):
    assert main(["compare", str(zoo_model("resnet18")), "--atol", "logits:lots"]) == 1
    assert "--atol 'logits:lots'" in capsys.readouterr().err


@pytest.mark.parametrize("victim", ["layer2.0.conv2", "layer3.1.conv1"])
def test_bisect_names_the_perturbed_layer(tmp_path, capsys, zoo_model, victim):
    model = str(zoo_model("resnet18"))
    plan_path = tmp_path / "r18.plan"
    assert (
        main(
            ["build", model, "--target", "orin-agx-64gb", "--fp32", "-o", str(plan_path), "--quiet"]
        )
        == 0
    )
    plan = read_plan(plan_path)
    # the victim's weight: the first array input of that layer in its segment's graph
    for seg in plan.header["segments"]:
        node = next((n for n in seg["graph"]["nodes"] if n["name"] == victim), None)
        if node:
            arrays = {t["name"]: t.get("array") for t in seg["graph"]["tensors"]}
            key = arrays[node["inputs"][1]]
            break
    weights = np.array(plan.array(key))
    weights[0] *= 3.0
    plan.blobs = {k: (Blob.from_array(weights) if k == key else b) for k, b in plan.blobs.items()}
    write_plan(plan, plan_path)
    code, doc = _json(capsys, "compare", model, "--plan", str(plan_path), "--bisect", "--json")
    assert code == 3
    assert doc["first_bad"]["layer"] == victim
    assert doc["first_bad"]["device"] == "gpu" and doc["first_bad"]["precision"] == "fp32"


def _nonfinite_model(tmp_path, divisor: float = 0.0) -> str:
    """Log of inputs in (-1, 1) (NaN for the negatives, -inf at 0), and x / divisor (+-inf for
    the default 0)."""
    import onnx
    from onnx import TensorProto as TP
    from onnx import helper, numpy_helper

    zero = numpy_helper.from_array(np.full(1, divisor, np.float32), "zero")
    g = helper.make_graph(
        [helper.make_node("Log", ["x"], ["log"]), helper.make_node("Div", ["x", "zero"], ["inf"])],
        "nonfinite",
        [helper.make_tensor_value_info("x", TP.FLOAT, [2, 8])],
        [helper.make_tensor_value_info(n, TP.FLOAT, [2, 8]) for n in ("log", "inf")],
        [zero],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "nonfinite.onnx"
    onnx.save(model, str(path))
    return str(path)


def test_identical_nan_and_inf_on_both_sides_match(tmp_path, capsys):
    model = _nonfinite_model(tmp_path)
    inputs = tmp_path / "x.npz"
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(2, 8)
    x[0, 0] = 0.0
    np.savez(inputs, x=x)
    code, doc = _json(capsys, "compare", model, "--inputs", str(inputs), "--json")
    assert code == 0 and doc["match"]
    log, inf = doc["outputs"]["log"], doc["outputs"]["inf"]
    assert log["nonfinite_equal"] == 8 and log["nonfinite_mismatch"] == 0  # 7 NaN and one -inf
    assert inf["nonfinite_equal"] == 16 and inf["match"]
    capsys.readouterr()
    assert main(["compare", model, "--inputs", str(inputs)]) == 0
    assert "8 same" in capsys.readouterr().out


def test_a_nan_against_a_number_is_still_a_mismatch(tmp_path, capsys):
    """Tandem's plan computes what ONNX Runtime computes except for one layer whose divisor was
    made NaN: the table says where NaN meets a number, and compare exits 3 whatever the
    tolerance."""
    model = str(_nonfinite_model(tmp_path, divisor=2.0))
    plan_path = tmp_path / "nf.plan"
    assert main(["build", model, "--target", "orin-agx-64gb", "--fp32", "-o", str(plan_path),
                 "--quiet"]) == 0  # fmt: skip
    plan = read_plan(plan_path)
    zero_key = next(
        t["array"]
        for seg in plan.header["segments"]
        for t in seg["graph"]["tensors"]
        if t["name"] == "zero"
    )
    plan.blobs = {
        k: (Blob.from_array(np.full(1, np.nan, np.float32)) if k == zero_key else b)
        for k, b in plan.blobs.items()
    }
    write_plan(plan, plan_path)
    inputs = tmp_path / "x.npz"
    np.savez(inputs, x=np.full((2, 8), 0.5, np.float32))  # ORT: log finite, x / 2 = 0.25
    capsys.readouterr()
    code = main(["compare", model, "--plan", str(plan_path), "--inputs", str(inputs),
                 "--atol", "1e30", "--backend", "cpu"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 3 and "16 differ" in out, out
