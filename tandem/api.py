"""Wiring used by the CLI and the Python API: model loading with the project's passes."""

from __future__ import annotations

import os

from devices.cpu import evaluate_node
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify


def load_graph(
    path: str | os.PathLike[str],
    fixed_dims: dict[str, int] | None = None,
    optimize: bool = True,
) -> Graph:
    """Import an ONNX file and run the standard simplification passes (fold, fuse-mark)."""
    graph = import_onnx(path, fixed_dims=fixed_dims)
    if optimize:
        graph = simplify(graph, evaluate_node) or graph
    return graph
