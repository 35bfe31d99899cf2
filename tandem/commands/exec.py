"""``tandem exec --onnx=MODEL.onnx ...``: trtexec's command line, on Tandem's builder and runtime.

Flags are trtexec's, spelled as trtexec spells them (``--flag=value`` or ``--flag value``); a
trtexec flag Tandem does not implement is named in an error (exit 2), never ignored. Semantics
follow TensorRT: without ``--useDLACore`` every layer runs on the GPU; with it the DLA is the
default device and ``--allowGPUFallback`` lets unsupported layers move to the GPU.

What the numbers are: the performance summary has trtexec's layout, but its times are measured
*here*, on the backend this machine has (CUDA when the plan's GPU is present, else the numpy
reference for GPU segments and the DLA emulator for DLA segments). The cost model's prediction
for the target board is printed beside them and labelled as such. Per-layer times in
``--dumpProfile`` / ``--exportProfile`` are each segment's measured time split over its layers
in proportion to their predicted cost (``"split": "predicted-cost"`` in the export).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from devices.calib_images import parse_preprocess
from devices.calibration import Calibration, RandomInputs, source_from_path
from devices.io import random_inputs, write_atomic
from devices.plan import Plan, read_plan, write_plan
from devices.runtime import PlanRunner
from partitioner.assign import PartitionError
from partitioner.errors import InputError, TandemError
from partitioner.ir import Graph
from partitioner.policy import Rule
from partitioner.profiles import (
    OptimizationProfile,
    dims_text,
    parse_shape_list,
)
from tandem.commands._args import timing_cache_at
from tandem.engine import layer_info
from targets.build import build, build_notes, load_model, resolve_policy, resolve_target
from targets.request import BuildRequest


class UsageError(TandemError):
    """A command line trtexec would not accept, or a flag Tandem does not implement."""

    exit_code = 2


# ----- the flag table --------------------------------------------------------------------------
# name -> (takes a value, help). Only these are accepted; everything else is refused by name.
FLAGS: dict[str, tuple[bool, str]] = {
    "onnx": (True, "ONNX model to build"),
    "saveEngine": (True, "write the built plan here"),
    "loadEngine": (True, "run this plan instead of building"),
    "fp16": (False, "enable FP16 layers"),
    "int8": (False, "enable INT8 layers"),
    "best": (False, "enable every precision (INT8 with FP16/FP32 fallback)"),
    "calib": (True, "INT8 calibration: a cache file (TensorRT text format), a folder of .npz "
              "or a folder of .jpg/.png images (see calibPreprocess)"),
    "calibPreprocess": (True, "Tandem's: how --calib images become inputs, as `tandem build "
                        "--calib-preprocess` takes it"),
    "useDLACore": (True, "run on DLA core N (the DLA becomes the default device)"),
    "allowGPUFallback": (False, "layers the DLA cannot run go to the GPU"),
    "shapes": (True, "inference shapes name:1x3x224x224,... (and the profile when building)"),
    "minShapes": (True, "profile min shapes"),
    "optShapes": (True, "profile opt shapes"),
    "maxShapes": (True, "profile max shapes"),
    "layerPrecisions": (True, "per-layer precision name:fp16,... (* matches every layer)"),
    "layerDeviceTypes": (True, "per-layer device name:GPU|DLA,..."),
    "precisionConstraints": (True, "none|prefer|obey (layer precisions are always obeyed)"),
    "timingCacheFile": (True, "tactic timing cache (picks tactics at build; read and updated "
                        "by CUDA GPU segments)"),
    "iterations": (True, "run at least N inferences (default 10)"),
    "warmUp": (True, "warm up for N ms (default 200)"),
    "duration": (True, "run at least N seconds (default 3)"),
    "avgRuns": (True, "report averages over N consecutive runs with --verbose (default 10)"),
    "exportTimes": (True, "write per-inference timings (trtexec JSON)"),
    "exportProfile": (True, "write per-layer times (trtexec JSON)"),
    "exportLayerInfo": (True, "write layer and binding information (trtexec JSON)"),
    "dumpProfile": (False, "print per-layer times"),
    "verbose": (False, "print placements and per-run averages"),
    "noDataTransfers": (False, "leave host<->device copies out of the timings"),
    "useCudaGraph": (False, "replay CUDA graphs (the CUDA backend always does)"),
    "target": (True, "Tandem: board to build for (catalog name, YAML, or host; default host)"),
    "backend": (True, "Tandem: auto|cuda|cpu for GPU segments (default auto)"),
    "seed": (True, "Tandem: seed of the random input data (default 0)"),
    "help": (False, "this list"),
}

# trtexec flags that exist but are not implemented here: named as such in the error.
KNOWN_TRTEXEC = (
    "uff deploy model output uffInput uffNHWC workspace memPoolSize maxBatch "
    "minTiming avgTiming refit sparsity tf32 fp8 bf16 int4 stronglyTyped directIO "
    "inputIOFormats outputIOFormats layerOutputTypes safe consistency restricted buildOnly "
    "skipInference plugins setPluginsToSerialize dynamicPlugins tacticSources noBuilderCache "
    "builderOptimizationLevel hardwareCompatibilityLevel profilingVerbosity versionCompatible "
    "excludeLeanRuntime calibProfile maxAuxStreams preview loadInputs streams infStreams "
    "exposeDMA useSpinWait threads useManagedMemory idleTime persistentCacheRatio "
    "separateProfileRun dumpOutput dumpRawBindingsToFile dumpLayerInfo exportOutput "
    "profile device timeDeserialize timeRefit useRuntime leanDLLPath allowWeightStreaming "
    "weightStreamingBudget saveLayerInfo skipInference noTF32 getPlanVersionOnly"
).split()


@dataclass
class ExecOptions:
    values: dict[str, str] = field(default_factory=dict)
    switches: set[str] = field(default_factory=set)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.values.get(name, default)

    def on(self, name: str) -> bool:
        return name in self.switches

    def number(self, name: str, default: float, kind: Callable[[str], float] = float) -> float:
        text = self.values.get(name)
        if text is None:
            return default
        try:
            value = kind(text)
        except ValueError:
            raise UsageError(f"--{name}={text}: expected a number") from None
        if value < 0:
            raise UsageError(f"--{name}={text}: expected a non-negative number")
        return value


def parse_flags(argv: Sequence[str]) -> ExecOptions:
    """trtexec's syntax: ``--name=value``, ``--name value`` for valued flags, ``--switch``."""
    opts = ExecOptions()
    unknown: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--") or len(arg) < 3:
            raise UsageError(f"unexpected argument '{arg}': trtexec flags look like --name=value")
        name, eq, value = arg[2:].partition("=")
        if name not in FLAGS:
            unknown.append(f"--{name}")
            continue
        takes_value, _ = FLAGS[name]
        if takes_value:
            if not eq:
                if i >= len(argv) or argv[i].startswith("--"):
                    raise UsageError(f"--{name} needs a value: --{name}=VALUE")
                value = argv[i]
                i += 1
            opts.values[name] = value
        else:
            if eq:
                raise UsageError(f"--{name} takes no value (got --{name}={value})")
            opts.switches.add(name)
    if unknown:
        known = [u for u in unknown if u[2:] in KNOWN_TRTEXEC]
        other = [u for u in unknown if u[2:] not in KNOWN_TRTEXEC]
        parts = []
        if known:
            parts.append(f"trtexec flag(s) not supported by tandem exec: {', '.join(known)}")
        if other:
            parts.append(f"unknown flag(s): {', '.join(other)}")
        raise UsageError("; ".join(parts) + " (tandem exec --help lists the supported flags)")
    return opts


