"""``tandem compare MODEL.onnx``: Tandem against ONNX Runtime, output by output (Polygraphy-style).

The Tandem side is the numpy reference by default, a plan with ``--plan``, or an in-memory
build with ``--target``. Tolerances may be given per output (``--atol logits:1e-3``). With
``--bisect`` every intermediate tensor is compared too, and the first layer whose output leaves
tolerance is named with its device and precision.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np

from devices.cpu import CpuRunner
from devices.io import load_feeds, random_inputs, run_onnxruntime, save_npz
from devices.plan import read_plan
from devices.runtime import PlanRunner, check_memory
from devices.timesource import run_source
from partitioner.errors import InputError, TandemError
from partitioner.footprint import graph_footprint
from partitioner.ir import Graph
from tandem.bisect import bisect
from tandem.commands._args import ModelArgs, TargetArgs, add_build_args, build_request
from tandem.commands._common import (
    add_json_arg,
    print_json,
    print_table,
)
from tandem.metrics import Closeness, closeness
from targets.build import bind_inputs, build

MISMATCH_EXIT = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare Tandem's outputs with ONNX Runtime's")
    p.add_argument("model", help="an ONNX model (the reference runs it on ONNX Runtime)")
    p.add_argument("--plan", metavar="PLAN", help="run this plan on the Tandem side")
    p.add_argument(
        "--backend",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where a plan's GPU segments run",
    )
    p.add_argument(
        "--atol",
        action="append",
        metavar="[OUT:]A",
        help="allowed max abs error, for all outputs or one (default 1e-4)",
    )
    p.add_argument(
        "--rtol",
        action="append",
        metavar="[OUT:]R",
        help="allowed max|a-b|/max|b| (default 1e-4); an output passes if either holds",
    )
    p.add_argument(
        "--inputs",
        "--load-inputs",
        dest="inputs",
        metavar="IN.npz",
        help="input arrays keyed by input name",
    )
    p.add_argument("--save-inputs", metavar="IN.npz", help="write the inputs used here")
    p.add_argument(
        "--val-range",
        action="append",
        metavar="[IN:]LO,HI",
        help="range of random float inputs (default -1,1)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument(
        "--bisect",
        action="store_true",
        help="compare every intermediate tensor; name the first layer out of tolerance",
    )
    add_build_args(p, profiles=False)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    TargetArgs.check_honoured(args, args.plan)
    graph = ModelArgs.load(args)
    feeds = _feeds(args, graph)
    # the arrays bind the model's dynamic dims (one value per dim name), as ONNX Runtime does
    graph = bind_inputs(graph, {n: a.shape for n, a in feeds.items()}, args.inputs or "inputs")
    if args.save_inputs:
        save_npz(args.save_inputs, feeds)
    plan = None
    if args.plan:
        plan = read_plan(args.plan)
    elif args.target:
        plan = build(replace(build_request(args), graph=graph)).plan
    atol = _per_output(args.atol, "--atol", 1e-4)
    rtol = _per_output(args.rtol, "--rtol", 1e-4)
    if args.bisect:
        return _bisect(args, graph, feeds, plan, atol, rtol)
    reference = run_onnxruntime(args.model, feeds)
    side, ran, notes = "cpu", ["cpu"], []
    if plan is not None:
        with PlanRunner(plan, args.backend) as runner:
            actual = runner.infer(feeds)
            ran = sorted(set(runner.backends().values()))
            side = f"plan ({', '.join(ran)})"
        # a match says nothing of FP16/INT8 where the reference ran those segments in FP32
        notes = [n for n in runner.notes if "not emulated" in n]
    else:
        with CpuRunner(graph) as runner:
            actual = runner.infer(feeds)
    missing = [name for name in reference if name not in actual]
    if missing:
        raise TandemError(f"Tandem produced no output named {', '.join(missing)}")
    results = {name: closeness(actual[name], ref) for name, ref in reference.items()}
    verdicts = {n: r.within(_tol(atol, n), _tol(rtol, n)) for n, r in results.items()}
    ok = all(verdicts.values())
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "reference": "onnxruntime",
                "tandem": side,
                "outputs": {
                    n: {
                        **r.as_dict(),
                        "atol": _tol(atol, n),
                        "rtol": _tol(rtol, n),
                        "match": verdicts[n],
                    }
                    for n, r in results.items()
                },
                "match": ok,
                "notes": notes,
            }
        )
    else:
        print_table(*_results_table(results, verdicts))
        for note in notes:
            print(f"note: {note}")
        verdict = "match" if ok else "MISMATCH"
        print(f"\nTandem ({side}; {run_source(ran)}) vs ONNX Runtime: {verdict}")
    return 0 if ok else MISMATCH_EXIT


def _bisect(args, graph, feeds, plan, atol, rtol) -> int:  # type: ignore[no-untyped-def]
    found = bisect(args.model, graph, feeds, plan, args.backend, _tol(atol, ""), _tol(rtol, ""))
    if args.json:
        print_json(found.as_dict())
    else:
        print(found.describe())
    return 0 if found.first_bad is None else MISMATCH_EXIT


def _results_table(
    results: Mapping[str, Closeness], verdicts: Mapping[str, bool]
) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    rows = [
        (
            name,
            f"{r.max_abs:.3e}",
            f"{r.mean_abs:.3e}",
            f"{r.max_rel:.3e}",
            f"{r.cosine:.8f}",
            _nonfinite(r),
            "ok" if verdicts[name] else "MISMATCH",
        )
        for name, r in results.items()
    ]
    headers = ("Output", "Max abs", "Mean abs", "Max rel", "Cosine", "NaN/inf", "Verdict")
    return headers, rows


def _nonfinite(r: Closeness) -> str:
    """NaN / infinity positions: equal on both sides, or not (a mismatch whatever the tolerance)."""
    parts = [f"{r.nonfinite_equal} same"] if r.nonfinite_equal else []
    parts += [f"{r.nonfinite_mismatch} differ"] if r.nonfinite_mismatch else []
    return ", ".join(parts) or "-"


def _feeds(args: argparse.Namespace, graph: Graph) -> dict[str, np.ndarray]:
    """The inputs, once the comparison they start fits the memory budget: the model's peak
    while ONNX Runtime's outputs are held beside it (checked before random inputs are drawn)."""
    if args.inputs:
        feeds = load_feeds(graph, args.inputs)
        _check_memory(args, graph, {n: a.shape for n, a in feeds.items()})
        return feeds
    _check_memory(args, graph, {t.name: t.static_shape() for t in graph.inputs if t.is_static})
    ranges = _ranges(args.val_range, graph)
    feeds = random_inputs(graph, seed=args.seed)
    rng = np.random.default_rng(args.seed + 1)
    for name, (lo, hi) in ranges.items():
        arr = feeds[name]
        if arr.dtype.kind == "f":
            feeds[name] = rng.uniform(lo, hi, size=arr.shape).astype(arr.dtype)
        else:
            feeds[name] = rng.integers(int(lo), int(hi) + 1, size=arr.shape).astype(arr.dtype)
    return feeds


