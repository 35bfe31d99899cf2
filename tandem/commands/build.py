"""``tandem build MODEL.onnx --target T -o OUT.plan``: cross-build a plan for one board."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from devices.plan import write_plan
from devices.timesource import predicted_source
from tandem.commands._args import add_build_args, build_request
from tandem.commands._common import human, progress_status
from targets.build import build, build_notes
from targets.concurrency import build_concurrent
from targets.request import BuildRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="partition, compile and write a plan for a Jetson target")
    p.add_argument("model", help="an ONNX model")
    p.add_argument("-o", "--output", required=True, metavar="OUT.plan", help="plan file to write")
    add_build_args(p, target_required=True)
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no progress at all")
    shown.add_argument(
        "--verbose", action="store_true", help="a line per build step (default: a status line "
        "on a terminal, which the summary replaces)"
    )  # fmt: skip
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()

    def line(msg: str) -> None:
        print(f"  {msg}", file=sys.stderr, flush=True)

    request = build_request(args)
    if request.policy.dla_any and request.policy.objective == "throughput":
        return _build_concurrent(args, request, line if args.verbose else None, start)
    if args.verbose:
        built = build(request, line)
    elif args.quiet:
        built = build(request)
    else:
        with progress_status() as say:
            built = build(request, say)
    placement, plan = built
    path = write_plan(plan, args.output)
    part = placement.partition
    size = path.stat().st_size
    devices = sorted({s.device for s in part.segments})
    print(
        f"wrote {path}: target {placement.target.name} ({placement.target.power_mode}), "
        f"precision {placement.policy.precision}, {len(part.segments)} segments on "
        f"{', '.join(devices)}, {part.boundary_count} boundaries, {human(size, 'B')}; "
        f"{predicted_source(placement.target.name, placement.target.power_mode)} "
        f"{plan.record.predicted_ms.get('total', 0.0):.3f} ms; built in "
        f"{time.perf_counter() - start:.1f} s"
    )
    for note in build_notes(built):
        print(note)
    for warning in part.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _build_concurrent(
    args: argparse.Namespace, request: BuildRequest, progress: Any, start: float
) -> int:
    """``dla_core: any`` with ``objective: throughput``: a concurrent plan (docs/concurrency.md)."""
    group, plan = build_concurrent(request, progress)
    path = write_plan(plan, args.output)
    lanes = plan.record.lanes
    rate = plan.record.lanes_fps
    alone = next(iter(group.baseline.rates.values()))
    print(
        f"wrote {path}: target {request.target.name} ({request.target.power_mode}), precision "
        f"{request.policy.precision}, concurrent plan of {len(lanes)} lanes "
        f"({', '.join(lane.name for lane in lanes)}), {human(path.stat().st_size, 'B')}; "
        f"{predicted_source(request.target.name, request.target.power_mode)} {rate:.1f} "
        f"frames/s (best single device {alone:.1f}); "
        f"built in {time.perf_counter() - start:.1f} s"
    )
    for lane in lanes:
        print(f"  {lane.name}: {lane.reason}")
    return 0
