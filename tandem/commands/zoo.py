"""``tandem zoo NAME -o FILE.onnx``: write a zoo model with seeded weights; ``--list`` them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import onnx

from devices.io import write_atomic
from partitioner.tables import table
from tandem.zoo import MAX_OPSET, MIN_OPSET, ZOO_MODELS, ZooError, build_model


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "zoo",
        help="write a model-zoo network (seeded random weights) as ONNX",
        description="Write a model-zoo network with seeded random weights as an ONNX file.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="model name (see --list)")
    p.add_argument("-o", "--output", metavar="FILE.onnx", help="where to write the model")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    p.add_argument(
        "--resolution", type=int, default=None, help="input height = width (model default)"
    )
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument(
        "--opset", type=int, default=17, help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default 17)"
    )
    p.add_argument("--depth", type=int, default=None, help="encoder depth (vit-tiny only)")
    p.set_defaults(func=lambda args: run(args, p))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.list:
        print(format_listing())
        return 0
    if not args.name or not args.output:
        parser.error("NAME and -o FILE.onnx are required (or --list)")
    options = {} if args.depth is None else {"depth": args.depth}
    model = build_model(args.name, args.batch, args.resolution, args.seed, args.opset, **options)
    path = Path(args.output)
    write_model_atomic(model, path)
    params = sum(int(_numel(t)) for t in model.graph.initializer)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    print(
        f"wrote {path}: {args.name}, input {model.graph.input[0].name} {shape}, "
        f"opset {args.opset}, {len(model.graph.node)} nodes, {params / 1e6:.2f} M parameters"
    )
    return 0


def format_listing() -> str:
    rows = []
    for name, spec in ZOO_MODELS.items():
        rule = f">= {spec.min_resolution}"
        if spec.multiple > 1:
            rule += f", x{spec.multiple}"
        rows.append((name, str(spec.resolution), rule, spec.description))
    return "\n".join(table(("Name", "Default", "Resolution", "Description"), rows, right=(1,)))


def write_model_atomic(model: onnx.ModelProto, path: Path) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ZooError(f"cannot write '{path}': folder '{folder}' does not exist")
    write_atomic(path, model.SerializeToString(), error=ZooError)


def _numel(t: onnx.TensorProto) -> int:
    n = 1
    for d in t.dims:
        n *= d
    return n
