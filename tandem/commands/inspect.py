"""``tandem inspect MODEL.onnx``: layers, parameters, FLOPs; placements with ``--target``."""

from __future__ import annotations

import argparse

from partitioner.analysis import summarize
from tandem.api import load_graph
from tandem.commands._common import (
    add_json_arg,
    add_model_args,
    human,
    print_json,
    shape_text,
    table,
)
from tandem.io import parse_dims


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show layers, parameters, FLOPs and placements of a model")
    p.add_argument("model", help="an ONNX model")
    add_model_args(p)
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    graph = load_graph(args.model, parse_dims(args.dim), optimize=not args.no_optimize)
    summary = summarize(graph)
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "inputs": [
                    {"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in graph.inputs
                ],
                "outputs": [
                    {"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in graph.outputs
                ],
                "layers": [
                    {
                        "name": info.name,
                        "op": info.op,
                        "output_shapes": info.output_shapes,
                        "params": info.params,
                        "flops": info.flops,
                    }
                    for info in summary.layers
                ],
                "total_params": summary.total_params,
                "total_flops": summary.total_flops,
            }
        )
        return 0
    rows = [
        (
            info.name,
            info.op,
            ", ".join(shape_text(s) for s in info.output_shapes),
            f"{info.params:,}",
            "?" if info.flops is None else human(info.flops),
        )
        for info in summary.layers
    ]
    print(table(("Layer", "Op", "Output shape", "Params", "FLOPs"), rows, right=(3, 4)))
    print()
    for t in graph.inputs:
        print(f"input  {t.name}: {shape_text(t.shape)} {t.dtype}")
    for t in graph.outputs:
        print(f"output {t.name}: {shape_text(t.shape)} {t.dtype}")
    unknown = (
        f" ({summary.unknown_flops} layers with symbolic shapes not counted)"
        if summary.unknown_flops
        else ""
    )
    print(
        f"{len(summary.layers)} layers, {summary.total_params:,} parameters, "
        f"{human(summary.total_flops, 'FLOPs')}{unknown}"
    )
    return 0
