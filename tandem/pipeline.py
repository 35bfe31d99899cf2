"""From CLI arguments to a placement or a plan: what inspect, build and run share."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.io import parse_dims
from devices.plan import MAGIC, Plan
from partitioner.errors import InputError
from partitioner.profiles import OptimizationProfile, opt_dims, parse_shape_list
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


def add_profile_args(parser: argparse.ArgumentParser) -> None:
    """``--min-shapes/--opt-shapes/--max-shapes`` (trtexec's syntax); the k-th use of each
    makes profile k, so a plan can carry several."""
    group = parser.add_argument_group("dynamic shapes (optimisation profiles)")
    for which in ("min", "opt", "max"):
        group.add_argument(
            f"--{which}-shapes",
            action="append",
            metavar="NAME:DIMS[,...]",
            help=f"{which} shapes of one profile, e.g. input:1x3x224x224 (repeat for more "
            "profiles)",
        )


def profiles_from_args(args: argparse.Namespace) -> list[OptimizationProfile]:
    lows = getattr(args, "min_shapes", None) or []
    opts = getattr(args, "opt_shapes", None) or []
    highs = getattr(args, "max_shapes", None) or []
    if not (len(lows) == len(opts) == len(highs)):
        raise InputError(
            f"--min-shapes, --opt-shapes and --max-shapes: each profile needs all three (got "
            f"{len(lows)}, {len(opts)} and {len(highs)})"
        )
    profiles = []
    for i, (lo, mid, hi) in enumerate(zip(lows, opts, highs)):
        parsed = [
            parse_shape_list(t, f"--{w}-shapes")
            for t, w in ((lo, "min"), (mid, "opt"), (hi, "max"))
        ]
        if not parsed[0].keys() == parsed[1].keys() == parsed[2].keys():
            raise InputError(
                f"profile {i}: --min-shapes, --opt-shapes and --max-shapes must "
                "name the same inputs"
            )
        profile = OptimizationProfile()
        for name in parsed[0]:
            profile.set_shape(name, parsed[0][name], parsed[1][name], parsed[2][name])
        profiles.append(profile)
    return profiles


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
        profiles=getattr(args, "profiles", None) or profiles_from_args(args),
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
        calib = getattr(args, "calib", None)
        calib_random = getattr(args, "calib_random", 0)
        cache = getattr(args, "calib_cache", None)
        if placement.qdq_scales and not (calib or calib_random or cache):
            say(f"using the {len(placement.qdq_scales)} scales of the model's Q/DQ layers")
            scales = dict(placement.qdq_scales)
        else:
            scales = calibrate(graph, calib=calib, calib_random=calib_random, cache=cache)
            scales.update(placement.qdq_scales)  # trained scales outrank calibrated ones
    return placement, build_plan(placement, scales, say, _timing_cache(args))


def _timing_cache(args: argparse.Namespace) -> Any:
    """``--timing-cache F``: GPU tactic times (from ``tandem deploy --tune`` on a board, or
    ``tandem run --timing-cache`` on a GPU); a missing file is simply an empty cache."""
    path = getattr(args, "timing_cache", None)
    if not path:
        return None
    from gpu_kernels.timing_cache import TimingCache

    return TimingCache.load(path) if Path(path).is_file() else TimingCache()
