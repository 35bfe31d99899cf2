"""Concurrent plans: one model (or a group of models) served by GPU, DLA0 and DLA1 at once.

For each model the candidate **lanes** come from the one placement path (``place``) under a few
policies derived from the user's: everything on the GPU; the DLA core with its GPU fallback (the
TensorRT split); the cost model's throughput split of GPU + that core (a pipeline). With
``dla_core: any`` every core of the target is a candidate, else only the policy's core. The
rates come from ``partitioner.concurrency.schedule`` with the devices' DRAM-contention model;
a lane the schedule uses is built like any plan and the lanes' segments are merged into one
plan file whose header lists them (``lanes``); the runtime (``devices.concurrent``) runs them at
the same time. A plan without lanes is a single-engine plan, byte for byte as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from devices.capability import capabilities_for
from devices.plan import Blob, Plan
from partitioner.concurrency import (
    Demand,
    Lane,
    Schedule,
    best_whole_assignment,
    group_throughput,
    schedule,
)
from partitioner.dla_stages import summary
from partitioner.errors import ConfigError
from partitioner.policy import Policy
from partitioner.yaml_reader import is_number, read_yaml, reject_unknown, require
from targets.build import Placement, build, place_for
from targets.request import BuildRequest

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LaneChoice:
    """A candidate lane with the policy that builds it."""

    lane: Lane
    policy: Policy


@dataclass
class GroupPlan:
    """A solved group: the joint schedule, the single-device baseline and the lanes' policies."""

    schedule: Schedule
    baseline: Schedule
    baseline_lanes: dict[str, Lane]
    choices: list[LaneChoice]
    demands: list[Demand]
    requests: dict[str, BuildRequest]

    def policy_of(self, lane: Lane) -> Policy:
        return next(c.policy for c in self.choices if c.lane == lane)


#: the 3-stage lane: GPU, DLA0 and DLA1 each run a stage (``partitioner.dla_stages``)
THREE_STAGE = "gpu+dla0+dla1"


def lane_policies(policy: Policy, cores: int) -> list[tuple[str, str, Policy]]:
    """(name, kind, policy) of every candidate lane for a target with ``cores`` DLA cores;
    with ``dla_core: any`` and two cores, also the 3-stage GPU -> DLA0 -> DLA1 pipeline."""
    out = [("gpu", "single", policy.with_overrides(default_device="gpu", partition="trt"))]
    chosen = range(cores) if policy.dla_any else [policy.dla_core] if cores else []
    for core in chosen:
        dla = policy.with_overrides(default_device="dla", dla_core=core, gpu_fallback=True)
        out.append((f"dla{core}", "single", dla.with_overrides(partition="trt")))
        out.append(
            (
                f"gpu+dla{core}",
                "pipeline",
                dla.with_overrides(partition="cost", objective="throughput"),
            )
        )
    if policy.dla_any and cores >= 2:
        split = policy.with_overrides(
            default_device="dla", dla_core=0, gpu_fallback=True, partition="cost",
            objective="throughput", dla_stages=2,
        )  # fmt: skip
        out.append((THREE_STAGE, "pipeline", split))
    return out


def candidate_lanes(request: BuildRequest, model: str) -> list[LaneChoice]:
    """The lanes of one model, each placed once; a pipeline equal to a single-device lane
    (the cost model kept everything on one device) is dropped as a duplicate."""
    cores = request.target.dla.cores if request.target.dla else 0
    seen: dict[tuple[tuple[str, str], ...], str] = {}
    out = []
    for name, kind, policy in lane_policies(request.policy, cores):
        placement = place_for(replace(request, policy=policy))
        key = tuple(sorted((n, a.device) for n, a in placement.partition.assignments.items()))
        if key in seen:
            continue
        seen[key] = name
        lane = _lane(model, name, kind, placement)
        if kind == "pipeline" and len(lane.devices) < 2:
            continue
        if name == THREE_STAGE and not {"dla0", "dla1"} <= set(lane.devices):
            continue  # no DLA layers to split over two cores
        out.append(LaneChoice(lane, policy))
    return out


def _lane(model: str, name: str, kind: str, placement: Placement) -> Lane:
    predicted = placement.partition.predicted
    loads = {d: t for d, t in predicted.per_device.items() if t > 0}
    # boundary reformats run on the GPU (segments.predict charges them to the I/O device)
    if predicted.transfer > 0:
        loads["gpu"] = loads.get("gpu", 0.0) + predicted.transfer
    # a 3-stage lane's stage order and cuts (partitioner.dla_stages), shown in its reason
    return Lane(model, name, loads, predicted.total, kind, summary(placement.partition))