# ----- CLI wiring ------------------------------------------------------------------------------
def register(sub: argparse._SubParsersAction) -> None:
    # '+' as the prefix: argparse must not interpret trtexec's '--flag=value' arguments itself.
    p = sub.add_parser(
        "exec",
        help="trtexec-compatible build and benchmark (--onnx=..., --useDLACore=0, ...)",
        prefix_chars="+",
        add_help=False,
    )
    p.add_argument("flags", nargs="*", help="trtexec flags")
    p.set_defaults(func=run)


def help_text() -> str:
    width = max(len(n) for n in FLAGS) + 3
    lines = ["usage: tandem exec --onnx=MODEL.onnx | --loadEngine=PLAN [trtexec flags]", ""]
    lines += [f"  --{name:<{width}}{text}" for name, (_, text) in FLAGS.items()]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    argv = list(args.flags)
    if not argv or "--help" in argv or "-h" in argv:
        print(help_text())
        return 0 if argv else 2
    opts = parse_flags(argv)
    log = Log(opts.on("verbose"))
    command = f"tandem exec {' '.join(argv)}"
    log.line(f"&&&& RUNNING tandem exec # {command}", raw=True)
    try:
        plan = _load_or_build(opts, log)
        if opts.get("saveEngine"):
            path = write_plan(plan, str(opts.get("saveEngine")))
            log.info(f"Engine saved to {path} ({path.stat().st_size} bytes)")
        feeds = _feeds(opts, plan, log)
        result = benchmark(plan, feeds, opts, log)
        _report(plan, result, opts, log)
    except TandemError:
        log.line(f"&&&& FAILED tandem exec # {command}", raw=True)
        raise
    log.line(f"&&&& PASSED tandem exec # {command}", raw=True)
    return 0


