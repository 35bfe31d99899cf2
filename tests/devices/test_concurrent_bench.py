"""``tandem run-group``: a plan group served at once here, measured figures beside predicted
ones; what is not one group is refused in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from devices.concurrent_bench import frame_counts, load_group
from devices.plan import Plan, new_header, read_plan, write_plan
from partitioner.errors import InputError
from tandem.cli import main


def test_run_group_reports_each_model_and_device_with_sources(
    group_dir: Path, tmp_path: Path, capsys
) -> None:
    trace_path = tmp_path / "t.json"
    capsys.readouterr()
    argv = ["run-group", str(group_dir), "--frames", "3", "--backend", "cpu",
            "--profile", str(trace_path), "--json"]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    plans = [read_plan(p) for p in sorted(group_dir.glob("*.plan"))]
    assert doc["plans"] == [str(p.path) for p in plans]
    assert set(doc["models"]) == {p.header["model"] for p in plans}
    for m in doc["models"].values():
        assert m["frames"] == 3 and m["measured_fps"] > 0  # equal planned rates: equal frames
        assert m["measured_source"].startswith("emulated on ")
    busy = {d: f["measured_busy"] for d, f in doc["devices"].items()}
    used = {s["device"] for p in plans for s in p.header["segments"]}
    assert {d for d, b in busy.items() if b > 0} == used
    assert doc["devices"]["dla0"]["measured_source"] is None  # the planner left it idle
    events = json.loads(trace_path.read_text(encoding="utf-8"))["traceEvents"]
    spans = [e for e in events if e.get("ph") == "X"]
    assert {e["pid"] for e in spans} == {1, 2}  # ran here, and predicted for the board
    assert all(e["args"]["source"] for e in spans)


def test_frames_follow_the_planned_rates() -> None:
    assert frame_counts({"a": 100.0, "b": 25.0, "c": 0.1}, 20) == {"a": 20, "b": 5, "c": 2}
    assert frame_counts({"a": 0.0, "b": 0.0}, 7) == {"a": 7, "b": 7}  # at least 2: both buffers


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty", "no .plan files in this folder; write a plan group with"),
        ("missing", "no such plan file or plan-group folder"),
        ("twice", "both serve model"),
        ("board", "a plan group runs on one board, but its plans are for"),
    ],
)
def test_what_is_not_one_group_is_one_line(
    case: str, message: str, group_dir: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "g"
    if case == "empty":
        folder.mkdir()
    elif case == "twice":
        shutil.copytree(group_dir, folder)
        first = sorted(folder.glob("*.plan"))[0]
        shutil.copy(first, folder / f"again-{first.name}")
    elif case == "board":
        shutil.copytree(group_dir, folder)
        other = Plan(new_header("orin-nano-8gb", "fp16", model="other"))
        write_plan(other, folder / "other.plan")
    capsys.readouterr()
    assert main(["run-group", str(folder), "--backend", "cpu"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_load_group_keeps_the_order_it_was_given(group_dir: Path) -> None:
    paths = sorted(group_dir.glob("*.plan"), reverse=True)
    assert [p.path for p in load_group(paths)] == paths
    with pytest.raises(InputError, match="both serve model"):
        load_group([paths[0], paths[0]])


@pytest.mark.gpu
def test_group_on_cuda_and_the_emulator_labels_each_device(tmp_path: Path, zoo_model) -> None:
    """CUDA + emulator: an AGX Orin board file whose GPU is this machine's (as
    tests/devices/test_concurrent.py does), so GPU segments are measured here and DLA segments
    emulated beside them; each device's figure says which."""
    from devices.concurrent_bench import bench_group
    from devices.runtime import cuda_arch_here
    from partitioner.concurrency import Demand
    from partitioner.policy import Policy
    from targets.build import resolve_target
    from targets.catalog import BOARDS_DIR
    from targets.concurrency import build_group, plan_group
    from targets.request import BuildRequest

    text = (BOARDS_DIR / "orin-agx-64gb.yaml").read_text(encoding="utf-8")
    text = text.replace("name: orin-agx-64gb", "name: orin-with-this-gpu")
    text = text.replace("arch: sm_87", f"arch: {cuda_arch_here()}")
    board = tmp_path / "orin-with-this-gpu.yaml"
    board.write_text(text, encoding="utf-8")
    policy = Policy.from_yaml("dla_core: any\nprecision: fp16\n", "p.yaml")
    models = {name: zoo_model(name, resolution=64) for name in ("unet-small", "mobilenetv3-small")}
    # no cubins: the kernels compile with this machine's NVRTC when the plans load
    requests = {
        name: BuildRequest(str(path), resolve_target(str(board)), policy, cubins=False)
        for name, path in models.items()
    }
    group = plan_group(requests, [Demand(name) for name in models])
    plans = list(build_group(group).values())
    report = bench_group(plans, frames=6, backend="cuda").report
    devices = report["devices"]
    assert devices["gpu"]["measured_busy"] > 0, devices
    assert devices["gpu"]["measured_source"].startswith("measured on "), devices
    for dla in ("dla0", "dla1"):
        if devices[dla]["measured_busy"] > 0:
            assert devices[dla]["measured_source"].startswith("emulated on "), devices
    assert "measured on " in report["measured_source"]
    for model in report["models"].values():
        assert model["measured_fps"] > 0
        assert model["predicted_source"] == "predicted for orin-with-this-gpu MAXN"