def slowdown_for(request: BuildRequest) -> Any:
    """The target's DRAM-contention model (``devices.cost.concurrent_slowdown``)."""
    return capabilities_for(request.target, 0)["gpu"].slowdown  # type: ignore[attr-defined]


def plan_group(
    requests: Mapping[str, BuildRequest],
    demands: Sequence[Demand],
    contention: bool = True,
) -> GroupPlan:
    """Joint placement of ``requests`` (model name -> request, one target) for ``demands``."""
    targets = {(r.target.name, r.target.power_mode) for r in requests.values()}
    if len(targets) != 1:
        raise ConfigError(f"a plan group runs on one board; got targets {sorted(targets)}")
    choices = [c for model, req in requests.items() for c in candidate_lanes(req, model)]
    first = next(iter(requests.values()))
    slow = slowdown_for(first) if contention else None
    lanes = [c.lane for c in choices]
    sched = schedule(lanes, demands, slow)
    base, base_lanes = best_whole_assignment(lanes, demands, slow)
    others = [lane for lane in lanes if lane.name != THREE_STAGE]
    if len(others) < len(lanes) and {o.model for o in others} == {d.model for d in demands}:
        # what the 3-stage lanes change: the same LP without them
        with_it = group_throughput(sched, demands)
        without = group_throughput(schedule(others, demands, slow), demands)
        used = any(u.lane.name == THREE_STAGE for d in demands for u in sched.lanes_of(d.model))
        gain = f"{with_it / without - 1:+.1%}; " if without > 0 else ""
        sched.notes.append(
            f"3-stage lane(s) {'used' if used else 'unused'}: the schedule reaches "
            f"{with_it:.4g} with them and {without:.4g} without them "
            f"({gain}frames/s per unit of each model's demand)"
        )
    return GroupPlan(sched, base, base_lanes, choices, list(demands), dict(requests))


def build_group(group: GroupPlan, progress: Progress | None = None) -> dict[str, Plan]:
    """One concurrent plan per model: the lanes the joint schedule uses, built and merged."""
    say = progress or (lambda _m: None)
    plans: dict[str, Plan] = {}
    for model, request in group.requests.items():
        built = []
        for use in group.schedule.lanes_of(model):
            say(f"{model}: building lane {use.lane.name} ({use.rate:.1f} frames/s)")
            policy = group.policy_of(use.lane)
            plan = build(replace(request, policy=policy), None).plan
            built.append((use.lane, use.rate, use.reason, plan))
        plans[model] = merge_lanes(built, group.schedule)
    return plans


def merge_lanes(
    lanes: Sequence[tuple[Lane, float, str, Plan]], sched: Schedule | None = None
) -> Plan:
    """One plan holding every lane's segments (renamed ``<lane>.<segment>``, blobs likewise)
    and a ``lanes`` table; bindings, calibration and layers come from the first lane (every
    lane runs the same model on the same inputs)."""
    if not lanes:
        raise ConfigError("a concurrent plan needs at least one lane with a rate")
    first = lanes[0][3]
    header = {k: v for k, v in first.header.items() if k not in ("segments", "blobs")}
    header["segments"] = []
    header["lanes"] = []
    blobs: dict[str, Blob] = {}
    calibration: dict[str, float] = {}
    for lane, rate, reason, plan in lanes:
        prefix = lane.name.replace("+", "_").replace(" ", "_")
        names = []
        shares = _segment_shares(plan, lane)
        for rec in plan.header["segments"]:
            renamed = _renamed_segment(rec, prefix, plan, blobs)
            renamed["predicted_ms"] = shares[rec["name"]]
            header["segments"].append(renamed)
            names.append(renamed["name"])
        calibration.update(plan.record.calibration)
        header["lanes"].append(
            {
                "name": lane.name,
                "segments": names,
                "rate_fps": float(rate),
                "reason": reason,
                "load_ms": {d: t * 1e3 for d, t in sorted(lane.loads.items())},
            }
        )
    if calibration:
        header["calibration"] = dict(sorted(calibration.items()))
    if "timing_cache" in first.blobs:
        blobs["timing_cache"] = first.blobs["timing_cache"]
    if sched is not None:
        header["concurrency"] = {
            "frames_per_s": sum(rate for _, rate, _, _ in lanes),
            "utilisation": dict(sorted(sched.utilisation.items())),
            "slowdown": dict(sorted(sched.slowdown.items())),
        }
    return Plan(header, blobs)


