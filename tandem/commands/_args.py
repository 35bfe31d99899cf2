"""Argument groups shared by ``build``, ``run``, ``compare`` and ``inspect``.

As in Polygraphy's ``tools/args``, each group declares its flags (``add``) and decodes them
into typed values (``decode``); :func:`build_request` assembles a ``BuildRequest`` from the
groups a command subscribed to. A flag's meaning therefore lives in one place, and is the
same in every command that takes it.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from devices.calib_images import parse_preprocess
from devices.calibration import Calibration, RandomInputs, Source, source_from_path
from devices.hardware import TargetSpec
from devices.io import parse_dims
from devices.plan import MAGIC
from gpu_kernels.timing_cache import TimingCache
from partitioner.errors import InputError
from partitioner.ir import Graph
from partitioner.policy import Policy
from partitioner.profiles import OptimizationProfile, parse_shape_list
from targets.build import load_model, resolve_policy, resolve_target
from targets.request import BuildRequest


def is_plan(path: str) -> bool:
    """True when ``path`` starts with the plan magic (anything else is treated as ONNX)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class ModelArgs:
    """``--dim``, ``--shapes`` and ``--no-optimize``: how the ONNX model is imported.

    ``--dim`` binds a dynamic input dim by name (``batch=1``) or by position (``x:2=48``, also
    the name Tandem gives a dim the model leaves unnamed: ``?``, empty, or -1); ``--shapes``
    binds whole input shapes (trtexec's spelling). Both go to ``partitioner.bindings``."""

    @staticmethod
    def add(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--dim",
            action="append",
            metavar="NAME=N",
            help="bind a dynamic input dim by name or as INPUT:AXIS, e.g. --dim batch=1 "
            "--dim x:2=48 (repeatable)",
        )
        parser.add_argument(
            "--shapes",
            metavar="NAME:DIMS[,...]",
            help="input shapes, e.g. x:1x3x48x320: bind the dynamic dims of an ONNX model; for "
            "a dynamic-shape plan, the shapes of the random inputs (default: the first "
            "profile's opt shapes)",
        )
        parser.add_argument(
            "--no-optimize",
            action="store_true",
            help="skip the import-time passes (constant folding, BN folding, identity removal)",
        )

    @staticmethod
    def decode(args: argparse.Namespace) -> dict[str, int]:
        return parse_dims(args.dim)

    @staticmethod
    def shapes(args: argparse.Namespace) -> dict[str, tuple[int, ...]]:
        return parse_shape_list(args.shapes) if getattr(args, "shapes", None) else {}

    @classmethod
    def load(cls, args: argparse.Namespace) -> Graph:
        """``args.model`` imported with the bindings given on the command line."""
        return load_model(
            args.model,
            cls.decode(args),
            optimize=not args.no_optimize,
            input_shapes=cls.shapes(args),
        )


class TargetArgs:
    """The board, its power mode, and the device policy with its command-line overrides."""

    @staticmethod
    def add(group: Any, required: bool) -> None:
        group.add_argument(
            "--target",
            required=required,
            metavar="T",
            help="a catalog board (orin-agx-64gb, xavier-nx, ...), a target YAML path, or 'host'",
        )
        group.add_argument("--power-mode", metavar="M", help="nvpmodel mode (MAXN, 15W, ...)")
        group.add_argument("--policy", metavar="P.yaml", help="device policy (docs/policy.md)")
        group.add_argument("--partition", choices=("trt", "cost"), help="placement strategy")
        group.add_argument("--dla-core", type=int, choices=(0, 1), help="DLA core to use")
        prec = group.add_mutually_exclusive_group()
        for name in ("fp32", "fp16", "int8"):
            prec.add_argument(f"--{name}", dest="precision", action="store_const", const=name)

    @staticmethod
    def check_honoured(args: argparse.Namespace, plan: str | None = None) -> None:
        """``--fp16``/``--int8`` mean nothing without a target that builds at that precision:
        the numpy reference would run FP32 and report on it, so refuse instead (a plan carries
        its own precision, so these flags beside ``plan`` are refused too)."""
        precision = getattr(args, "precision", None)
        if precision not in ("fp16", "int8") or (args.target and not plan):
            return
        if plan:
            raise InputError(
                f"--{precision} with a plan: the plan's precision was fixed when it was built "
                f"({plan}); drop --{precision}, or give --target T instead of the plan"
            )
        raise InputError(
            f"--{precision} needs --target T (a board, or 'host'): without one the model runs "
            f"whole on the FP32 numpy reference and --{precision} would change nothing"
        )

    @staticmethod
    def decode(args: argparse.Namespace) -> tuple[TargetSpec, Policy]:
        target = resolve_target(args.target, args.power_mode)
        policy = resolve_policy(
            args.policy, precision=args.precision, strategy=args.partition, dla_core=args.dla_core
        )
        return target, policy


