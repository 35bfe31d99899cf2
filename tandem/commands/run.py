"""``tandem run MODEL.onnx``: run a model and report its outputs and latency."""

from __future__ import annotations

import argparse
import time

import numpy as np

from devices.cpu import CpuRunner
from partitioner.errors import TandemError
from tandem.api import load_graph
from tandem.commands._common import add_json_arg, add_model_args, print_json, shape_text, table
from tandem.io import check_feeds, load_npz, parse_dims, random_inputs, save_npz


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run a model (random seeded inputs unless --inputs)")
    p.add_argument("model", help="an ONNX model")
    p.add_argument("--inputs", metavar="IN.npz", help="input arrays keyed by input name")
    p.add_argument("--save-outputs", metavar="OUT.npz", help="write the outputs here")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--iterations", type=int, default=1, metavar="N", help="timed runs (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.iterations < 1:
        raise TandemError(f"--iterations {args.iterations}: expected a positive count")
    if args.backend == "cuda":
        raise TandemError(
            "--backend cuda needs a plan built for this GPU; run the ONNX model with --backend cpu"
        )
    graph = load_graph(args.model, parse_dims(args.dim), optimize=not args.no_optimize)
    if args.inputs:
        feeds = load_npz(args.inputs)
        check_feeds(graph, feeds, args.inputs)
        feeds = {t.name: feeds[t.name] for t in graph.inputs}
    else:
        feeds = random_inputs(graph, seed=args.seed)
    times_ms: list[float] = []
    with CpuRunner(graph) as runner:
        for _ in range(args.iterations):
            start = time.perf_counter()
            outputs = runner.infer(feeds)
            times_ms.append((time.perf_counter() - start) * 1e3)
        peak = runner.peak_bytes
    if args.save_outputs:
        save_npz(args.save_outputs, outputs)
    latency = {
        "min": float(np.min(times_ms)),
        "median": float(np.median(times_ms)),
        "mean": float(np.mean(times_ms)),
        "max": float(np.max(times_ms)),
        "iterations": len(times_ms),
    }
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "outputs": {name: _describe(arr) for name, arr in outputs.items()},
                "latency_ms": latency,
                "backends": {graph.name: "cpu"},
                "peak_activation_bytes": peak,
            }
        )
        return 0
    rows = [
        (
            name,
            shape_text(arr.shape),
            str(arr.dtype),
            f"{_stat(arr, 'min')}",
            f"{_stat(arr, 'max')}",
            f"{_stat(arr, 'mean')}",
        )
        for name, arr in outputs.items()
    ]
    print(table(("Output", "Shape", "Dtype", "Min", "Max", "Mean"), rows))
    print(
        f"\nbackend cpu (numpy reference): median {latency['median']:.2f} ms over "
        f"{len(times_ms)} run(s); peak activations {peak / 2**20:.1f} MiB"
    )
    return 0


def _stat(arr: np.ndarray, which: str) -> str:
    if arr.size == 0 or arr.dtype.kind not in "fiub":
        return "-"
    return f"{float(getattr(arr.astype(np.float64), which)()):.4g}"


def _describe(arr: np.ndarray) -> dict[str, object]:
    info: dict[str, object] = {"shape": list(arr.shape), "dtype": str(arr.dtype)}
    if arr.size and arr.dtype.kind in "fiub":
        a = arr.astype(np.float64)
        info.update(min=float(a.min()), max=float(a.max()), mean=float(a.mean()))
    return info
