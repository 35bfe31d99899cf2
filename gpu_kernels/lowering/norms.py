"""Pooling and normalisations: MaxPool / AveragePool (NHWC, 8 channels a thread
where aligned), global pools, layer normalisation over any trailing axes, instance and group
normalisation (reductions and softmax: :mod:`.reduce`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import (
    BINARY_OPS,
    IMM_LEFT,
    IMM_RIGHT,
    GpuLoweringError,
    Launch,
    Lazy,
    Leaf,
    Op,
    Value,
    grid1d,
)
from gpu_kernels.lowering.registry import constant, register
from partitioner.capability import Verdict
from partitioner.ir import Node, Tensor

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


def _rank(t: Tensor | None) -> int:
    return len(t.static_shape()) if t is not None else 0


def _pool_ok(node: Node, arch: int, precision: str) -> Verdict:
    if len(node.outputs) > 1:  # the importer keeps it only when read or a graph output
        return Verdict.no("Indices output unsupported")
    if _rank(node.input(0)) != 4 or len(node.attrs.get("kernel_shape", ())) != 2:
        return Verdict.no("only 2-D pooling (4-D input, 2-D kernel_shape) runs on the GPU")
    return Verdict.yes()


def _pool(lw: Lowering, node: Node, is_max: bool) -> None:
    x = lw.conv_input(lw.value(node.input(0), node), node.name, align=1)
    N, C, H, W = x.shape
    out = lw.out_shape(node)
    k = list(node.attrs["kernel_shape"])
    st = list(node.attrs.get("strides", [1, 1]))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    dil = list(node.attrs.get("dilations", [1, 1]))
    y = lw.out_nhwc(node.outputs[0], out)  # a Concat's channel slice when one awaits it
    xcs, ycs = x.cs or C, y.cs or out[1]
    ints = [N, H, W, C, out[2], out[3], k[0], k[1], st[0], st[1], pads[0], pads[1],
            dil[0], dil[1], int(is_max), int(node.attrs.get("count_include_pad", 0)),
            pads[2], pads[3], xcs, ycs]
    # 16-byte vectors: channels, pixel strides and element offsets all multiples of 8
    x8 = lw.dt == "f16" and all(v % 8 == 0 for v in (C, xcs, ycs, x.offset, y.offset))
    n = int(np.prod(out)) // (8 if x8 else 1)
    lw.emit(Launch(node.name, f"pool2d_{'x8_' if x8 else ''}{lw.dt}", grid1d(n), 256,
                     [lw.ref(x), lw.ref(y)], ints))
    lw.bind(node, y)


@register("MaxPool", supports=_pool_ok)
def lower_maxpool(lw: Lowering, node: Node) -> None:
    _pool(lw, node, True)


@register("AveragePool", supports=_pool_ok)
def lower_avgpool(lw: Lowering, node: Node) -> None:
    _pool(lw, node, False)


def lower_global_avgpool(lw: Lowering, node: Node) -> None:
    x = lw.ensure(lw.value(node.input(0), node), "nhwc", lw.dt, node.name)
    N, C, H, W = x.shape
    y = lw.new_value((N, C, 1, 1), "nhwc")
    lw.emit(Launch(node.name, f"global_avgpool_{lw.dt}", grid1d(N * C), 256,
                     [lw.ref(x), lw.ref(y)], [N, H * W, C]))
    lw.bind(node, y)


def lower_global_maxpool(lw: Lowering, node: Node) -> None:
    x = lw.ensure(lw.value(node.input(0), node), "nhwc", lw.dt, node.name)
    N, C, H, W = x.shape
    y = lw.new_value((N, C, 1, 1), "nhwc")
    ints = [N, H, W, C, 1, 1, H, W, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, C, C]  # dense x, y
    lw.emit(Launch(node.name, f"pool2d_{lw.dt}", grid1d(N * C), 256,
                     [lw.ref(x), lw.ref(y)], ints))
    lw.bind(node, y)


def scaled(lw: Lowering, t: Tensor | None, node: Node) -> tuple[Value, float]:
    """``t`` as (value, factor): a deferred multiplication or division by a constant
    (attention's 1/sqrt(d) before its softmax) is left to the reader, not run as a kernel."""
    x = lw.lazy(t, node)
    if isinstance(x, Lazy):
        root = x.root
        if isinstance(root, Op) and len(root.args) == 1 and isinstance(root.args[0], Leaf):
            mul, div = BINARY_OPS["Mul"], BINARY_OPS["Div"]
            if root.code in (IMM_RIGHT + mul, IMM_LEFT + mul):
                return root.args[0].value, root.imm[0]
            if root.code == IMM_RIGHT + div and root.imm[0] != 0.0:
                return root.args[0].value, 1.0 / root.imm[0]
        x = lw.value(t, node)
    return x, 1.0


def _scale_bias_refusal(node: Node) -> str | None:
    for i, what in ((1, "scale"), (2, "bias")):
        if node.input(i) is not None and constant(node, i) is None:
            return f"run-time {what} unsupported (it must be a constant)"
    return None


def _layernorm_ok(node: Node, arch: int, precision: str) -> Verdict:
    if any(t.consumers for t in node.outputs[1:]):
        return Verdict.no("Mean/InvStdDev outputs unsupported")
    why = _scale_bias_refusal(node)
    if why:
        return Verdict.no(why)
    x = node.input(0)
    assert x is not None  # supports() made sure
    shape = x.static_shape()
    axis = int(node.attrs.get("axis", -1)) % len(shape)
    for i, what in ((1, "scale"), (2, "bias")):
        v = constant(node, i)
        if v is not None and np.broadcast_shapes(v.shape, shape[axis:]) != tuple(shape[axis:]):
            return Verdict.no(f"{what} of shape {v.shape} does not broadcast to the "
                              f"normalised axes {tuple(shape[axis:])}")
    return Verdict.yes()


@register("LayerNormalization", supports=_layernorm_ok)
def lower_layernorm(lw: Lowering, node: Node) -> None:
    """Over the trailing axes from ``axis`` on: rows of L = their product elements."""
    x = lw.ensure(lw.value(node.input(0), node), "plain", lw.dt, node.name)
    # a Mean / InvStdDev output the segment hands on (supports() sees only readers)
    if len([t for t in node.outputs if t.consumers or t in lw.graph.outputs]) > 1:
        raise GpuLoweringError(f"layer '{node.name}': Mean/InvStdDev outputs unsupported")
    axis = int(node.attrs.get("axis", -1)) % len(x.shape)
    inner = x.shape[axis:]
    L = int(np.prod(inner))
    rows = x.size // L

    def per_element(i: int) -> np.ndarray | None:  # scale / bias broadcast over the row
        v = constant(node, i)
        return None if v is None else np.broadcast_to(v.astype(np.float32), inner).reshape(-1)

    gamma, beta = per_element(1), per_element(2)
    y = lw.new_value(x.shape, "plain")
    ptrs = [lw.ref(x), lw.ref(y),
            lw.weight(gamma) if gamma is not None else None,
            lw.weight(beta) if beta is not None else None]
    lw.emit(Launch(node.name, f"layernorm_lastdim_{lw.dt}", (rows, 1, 1), 256, ptrs,
                     [rows, L], [float(node.attrs.get("epsilon", 1e-5))]))
    lw.bind(node, y)


def _groupnorm_ok(node: Node, arch: int, precision: str) -> Verdict:
    x = node.input(0)
    assert x is not None  # supports() made sure
    shape = x.static_shape()
    if len(shape) < 3:
        return Verdict.no(f"needs an input of rank >= 3 (N, C, spatial...), got {len(shape)}")
    if node.input(1) is None or node.input(2) is None:
        return Verdict.no("needs scale and bias inputs")
    why = _scale_bias_refusal(node)
    if why:
        return Verdict.no(why)
    c = shape[1]
    groups = int(node.attrs.get("num_groups", c)) if node.op == "GroupNormalization" else c
    if groups <= 0 or c % groups:
        return Verdict.no(f"num_groups {groups} does not divide the {c} channels")
    for i, what in ((1, "scale"), (2, "bias")):
        size = constant(node, i).size  # type: ignore[union-attr]
        if size not in (c, groups):
            return Verdict.no(f"{what} has {size} values; expected one per channel ({c})")
    return Verdict.yes()


@register("InstanceNormalization", "GroupNormalization", supports=_groupnorm_ok)
def lower_groupnorm(lw: Lowering, node: Node) -> None:
    """Statistics per (image, group of channels) over the channels and every spatial
    position; InstanceNormalization is one channel a group. NHWC data is read in place."""
    x = lw.value(node.input(0), node)
    N, C = x.shape[:2]
    HW = int(np.prod(x.shape[2:]))
    G = int(node.attrs.get("num_groups", C)) if node.op == "GroupNormalization" else C
    cpg = C // G
    nhwc = x.layout == "nhwc" and x.cs in (0, C)
    x = lw.ensure(x, "nhwc" if nhwc else "plain", lw.dt, node.name)
    y = lw.new_value(x.shape, x.layout)

    def per_channel(i: int) -> np.ndarray:  # opset 18's per-group scale repeats per channel
        v = constant(node, i)
        assert v is not None  # _groupnorm_ok made sure
        v = v.astype(np.float32).reshape(-1)
        return np.repeat(v, cpg) if v.size != C else v

    strides = (HW * C, 1, C, 1) if nhwc else (C * HW, HW, 1, 0)
    ints = [N * G, cpg * HW, HW, cpg, G, *strides[:3], strides[3]]
    lw.emit(Launch(node.name, f"groupnorm_{lw.dt}", (N * G, 1, 1), 256,
                   [lw.ref(x), lw.ref(y), lw.weight(per_channel(1)), lw.weight(per_channel(2))],
                   ints, [float(node.attrs.get("epsilon", 1e-5))]))
    lw.bind(node, y)