class Log:
    """trtexec's line prefix: ``[MM/DD/YYYY-HH:MM:SS] [I] message``."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose

    def line(self, text: str, level: str = "I", raw: bool = False) -> None:
        if raw:
            print(text, flush=True)
            return
        stamp = datetime.now().strftime("%m/%d/%Y-%H:%M:%S")
        print(f"[{stamp}] [{level}] {text}", flush=True)

    def info(self, text: str) -> None:
        self.line(text)

    def warn(self, text: str) -> None:
        self.line(text, "W")

    def debug(self, text: str) -> None:
        if self.verbose:
            self.line(text, "V")


# ----- build -----------------------------------------------------------------------------------
def _load_or_build(opts: ExecOptions, log: Log) -> Plan:
    onnx, engine = opts.get("onnx"), opts.get("loadEngine")
    if bool(onnx) == bool(engine):
        raise UsageError("give exactly one model: --onnx=MODEL.onnx or --loadEngine=PLAN")
    if engine:
        plan = read_plan(engine)
        log.info(f"Loaded engine {engine}: target {plan.target}, precision "
                 f"{plan.header.get('precision')}, {len(plan.header['segments'])} segments")
        return plan
    assert onnx is not None
    request = _request(onnx, opts, log)
    policy, target = request.policy, request.target
    log.info(f"Building for {target.name} ({target.power_mode}), precision {policy.precision}, "
             f"default device {policy.default_device}"
             + (f" core {policy.dla_core}" if policy.default_device == "dla" else ""))
    try:
        built = build(request, lambda m: log.debug(m))
    except PartitionError as err:
        if policy.gpu_fallback:
            raise
        raise PartitionError(
            f"{err}; in trtexec terms: add --allowGPUFallback, or "
            "--layerDeviceTypes=LAYER:GPU for those layers"
        ) from None
    placement, plan = built
    part = placement.partition
    for warning in part.warnings:
        log.warn(warning)
    for note in build_notes(built):
        log.warn(note.strip())
    for name, a in part.assignments.items():
        log.debug(f"Layer {name}: {a.device} {a.precision}: {a.reason}")
    if isinstance(request.calibration.source, RandomInputs) and "calibration" in plan.header:
        log.warn("INT8 without --calib: scales came from 2 random inputs; performance "
                 "numbers are valid, accuracy is not (trtexec sets arbitrary ranges too)")
    counts: dict[str, int] = {}
    for a in part.assignments.values():
        counts[a.device] = counts.get(a.device, 0) + 1
    log.info("Engine built: " + ", ".join(f"{n} layers on {d}" for d, n in sorted(counts.items()))
             + f", {len(part.segments)} segments")
    return plan


def _request(onnx: str, opts: ExecOptions, log: Log) -> BuildRequest:
    """trtexec's flags as a BuildRequest: without --useDLACore everything is on the GPU."""
    target = resolve_target(opts.get("target") or "host")
    policy = replace(resolve_policy(None, precision=_precision(opts)), source="trtexec flags")
    dla_core = opts.get("useDLACore")
    if dla_core is not None:
        if dla_core not in ("0", "1"):
            raise UsageError(f"--useDLACore={dla_core}: expected 0 or 1")
        if target.dla is None:
            raise InputError(
                f"--useDLACore={dla_core}: target {target.name} has no DLA; pass "
                "--target=<a Jetson board> (e.g. --target=orin-agx-64gb) to build for one"
            )
        if policy.precision == "fp32":
            log.warn("--useDLACore without --fp16/--int8/--best: enabling FP16 (the DLA has "
                     "no FP32)")
            policy = policy.with_overrides(precision="fp16")
        policy = policy.with_overrides(
            default_device="dla", dla_core=int(dla_core),
            gpu_fallback=opts.on("allowGPUFallback"),
        )
    else:
        policy = policy.with_overrides(default_device="gpu")
    rules = _layer_rules(opts)
    if rules:
        policy = replace(policy, rules=tuple(rules))
    graph = load_model(onnx)  # read here: a dynamic input without shapes gets a profile
    calib = opts.get("calib")
    # trtexec calibrates INT8 without data on arbitrary ranges; two random inputs stand in
    spec = opts.get("calibPreprocess")
    if spec and not calib:
        raise InputError("--calibPreprocess: give --calib=DIR (a folder of images) too")
    preprocess = parse_preprocess(spec) if spec else None
    source = source_from_path(calib, f"--calib={calib}", preprocess) if calib else RandomInputs(2)
    return BuildRequest(
        model=onnx,
        target=target,
        policy=policy,
        graph=graph,
        profiles=tuple(_build_profiles(opts, graph, log)),
        calibration=Calibration(source),
        timing_cache=timing_cache_at(opts.get("timingCacheFile")),  # trtexec builds with it
    )


