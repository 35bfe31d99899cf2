"""Benchmark a plan group: the models' frames/s and the devices' busy fractions, measured here
beside the planner's predicted figures, every number labelled by its source.

A plan group is what ``tandem plan-group -o DIR`` writes (one concurrent plan per model, all
for one target) or a single concurrent plan. :func:`bench_group` serves every model's frames at
once on one :class:`~devices.concurrent.ConcurrentRunner` (one worker per device) and reads the
figures off its trace:

- a model's **rate** is its frames over the time from its first stage starting to its last
  frame finishing;
- a device's **busy fraction** is the time its worker spent running segments over the run's
  wall time.

The predicted figures are the planner's (the plan headers' lane rates and ``concurrency``
record), labelled ``predicted for <board> <power mode>``; what ran here is labelled by its
backends (``devices.timesource``): ``measured on <GPU>`` for CUDA or TensorRT, ``emulated on
<CPU>`` for the reference and the DLA emulator, which says nothing about a board's speed.

Each model gets frames in proportion to its planned rate, so that, as predicted, every model is
served for the whole run rather than the fast ones finishing first and leaving the rest alone.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devices.concurrent import ConcurrentRunner, plan_lanes, predicted_schedule
from devices.io import random_inputs
from devices.plan import Plan, read_plan
from devices.runtime import TraceEvent
from devices.timesource import predicted_source, run_source
from partitioner.errors import InputError
from partitioner.ir import Graph
from partitioner.tables import table

#: frames the fastest model of a group serves in one benchmark (others in proportion)
DEFAULT_FRAMES = 24
#: the fewest frames any model serves: one per double-buffered stage slot of a lane
MIN_FRAMES = 2


def group_plan_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The plan files of a group: each argument a plan file or a folder whose ``*.plan`` files
    are the group (what ``tandem plan-group -o DIR`` writes), in name order."""
    out: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.glob("*.plan") if p.is_file())
            if not found:
                raise InputError(
                    f"{path}: no .plan files in this folder; write a plan group with "
                    "`tandem plan-group MODELS... --target T -o DIR`"
                )
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"{path}: no such plan file or plan-group folder")
    if len({p.resolve() for p in out}) != len(out):
        raise InputError(f"a plan group names a plan twice: {', '.join(map(str, out))}")
    return out


def load_group(paths: Sequence[Path]) -> list[Plan]:
    """The plans of ``paths``, refused unless they are for one target and power mode and serve
    distinct models (each model runs once in a group)."""
    plans = [read_plan(p) for p in paths]
    check_group(paths, plans)
    return plans


def check_group(paths: Sequence[Path], plans: Sequence[Plan]) -> None:
    """Refuse plans (read from ``paths``) that are not one group: another target or power
    mode, or a model served twice."""
    boards = {(p.target, p.record.power_mode) for p in plans}
    if len(boards) > 1:
        where = ", ".join(
            f"{path} ({p.target} {p.record.power_mode or ''})".replace(" )", ")")
            for path, p in zip(paths, plans)
        )
        raise InputError(f"a plan group runs on one board, but its plans are for {where}")
    models: dict[str, Path] = {}
    for path, plan in zip(paths, plans):
        model = model_of(plan)
        if model in models:
            raise InputError(
                f"{path} and {models[model]} both serve model {model!r}; a group runs each "
                "model once"
            )
        models[model] = path


def model_of(plan: Plan) -> str:
    return plan.record.model or "model"


def predicted_rate(plan: Plan) -> float:
    """The frames/s the planner gave the plan's model: its lanes' summed rates, or for a
    single-engine plan one frame per predicted end-to-end time."""
    head = plan.record
    if head.lanes:
        return head.lanes_fps
    total = float(head.predicted_ms.get("total") or 0.0)
    return 1e3 / total if total > 0 else 0.0


def frame_counts(rates: Mapping[str, float], frames: int) -> dict[str, int]:
    """Frames per model from its planned frames/s (:func:`predicted_rate`): ``frames`` for the
    fastest, the others in proportion, at least :data:`MIN_FRAMES` (equal counts where no rate
    is known)."""
    top = max(rates.values(), default=0.0)
    if top <= 0:
        return {m: max(frames, MIN_FRAMES) for m in rates}
    return {m: max(MIN_FRAMES, round(frames * r / top)) for m, r in rates.items()}


