"""The 3-stage lane: one model's stages on the GPU, DLA0 and DLA1, consecutive frames in flight.

Planned by ``targets.concurrency`` (``dla_core: any``), placed by ``partitioner.dla_stages``,
written as a concurrent plan whose lane holds segments on all three devices, and run by
``devices.concurrent.ConcurrentRunner`` with one worker per device (DLA segments on the emulator,
GPU segments on CUDA when this machine has the plan's GPU, else the CPU reference): every frame
matches ONNX Runtime, the measured trace has the three devices' spans overlapping on different
frames, the predicted board timeline overlaps too, and a one-DLA target refuses the plan."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from devices.concurrent import ConcurrentRunner, overlapping, plan_lanes, predicted_schedule
from devices.plan import PlanError, check_devices, read_plan, write_plan
from partitioner.concurrency import Demand, schedule
from partitioner.errors import ConfigError
from partitioner.policy import Policy
from tandem.cli import main
from tandem.metrics import closeness
from targets.build import place_for, resolve_target
from targets.concurrency import (
    THREE_STAGE,
    GroupPlan,
    build_concurrent,
    build_group,
    candidate_lanes,
    model_name,
    plan_group,
    slowdown_for,
)
from targets.request import BuildRequest
from tests.models import ort_run, random_inputs

FRAMES = 6
POLICY = "dla_core: any\nobjective: throughput\nprecision: fp16\n"


def _request(model, target="orin-agx-64gb", **kw) -> BuildRequest:
    return BuildRequest(
        str(model), resolve_target(target), Policy.from_yaml(POLICY, "p.yaml"), **kw
    )


def three_stage_plan(request: BuildRequest):
    """The plan of the 3-stage lane alone, at the rate the LP gives it alone."""
    name = model_name(request.model)
    choice = next(c for c in candidate_lanes(request, name) if c.lane.name == THREE_STAGE)
    demands = [Demand(name)]
    sched = schedule([choice.lane], demands, slowdown_for(request))
    group = GroupPlan(sched, sched, {name: choice.lane}, [choice], demands, {name: request})
    return build_group(group)[name]


@pytest.fixture(scope="module")
def staged(zoo_model, tmp_path_factory):
    model = zoo_model("resnet18", resolution=64)
    plan = three_stage_plan(_request(model))
    path = write_plan(plan, tmp_path_factory.mktemp("stages") / "resnet18.plan")
    return model, read_plan(path)


def test_the_lane_holds_segments_on_gpu_dla0_and_dla1(staged):
    _, plan = staged
    (lane,) = plan_lanes(plan)
    assert lane.name == THREE_STAGE
    devices = [rec.device for rec in lane.segments]
    assert {"gpu", "dla0", "dla1"} <= set(devices)
    # the header records each DLA segment's core, each with its own loadable
    for rec in plan.record.segments:
        assert rec.name.split(".", 1)[1].startswith(rec.device + "_")
        if rec.device.startswith("dla"):
            assert rec.loadable and plan.blobs[rec.loadable].kind == "dla-loadable"
    assert plan.record.dla_cores == ["dla0", "dla1"]
    (record,) = plan.record.lanes
    assert set(record.load_ms) == {"gpu", "dla0", "dla1"}
    assert "pipeline" in record.reason and record.rate_fps > 0
    rows = plan.record.layer_rows()
    assert {rows[n].device for rec in lane.segments for n in rec.layers} >= {"dla0", "dla1"}


def test_the_run_matches_onnxruntime_with_three_lanes_overlapping(staged):
    model, plan = staged
    name = str(plan.header["model"])
    frames = [random_inputs(model, seed=i) for i in range(FRAMES)]
    with ConcurrentRunner(plan) as runner:
        out = runner.run_frames({name: frames})[name]
        trace = list(runner.trace)
    for feeds, got in zip(frames, out):
        for key, ref in ort_run(model, feeds).items():
            assert closeness(got[key], ref).cosine >= 0.999, key
    tracks = {e.track for e in trace}
    gpu = next(t for t in tracks if t.startswith("GPU"))
    assert {"DLA0", "DLA1"} <= tracks
    pairs = overlapping(trace)
    assert frozenset(("DLA0", "DLA1")) in pairs or frozenset((gpu, "DLA1")) in pairs
    # consecutive frames in flight: two stages of the one lane busy at once on different frames
    spans = sorted((e.start_us, e.start_us + e.duration_us, e.args["frame"]) for e in trace)
    assert any(
        s2 < e1 and f1 != f2 for i, (_, e1, f1) in enumerate(spans) for s2, _, f2 in spans[i + 1 :]
    )
    # the emulator's spans carry the predicted board time of their segment
    assert all(e.args["predicted_ms"] > 0 for e in trace if e.track.startswith("DLA"))


def test_the_predicted_timeline_overlaps_gpu_dla0_and_dla1(staged):
    _, plan = staged
    sim = predicted_schedule(plan, frames=200)
    gpu, dla0, dla1 = (f"{d} predicted on orin-agx-64gb" for d in ("GPU", "DLA0", "DLA1"))
    pairs = overlapping(sim.events)
    assert {frozenset((gpu, dla0)), frozenset((dla0, dla1)), frozenset((gpu, dla1))} <= pairs
    # the per-segment shares of each device's planned load, served as a pipeline: within
    # 15 % of the LP's steady-state rate (the simulation starts empty)
    assert sim.frames_per_s == pytest.approx(plan.record.lanes_fps, rel=0.15)


def test_the_planner_uses_the_lane_only_where_it_predicts_more(zoo_model):
    """Over a few models: the 3-stage lane carries frames exactly when the LP with it predicts
    a higher rate than without it, and its reason says which."""
    seen_used = False
    cases = (("resnet18", 64, "fp16"), ("resnet50", 64, "fp16"), ("mobilenetv2", 64, "fp16"),
             ("resnet50", 224, "int8"))  # fmt: skip
    for name, res, precision in cases:
        request = _request(zoo_model(name, resolution=res))
        request = replace(request, policy=request.policy.with_overrides(precision=precision))
        model = model_name(request.model)
        group = plan_group({model: request}, [Demand(model)])
        use = next(u for u in group.schedule.uses if u.lane.name == THREE_STAGE)
        others = [c.lane for c in group.choices if c.lane.name != THREE_STAGE]
        without = schedule(others, [Demand(model)], slowdown_for(request)).rates[model]
        with_it = group.schedule.rates[model]
        assert with_it >= without * (1 - 1e-6)
        (note,) = [n for n in group.schedule.notes if n.startswith("3-stage lane(s)")]
        assert f"{without:.4g} without them" in note
        if use.rate > 1e-6:
            seen_used = True
            # how its placement was found (stage order and cuts): partitioner.dla_stages
            assert use.lane.note
            assert f"3-stage pipeline over dla0, dla1, gpu ({use.lane.note}): " in use.reason
            assert with_it > without * (1 + 1e-6), (name, with_it, without)
            assert note.startswith("3-stage lane(s) used")
        else:
            assert use.reason.startswith("unused"), use.reason
            assert note.startswith("3-stage lane(s) unused")
    # on AGX Orin MAXN when this was written: FP16 ResNet-18 at 64x64, the 3-stage lane alone
    # is the plan (4091 frames/s predicted against 3849 for the best mix without it); INT8
    # ResNet-50 at 224x224, it carries 88 % of the frames (2711 against 2669)
    assert seen_used


def test_a_one_dla_target_refuses_the_split(staged, zoo_model):
    _, plan = staged
    nx8 = resolve_target("orin-nx-8gb")
    with pytest.raises(PlanError) as err:
        check_devices(plan, nx8, "resnet18.plan")
    msg = str(err.value)
    assert "\n" not in msg
    assert "resnet18.plan: segment" in msg and "runs on dla1" in msg
    assert "'orin-nx-8gb' has 1 DLA core(s) (dla0)" in msg
    check_devices(plan, resolve_target("orin-agx-64gb"))  # both cores: accepted
    request = _request(zoo_model("resnet18", resolution=64), "orin-nx-8gb")
    policy = request.policy.with_overrides(dla_stages=2, partition="cost")
    with pytest.raises(ConfigError, match=r"^target 'orin-nx-8gb' has 1 DLA core\(s\): a pipel"):
        place_for(BuildRequest(request.model, request.target, policy))
    names = [c.lane.name for c in candidate_lanes(request, "resnet18")]
    assert THREE_STAGE not in names and "dla0" in names


def test_deploy_to_a_one_dla_board_refuses_the_plan_before_connecting(staged, tmp_path):
    """A plan claiming a one-DLA target while holding a DLA1 stage (a hand-edited header, or a
    user's board file with one core under a catalog name) is refused before any upload."""
    from devices.plan import Plan
    from targets.deploy import deployable
    from targets.inventory import Board

    _, plan = staged
    header = json.loads(json.dumps(plan.header))
    header["target"] = "orin-nx-8gb"
    path = write_plan(Plan(header, dict(plan.blobs)), tmp_path / "resnet18.plan")
    board = Board("nx8", "127.0.0.1", "orin-nx-8gb", port=1, source="inv.yaml:3")
    with pytest.raises(PlanError, match=r"resnet18.plan: segment '.*' runs on dla1 but target"):
        deployable(path, board)


def test_plan_group_shows_the_lane_and_its_reason(zoo_model, capsys):
    model = zoo_model("resnet18", resolution=64)
    capsys.readouterr()
    argv = ["plan-group", str(model), "--target", "orin-agx-64gb", "--fp16", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    (lane,) = [x for x in doc["lanes"] if x["lane"] == THREE_STAGE]
    assert lane["kind"] == "pipeline"
    assert set(lane["load_ms"]) == {"gpu", "dla0", "dla1"}
    assert lane["reason"]


def test_inspect_shows_the_lane_its_segments_and_reason(staged, capsys):
    _, plan = staged
    capsys.readouterr()
    assert main(["inspect", str(plan.path), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (lane,) = doc["lanes"]
    # each segment's blobs (weights, loadables) are counted under its lane-prefixed name
    assert all(seg["bytes"] > 0 for seg in doc["segments"] if seg["device"].startswith("dla"))
    assert lane["name"] == THREE_STAGE and "3-stage pipeline over dla0, dla1, gpu" in lane["reason"]
    assert main(["inspect", str(plan.path)]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith(f"  {THREE_STAGE} ["))
    assert all(name in line for name in lane["segments"]) and lane["reason"] in line
    assert f"{plan.record.lanes_fps:.1f} frames/s planned" in out
    assert "ms end to end" not in out  # one lane's serial latency is not the plan's figure


def test_build_writes_the_lane_into_a_concurrent_plan(zoo_model):
    _, plan = build_concurrent(_request(zoo_model("resnet18", resolution=64)))
    assert THREE_STAGE in [lane.name for lane in plan.record.lanes]


@pytest.mark.gpu
def test_three_stage_lane_on_cuda_and_the_emulator(tmp_path, zoo_model):
    """CUDA + emulator: an AGX Orin board file whose GPU is this machine's (as
    tests/devices/test_concurrent.py does), so the GPU stage runs on CUDA in its worker's
    thread and stream while the DLA0 and DLA1 stages run on the emulator beside it."""
    from devices.runtime import cuda_arch_here
    from targets.catalog import BOARDS_DIR

    text = (BOARDS_DIR / "orin-agx-64gb.yaml").read_text()
    text = text.replace("name: orin-agx-64gb", "name: orin-with-this-gpu")
    text = text.replace("arch: sm_87", f"arch: {cuda_arch_here()}")
    board = tmp_path / "orin-with-this-gpu.yaml"
    board.write_text(text)
    model = zoo_model("resnet18", resolution=64)
    plan = three_stage_plan(_request(model, str(board), cubins=False))
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
    assert {"GPU", "DLA0", "DLA1"} <= {e.track for e in trace}
    assert any("GPU" in p and any(t.startswith("DLA") for t in p) for p in overlapping(trace))
