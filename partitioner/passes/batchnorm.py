"""Fold an inference BatchNormalization into the Conv that feeds it."""

from __future__ import annotations

import numpy as np

from partitioner.ir import Constant, Graph, Node
from partitioner.passes._rewrite import rename_tensor


def _foldable(graph: Graph, bn: Node) -> Node | None:
    """The Conv to fold ``bn`` into, or None when the pattern does not hold."""
    x = bn.inputs[0]
    if x is None or x.producer is None or x.producer.op != "Conv" or len(bn.outputs) != 1:
        return None
    if int(bn.attrs.get("training_mode", 0)):  # normalises by batch statistics
        return None
    conv = x.producer
    if x.consumers != [bn] or x in graph.outputs:
        return None
    if not all(isinstance(bn.input(i), Constant) for i in range(1, 5)):
        return None
    if not isinstance(conv.input(1), Constant):
        return None
    if conv.input(2) is not None and not isinstance(conv.input(2), Constant):
        return None
    return conv


def fold_batchnorm_into_conv(graph: Graph) -> bool:
    """Conv -> BatchNormalization (the conv output read only by the BN) becomes one Conv.

    ``W' = W * s`` per output channel and ``b' = (b - mean) * s + beta`` with
    ``s = gamma / sqrt(var + eps)``, computed in float64 and stored in the weight dtype.
    The folded conv keeps the BN output's name, and the conv's layer name.
    """
    changed = False
    for bn in [n for n in graph.nodes if n.op == "BatchNormalization"]:
        conv = _foldable(graph, bn)
        if conv is None:
            continue
        w = np.asarray(conv.constant_input(1))
        gamma, beta, mean, var = (np.asarray(bn.constant_input(i), np.float64) for i in range(1, 5))
        eps = float(bn.attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + eps)
        bias = conv.constant_input(2)
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, np.float64)
        new_w = (w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)
        new_b = ((b - mean) * scale + beta).astype(w.dtype)
        w_const = graph.add_constant(graph.unique_name(f"{conv.name}_bn_weight"), new_w)
        b_const = graph.add_constant(graph.unique_name(f"{conv.name}_bn_bias"), new_b)
        old = [t for t in conv.inputs[1:] if t is not None]
        graph.set_inputs(conv, [conv.inputs[0], w_const, b_const])
        for t in old:
            if not t.consumers and t not in graph.outputs and t.name in graph.tensors:
                graph.remove_tensor(t)
        x, y = conv.outputs[0], bn.outputs[0]
        name = y.name
        graph.replace_all_uses(y, x)
        graph.remove_node(bn)
        rename_tensor(graph, x, name)
        changed = True
    return changed