def _precision(opts: ExecOptions) -> str:
    if opts.on("best") or opts.on("int8"):
        return "int8"
    return "fp16" if opts.on("fp16") else "fp32"


def _layer_rules(opts: ExecOptions) -> list[Rule]:
    rules: list[Rule] = []
    for flag, kind in (("layerPrecisions", "precision"), ("layerDeviceTypes", "device")):
        text = opts.get(flag)
        if not text:
            continue
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, value = item.rpartition(":")
            value = value.strip().lower()
            allowed = ("fp32", "fp16", "int8") if kind == "precision" else ("gpu", "dla")
            if not sep or not name or value not in allowed:
                raise UsageError(
                    f"--{flag}: cannot read '{item}'; expected LAYER:"
                    + ("fp32|fp16|int8" if kind == "precision" else "GPU|DLA")
                )
            rules.append(Rule(index=len(rules) + 1, name=name, **{kind: value}))  # type: ignore[arg-type]
    return rules


def _build_profiles(opts: ExecOptions, graph: Graph, log: Log) -> list[OptimizationProfile]:
    lo = parse_shape_list(opts.get("minShapes") or "", "--minShapes")
    mid = parse_shape_list(opts.get("optShapes") or "", "--optShapes")
    hi = parse_shape_list(opts.get("maxShapes") or "", "--maxShapes")
    run_shapes = parse_shape_list(opts.get("shapes") or "", "--shapes")
    dynamic = [t for t in graph.inputs if not t.is_static]
    if not (lo or mid or hi or run_shapes):
        if not dynamic:
            return []
        profile = OptimizationProfile()
        for t in dynamic:
            shape = tuple(d if isinstance(d, int) else 1 for d in (t.shape or ()))
            log.warn(f"Dynamic dimensions required for input: {t.name}, but no shapes were "
                     f"provided. Automatically overriding shape to: {dims_text(shape)}")
            profile.set_shape(t.name, shape, shape, shape)
        return [profile]
    if (lo or mid or hi) and not (set(lo) == set(mid) == set(hi)):
        raise UsageError("--minShapes, --optShapes and --maxShapes must name the same inputs")
    profile = OptimizationProfile()
    for name in lo:
        profile.set_shape(name, lo[name], mid[name], hi[name])
    for name, shape in run_shapes.items():
        if name not in profile.shapes:  # trtexec: --shapes alone means min = opt = max
            profile.set_shape(name, shape, shape, shape)
    return [profile]


