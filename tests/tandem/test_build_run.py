"""Acceptance of [plans-deploy] on the CI machine: plans cross-built for a Jetson target run with
--backend cpu (GPU segments on the reference, DLA segments on the emulator) and match ONNX
Runtime; inspect reads plans; a truncated or bit-flipped plan is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tandem.cli import main
from tandem.metrics import closeness
from tests.models import ort_run, random_inputs


def _build(model, plan, *extra) -> None:
    assert main(["build", str(model), "-o", str(plan), "--quiet", *extra]) == 0


def _run_plan(capsys, plan, feeds_path, out_path, *extra) -> dict:
    capsys.readouterr()
    code = main(
        [
            "run",
            str(plan),
            "--inputs",
            str(feeds_path),
            "--save-outputs",
            str(out_path),
            "--json",
            *extra,
        ]
    )
    assert code == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "precision, min_cosine, max_rel",
    [("--fp32", None, 1e-4), ("--fp16", 0.9999, None)],
)
def test_cross_built_orin_plan_matches_onnxruntime(
    tmp_path, capsys, zoo_model, precision, min_cosine, max_rel
):
    model = zoo_model("resnet18")
    plan = tmp_path / "r18.plan"
    _build(model, plan, "--target", "orin-agx-64gb", precision)
    feeds = random_inputs(model)
    feeds_path = tmp_path / "in.npz"
    np.savez(feeds_path, **feeds)
    doc = _run_plan(capsys, plan, feeds_path, tmp_path / "out.npz", "--backend", "cpu")
    assert doc["target"] == "orin-agx-64gb"
    expected = ort_run(model, feeds)
    with np.load(tmp_path / "out.npz") as out:
        for name, ref in expected.items():
            c = closeness(out[name], ref)
            if max_rel is not None:
                assert c.max_rel <= max_rel, c
            if min_cosine is not None:
                assert c.cosine >= min_cosine, c
    backends = set(doc["backends"].values())
    if precision == "--fp32":
        assert backends == {"cpu"}  # the DLA runs no FP32: every layer is a GPU layer
    else:
        assert "dla-emulator" in backends and "cpu" in backends


def test_inspect_plan_json_lists_segments_and_placements(tmp_path, capsys, zoo_model):
    model = zoo_model("mobilenetv2")
    plan = tmp_path / "m.plan"
    _build(model, plan, "--target", "xavier-agx", "--fp16")
    capsys.readouterr()
    assert main(["inspect", str(plan), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["target"] == "xavier-agx"
    assert {s["device"] for s in doc["segments"]} >= {"dla0"}
    placed = {layer["name"] for layer in doc["layers"]}
    assert placed == {name for s in doc["segments"] for name in s["layers"]}
    assert doc["predicted_ms"]["total"] > 0


def test_profile_has_one_track_per_device(tmp_path, capsys, zoo_model):
    model = zoo_model("resnet18")
    trace = tmp_path / "trace.json"
    capsys.readouterr()
    code = main(["run", str(model), "--target", "orin-agx-64gb", "--fp16", "--profile", str(trace)])
    assert code == 0
    events = json.loads(trace.read_text(encoding="utf-8"))["traceEvents"]
    tracks = {e["args"]["name"] for e in events if e["ph"] == "M"}
    assert {"DLA0", "copy"} <= tracks
    spans = [e for e in events if e["ph"] == "X"]
    assert spans and all(e["dur"] > 0 for e in spans)


@pytest.mark.parametrize("damage", ["truncate", "bitflip"])
def test_damaged_plan_is_refused(tmp_path, capsys, zoo_model, damage):
    model = zoo_model("resnet18")
    plan = tmp_path / "r18.plan"
    _build(model, plan, "--target", "orin-agx-64gb", "--fp16")
    data = bytearray(plan.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 3]
    else:
        data[len(data) // 2] ^= 0x10
    plan.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["run", str(plan)]) == 1
    err = capsys.readouterr().err
    assert "r18.plan" in err and len(err.strip().splitlines()) == 1
