"""``tandem compare MODEL.onnx``: Tandem against ONNX Runtime, output by output."""

from __future__ import annotations

import argparse

from devices.cpu import CpuRunner
from devices.io import check_feeds, load_npz, parse_dims, random_inputs, run_onnxruntime
from partitioner.errors import TandemError
from tandem.api import load_graph
from tandem.commands._common import add_json_arg, add_model_args, print_json, table
from tandem.metrics import closeness

MISMATCH_EXIT = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare Tandem's outputs with ONNX Runtime's")
    p.add_argument("model", help="an ONNX model")
    p.add_argument("--inputs", metavar="IN.npz", help="input arrays keyed by input name")
    p.add_argument("--atol", type=float, default=1e-4, help="allowed max abs error (default 1e-4)")
    p.add_argument(
        "--rtol",
        type=float,
        default=1e-4,
        help="allowed max|a-b|/max|b| (default 1e-4); an output passes if either holds",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args.model, parse_dims(args.dim), optimize=not args.no_optimize)
    if args.inputs:
        feeds = load_npz(args.inputs)
        check_feeds(graph, feeds, args.inputs)
    else:
        feeds = random_inputs(graph, seed=args.seed)
    feeds = {t.name: feeds[t.name] for t in graph.inputs}
    reference = run_onnxruntime(args.model, feeds)
    with CpuRunner(graph) as runner:
        actual = runner.infer(feeds)
    missing = [name for name in reference if name not in actual]
    if missing:
        raise TandemError(f"Tandem produced no output named {', '.join(missing)}")
    results = {name: closeness(actual[name], ref) for name, ref in reference.items()}
    ok = all(r.within(args.atol, args.rtol) for r in results.values())
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "reference": "onnxruntime",
                "backend": "cpu",
                "atol": args.atol,
                "rtol": args.rtol,
                "outputs": {name: r.as_dict() for name, r in results.items()},
                "match": ok,
            }
        )
    else:
        rows = [
            (
                name,
                f"{r.max_abs:.3e}",
                f"{r.mean_abs:.3e}",
                f"{r.max_rel:.3e}",
                f"{r.cosine:.8f}",
                "ok" if r.within(args.atol, args.rtol) else "MISMATCH",
            )
            for name, r in results.items()
        ]
        print(table(("Output", "Max abs", "Mean abs", "Max rel", "Cosine", "Verdict"), rows))
        verdict = "match" if ok else "MISMATCH"
        print(f"\nTandem (cpu) vs ONNX Runtime: {verdict} (atol {args.atol:g}, rtol {args.rtol:g})")
    return 0 if ok else MISMATCH_EXIT
