"""``tandem run MODEL.onnx|PLAN``: run a model or a plan and report outputs and latency.

An ONNX model without ``--target`` runs whole on the numpy reference. With ``--target`` it is
built in memory first (as ``tandem build`` would) and run like a plan: GPU segments on CUDA
when this machine has the plan's GPU, else on the reference; DLA segments on the emulator.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from devices.concurrent import runner_for
from devices.cpu import CpuRunner
from devices.io import (
    load_feeds,
    random_inputs,
    save_npz,
    write_atomic,
)
from devices.plan import Plan, read_plan
from devices.runner import BaseRunner
from devices.runtime import (
    PlanRunner,
    check_memory,
    chrome_trace,
    plan_footprint,
    predicted_trace,
)
from devices.timesource import backend_source, predicted_source, run_source
from partitioner.errors import TandemError
from partitioner.footprint import Footprint, graph_footprint
from partitioner.ir import Graph
from tandem.commands._args import (
    ModelArgs,
    TargetArgs,
    add_build_args,
    build_request,
    is_plan,
)
from tandem.commands._common import (
    add_json_arg,
    print_json,
    print_table,
    progress_bars,
    shape_text,
    tactic_bars,
)
from targets.build import bind_inputs, build


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a model or plan (random seeded inputs unless --inputs)")
    p.add_argument("model", help="an ONNX model or a plan file")
    p.add_argument("--inputs", metavar="IN.npz", help="input arrays keyed by input name")
    p.add_argument("--save-outputs", metavar="OUT.npz", help="write the outputs here")
    p.add_argument(
        "--backend",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where GPU segments run (default auto: CUDA if the plan's GPU is here)",
    )
    p.add_argument("--iterations", type=int, default=1, metavar="N", help="timed runs (default 1)")
    p.add_argument("--warmup", type=int, default=0, metavar="N", help="untimed runs first")
    p.add_argument("--profile", metavar="TRACE.json", help="write a Chrome trace (Perfetto)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--verbose", action="store_true", help="each segment's time (default: per backend)"
    )
    add_build_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.iterations < 1:
        raise TandemError(f"--iterations {args.iterations}: expected a positive count")
    plan: Plan | None = None
    TargetArgs.check_honoured(args, args.model if is_plan(args.model) else None)
    if is_plan(args.model):
        plan = read_plan(args.model)
    elif args.target:
        request = build_request(args)
        if args.inputs:  # the arrays bind the model's dynamic dims before it is built
            request = replace(request, graph=_bound_to_inputs(args, ModelArgs.load(args)))
        plan = build(request).plan
    runner: BaseRunner
    if plan is not None:
        runner = runner_for(plan, args.backend, timing_cache=args.timing_cache)
        feeds = _plan_feeds(args, plan)
    else:
        if args.backend == "cuda":
            raise TandemError(
                "--backend cuda runs plans: build one (tandem build ... --target host) or add "
                "--target host"
            )
        graph = ModelArgs.load(args)
        if args.inputs:
            graph = _bound_to_inputs(args, graph)
        feeds = _graph_feeds(args, graph, lambda shapes: graph_footprint(graph, shapes))
        runner = CpuRunner(graph)
    times_ms: list[float] = []
    # one set of bars: the GPU segments autotune while the runner starts (with --timing-cache,
    # how `deploy --tune` measures a board), then the timed runs
    with progress_bars() as bars, tactic_bars(bars), runner:
        for _ in range(args.warmup):
            runner.infer(feeds)
        advance = bars.add("inferences", args.iterations)
        for _ in range(args.iterations):
            start = time.perf_counter()
            outputs = runner.infer(feeds)
            times_ms.append((time.perf_counter() - start) * 1e3)
            advance(1)
        backends = runner.backends() if isinstance(runner, PlanRunner) else {"model": "cpu"}
    if args.save_outputs:
        save_npz(args.save_outputs, outputs)
    if args.profile and isinstance(runner, PlanRunner):
        _write_json(
            args.profile,
            {
                "traceEvents": chrome_trace(runner.trace + predicted_trace(runner.plan)),
                "displayTimeUnit": "ms",
            },
        )
    latency: dict[str, Any] = {
        "min": float(np.min(times_ms)),
        "median": float(np.median(times_ms)),
        "mean": float(np.mean(times_ms)),
        "max": float(np.max(times_ms)),
        "iterations": len(times_ms),
        "source": run_source(backends.values()),
    }
    if isinstance(runner, PlanRunner):
        predicted = plan.record.predicted_ms if plan else {}
        notes = runner.notes
        segment_ms = runner.segment_ms
    else:
        predicted, notes, segment_ms = {}, [], {}
    foretold = predicted_source(plan.target, plan.record.power_mode) if plan else None
    if args.json:
        doc: dict[str, Any] = {
            "model": str(args.model),
            "outputs": {name: _describe(arr) for name, arr in outputs.items()},
            "latency_ms": latency,
            "predicted_ms": predicted,
            "backends": backends,
            "segment_ms": segment_ms,
            "segment_sources": {s: backend_source(backends[s]) for s in segment_ms},
            "notes": notes,
        }
        if plan is not None:
            doc["target"] = plan.target
            doc["power_mode"] = plan.record.power_mode
            doc["predicted_source"] = foretold
            doc["predicted_layer_ms"] = _predicted_layers(plan)
        print_json(doc)
        return 0
    rows = []
    for name, arr in outputs.items():
        stats = _stats(arr)
        shown = [f"{stats[k]:.4g}" if stats else "-" for k in ("min", "max", "mean")]
        rows.append((name, shape_text(arr.shape), str(arr.dtype), *shown))
    print_table(("Output", "Shape", "Dtype", "Min", "Max", "Mean"), rows, right=(3, 4, 5))
    print()
    if segment_ms and args.verbose:
        print_table(
            ("Segment", "Backend", "Last run (ms)", "Source"),
            [
                (s, backends[s], f"{ms:.2f}", backend_source(backends[s]))
                for s, ms in segment_ms.items()
            ],
            right=(2,),
        )
        print()
    elif segment_ms:  # one row per backend: a screen for a plan of many segments
        print("Time per backend (--verbose: each segment):")
        per_backend: dict[str, list[float]] = {}
        for s, ms in segment_ms.items():
            per_backend.setdefault(backends[s], []).append(ms)
        print_table(
            ("Backend", "Segments", "Last run (ms)", "Source"),
            [
                (b, str(len(times)), f"{sum(times):.2f}", backend_source(b))
                for b, times in per_backend.items()
            ],
            right=(1, 2),
        )
        print()
    for note in notes:
        print(f"note: {note}")
    where = "numpy reference" if plan is None else f"plan for {plan.target}"
    print(
        f"{where}: median {latency['median']:.2f} ms over {len(times_ms)} run(s), "
        f"{latency['source']}"
    )
    lanes = plan.record.lanes if plan else []
    if plan and lanes:  # lanes run at once: the board figure is their summed rate
        print(f"{foretold}: {plan.record.lanes_fps:.1f} frames/s over {len(lanes)} concurrent "
              f"lanes ({', '.join(lane.name for lane in lanes)}; cost model)")  # fmt: skip
    elif predicted:
        print(f"{foretold}: {predicted.get('total', 0):.3f} ms end to end (cost model)")
    return 0


def _predicted_layers(plan: Plan) -> dict[str, dict[str, Any]]:
    """Per layer: device, precision and predicted board time (DLA layers from the latency
    model of the compiled loadable, others from the device cost model)."""
    out: dict[str, dict[str, Any]] = {
        row.name: {"device": row.device, "precision": row.precision, "ms": row.predicted_ms}
        for row in plan.record.layers
    }
    for rec in plan.record.segments:
        for layer, ms in rec.predicted_layer_ms.items():
            if layer in out:
                out[layer]["ms"] = ms
    return out


def _graph_feeds(
    args: argparse.Namespace, graph: Any, footprint: Callable[[dict[str, Any]], Footprint]
) -> dict[str, np.ndarray]:
    """The inputs (from --inputs or seeded random), once the run they start fits the memory
    budget (checked before random inputs are drawn)."""
    if args.inputs:
        feeds = load_feeds(graph, args.inputs)
        check_memory(footprint({n: a.shape for n, a in feeds.items()}), str(args.model))
        return feeds
    static = {t.name: t.static_shape() for t in graph.inputs if t.is_static}
    check_memory(footprint(static), str(args.model))
    return random_inputs(graph, seed=args.seed)


def _bound_to_inputs(args: argparse.Namespace, graph: Graph) -> Graph:
    """``graph`` with its dynamic dims bound from the shapes of the ``--inputs`` arrays (read
    from the file's headers; checked against the model's dtypes and fixed dims)."""
    if all(t.is_static for t in graph.inputs):
        return graph
    shapes = {name: a.shape for name, a in load_feeds(graph, args.inputs).items()}
    return bind_inputs(graph, shapes, str(args.inputs))


def _plan_feeds(args: argparse.Namespace, plan: Plan) -> dict[str, np.ndarray]:
    from partitioner.profiles import parse_shape_list

    shapes = parse_shape_list(args.shapes) if getattr(args, "shapes", None) else {}
    stub = Graph("inputs")
    for b in plan.record.inputs:
        shape = list(shapes[b.name]) if b.name in shapes else plan.record.feed_shape(b)
        # an unknown shape or dtype stays unknown: the feed is then drawn as the model's
        stub.add_input(b.name, tuple(shape) if shape else None, b.dtype)  # type: ignore[arg-type]
    return _graph_feeds(args, stub, lambda shapes: plan_footprint(plan, shapes))


def _write_json(path: str, doc: Any) -> None:
    write_atomic(path, json.dumps(doc).encode())


def _stats(arr: np.ndarray) -> dict[str, float]:
    """min, max and mean of a numeric output, without a float64 copy of it (an output of
    gigabytes would need twice that again): the mean accumulates in float64 as it goes."""
    if arr.size == 0 or arr.dtype.kind not in "fiub":
        return {}
    return {
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": float(arr.mean(dtype=np.float64)),
    }


def _describe(arr: np.ndarray) -> dict[str, object]:
    return {"shape": list(arr.shape), "dtype": str(arr.dtype), **_stats(arr)}