# ----- inputs ----------------------------------------------------------------------------------
def _feeds(opts: ExecOptions, plan: Plan, log: Log) -> dict[str, np.ndarray]:
    shapes = parse_shape_list(opts.get("shapes") or "", "--shapes")
    profiles = plan.header.get("profiles") or []
    stub = Graph("inputs")
    for b in plan.header["inputs"]:
        shape = b.get("shape")
        if b["name"] in shapes:
            shape = list(shapes[b["name"]])
        elif shape and not all(isinstance(d, int) for d in shape) and profiles:
            shape = profiles[0]["inputs"].get(b["name"], {}).get("opt", shape)
        stub.add_input(b["name"], tuple(shape) if shape else None,  # type: ignore[arg-type]
                       b.get("dtype") or "float32")
    unknown = sorted(set(shapes) - {t.name for t in stub.inputs})
    if unknown:
        raise InputError(f"--shapes names {', '.join(unknown)}, which the model does not have "
                         f"(its inputs: {', '.join(t.name for t in stub.inputs)})")
    for t in stub.inputs:
        log.debug(f"Input {t.name}: {dims_text(t.shape or ())} {t.dtype}")
    return random_inputs(stub, seed=int(opts.number("seed", 0, int)))


# ----- the benchmark loop ----------------------------------------------------------------------
@dataclass
class Timing:
    """One inference, in ms from the start of the timed phase (trtexec's exportTimes record)."""

    start_enq: float
    end_enq: float
    start_h2d: float
    end_h2d: float
    start_compute: float
    end_compute: float
    start_d2h: float
    end_d2h: float

    def record(self) -> dict[str, float]:
        h2d = self.end_h2d - self.start_h2d
        compute = self.end_compute - self.start_compute
        d2h = self.end_d2h - self.start_d2h
        return {
            "startEnqMs": self.start_enq,
            "endEnqMs": self.end_enq,
            "startH2DMs": self.start_h2d,
            "endH2DMs": self.end_h2d,
            "startComputeMs": self.start_compute,
            "endComputeMs": self.end_compute,
            "startD2HMs": self.start_d2h,
            "endD2HMs": self.end_d2h,
            "h2dMs": h2d,
            "computeMs": compute,
            "d2hMs": d2h,
            "latencyMs": h2d + compute + d2h,
            "enqueueMs": self.end_enq - self.start_enq,
            "endToEndMs": self.end_d2h - self.start_h2d,
        }


@dataclass
class BenchResult:
    timings: list[Timing]
    walltime_s: float
    segment_ms: list[dict[str, float]]
    backends: dict[str, str]
    notes: list[str]


