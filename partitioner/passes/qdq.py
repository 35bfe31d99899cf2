"""Q/DQ (quantisation-aware-trained) models to implicit per-tensor scales, as the DLA needs.

The DLA takes no QuantizeLinear / DequantizeLinear layers (dla.md §1.1); NVIDIA's qdq-translator
turns a Q/DQ model into a plain float model plus a calibration cache. This does the same on the
IR: an activation ``x -> Q -> DQ -> consumers`` becomes ``x -> consumers`` with ``scale[x] =
y_scale``; a weight ``W -> Q -> DQ`` (or an int8 ``W -> DQ``) becomes the dequantised float
constant, which the compiler requantises per output channel.

Unlike the in-place passes beside it, this returns a new graph and the scales it lifted out:
the build keeps the scales for calibration, so they cannot be a side effect.
"""

from __future__ import annotations

import numpy as np

from partitioner.errors import ModelError
from partitioner.ir import Constant, Graph, Node

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def has_qdq(graph: Graph) -> bool:
    """True for a quantisation-aware-trained model (one with Q/DQ layers)."""
    return any(n.op in QDQ_OPS for n in graph.nodes)


def _constant(node: Node, index: int, what: str) -> np.ndarray:
    value = node.constant_input(index)
    if value is None:
        raise ModelError(f"layer '{node.name}' ({node.op}): {what} must be a constant")
    return np.asarray(value)


def _check_symmetric(node: Node) -> None:
    if node.input(2) is None:
        return
    zp = _constant(node, 2, "the zero point")
    if np.any(zp != 0):
        raise ModelError(
            f"layer '{node.name}' ({node.op}): zero point {zp.reshape(-1)[:4]} is not 0; "
            "the DLA quantises symmetrically"
        )


def _dequantized(dq: Node, q: Node | None) -> np.ndarray:
    """The float values a weight's (Q ->) DQ chain produces."""
    scale = _constant(dq, 1, "the scale").astype(np.float64)
    axis = int(dq.attrs.get("axis", 1))
    if q is None:
        raw = _constant(dq, 0, "the quantised weight").astype(np.float64)
    else:
        w = _constant(q, 0, "the weight").astype(np.float64)
        q_scale = _constant(q, 1, "the scale").astype(np.float64)
        shape = [1] * w.ndim
        if q_scale.size > 1:
            shape[int(q.attrs.get("axis", 1)) % w.ndim] = -1
        raw = np.clip(
            np.sign(w / q_scale.reshape(shape))
            * np.floor(np.abs(w / q_scale.reshape(shape)) + 0.5),
            -128,
            127,
        )
    shape = [1] * raw.ndim
    if scale.size > 1:
        shape[axis % raw.ndim] = -1
    return (raw * scale.reshape(shape)).astype(np.float32)


def strip_qdq(graph: Graph) -> tuple[Graph, dict[str, float]]:
    """A copy of ``graph`` without Q/DQ layers, and the per-tensor scales they carried."""
    g = graph.clone()
    scales: dict[str, float] = {}
    for dq in [n for n in g.nodes if n.op == "DequantizeLinear"]:
        _check_symmetric(dq)
        src = dq.input(0)
        q = src.producer if src is not None else None
        if q is not None and q.op != "QuantizeLinear":
            raise ModelError(
                f"layer '{dq.name}' (DequantizeLinear) reads '{src.name}' from {q.op}; "  # type: ignore[union-attr]
                "expected a QuantizeLinear or a constant"
            )
        if q is not None:
            _check_symmetric(q)
        x = q.input(0) if q is not None else None
        out = dq.outputs[0]
        if x is not None and not isinstance(x, Constant):  # activation
            scale = _constant(q, 1, "the scale")  # type: ignore[arg-type]
            if scale.size != 1:
                raise ModelError(
                    f"layer '{q.name}' (QuantizeLinear): per-channel activation scales are not "  # type: ignore[union-attr]
                    "supported on the DLA; use one scale per tensor"
                )
            scales[x.name] = float(scale.reshape(-1)[0])
            g.replace_all_uses(out, x)
        else:  # weight
            values = _dequantized(dq, q)
            new = g.add_constant(g.unique_name(f"{out.name}_dequantized"), values)
            g.replace_all_uses(out, new)
        g.remove_node(dq)
        if q is not None and not any(t.consumers for t in q.outputs) and q in g.nodes:
            if not any(t in g.outputs for t in q.outputs):
                g.remove_node(q)
    return g, scales
