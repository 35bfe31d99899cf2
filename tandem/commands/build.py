"""``tandem build MODEL.onnx --target T -o OUT.plan``: cross-build a plan for one board."""

from __future__ import annotations

import argparse
import sys
import time

from devices.plan import write_plan
from devices.timesource import predicted_source
from tandem.commands._args import add_build_args, build_request
from tandem.commands._common import human, progress_status
from targets.build import build, build_notes


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

    if args.verbose:
        built = build(build_request(args), line)
    elif args.quiet:
        built = build(build_request(args))
    else:
        with progress_status() as say:
            built = build(build_request(args), say)
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
        f"{part.predicted.total * 1e3:.3f} ms; built in {time.perf_counter() - start:.1f} s"
    )
    for note in build_notes(built):
        print(note)
    for warning in part.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
