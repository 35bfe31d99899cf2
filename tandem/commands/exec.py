"""``tandem exec --onnx=MODEL.onnx ...``: trtexec's command line, on Tandem's builder and runtime.

Flags are trtexec's, spelled as trtexec spells them (``--flag=value`` or ``--flag value``). Every
flag of trtexec 10.3 and 11 is known (``trtexec_flags``: implemented, a no-op with its note, or
refused with the reason, per the target's TensorRT generation; ``docs/trtexec.md``). Semantics
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from devices.calibration import RandomInputs
from devices.io import random_inputs, write_atomic
from devices.plan import Plan, read_plan, write_plan
from devices.runtime import PlanRunner
from devices.timesource import predicted_source, run_source
from partitioner.assign import PartitionError
from partitioner.errors import InputError, TandemError
from partitioner.ir import Graph
from partitioner.profiles import dims_text, parse_shape_list
from partitioner.tables import table
from tandem.commands._common import progress_bar
from tandem.commands.exec_build import (
    build_request,
    check_values,
    exec_target,
    exported_layer_info,
    load_inputs,
    plan_generation,
    profiling_verbosity,
)
from tandem.commands.trtexec_flags import (
    ExecOptions,
    UsageError,
    check_flags,
    generation_of,
    help_text,
    markdown_table,
    parse_flags,
)
from targets.build import build, build_notes

__all__ = ["ExecOptions", "UsageError", "parse_flags", "percentile", "run"]


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


def run(args: argparse.Namespace) -> int:
    argv = list(args.flags)
    if not argv or "--help" in argv or "-h" in argv:
        print(help_text())
        return 0 if argv else 2
    if "--help-table" in argv:
        print(markdown_table(), end="")
        return 0
    opts = parse_flags(argv)
    log = Log(opts.on("verbose"))
    command = f"tandem exec {' '.join(argv)}"
    log.line(f"&&&& RUNNING tandem exec # {command}", raw=True)
    try:
        plan = _load_or_build(opts, log)
        if plan is None:  # --getPlanVersionOnly
            log.line(f"&&&& PASSED tandem exec # {command}", raw=True)
            return 0
        if opts.get("saveEngine"):
            path = write_plan(plan, str(opts.get("saveEngine")))
            log.info(f"Engine saved to {path} ({path.stat().st_size} bytes)")
        verbosity = profiling_verbosity(opts, plan)
        if opts.on("dumpLayerInfo"):
            _print_layer_info(plan, verbosity, log)
        if opts.on("dumpOptimizationProfile"):
            _print_profiles(plan, log)
        if opts.get("exportLayerInfo"):
            _write_json(str(opts.get("exportLayerInfo")), exported_layer_info(plan, verbosity))
            log.info(f"Exported layer information to {opts.get('exportLayerInfo')}")
        if _skip_inference(opts):
            log.info("Skipped inference phase since --"
                     + next(f for f in ("skipInference", "buildOnly", "buildDLAStandalone")
                            if opts.on(f)) + " is set.")
        else:
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


def _skip_inference(opts: ExecOptions) -> bool:
    # trtexec: --buildDLAStandalone enables --skipInference (AllOptions::parse)
    return any(opts.on(f) for f in ("skipInference", "buildOnly", "buildDLAStandalone"))


# ----- build -----------------------------------------------------------------------------------
def _load_or_build(opts: ExecOptions, log: Log) -> Plan | None:
    onnx, engine = opts.get("onnx"), opts.get("loadEngine")
    if bool(onnx) == bool(engine):
        raise UsageError("give exactly one model: --onnx=MODEL.onnx or --loadEngine=PLAN")
    check_values(opts)
    if engine:
        plan = read_plan(engine)
        for note in check_flags(opts, plan_generation(plan)):
            log.warn(note)
        if opts.on("getPlanVersionOnly"):
            log.info(f"Plan was created with Tandem {plan.record.tandem_version} "
                     f"(plan format {plan.record.format_version}) for {plan.target}")
            return None
        log.info(f"Loaded engine {engine}: target {plan.target}, precision "
                 f"{plan.record.precision}, {len(plan.record.segments)} segments")
        return plan
    assert onnx is not None
    if opts.on("getPlanVersionOnly"):
        raise UsageError("--getPlanVersionOnly reads a plan: give --loadEngine=PLAN")
    target = exec_target(opts, log)
    generation = generation_of(target.tensorrt)
    for note in check_flags(opts, generation):
        log.warn(note)
    request, record = build_request(onnx, target, generation, opts, log)
    policy = request.policy
    log.info(f"Building for {target.name} ({target.power_mode}, trtexec {generation} rules), "
             f"precision {policy.precision}, default device {policy.default_device}"
             + (f" core {policy.dla_core}" if policy.default_device == "dla" else ""))
    standalone = opts.on("buildDLAStandalone")
    try:
        built = build(request, lambda m: log.debug(m))
    except PartitionError as err:
        if standalone:
            raise PartitionError(f"--buildDLAStandalone: every layer must run on the DLA: "
                                 f"{err}") from None
        if policy.gpu_fallback:
            raise
        raise PartitionError(
            f"{err}; in trtexec terms: add --allowGPUFallback, or "
            "--layerDeviceTypes=LAYER:GPU for those layers"
        ) from None
    placement, plan = built
    part = placement.partition
    if standalone:
        off = [(n, a) for n, a in part.assignments.items() if not a.device.startswith("dla")]
        if off:
            name, a = off[0]
            raise PartitionError(f"--buildDLAStandalone: every layer must run on the DLA; layer "
                                 f"'{name}' runs on {a.device}: {a.reason}")
        log.info(f"DLA standalone: all {len(part.assignments)} layers on "
                 f"{part.segments[0].device}; the plan's DLA segment is the loadable cuDLA "
                 "would load (docs/trtexec.md)")
    for warning in part.warnings:
        log.warn(warning)
    for note in build_notes(built):
        log.warn(note.strip())
    for name, a in part.assignments.items():
        log.debug(f"Layer {name}: {a.device} {a.precision}: {a.reason}")
    if isinstance(request.calibration.source, RandomInputs) and plan.record.calibration:
        log.warn("INT8 without --calib: scales came from 2 random inputs; performance "
                 "numbers are valid, accuracy is not (trtexec sets arbitrary ranges too)")
    counts: dict[str, int] = {}
    for a in part.assignments.values():
        counts[a.device] = counts.get(a.device, 0) + 1
    log.info("Engine built: " + ", ".join(f"{n} layers on {d}" for d, n in sorted(counts.items()))
             + f", {len(part.segments)} segments")
    plan.header.setdefault("metadata", {})["trtexec"] = record
    plan.edited()
    return plan


# ----- layer information -----------------------------------------------------------------------
def _print_layer_info(plan: Plan, verbosity: str, log: Log) -> None:
    doc = exported_layer_info(plan, verbosity)
    log.info(f"Layer Information ({len(doc['Layers'])} layers, profiling verbosity "
             f"{verbosity}):")
    for layer in doc["Layers"]:
        if isinstance(layer, dict):
            log.info(f"Layer({layer['LayerType']}): {layer['Name']}, Device: {layer['Device']}, "
                     f"Precision: {layer['Precision']}, Segment: {layer['Segment']}")
        else:
            log.info(f"Layer: {layer}")
    log.info(f"Bindings: {', '.join(doc['Bindings'])}")


def _print_profiles(plan: Plan, log: Log) -> None:
    profiles = plan.record.profiles
    if not profiles:
        log.info("Optimization profiles: none (static shapes)")
    for k, prof in enumerate(profiles):
        for name, dims in prof.inputs.items():
            log.info(f"Optimization profile {k}: {name}: min {dims_text(dims.min)}, opt "
                     f"{dims_text(dims.opt)}, max {dims_text(dims.max)}")


# ----- inputs ----------------------------------------------------------------------------------
def _feeds(opts: ExecOptions, plan: Plan, log: Log) -> dict[str, np.ndarray]:
    shapes = parse_shape_list(opts.get("shapes") or "", "--shapes")
    stub = Graph("inputs")
    for b in plan.record.inputs:
        shape = list(shapes[b.name]) if b.name in shapes else plan.record.feed_shape(b)
        stub.add_input(b.name, tuple(shape) if shape else None,  # type: ignore[arg-type]
                       b.dtype or "float32")
    unknown = sorted(set(shapes) - {t.name for t in stub.inputs})
    if unknown:
        raise InputError(f"--shapes names {', '.join(unknown)}, which the model does not have "
                         f"(its inputs: {', '.join(t.name for t in stub.inputs)})")
    for t in stub.inputs:
        log.debug(f"Input {t.name}: {dims_text(t.shape or ())} {t.dtype}")
    feeds = random_inputs(stub, seed=int(opts.number("seed", 0, int)))
    if opts.get("loadInputs"):
        loaded = load_inputs(str(opts.get("loadInputs")), feeds)
        for name, array in loaded.items():
            log.info(f"Input {name}: {array.nbytes} bytes from --loadInputs")
        feeds.update(loaded)
    return feeds


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
    # trtexec 10 times host<->device copies unless --noDataTransfers; trtexec 11 leaves them out
    # unless --includeDataTransfers (InferenceOptions::parse of each)
    recorded = plan.record.metadata.get("trtexec") or {}
    if recorded.get("generation", 10) == 11:
        transfers = opts.on("includeDataTransfers")
    else:
        transfers = not opts.on("noDataTransfers")
    idle_s = opts.number("idleTime", 0.0) / 1e3
    sleep_s = opts.number("sleepTime", 0.0) / 1e3
    runner = PlanRunner(plan, opts.get("backend") or "auto",
                        timing_cache=opts.get("timingCacheFile"))
    timings: list[Timing] = []
    segment_ms: list[dict[str, float]] = []
    with runner, progress_bar("inferences", max(iterations, 1)) as advance:
        start = time.perf_counter()
        runner.infer(feeds)  # the first run compiles (CUDA) and checks the inputs
        while (time.perf_counter() - start) * 1e3 < warmup_ms:
            runner.infer(feeds)
        source = run_source(runner.backends().values())
        log.info(f"Warmup completed in {(time.perf_counter() - start) * 1e3:g} ms [{source}]")
        t0 = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - t0) * 1e3

        while len(timings) < max(iterations, 1) or ms() < duration_s * 1e3:
            # without transfers trtexec reports H2D / D2H as 0, so no clock is read for them
            s_h2d = ms()
            staged = {k: np.array(v, copy=True) for k, v in feeds.items()} if transfers else feeds
            e_h2d = ms() if transfers else s_h2d
            if sleep_s:  # trtexec's --sleepTime: a gap between launch and compute
                time.sleep(sleep_s)
            s_c = ms()
            outputs = runner.infer(staged, check_inputs=False)
            e_c = ms()
            if transfers:
                outputs = {k: np.array(v, copy=True) for k, v in outputs.items()}
            e_d2h = ms() if transfers else e_c
            timings.append(Timing(s_c, e_c, s_h2d, e_h2d, s_c, e_c, e_c, e_d2h))
            segment_ms.append(dict(runner.segment_ms))
            advance(1)
            if idle_s:
                time.sleep(idle_s)
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


def stats_line(label: str, values: Sequence[float], source: str) -> str:
    s = stats(values)
    return f"{label}: " + ", ".join(f"{k} = {v:g} ms" for k, v in s.items()) + f" [{source}]"


def summary_lines(result: BenchResult) -> list[str]:
    """trtexec's summary, each time followed by ``[what produced it]`` (``devices.timesource``):
    trtexec's layout up to the label, so scripts that parse its lines keep working, and a
    "GPU Compute Time" that the CPU emulated says so on its own line."""
    records = [t.record() for t in result.timings]
    source = run_source(result.backends.values())

    def col(key: str) -> list[float]:
        return [r[key] for r in records]

    total_compute_s = sum(col("computeMs")) / 1e3
    return [
        "=== Performance summary ===",
        f"Throughput: {len(records) / result.walltime_s:g} qps [{source}]",
        stats_line("Latency", col("latencyMs"), source),
        stats_line("Enqueue Time", col("enqueueMs"), source),
        stats_line("H2D Latency", col("h2dMs"), source),
        stats_line("GPU Compute Time", col("computeMs"), source),
        stats_line("D2H Latency", col("d2hMs"), source),
        f"Total Host Walltime: {result.walltime_s:g} s [{source}]",
        f"Total GPU Compute Time: {total_compute_s:g} s [{source}]",
    ]


def layer_times(plan: Plan, result: BenchResult) -> tuple[list[dict[str, Any]], str]:
    """Per layer: each run's segment time split by predicted cost (evenly without costs)."""
    layers = plan.record.layer_rows()
    per_layer: dict[str, list[float]] = {}
    split = "predicted-cost"
    for seg in plan.record.segments:
        names = list(seg.layers)
        costs = [float(layers[n].predicted_ms or 0.0) if n in layers else 0.0 for n in names]
        if sum(costs) <= 0:
            costs, split = [1.0] * len(names), "even"
        weights = np.asarray(costs) / sum(costs)
        for run in result.segment_ms:
            seg_ms = run.get(seg.name, 0.0)
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
    log.info(f"Ran here: {where}; times {run_source(result.backends.values())}")
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
                f"{np.mean([r['latencyMs'] for r in chunk]):g} ms "
                f"[{run_source(result.backends.values())}]"
            )
    for line in summary_lines(result):
        log.info(line)
    predicted = plan.record.predicted_ms
    if predicted:
        parts = ", ".join(f"{k} {v:g} ms" for k, v in predicted.items() if k != "total")
        foretold = predicted_source(plan.target, plan.record.power_mode)
        log.info(f"{foretold[0].upper()}{foretold[1:]} by the cost model (not measured): "
                 f"{predicted.get('total', 0.0):g} ms ({parts})")
    rows, split = layer_times(plan, result)
    if opts.on("dumpProfile"):
        _print_profile(rows, len(result.timings), split, run_source(result.backends.values()), log)
    source = run_source(result.backends.values())
    if opts.get("exportTimes"):  # trtexec's records, each with what produced its times
        records = [{**t.record(), "source": source} for t in result.timings]
        _write_json(str(opts.get("exportTimes")), records)
        log.info(f"Exported times to {opts.get('exportTimes')}")
    if opts.get("exportProfile"):
        # the runtime's bookkeeping between segments is in the compute time but in no segment
        # (a few microseconds, more on a loaded machine): exported, so the layers plus it add up
        compute_ms = sum(t.record()["computeMs"] for t in result.timings)
        between_ms = max(compute_ms - sum(r["timeMs"] for r in rows), 0.0)
        doc: list[dict[str, Any]] = [
            {"count": len(result.timings), "split": split, "source": source,
             "betweenSegmentsMs": between_ms}
        ]
        _write_json(str(opts.get("exportProfile")), doc + rows)
        log.info(f"Exported profile to {opts.get('exportProfile')}")


def _print_profile(
    rows: list[dict[str, Any]], count: int, split: str, source: str, log: Log
) -> None:
    log.info(f"=== Profile ({count} iterations ) ===")
    log.info(f"(per-layer times {source}: each segment's time split by {split})")
    cells = [
        (f"{r['timeMs']:.4f}", f"{r['averageMs']:.4f}", f"{r['medianMs']:.4f}",
         f"{r['percentage']:.1f}", r["name"])
        for r in rows
    ]
    total = sum(r["timeMs"] for r in rows)
    avg = sum(r["averageMs"] for r in rows)
    cells.append((f"{total:.4f}", f"{avg:.4f}", "", "100.0", "Total"))
    headers = ("Time(ms)", "Avg.(ms)", "Median(ms)", "Time(%)", "Layer")
    for line in table(headers, cells, right=(0, 1, 2, 3)):
        log.info(line)


def _write_json(path: str, doc: Any) -> None:
    write_atomic(path, json.dumps(doc, indent=2).encode())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run(argparse.Namespace(flags=sys.argv[1:])))
