"""``tandem run-group PLAN|DIR ...``: serve a plan group's models at once on this machine and
report each model's frames/s and each device's busy fraction beside the planner's figures.

The group is what ``tandem plan-group -o DIR`` writes (pass the folder) or concurrent plans
named one by one; ``tandem deploy --bench`` runs this command on the board.
"""

from __future__ import annotations

import argparse
import json

from devices.concurrent_bench import (
    DEFAULT_FRAMES,
    bench_group,
    group_plan_paths,
    load_group,
    report_lines,
)
from devices.io import write_atomic
from devices.runtime import chrome_trace
from partitioner.errors import InputError
from tandem.commands._common import add_json_arg, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run-group",
        help="run a plan group's models at once: frames/s per model, busy per device",
        description="Serve every model of a plan group (a folder from `tandem plan-group -o "
        "DIR`, or concurrent plans) at once, one worker per device, and report each model's "
        "frames/s and each device's busy fraction beside the planner's predicted figures.",
    )
    p.add_argument("plans", nargs="+", metavar="PLAN|DIR", help="plan files or plan-group folders")
    p.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_FRAMES,
        metavar="N",
        help=f"frames of the fastest planned model; the others in proportion (default "
        f"{DEFAULT_FRAMES})",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where GPU segments run (default auto: CUDA if the plans' GPU is here)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--profile", metavar="TRACE.json", help="write a Chrome trace (Perfetto)")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.frames < 1:
        raise InputError(f"--frames {args.frames}: expected a positive count")
    plans = load_group(group_plan_paths(args.plans))
    bench = bench_group(plans, args.frames, args.backend, args.seed)
    if args.profile:
        trace = {"traceEvents": chrome_trace(bench.events), "displayTimeUnit": "ms"}
        write_atomic(args.profile, json.dumps(trace).encode())
    if args.json:
        print_json(bench.report)
    else:
        print("\n".join(report_lines(bench.report)))
    return 0
