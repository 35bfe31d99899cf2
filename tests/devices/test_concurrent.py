"""Concurrent plans end to end: built for AGX Orin with ``dla_core: any``, written and read back,
run with one worker per device (GPU segments on CUDA when this machine has the plan's GPU, else
on the CPU reference; DLA segments on the emulator), every frame matching ONNX Runtime, with
overlapping GPU/DLA0/DLA1 spans in the measured trace and in the predicted board timeline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from devices.concurrent import (
    ConcurrentRunner,
    overlapping,
    plan_lanes,
    predicted_schedule,
    runner_for,
)
from devices.plan import read_plan, write_plan
from devices.plan_header import HeaderFieldError, decode_header
from devices.runtime import PlanRunner, chrome_trace, predicted_trace
from partitioner.policy import Policy
from tandem.cli import main
from tandem.metrics import closeness
from targets.build import build, resolve_target
from targets.concurrency import build_concurrent
from targets.request import BuildRequest
from tests.models import ort_run, random_inputs

FRAMES = 6


@pytest.fixture(scope="module")
def concurrent_plan(zoo_model, tmp_path_factory):
    # UNet-small at 64x64, FP16, AGX Orin MAXN: the schedule uses the GPU and a whole copy on
    # each DLA core (bench/concurrency.py's planner; ResNet-18 there is one GPU+DLA pipeline)
    model = zoo_model("unet-small", resolution=64)
    policy = Policy.from_yaml("dla_core: any\nobjective: throughput\nprecision: fp16\n", "p.yaml")
    request = BuildRequest(str(model), resolve_target("orin-agx-64gb"), policy)
    group, plan = build_concurrent(request)
    path = write_plan(plan, tmp_path_factory.mktemp("conc") / "unet.plan")
    return model, group, read_plan(path)


def test_plan_lists_lanes_on_gpu_dla0_and_dla1(concurrent_plan):
    _, group, plan = concurrent_plan
    lanes = plan_lanes(plan)
    devices = {rec.device for lane in lanes for rec in lane.segments}
    assert {"gpu", "dla0", "dla1"} <= devices
    assert len(lanes) >= 2
    (rate,) = group.schedule.rates.values()
    assert sum(lane.rate_fps for lane in lanes) == pytest.approx(rate)
    # the best single device alone is slower than the plan (contention included)
    (alone,) = group.baseline.rates.values()
    assert rate > alone
    for rec in plan.header["lanes"]:
        assert rec["reason"] and rec["rate_fps"] > 0


def test_concurrent_run_matches_onnxruntime_with_overlapping_lanes(concurrent_plan):
    model, _, plan = concurrent_plan
    name = str(plan.header["model"])
    frames = [random_inputs(model, seed=i) for i in range(FRAMES)]
    with ConcurrentRunner(plan) as runner:
        out = runner.run_frames({name: frames})[name]
        trace = list(runner.trace)
    for feeds, got in zip(frames, out):
        for key, ref in ort_run(model, feeds).items():
            assert closeness(got[key], ref).cosine >= 0.999, key
    lanes_used = {e.args["lane"] for e in trace}
    assert len(lanes_used) >= 2
    tracks = {e.track for e in trace}
    assert {"DLA0", "DLA1"} <= tracks
    pairs = overlapping(trace)
    assert pairs, "no two devices ran at the same time"
    assert any({"DLA0", "DLA1"} == set(p) for p in pairs) or any("DLA0" in p for p in pairs)


def test_predicted_timeline_overlaps_and_meets_the_planned_rate(concurrent_plan):
    _, group, plan = concurrent_plan
    sim = predicted_schedule(plan, frames=200)
    pairs = overlapping(sim.events)
    gpu, dla0, dla1 = (f"{d} predicted on orin-agx-64gb" for d in ("GPU", "DLA0", "DLA1"))
    assert frozenset((gpu, dla0)) in pairs and frozenset((dla0, dla1)) in pairs
    planned = sum(lane.rate_fps for lane in plan_lanes(plan))
    # the simulation's per-segment times omit the DLA lanes' I/O reformats on the GPU and
    # start empty: within 15 % of the LP's steady state
    assert sim.frames_per_s == pytest.approx(planned, rel=0.15)
    events = chrome_trace(predicted_trace(plan))
    assert {e["args"]["name"] for e in events if e["ph"] == "M"} >= {gpu, dla0, dla1}


def test_cli_run_of_a_concurrent_plan(concurrent_plan, tmp_path, capsys):
    model, _, plan = concurrent_plan
    feeds = random_inputs(model)
    np.savez(tmp_path / "in.npz", **feeds)
    capsys.readouterr()
    args = [
        "run",
        str(plan.path),
        "--inputs",
        str(tmp_path / "in.npz"),
        "--json",
        "--save-outputs",
        str(tmp_path / "out.npz"),
        "--profile",
        str(tmp_path / "t.json"),
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["outputs"]
    with np.load(tmp_path / "out.npz") as out:
        for key, ref in ort_run(model, feeds).items():
            assert closeness(out[key], ref).cosine >= 0.999
    trace = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    names = {e["args"]["name"] for e in trace if e["ph"] == "M"}
    assert {"DLA0", "DLA1"} <= names and any("predicted on" in n for n in names)


def test_single_engine_plans_are_unchanged(zoo_model):
    model = zoo_model("resnet18", resolution=64)
    request = BuildRequest(str(model), resolve_target("orin-agx-64gb"), Policy())
    plan = build(request).plan
    assert "lanes" not in plan.header and "concurrency" not in plan.header
    assert type(runner_for(plan, "cpu")) is PlanRunner


def test_a_lane_naming_a_missing_segment_is_refused(concurrent_plan):
    _, _, plan = concurrent_plan
    header = json.loads(json.dumps(plan.header))
    header["lanes"][0]["segments"].append("nope")
    with pytest.raises(HeaderFieldError, match="lanes.*no segment 'nope'"):
        decode_header(header)


@pytest.mark.gpu
def test_concurrent_plan_on_cuda_and_the_emulator(tmp_path, zoo_model):
    """CUDA + emulator: an AGX Orin board file whose GPU is this machine's (same SoC, DLAs,
    clocks and DRAM; only the arch differs) so the GPU segments run on CUDA here, each in the
    GPU worker's thread and stream, while the DLA segments run on the emulator beside them."""
    from devices.runtime import cuda_arch_here
    from targets.catalog import BOARDS_DIR

    text = (BOARDS_DIR / "orin-agx-64gb.yaml").read_text()
    text = text.replace("name: orin-agx-64gb", "name: orin-with-this-gpu")
    text = text.replace("arch: sm_87", f"arch: {cuda_arch_here()}")
    board = tmp_path / "orin-with-this-gpu.yaml"
    board.write_text(text)
    model = zoo_model("unet-small", resolution=64)
    policy = Policy.from_yaml("dla_core: any\nprecision: fp16\n", "p.yaml")
    # no cubins: the kernels compile with this machine's NVRTC when the plan loads
    request = BuildRequest(str(model), resolve_target(str(board)), policy, cubins=False)
    _, plan = build_concurrent(request)
    name = str(plan.header["model"])
    frames = [random_inputs(model, seed=i) for i in range(FRAMES)]
    with ConcurrentRunner(plan, backend="cuda") as runner:
        out = runner.run_frames({name: frames})[name]
        backends = set(runner.backends().values())
        trace = list(runner.trace)
    assert {"cuda", "dla-emulator"} <= backends, backends
    for feeds, got in zip(frames, out):
        for key, ref in ort_run(model, feeds).items():
            assert closeness(got[key], ref).cosine >= 0.999, key
    assert any("GPU" in p and any(t.startswith("DLA") for t in p) for p in overlapping(trace))


def test_cli_run_of_a_concurrent_plan_states_the_lanes_rate(concurrent_plan, capsys):
    """The board figure of a concurrent plan is the lanes' summed frames/s (one lane's
    predicted_ms would read as the whole plan's latency)."""
    _, _, plan = concurrent_plan
    capsys.readouterr()
    assert main(["run", str(plan.path)]) == 0
    out = capsys.readouterr().out
    rate = sum(lane["rate_fps"] for lane in plan.header["lanes"])
    line = next(ln for ln in out.splitlines() if ln.startswith("predicted for"))
    assert f"{rate:.1f} frames/s over {len(plan.header['lanes'])} concurrent lanes" in line
    assert "ms end to end" not in out
