"""From CLI arguments to a placement or a plan: what inspect, build and run share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from devices.io import parse_dims
from devices.plan import MAGIC, Plan
from targets.build import (
    Placement,
    build_plan,
    calibrate,
    place,
    resolve_policy,
    resolve_target,
)


def is_plan(path: str) -> bool:
    """True when ``path`` starts with the plan magic (anything else is treated as ONNX)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def place_from_args(args: argparse.Namespace) -> Placement:
    target = resolve_target(args.target, getattr(args, "power_mode", None))
    policy = resolve_policy(
        getattr(args, "policy", None),
        precision=getattr(args, "precision", None),
        strategy=getattr(args, "partition", None),
        dla_core=getattr(args, "dla_core", None),
    )
    return place(args.model, target, policy, parse_dims(getattr(args, "dim", None)))


def build_from_args(
    args: argparse.Namespace, progress: Callable[[str], None] | None = None
) -> tuple[Placement, Plan]:
    say = progress or (lambda _m: None)
    say(f"importing {args.model}")
    placement = place_from_args(args)
    part = placement.partition
    say(
        f"placed {len(part.assignments)} layers into {len(part.segments)} segments "
        f"({part.strategy} strategy)"
    )
    scales = None
    if any(a.precision == "int8" for a in part.assignments.values()):
        say("calibrating INT8 scales")
        scales = calibrate(
            placement.graph,
            calib=getattr(args, "calib", None),
            calib_random=getattr(args, "calib_random", 0),
            cache=getattr(args, "calib_cache", None),
        )
    return placement, build_plan(placement, scales, say)
