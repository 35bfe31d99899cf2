"""INT8: which tensors the lowering stores as INT8, and the Quantize / Dequantize layers.

Precision "int8" comes with per-tensor ``scales`` (scale = threshold / 127). A convolution runs
on INT8 tensor cores (m16n8k32) when its input has a scale, one group and C % 16 == 0 on sm_80+
(:mod:`~gpu_kernels.lowering.conv` lowers it); its output is stored as INT8 when every reader
takes INT8 (another INT8 convolution, or a residual Add fused into one), else FP16. Every other
layer runs in FP16 and reads INT8 values through one dequantising copy. Quantisation is round
half to even with saturation, as ONNX QuantizeLinear and TensorRT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import NP_DTYPE, GpuLoweringError, Value
from gpu_kernels.lowering.registry import constant, register
from partitioner.capability import Verdict
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.passes.fusion import activation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering


class Int8Plan:
    """The INT8 decisions of one lowering, made from the graph before anything is emitted."""

    def __init__(self, graph: Graph, scales: dict[str, float], arch: int,
                 concat_slot: dict[str, tuple[Node, int]]) -> None:
        self.graph = graph
        self.scales = scales
        self.arch = arch
        self.concat_slot = concat_slot  # filled by the lowering's concat planning

    def conv_scale(self, node: Node) -> float | None:
        """The input scale when ``node`` is a convolution that runs on INT8 tensor cores."""
        if not self.scales or self.arch < 80 or node.op != "Conv":
            return None
        x, w = node.input(0), constant(node, 1)
        if x is None or w is None or w.ndim != 4 or int(node.attrs.get("group", 1)) != 1:
            return None
        if not x.is_static or int(x.static_shape()[1]) % 16:
            return None
        return self.scales.get(x.name)

    def from_conv(self, u: Tensor | None) -> bool:
        """Whether ``u`` comes from an INT8 convolution, possibly through the activation its
        epilogue fuses (Relu, SiLU = x * Sigmoid(x), ...). A guess: where the fusion does not
        happen after all, readers dequantise / Concat copies, which is correct, only slower."""
        for _ in range(3):
            if u is None or isinstance(u, Constant) or u.producer is None:
                return False
            prod = u.producer
            if prod.op == "Conv":
                return self.conv_scale(prod) is not None
            if prod.op != "Mul" and activation(prod) is None:
                return False
            u = prod.input(0)
        return False

    def feeds_residual(self, add: Node, t: Tensor) -> bool:
        """Whether Add ``add`` will fuse as the residual of an INT8 convolution reading ``t``."""
        other = next((x for x in add.inputs if x is not None and x is not t), None)
        return self.from_conv(other)

    def wants(self, t: Tensor) -> bool:
        """Store ``t`` as INT8: it has a scale and every reader takes INT8 (else one FP16 copy
        serves every reader). A reader that cannot fuse after all dequantises (correct, slower)."""
        if not self.scales or t.name not in self.scales or t in self.graph.outputs \
                or t.name in self.concat_slot or not t.consumers:
            return False
        for r in t.consumers:
            if r.op == "Conv" and r.input(0) is t and t not in r.inputs[1:] \
                    and self.conv_scale(r) is not None:
                continue
            if r.op == "Add" and len(r.inputs) == 2 and self.feeds_residual(r, t):
                continue
            return False
        return True


# ----- Quantize / Dequantize ---------------------------------------------------------------
def _qdq_refusal(node: Node) -> str | None:
    """Why a Q/DQ layer does not run on the GPU: one constant per-tensor scale, symmetric INT8
    only (zero point 0), as the INT8 kernels and TensorRT take it."""
    scale, zp = node.input(1), node.input(2)
    if not isinstance(scale, Constant) or scale.values.size != 1:
        return "needs one constant per-tensor scale on the GPU"
    zero = zp is None or (isinstance(zp, Constant) and not np.any(zp.values))
    int8 = zp is not None and zp.dtype == "int8" or \
        node.attrs.get("output_dtype") == 3  # TensorProto.INT8
    if node.op == "QuantizeLinear" and not (zero and int8):
        return "only INT8 with zero point 0 runs on the GPU (symmetric, as TensorRT)"
    if not zero:
        return "only zero point 0 runs on the GPU"
    return None


def _quantize_ok(node: Node, arch: int, precision: str) -> Verdict:
    why = _qdq_refusal(node)
    if why:
        return Verdict.no(why)
    if not node.outputs[0].consumers:  # a graph output (an INT8 tensor leaving the segment)
        return Verdict.no("an INT8 graph output is not supported on the GPU")
    return Verdict.yes()


def _dequantize_ok(node: Node, arch: int, precision: str) -> Verdict:
    why = _qdq_refusal(node)
    if why:
        return Verdict.no(why)
    t = node.input(0)
    if t is None:
        return Verdict.no("a required input is missing")
    producer = t.producer
    if not isinstance(t, Constant) and (producer is None or producer.op != "QuantizeLinear"):
        return Verdict.no(f"input '{t.name}' is not INT8 (no QuantizeLinear before it)")
    return Verdict.yes()


def _scale_of(node: Node) -> float:
    scale = node.input(1)
    assert isinstance(scale, Constant)  # supports() made sure
    return float(scale.values.reshape(-1)[0])


@register("QuantizeLinear", supports=_quantize_ok)
def lower_quantize(lw: Lowering, node: Node) -> None:
    x = lw.value(node.input(0), node)
    if node.outputs[0] in lw.graph.outputs:
        raise GpuLoweringError(f"layer '{node.name}' (QuantizeLinear): an INT8 graph output "
                               "is not supported on the GPU")
    lw.bind(node, lw.ensure(x, None, "i8", node.name, scale=_scale_of(node)))


@register("DequantizeLinear", supports=_dequantize_ok, data=())
def lower_dequantize(lw: Lowering, node: Node) -> None:
    scale = _scale_of(node)
    t = node.input(0)
    if isinstance(t, Constant):  # weights: folded here (the importer's passes usually do)
        real = (t.values.astype(np.float32) * scale).astype(NP_DTYPE[lw.dt])
        lw.bind(node, lw.value(Constant(node.outputs[0].name, real), node))
        return
    v = lw.value(t, node, raw=True)
    if v.dtype != "i8":
        raise GpuLoweringError(f"layer '{node.name}' (DequantizeLinear): input "
                               f"'{t.name if t else ''}' is not INT8")
    as_stored = Value(v.buf, v.shape, v.layout, "i8", v.offset, v.cs, v.custom, scale)
    lw.bind(node, lw.ensure(as_stored, None, lw.dt, node.name))