def _segment_shares(plan: Plan, lane: Lane) -> dict[str, float]:
    """Each segment's predicted board ms: its device's per-frame load in the lane (the
    planner's figure, boundary reformats on the GPU included) split over that device's
    segments by their layers' predicted times (evenly where none is known)."""
    segments = plan.record.segments
    layer_ms = {row.name: row.predicted_ms or 0.0 for row in plan.record.layers}
    own = {rec.name: sum(layer_ms.get(layer, 0.0) for layer in rec.layers) for rec in segments}
    out = {}
    for rec in segments:
        peers = [r.name for r in segments if r.device == rec.device]
        total = sum(own[n] for n in peers)
        share = own[rec.name] / total if total > 0 else 1.0 / len(peers)
        out[rec.name] = lane.loads.get(rec.device, 0.0) * 1e3 * share
    return out


def _renamed_segment(
    rec: Mapping[str, Any], prefix: str, plan: Plan, blobs: dict[str, Blob]
) -> dict[str, Any]:
    def blob(name: str) -> str:
        new = f"{prefix}/{name}"
        blobs[new] = plan.blob(name)
        return new

    out = dict(rec)
    out["name"] = f"{prefix}.{rec['name']}"
    if rec.get("loadable"):
        out["loadable"] = blob(rec["loadable"])
    if rec.get("cuda"):
        cuda = dict(rec["cuda"])
        cuda["modules"] = [{**m, "blob": blob(m["blob"])} for m in cuda.get("modules", [])]
        out["cuda"] = cuda
    graph = dict(rec["graph"])
    graph["tensors"] = [
        {**t, "array": blob(t["array"])} if "array" in t else t for t in graph["tensors"]
    ]
    nodes = []
    for node in graph["nodes"]:
        attrs = {
            k: ({**a, "array": blob(a["array"])} if "array" in a else a)
            for k, a in node["attrs"].items()
        }
        nodes.append({**node, "attrs": attrs})
    graph["nodes"] = nodes
    out["graph"] = graph
    return out


def model_name(path: str | Path) -> str:
    """A group member's name: the ONNX file's stem."""
    return Path(path).stem


def build_concurrent(
    request: BuildRequest, progress: Progress | None = None, contention: bool = True
) -> tuple[GroupPlan, Plan]:
    """One model on every engine its policy allows: the lanes the throughput schedule uses,
    built into one concurrent plan."""
    name = model_name(request.model)
    group = plan_group({name: request}, [Demand(name)], contention)
    return group, build_group(group, progress)[name]


@dataclass(frozen=True)
class GroupMember:
    """One model of a plan group file: its ONNX path and its demand."""

    path: Path
    demand: Demand


GROUP_KEYS = ("model", "rate", "weight", "priority")


def read_group(path: str | Path) -> list[GroupMember]:
    """A plan group YAML (``models: [{model: a.onnx, rate: 30, weight: 1, priority: 0}]``;
    model paths relative to the file), through the project's YAML reader: an error names the
    file, the line and the field."""
    doc = read_yaml(path, "plan group file")
    reject_unknown(doc, (), ("models",))
    models = require(
        doc, ("models",), "a list of models", lambda v: isinstance(v, list) and bool(v)
    )
    base = Path(path).parent
    out = []
    for i in range(len(models)):
        where = ("models", i)
        require(doc, where, "a mapping with 'model'", lambda v: isinstance(v, dict))
        reject_unknown(doc, where, GROUP_KEYS)
        file = require(
            doc, (*where, "model"), "an ONNX path", lambda v: isinstance(v, str) and bool(v)
        )
        rate = require(doc, (*where, "rate"), "frames/s > 0", _positive, None)
        weight = require(doc, (*where, "weight"), "a number > 0", _positive, 1.0)
        priority = require(
            doc,
            (*where, "priority"),
            "an integer",
            lambda v: isinstance(v, int) and not isinstance(v, bool),
            0,
        )
        model_path = base / file
        if not model_path.is_file():
            raise doc.fail((*where, "model"), f"{model_path} does not exist")
        demand = Demand(model_name(model_path), float(weight), rate and float(rate), priority)
        out.append(GroupMember(model_path, demand))
    return out


def _positive(value: Any) -> bool:
    return is_number(value) and value > 0
