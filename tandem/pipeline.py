"""From CLI arguments to a placement or a plan: what inspect, build and run share."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from devices.io import parse_dims
from devices.plan import MAGIC, Plan
from partitioner.profiles import opt_dims
from targets.build import (
    Placement,
    build_plan,
    calibrate,
    fix_dims,
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
    return place(
        args.model,
        target,
        policy,
        parse_dims(getattr(args, "dim", None)),
        graph=getattr(args, "graph", None),
        profiles=getattr(args, "profiles", None),
    )


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
        graph = placement.graph
        if placement.profiles and not all(t.is_static for t in graph.inputs):
            # TensorRT calibrates at the first profile's opt shapes; so do we
            graph = fix_dims(graph, opt_dims(placement.profiles[0], graph.inputs))
        scales = calibrate(
            graph,
            calib=getattr(args, "calib", None),
            calib_random=getattr(args, "calib_random", 0),
            cache=getattr(args, "calib_cache", None),
        )
    return placement, build_plan(placement, scales, say)
