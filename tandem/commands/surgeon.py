"""``tandem surgeon extract|sanitize``: Polygraphy's surgeon on Tandem's IR and ONNX exporter.

- ``extract MODEL --inputs A,B --outputs C -o SUB.onnx``: the layers that compute C from A and B,
  as a standalone model with every tensor's shape (the exporter that writes DLA segments).
- ``sanitize MODEL -o OUT.onnx [--shapes name:1x3x224x224]``: fix input shapes, fold constants,
  drop Identity / Dropout and dead layers, fold BatchNormalization into Conv, re-infer shapes.

Every written model passes ``onnx.checker.check_model(full_check=True)`` first, and is written
through a temporary file and a rename, so a failed run never leaves a half-written model.
"""

from __future__ import annotations

import argparse
import difflib
import os
from pathlib import Path

import onnx

from devices.cpu import evaluate_node
from devices.io import write_atomic
from partitioner.errors import InputError, InternalError, TandemError
from partitioner.ir import Graph
from partitioner.onnx_export import MIN_EXPORT_OPSET, export_onnx
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify
from partitioner.profiles import parse_shape_list
from partitioner.shape_inference import fix_input_shapes
from partitioner.subgraph import extract_between
from tandem.commands._common import shape_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surgeon", help="extract a subgraph or sanitize an ONNX model")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    ex = actions.add_parser("extract", help="cut the layers between tensors into a model")
    ex.add_argument("model", help="an ONNX model")
    ex.add_argument("--inputs", metavar="A,B", help="tensors fed to the subgraph (default: the "
                    "model's inputs)")  # fmt: skip
    ex.add_argument("--outputs", metavar="C", help="tensors it computes (default: the model's "
                    "outputs)")  # fmt: skip
    _common(ex)
    ex.set_defaults(func=run_extract)

    sa = actions.add_parser("sanitize", help="fold constants, drop dead layers, fix shapes")
    sa.add_argument("model", help="an ONNX model")
    sa.add_argument("--shapes", metavar="NAME:DIMS,...", help="input shapes, e.g. "
                    "input:1x3x224x224 (binds symbolic dims everywhere)")  # fmt: skip
    _common(sa)
    sa.set_defaults(func=run_sanitize)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="model to write")
    p.add_argument(
        "--opset", type=int, metavar="N", help="export opset (default: the input model's)"
    )


# ----- the two operations, usable from Python -------------------------------------------------
def extract_model(
    model: str | os.PathLike[str],
    inputs: list[str] | None = None,
    outputs: list[str] | None = None,
    opset: int | None = None,
) -> onnx.ModelProto:
    """The subgraph computing ``outputs`` from ``inputs`` (default: the model's own) as a
    standalone model. No passes run first, so tensor names are the file's."""
    graph = import_onnx(model)
    ins = inputs if inputs is not None else [t.name for t in graph.inputs]
    outs = outputs if outputs is not None else [t.name for t in graph.outputs]
    for name in [*ins, *outs]:
        if name not in graph.tensors:
            raise InputError(f"{model}: has no tensor named '{name}'; {_near(graph, name)}")
    sub = extract_between(graph, ins, outs, name=f"{graph.name}_extract")
    unknown = [t.name for t in sub.inputs if t.shape is None or t.dtype is None]
    if unknown:
        raise InputError(
            f"{model}: the shape or dtype of {', '.join(unknown)} is unknown, so the extracted "
            "model could not declare its inputs; run `tandem surgeon sanitize --shapes` first"
        )
    return _checked(export_onnx(sub, _opset(model, opset)), f"extract of {model}")


def sanitize_model(
    model: str | os.PathLike[str],
    shapes: dict[str, tuple[int, ...]] | None = None,
    opset: int | None = None,
) -> onnx.ModelProto:
    """``model`` with input shapes fixed, constants folded and dead layers removed."""
    graph = import_onnx(model)
    if shapes:
        fix_input_shapes(graph, shapes)
    graph = simplify(graph, evaluate_node)
    return _checked(export_onnx(graph, _opset(model, opset)), f"sanitized {model}")


def _opset(model: str | os.PathLike[str], asked: int | None) -> int | None:
    """The opset to write: the one asked for, else the input's own (the IR is opset-21 form
    inside; writing 21 would silently upgrade a model that a runtime accepts only at 17)."""
    if asked is not None:
        return asked
    try:
        proto = onnx.load(os.fspath(model), load_external_data=False)
    except Exception:  # import_onnx has read it already; None keeps the exporter's default
        return None
    versions = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    return max(int(versions[0]), MIN_EXPORT_OPSET) if versions else None


def _checked(model: onnx.ModelProto, what: str) -> onnx.ModelProto:
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as err:  # onnx raises ValidationError / InferenceError: both our bug
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InternalError(f"the {what} fails onnx.checker ({first}); please report it") from None
    return model


def _near(graph: Graph, name: str) -> str:
    close = difflib.get_close_matches(name, list(graph.tensors), n=5)
    return f"similar names: {', '.join(close)}" if close else "see `tandem inspect MODEL`"


def write_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write atomically: a temporary file beside ``path``, then a rename over it."""
    return write_atomic(path, model.SerializeToString(), error=TandemError)


# ----- CLI --------------------------------------------------------------------------------------
def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def run_extract(args: argparse.Namespace) -> int:
    model = extract_model(args.model, _names(args.inputs), _names(args.outputs), args.opset)
    path = write_model(model, args.output)
    print(f"wrote {path}: {len(model.graph.node)} layers, opset {_written(model)}; {_io(model)}")
    return 0


def run_sanitize(args: argparse.Namespace) -> int:
    shapes = parse_shape_list(args.shapes) if args.shapes else None
    before = _count_nodes(args.model)
    model = sanitize_model(args.model, shapes, args.opset)
    path = write_model(model, args.output)
    print(
        f"wrote {path}: {before} -> {len(model.graph.node)} layers, opset {_written(model)}; "
        f"{_io(model)}"
    )
    return 0


def _written(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _count_nodes(path: str) -> int:
    try:
        return len(onnx.load(path, load_external_data=False).graph.node)
    except Exception:  # import_onnx reports unreadable files with the proper message
        return 0


def _io(model: onnx.ModelProto) -> str:
    def show(vis: list[onnx.ValueInfoProto]) -> str:
        items = []
        for vi in vis:
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                    for d in vi.type.tensor_type.shape.dim]  # fmt: skip
            items.append(f"{vi.name} {shape_text(dims)}")
        return ", ".join(items)

    return f"inputs {show(list(model.graph.input))}; outputs {show(list(model.graph.output))}"
