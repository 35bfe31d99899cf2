"""``tandem plan-group a.onnx b.onnx ... --target T``: place several models on one SoC jointly.

Every model gets its candidate lanes (GPU; each allowed DLA core with its GPU fallback; GPU+DLA
pipelines) and ``targets.concurrency.plan_group`` solves their rates at once: equal frame counts
(the makespan of one batch of each) unless a group file (``--config GROUP.yaml``) gives rates,
weights or priorities. Every DLA core is a candidate unless ``--dla-core`` names one. It
prints every lane's decision with its reason, each model's rate beside the best single-device
assignment, and, with ``-o DIR``, builds one concurrent plan per model.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from devices.plan import write_plan
from partitioner.concurrency import Demand, group_throughput
from partitioner.errors import InputError
from tandem.commands._args import add_build_args, build_request
from targets.concurrency import (
    GroupPlan,
    build_group,
    model_name,
    plan_group,
    read_group,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan-group",
        help="place several models on GPU, DLA0 and DLA1 jointly (rates, reasons, plans)",
    )
    p.add_argument("models", nargs="*", metavar="MODEL.onnx", help="the models of the group")
    p.add_argument(
        "--config",
        metavar="GROUP.yaml",
        help="models with rate (frames/s), weight and priority: "
        "models: [{model: a.onnx, rate: 30}, ...] (paths relative to the file)",
    )
    p.add_argument(
        "--no-contention",
        action="store_true",
        help="plan as if the devices did not slow each other down (DRAM contention off)",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="build one concurrent plan per model")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    add_build_args(p, target_required=True, profiles=False)
    p.set_defaults(func=run, model=None)


def run(args: argparse.Namespace) -> int:
    if bool(args.models) == bool(args.config):
        raise InputError("plan-group: give the models (a.onnx b.onnx ...) or --config GROUP.yaml")
    if args.config:
        members = [(m.path, m.demand) for m in read_group(args.config)]
    else:
        members = [(Path(p), Demand(model_name(p))) for p in args.models]
    names = [d.model for _, d in members]
    if len(set(names)) != len(names):
        raise InputError(f"plan-group: two models share a name: {', '.join(names)}")
    for path, _ in members:
        if not path.is_file():
            raise InputError(f"{path}: no such model file")
    args.model = str(members[0][0])
    base = build_request(args)
    if args.dla_core is None:  # a group plans over every DLA core unless one is named
        base = replace(base, policy=base.policy.with_overrides(dla_core="any"))
    requests = {d.model: replace(base, model=str(path)) for path, d in members}
    group = plan_group(requests, [d for _, d in members], not args.no_contention)
    written: dict[str, str] = {}
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)

        def say(msg: str) -> None:
            if not args.json:
                print(f"  {msg}", file=sys.stderr, flush=True)

        for model, plan in build_group(group, say).items():
            written[model] = str(write_plan(plan, out / f"{model}.plan"))
    doc = report(group, base.target.name, base.target.power_mode, written)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
    else:
        print_report(doc)
    return 0


def report(
    group: GroupPlan, target: str, power_mode: str, written: dict[str, str]
) -> dict[str, Any]:
    """The group's decisions as one JSON-able document (``--json``)."""
    sched, base = group.schedule, group.baseline
    joint = group_throughput(sched, group.demands)
    single = group_throughput(base, group.demands)
    models = {}
    for d in group.demands:
        models[d.model] = {
            "rate_fps": sched.rates[d.model],
            "target_fps": d.rate,
            "weight": d.weight,
            "priority": d.priority,
            "met": sched.met.get(d.model),
            "baseline_fps": base.rates[d.model],
            "baseline_lane": group.baseline_lanes[d.model].name,
            "plan": written.get(d.model),
        }
    return {
        "target": target,
        "power_mode": power_mode,
        "goal": sched.goal,
        "models": models,
        "lanes": [
            {
                "model": u.lane.model,
                "lane": u.lane.name,
                "kind": u.lane.kind,
                "rate_fps": u.rate,
                "load_ms": {k: v * 1e3 for k, v in sorted(u.lane.loads.items())},
                "reason": u.reason,
            }
            for u in sched.uses
        ],
        "utilisation": sched.utilisation,
        "slowdown": sched.slowdown,
        "gain_over_single_device": joint / single - 1 if single > 0 else None,
        "notes": sched.notes,
        "predicted": True,
    }


def print_report(doc: dict[str, Any]) -> None:
    print(f"plan group on {doc['target']} ({doc['power_mode']}), goal {doc['goal']} (predicted)")
    for name, m in doc["models"].items():
        want = f", target {m['target_fps']:.1f}" if m["target_fps"] else ""
        met = "" if m["met"] is None else (" met" if m["met"] else " MISSED")
        print(
            f"  {name}: {m['rate_fps']:.1f} frames/s{want}{met}; best single device: "
            f"{m['baseline_lane']} {m['baseline_fps']:.1f} frames/s"
            + (f"; plan {m['plan']}" if m["plan"] else "")
        )
    print("lanes:")
    for lane in doc["lanes"]:
        print(f"  {lane['model']}/{lane['lane']}: {lane['reason']}")
    busy = ", ".join(f"{d} {u:.0%}" for d, u in sorted(doc["utilisation"].items()))
    print(f"devices busy: {busy}")
    if doc["gain_over_single_device"] is not None:
        print(
            f"joint placement vs best single-device assignment: "
            f"{doc['gain_over_single_device']:+.1%}"
        )
    for note in doc["notes"]:
        print(f"note: {note}")