def benchmark(plan: Plan, feeds: dict[str, np.ndarray], opts: ExecOptions, log: Log) -> BenchResult:
    """Warm up for ``--warmUp`` ms, then run until both ``--iterations`` and ``--duration``
    are reached (trtexec's rule). Synchronous backends: enqueue == compute here."""
    warmup_ms = opts.number("warmUp", 200.0)
    duration_s = opts.number("duration", 3.0)
    iterations = int(opts.number("iterations", 10, int))
    transfers = not opts.on("noDataTransfers")
    runner = PlanRunner(plan, opts.get("backend") or "auto",
                        timing_cache=opts.get("timingCacheFile"))
    timings: list[Timing] = []
    segment_ms: list[dict[str, float]] = []
    with runner:
        start = time.perf_counter()
        runner.infer(feeds)  # the first run compiles (CUDA) and checks the inputs
        while (time.perf_counter() - start) * 1e3 < warmup_ms:
            runner.infer(feeds)
        log.info(f"Warmup completed in {(time.perf_counter() - start) * 1e3:g} ms")
        t0 = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - t0) * 1e3

        while len(timings) < max(iterations, 1) or ms() < duration_s * 1e3:
            s_h2d = ms()
            staged = {k: np.array(v, copy=True) for k, v in feeds.items()} if transfers else feeds
            e_h2d = ms()
            s_c = ms()
            outputs = runner.infer(staged, check_inputs=False)
            e_c = ms()
            if transfers:
                outputs = {k: np.array(v, copy=True) for k, v in outputs.items()}
            e_d2h = ms()
            timings.append(Timing(s_c, e_c, s_h2d, e_h2d, s_c, e_c, e_c, e_d2h))
            segment_ms.append(dict(runner.segment_ms))
        walltime = time.perf_counter() - t0
        backends = runner.backends()
    notes = list(runner.notes)
    if opts.get("timingCacheFile") and "cuda" not in backends.values():
        notes.append("--timingCacheFile: not read or written, no GPU segment ran on CUDA here")
    return BenchResult(timings, walltime, segment_ms, backends, notes)


# ----- statistics and output -------------------------------------------------------------------
def percentile(sorted_values: Sequence[float], p: float) -> float:
    """trtexec's percentile: the value at rank ceil(p% x n) (1-based) of the sorted list."""
    n = len(sorted_values)
    index = max(0, min(n - 1, math.ceil(p / 100.0 * n) - 1))
    return sorted_values[index]


def stats(values: Sequence[float]) -> dict[str, float]:
    v = sorted(values)
    return {
        "min": v[0],
        "max": v[-1],
        "mean": float(np.mean(v)),
        "median": float(np.median(v)),
        "percentile(90%)": percentile(v, 90),
        "percentile(95%)": percentile(v, 95),
        "percentile(99%)": percentile(v, 99),
    }


def stats_line(label: str, values: Sequence[float]) -> str:
    s = stats(values)
    return f"{label}: " + ", ".join(f"{k} = {v:g} ms" for k, v in s.items())


def summary_lines(result: BenchResult) -> list[str]:
    records = [t.record() for t in result.timings]

    def col(key: str) -> list[float]:
        return [r[key] for r in records]

    total_compute_s = sum(col("computeMs")) / 1e3
    return [
        "=== Performance summary ===",
        f"Throughput: {len(records) / result.walltime_s:g} qps",
        stats_line("Latency", col("latencyMs")),
        stats_line("Enqueue Time", col("enqueueMs")),
        stats_line("H2D Latency", col("h2dMs")),
        stats_line("GPU Compute Time", col("computeMs")),
        stats_line("D2H Latency", col("d2hMs")),
        f"Total Host Walltime: {result.walltime_s:g} s",
        f"Total GPU Compute Time: {total_compute_s:g} s",
    ]


