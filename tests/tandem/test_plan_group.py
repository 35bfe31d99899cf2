"""``tandem plan-group``: joint placement of several models with a reason per lane, a group YAML
read by the project's YAML reader (errors name file, line and field), and ``-o DIR`` plans that
run together on one set of workers, every frame matching ONNX Runtime."""

from __future__ import annotations

import json

import pytest

from devices.concurrent import ConcurrentRunner
from devices.plan import read_plan
from tandem.cli import main
from tandem.metrics import closeness
from tests.models import ort_run, random_inputs


def _json(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def two_models(zoo_model):
    return zoo_model("resnet18", resolution=64), zoo_model("unet-small", resolution=64)


def test_joint_placement_reports_every_lane_and_never_loses_to_single_devices(capsys, two_models):
    a, b = two_models
    doc = _json(capsys, ["plan-group", str(a), str(b), "--target", "orin-agx-64gb", "--int8",
                         "--json"])  # fmt: skip
    assert doc["predicted"] is True and doc["goal"] == "makespan"
    assert set(doc["models"]) == {a.stem, b.stem}
    for m in doc["models"].values():
        assert m["rate_fps"] >= m["baseline_fps"] * (1 - 1e-6) or m["rate_fps"] > 0
    assert doc["gain_over_single_device"] >= -1e-9
    devices = {d for lane in doc["lanes"] if lane["rate_fps"] > 0 for d in lane["load_ms"]}
    assert {"gpu", "dla0", "dla1"} <= devices
    for lane in doc["lanes"]:
        assert lane["reason"]
        assert lane["reason"].startswith("unused") == (lane["rate_fps"] < 1e-6)


def test_group_file_with_rates(tmp_path, capsys, two_models):
    a, b = two_models
    group = tmp_path / "group.yaml"
    group.write_text(
        f"models:\n  - model: {a}\n    rate: 100\n    priority: 1\n  - model: {b}\n    rate: 50\n"
    )
    doc = _json(capsys, ["plan-group", "--config", str(group), "--target", "orin-agx-64gb",
                         "--json"])  # fmt: skip
    assert doc["goal"] == "rates"
    assert doc["models"][a.stem]["met"] and doc["models"][b.stem]["met"]
    assert doc["models"][a.stem]["rate_fps"] == pytest.approx(100.0)
    assert max(doc["utilisation"].values()) < 1.0  # the targets leave headroom


@pytest.mark.parametrize(
    "text, message",
    [
        ("models:\n  - model: {a}\n    rate: -3\n", "group.yaml:3: models[1].rate: expected"),
        ("models:\n  - model: {a}\n    speed: 3\n", "models[1].speed: unknown key"),
        ("models:\n  - model: nope.onnx\n", "models[1].model: "),
        ("model: {a}\n", "model: unknown key"),
    ],
)
def test_bad_group_files_are_one_line_errors(tmp_path, capsys, two_models, text, message):
    group = tmp_path / "group.yaml"
    group.write_text(text.format(a=two_models[0]))
    capsys.readouterr()
    assert main(["plan-group", "--config", str(group), "--target", "orin-agx-64gb"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_models_and_config_together_are_refused(capsys, two_models, tmp_path):
    capsys.readouterr()
    argv = ["plan-group", str(two_models[0]), "--config", str(tmp_path / "g.yaml"),
            "--target", "orin-agx-64gb"]  # fmt: skip
    assert main(argv) == 1
    assert "give the models" in capsys.readouterr().err


def test_group_plans_run_together_and_match_onnxruntime(tmp_path, capsys, two_models):
    a, b = two_models
    out = tmp_path / "plans"
    doc = _json(capsys, ["plan-group", str(a), str(b), "--target", "orin-agx-64gb", "--fp16",
                         "-o", str(out), "--json"])  # fmt: skip
    plans = [read_plan(doc["models"][m.stem]["plan"]) for m in (a, b)]
    frames = {str(p.header["model"]): [random_inputs(m, seed=i) for i in range(3)]
              for p, m in zip(plans, (a, b))}  # fmt: skip
    with ConcurrentRunner(plans) as runner:
        got = runner.run_frames(frames)
        tracks = {e.track for e in runner.trace}
    assert {"DLA0", "DLA1"} & tracks
    for plan, model in zip(plans, (a, b)):
        name = str(plan.header["model"])
        for feeds, outputs in zip(frames[name], got[name]):
            for key, ref in ort_run(model, feeds).items():
                assert closeness(outputs[key], ref).cosine >= 0.999, (name, key)


def test_build_with_dla_core_any_and_throughput_writes_a_concurrent_plan(
    tmp_path, capsys, two_models
):
    policy = tmp_path / "p.yaml"
    policy.write_text("dla_core: any\nobjective: throughput\n")
    plan_path = tmp_path / "r18.plan"
    capsys.readouterr()
    argv = ["build", str(two_models[0]), "--target", "orin-agx-64gb", "--fp16", "--policy",
            str(policy), "-o", str(plan_path), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "concurrent plan of" in printed and "frames/s" in printed
    header = read_plan(plan_path).header
    # how many lanes win is the cost model's call (since the Orin DLA FP16 rate refit, ResNet-18
    # at 64 px is one GPU+DLA pipeline lane; before, GPU and DLA copies side by side)
    assert header["lanes"] and all(lane["rate_fps"] > 0 for lane in header["lanes"])
    assert {"gpu", "dla0"} <= {s["device"] for s in header["segments"]}
    # a latency objective with dla_core any stays one engine on core 0
    policy.write_text("dla_core: any\n")
    assert main(argv) == 0
    header = read_plan(plan_path).header
    assert "lanes" not in header and "dla1" not in {s["device"] for s in header["segments"]}