def plan_feeds(plan: Plan, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random inputs of the plan's input bindings (static shapes; a dynamic-shape plan
    gets its first profile's opt shapes)."""
    stub = Graph("inputs")
    head = plan.record
    for binding in head.inputs:
        shape = head.feed_shape(binding)
        if shape is None:
            raise InputError(
                f"{plan.path or model_of(plan)}: input '{binding.name}' has no shape in the "
                "plan, so random data has none; rebuild the plan from a model with input shapes"
            )
        stub.add_input(binding.name, tuple(shape), binding.dtype or "float32")
    return random_inputs(stub, seed=seed)


@dataclass
class GroupBench:
    """One benchmark of a plan group: the JSON report and the spans for a Chrome trace."""

    report: dict[str, Any]
    events: list[TraceEvent]


def bench_group(
    plans: Sequence[Plan],
    frames: int = DEFAULT_FRAMES,
    backend: str = "auto",
    seed: int = 0,
) -> GroupBench:
    """Serve every model of ``plans`` at once (after one untimed frame per lane) and report
    measured and predicted figures side by side (see the module docstring)."""
    if frames < 1:
        raise InputError(f"frames {frames}: expected a positive count")
    counts = frame_counts({model_of(p): predicted_rate(p) for p in plans}, frames)
    feeds = {model_of(p): plan_feeds(p, seed) for p in plans}
    runner = ConcurrentRunner(list(plans), backend)
    with runner:
        warm = {m: [feeds[m]] * [lane.model for lane in runner.lanes].count(m) for m in feeds}
        runner.run_frames(warm)
        start = time.perf_counter()
        runner.run_frames({m: [feeds[m]] * counts[m] for m in feeds})
        wall = time.perf_counter() - start
        events = list(runner.trace)
        notes = [n for n in runner.notes if n != runner.run_note]
        backends = runner.backends()
    schedule = predicted_schedule(list(plans), max(counts.values()))
    report = _report(plans, counts, wall, events, backends, schedule.events)
    report["notes"] = notes + report["notes"]
    return GroupBench(report, events + schedule.events)


def _report(
    plans: Sequence[Plan],
    counts: Mapping[str, int],
    wall: float,
    events: Sequence[TraceEvent],
    backends: Mapping[str, str],
    predicted_events: Sequence[TraceEvent],
) -> dict[str, Any]:
    first = plans[0]
    foretold = predicted_source(first.target, first.record.power_mode)
    segment_device = {rec.name: rec.device for plan in plans for rec in plan.record.segments}
    by_model: dict[str, list[TraceEvent]] = {}
    by_device: dict[str, list[TraceEvent]] = {}
    for e in events:
        by_model.setdefault(str(e.args["model"]), []).append(e)
        by_device.setdefault(str(e.args["device"]), []).append(e)
    models: dict[str, Any] = {}
    for plan in plans:
        model = model_of(plan)
        spans = by_model.get(model, [])
        window_s = (
            (max(e.start_us + e.duration_us for e in spans) - min(e.start_us for e in spans)) * 1e-6
            if spans
            else 0.0
        )
        lanes: dict[str, int] = {}
        for lane in plan_lanes(plan):
            lanes[lane.name] = len({e.args["frame"] for e in spans if e.args["lane"] == lane.label})
        models[model] = {
            "frames": counts[model],
            "measured_fps": counts[model] / window_s if window_s > 0 else None,
            "measured_source": run_source(
                backends[s] for s in {str(e.args["segment"]) for e in spans}
            ),
            "predicted_fps": predicted_rate(plan),
            "predicted_source": foretold,
            "frames_per_lane": lanes,
        }
    predicted_busy, notes = _predicted_busy(plans, predicted_events)
    devices: dict[str, Any] = {}
    for device in sorted(set(by_device) | set(predicted_busy)):
        spans = by_device.get(device, [])
        devices[device] = {
            "measured_busy": sum(e.duration_us for e in spans) * 1e-6 / wall if wall > 0 else None,
            "measured_source": (
                run_source(backends[s] for s in segment_device if segment_device[s] == device)
                if spans
                else None
            ),
            "predicted_busy": predicted_busy.get(device, 0.0),
            "predicted_source": foretold,
        }
    return {
        "kind": "plan-group-bench",
        "target": first.target,
        "power_mode": first.record.power_mode,
        "plans": [str(p.path) if p.path else model_of(p) for p in plans],
        "wall_s": wall,
        "measured_source": run_source(backends.values()),
        "predicted_source": foretold,
        "models": models,
        "devices": devices,
        "backends": dict(backends),
        "notes": notes,
    }


def _predicted_busy(
    plans: Sequence[Plan], predicted_events: Sequence[TraceEvent]
) -> tuple[dict[str, float], list[str]]:
    """Each device's predicted busy fraction: the planner's (``concurrency.utilisation``),
    which every plan of one ``plan-group`` run carries alike; plans from different runs give
    different ones, and then the predicted schedule of this very dealing stands in."""
    records = [
        (p.record.concurrency.utilisation or None) if p.record.concurrency else None for p in plans
    ]
    if records[0] is not None and all(r == records[0] for r in records):
        return {str(d): float(u) for d, u in records[0].items()}, []
    busy: dict[str, float] = {}
    end = max((e.start_us + e.duration_us for e in predicted_events), default=0.0)
    for e in predicted_events:
        device = e.track.split(" ", 1)[0].lower()
        busy[device] = busy.get(device, 0.0) + (e.duration_us / end if end > 0 else 0.0)
    return busy, [
        "the plans do not share one planner's utilisation (not one `tandem plan-group` run): "
        "the predicted busy fractions are those of the predicted schedule of this dealing"
    ]


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """The report as two tables (models, devices), measured beside predicted, each figure's
    source in the column next to it."""
    models = [
        (
            name,
            str(m["frames"]),
            _figure(m["measured_fps"], "{:.1f}"),
            m["measured_source"],
            _figure(m["predicted_fps"], "{:.1f}"),
            m["predicted_source"],
        )
        for name, m in report["models"].items()
    ]
    devices = [
        (
            name,
            _figure(d["measured_busy"], "{:.0%}"),
            d["measured_source"] or "unused here",
            _figure(d["predicted_busy"], "{:.0%}"),
            d["predicted_source"],
        )
        for name, d in report["devices"].items()
    ]
    return [
        *table(
            ("Model", "Frames", "Frames/s", "Source", "Predicted frames/s", "Source"),
            models,
            right=(1, 2, 4),
        ),
        "",
        *table(("Device", "Busy", "Source", "Predicted busy", "Source"), devices, right=(1, 3)),
        *(f"note: {note}" for note in report.get("notes") or []),
    ]


def _figure(value: Any, fmt: str) -> str:
    return fmt.format(value) if isinstance(value, (int, float)) else "-"