class CalibrationArgs:
    """``--calib DIR|FILE [--calib-preprocess SPEC]``, ``--calib-random N``, ``--calib-cache
    FILE`` -> a Calibration."""

    HINT = (
        "pass --calib DIR|FILE (a folder of .npz files or of images, or a calibration cache), "
        "--calib-random N (a smoke run), or --calib-cache FILE (an existing cache)"
    )

    @staticmethod
    def add(group: Any) -> None:
        group.add_argument(
            "--calib",
            metavar="DIR|FILE",
            help="INT8 calibration: a folder of .npz inputs, a folder of .jpg/.png images, or "
            "a TensorRT-format calibration cache file",
        )
        group.add_argument(
            "--calib-preprocess",
            metavar="SPEC|FILE.yaml",
            help="how --calib images become inputs: 'resize=256,crop=224,mean=0.485,0.456,0.406,"
            "std=0.229,0.224,0.225,order=rgb,layout=nchw,range=1' or a YAML file of those keys",
        )
        group.add_argument(
            "--calib-random",
            type=int,
            default=0,
            metavar="N",
            help="calibrate INT8 on N seeded random inputs (a smoke run, not for accuracy)",
        )
        group.add_argument(
            "--calib-cache",
            metavar="FILE",
            help="TensorRT-format calibration cache: read when no --calib/--calib-random is "
            "given, written after calibrating",
        )

    @classmethod
    def decode(cls, args: argparse.Namespace) -> Calibration:
        if args.calib and args.calib_random:
            raise InputError("--calib and --calib-random: give one calibration source, not both")
        source: Source | None = None
        if args.calib_preprocess and not args.calib:
            raise InputError("--calib-preprocess: give --calib DIR (a folder of images) too")
        if args.calib:
            spec = parse_preprocess(args.calib_preprocess) if args.calib_preprocess else None
            source = source_from_path(args.calib, preprocess=spec)
        elif args.calib_random:
            source = RandomInputs(args.calib_random)
        cache = Path(args.calib_cache) if args.calib_cache else None
        return Calibration(source, cache, cls.HINT)


class TimingCacheArgs:
    """``--timing-cache FILE``: GPU tactic times (from ``tandem deploy --tune`` on a board, or
    ``tandem run --timing-cache`` on a GPU); a missing file is simply an empty cache."""

    @staticmethod
    def add(group: Any) -> None:
        group.add_argument(
            "--timing-cache",
            metavar="FILE",
            help="GPU tactic timing cache (JSON): picks tactics at build; on a GPU, `run` "
            "autotunes and writes what it measured back to it",
        )

    @staticmethod
    def decode(args: argparse.Namespace) -> TimingCache | None:
        return timing_cache_at(args.timing_cache)


class GpuCodeArgs:
    """``--no-cubins``: write a plan without cross-compiled GPU kernels."""

    @staticmethod
    def add(group: Any) -> None:
        group.add_argument(
            "--no-cubins",
            action="store_true",
            help="lower the GPU segments but compile no kernels into the plan: the board "
            "compiles them with NVRTC when the plan loads (needs the 'cuda' extra there); for a "
            "machine without the NVRTC of the target's CUDA major",
        )

    @staticmethod
    def decode(args: argparse.Namespace) -> bool:
        """Whether the build cross-compiles cubins."""
        return not getattr(args, "no_cubins", False)


def timing_cache_at(path: str | None) -> TimingCache | None:
    """The timing cache in file ``path`` (``None`` without one); a file not yet written is an
    empty cache, which the first run on a GPU fills."""
    if not path:
        return None
    return TimingCache.load(path) if Path(path).is_file() else TimingCache()


class ProfileArgs:
    """``--min-shapes/--opt-shapes/--max-shapes`` (trtexec's syntax); the k-th use of each
    makes profile k, so a plan can carry several."""

    @staticmethod
    def add(parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("dynamic shapes (optimisation profiles)")
        for which in ("min", "opt", "max"):
            group.add_argument(
                f"--{which}-shapes",
                action="append",
                metavar="NAME:DIMS[,...]",
                help=f"{which} shapes of one profile, e.g. input:1x3x224x224 (repeat for more "
                "profiles)",
            )

    @staticmethod
    def decode(args: argparse.Namespace) -> tuple[OptimizationProfile, ...]:
        lows = args.min_shapes or []
        opts = args.opt_shapes or []
        highs = args.max_shapes or []
        if not (len(lows) == len(opts) == len(highs)):
            raise InputError(
                f"--min-shapes, --opt-shapes and --max-shapes: each profile needs all three "
                f"(got {len(lows)}, {len(opts)} and {len(highs)})"
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
        return tuple(profiles)


def add_build_args(
    parser: argparse.ArgumentParser, *, target_required: bool = False, profiles: bool = True
) -> None:
    """Subscribe a command to every group a build needs (``profiles`` off: no dynamic-shape
    flags, and the model's own shapes are used)."""
    ModelArgs.add(parser)
    group = parser.add_argument_group("target and placement")
    TargetArgs.add(group, target_required)
    CalibrationArgs.add(group)
    TimingCacheArgs.add(group)
    GpuCodeArgs.add(group)
    if profiles:
        ProfileArgs.add(parser)


def build_request(args: argparse.Namespace, *, placement_only: bool = False) -> BuildRequest:
    """A command's parsed arguments as a ``BuildRequest`` (``args.model`` is the ONNX file).

    ``placement_only`` (``inspect``): calibration and timing-cache flags are accepted there
    but mean nothing, so they are not read."""
    target, policy = TargetArgs.decode(args)
    request = BuildRequest(
        model=args.model,
        target=target,
        policy=policy,
        fixed_dims=ModelArgs.decode(args),
        input_shapes=ModelArgs.shapes(args),
        profiles=ProfileArgs.decode(args) if hasattr(args, "min_shapes") else (),
    )
    if placement_only:
        return request
    return replace(
        request,
        calibration=CalibrationArgs.decode(args),
        timing_cache=TimingCacheArgs.decode(args),
        cubins=GpuCodeArgs.decode(args),
    )