def layer_times(plan: Plan, result: BenchResult) -> tuple[list[dict[str, Any]], str]:
    """Per layer: each run's segment time split by predicted cost (evenly without costs)."""
    layers = {entry["name"]: entry for entry in plan.header.get("layers", [])}
    per_layer: dict[str, list[float]] = {}
    split = "predicted-cost"
    for seg in plan.header["segments"]:
        names = list(seg["layers"])
        costs = [float(layers.get(n, {}).get("predicted_ms") or 0.0) for n in names]
        if sum(costs) <= 0:
            costs, split = [1.0] * len(names), "even"
        weights = np.asarray(costs) / sum(costs)
        for run in result.segment_ms:
            seg_ms = run.get(seg["name"], 0.0)
            for name, w in zip(names, weights):
                per_layer.setdefault(name, []).append(seg_ms * float(w))
    total = sum(sum(v) for v in per_layer.values()) or 1.0
    rows = [
        {
            "name": name,
            "timeMs": sum(times),
            "averageMs": float(np.mean(times)),
            "medianMs": float(np.median(times)),
            "percentage": 100.0 * sum(times) / total,
        }
        for name, times in per_layer.items()
    ]
    return rows, split


def _report(plan: Plan, result: BenchResult, opts: ExecOptions, log: Log) -> None:
    where = ", ".join(f"{seg} on {b}" for seg, b in result.backends.items())
    log.info(f"Measured here: {where}")
    for note in result.notes:
        log.info(f"Note: {note}")
    if opts.on("verbose"):
        avg = int(opts.number("avgRuns", 10, int)) or 1
        records = [t.record() for t in result.timings]
        for i in range(0, len(records), avg):
            chunk = records[i : i + avg]
            log.debug(
                f"Average on {len(chunk)} runs - GPU latency: "
                f"{np.mean([r['computeMs'] for r in chunk]):g} ms - Host latency: "
                f"{np.mean([r['latencyMs'] for r in chunk]):g} ms"
            )
    for line in summary_lines(result):
        log.info(line)
    predicted = plan.header.get("predicted_ms") or {}
    if predicted:
        parts = ", ".join(f"{k} {v:g} ms" for k, v in predicted.items() if k != "total")
        log.info(f"Predicted on {plan.target} by the cost model (not measured): "
                 f"{predicted.get('total', 0.0):g} ms ({parts})")
    rows, split = layer_times(plan, result)
    if opts.on("dumpProfile"):
        _print_profile(rows, len(result.timings), split, log)
    if opts.get("exportTimes"):
        _write_json(str(opts.get("exportTimes")), [t.record() for t in result.timings])
        log.info(f"Exported times to {opts.get('exportTimes')}")
    if opts.get("exportProfile"):
        doc: list[dict[str, Any]] = [{"count": len(result.timings), "split": split}]
        _write_json(str(opts.get("exportProfile")), doc + rows)
        log.info(f"Exported profile to {opts.get('exportProfile')}")
    if opts.get("exportLayerInfo"):
        _write_json(str(opts.get("exportLayerInfo")), layer_info(plan))
        log.info(f"Exported layer information to {opts.get('exportLayerInfo')}")


def _print_profile(rows: list[dict[str, Any]], count: int, split: str, log: Log) -> None:
    log.info(f"=== Profile ({count} iterations ) ===")
    log.info(f"(per-layer times: each segment's measured time split by {split})")
    log.info(f"{'Time(ms)':>12}  {'Avg.(ms)':>10}  {'Median(ms)':>10}  {'Time(%)':>8}   Layer")
    for r in rows:
        log.info(f"{r['timeMs']:12.4f}  {r['averageMs']:10.4f}  {r['medianMs']:10.4f}  "
                 f"{r['percentage']:8.1f}   {r['name']}")
    total = sum(r["timeMs"] for r in rows)
    avg = sum(r["averageMs"] for r in rows)
    log.info(f"{total:12.4f}  {avg:10.4f}  {'':>10}  {100.0:8.1f}   Total")


def _write_json(path: str, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2).encode())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(flags=sys.argv[1:])))