def _check_memory(args: argparse.Namespace, graph: Graph, shapes: dict[str, Any]) -> None:
    footprint = graph_footprint(graph, shapes)
    check_memory(footprint, str(args.model), held=footprint.output_bytes)


def _ranges(items: list[str] | None, graph: Graph) -> dict[str, tuple[float, float]]:
    names = [t.name for t in graph.inputs]
    out: dict[str, tuple[float, float]] = {}
    for item in items or []:
        target, _, spec = item.rpartition(":")
        try:
            lo, hi = (float(v) for v in spec.split(","))
        except ValueError:
            raise InputError(f"--val-range '{item}': expected [INPUT:]LOW,HIGH") from None
        if lo > hi:
            raise InputError(f"--val-range '{item}': LOW must not exceed HIGH")
        if target and target not in names:
            raise InputError(f"--val-range '{item}': the model has no input '{target}'")
        for name in [target] if target else names:
            out[name] = (lo, hi)
    return out


def _per_output(items: list[str] | None, flag: str, default: float) -> dict[str, float]:
    """``["1e-3", "logits:1e-2"]`` -> ``{"": 1e-3, "logits": 1e-2}`` ("" is every output)."""
    out: dict[str, float] = {"": default}
    for item in items or []:
        name, _, value = item.rpartition(":")
        try:
            out[name] = float(value)
        except ValueError:
            raise InputError(f"{flag} '{item}': expected [OUTPUT:]NUMBER") from None
    return out


def _tol(table_: Mapping[str, float], name: str) -> float:
    return table_.get(name, table_[""])


__all__: list[Any] = ["register", "run"]
