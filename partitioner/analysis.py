"""Per-layer parameters, FLOPs and output shapes, with totals (what ``tandem inspect`` prints).

FLOPs count a multiply-accumulate as 2 for Conv, ConvTranspose, Gemm and MatMul; pools count
one op per window element; reductions and global pools one per input element; layers that only
relabel data (Reshape, Shape, Squeeze, ...) count 0; every other layer one per output element.
A layer whose shapes are not all known has ``flops = None`` and is left out of the total.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from partitioner.ir import Constant, Graph, Node, Shape, Tensor

_FREE = frozenset({"Shape", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"})
_REDUCING = frozenset(
    {"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"}
)
_PARAM_DTYPES = frozenset({"float32", "float16", "float64", "bfloat16", "int8", "uint8", "int32"})


@dataclass(frozen=True)
class LayerInfo:
    name: str
    op: str
    output_shapes: list[Shape | None]
    params: int
    flops: int | None


@dataclass(frozen=True)
class Summary:
    layers: list[LayerInfo] = field(default_factory=list)
    total_params: int = 0
    total_flops: int = 0
    unknown_flops: int = 0  # layers whose FLOPs could not be counted (symbolic shapes)


def layer_summary(graph: Graph) -> list[LayerInfo]:
    """One LayerInfo per layer, in topological order."""
    return [
        LayerInfo(
            name=n.name,
            op=n.op,
            output_shapes=[t.shape for t in n.outputs],
            params=sum(t.values.size for t in _weights(n)),
            flops=layer_flops(n),
        )
        for n in graph.topological_order()
    ]


def summarize(graph: Graph) -> Summary:
    """Layers plus totals; a constant shared by several layers counts once in the total."""
    layers = layer_summary(graph)
    shared = {id(t): t for n in graph.nodes for t in _weights(n)}
    return Summary(
        layers=layers,
        total_params=int(sum(t.values.size for t in shared.values())),
        total_flops=int(sum(layer.flops or 0 for layer in layers)),
        unknown_flops=sum(1 for layer in layers if layer.flops is None),
    )


def _weights(node: Node) -> list[Constant]:
    """Constant inputs that are learned values (not shape / axes / index operands)."""
    return [
        t
        for t in node.inputs
        if isinstance(t, Constant) and t.dtype in _PARAM_DTYPES and t.values.size > 0
    ]


def _numel(shape: Shape | None) -> int | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return math.prod(int(d) for d in shape if d is not None)


def _static(t: Tensor | None) -> tuple[int, ...] | None:
    if t is None or not t.is_static:
        return None
    return t.static_shape()


def layer_flops(node: Node) -> int | None:
    """FLOPs of one layer (see the module docstring), None when shapes are unknown."""
    op = node.op
    if op in _FREE:
        return 0
    out = _static(node.outputs[0]) if node.outputs else None
    if op in ("Conv", "ConvTranspose"):
        x, w = _static(node.input(0)), _static(node.input(1))
        if x is None or w is None or out is None:
            return None
        kernel = math.prod(w[2:])
        if op == "Conv":  # each output element: C/group * kernel MACs
            return 2 * math.prod(out) * w[1] * kernel
        return 2 * math.prod(x) * w[1] * kernel  # each input element scatters to M/group * k
    if op in ("Gemm", "MatMul"):
        a = _static(node.input(0))
        if a is None or out is None:
            return None
        inner = a[0] if op == "Gemm" and node.attrs.get("transA", 0) else a[-1]
        return 2 * math.prod(out) * inner
    if op in ("MaxPool", "AveragePool"):
        windows = _numel(out)
        window = node.attrs.get("kernel_shape")
        return None if windows is None or window is None else windows * int(np.prod(window))
    if op in _REDUCING:
        return _numel(_static(node.input(0)))
    total = 0
    for t in node.outputs:
        numel = _numel(t.shape)
        if numel is None:
            return None
        total += numel
    return total
