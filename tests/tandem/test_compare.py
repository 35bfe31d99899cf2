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
