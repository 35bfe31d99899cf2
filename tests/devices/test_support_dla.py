"""DLA support tables: every restriction of shared/reference/dla.md §1, just inside and just
outside its limit, for each DLA version where the rule differs.

Each case builds a one-layer graph (IR conventions: explicit pads [b_h, b_w, e_h, e_w], opset-21
inputs for axes / scales / min / max), infers its shapes and asks the table for a verdict.
"""

# ruff: noqa: E501  (the case table reads best one case per line)

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from devices.support import (
    ConvGeometry,
    SupportEnv,
    dla_table,
    evaluate,
    gpu_table,
    load_table,
)
from dla_sim.formats import cbuf_banks_needed
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.shape_inference import infer_shapes

DEFAULT_TRT = {1: "8.5.2", 2: "10.3"}  # JetPack 5 on Xavier, JetPack 6.2 on Orin


# ----- tiny graph builders -----------------------------------------------------------------------


def layer(
    op: str,
    inputs: list[Any],
    attrs: dict[str, Any] | None = None,
    name: str = "l1",
    outputs: int = 1,
    then: str | None = None,
    then_attrs: dict[str, Any] | None = None,
) -> tuple[Graph, str]:
    """One layer. ``inputs``: a shape tuple = graph input, an ndarray = Constant, None = omitted."""
    g = Graph("t")
    tensors = []
    for i, spec in enumerate(inputs):
        if spec is None:
            tensors.append(None)
        elif isinstance(spec, np.ndarray):
            tensors.append(g.add_constant(f"k{i}", spec))
        else:
            tensors.append(g.add_input(f"x{i}", tuple(spec)))
    node = g.add_node(op, tensors, outputs, attrs or {}, name=name)
    last = node
    if then is not None:
        last = g.add_node(then, [node.outputs[0]], 1, then_attrs or {}, name="next")
    for t in last.outputs:
        g.mark_output(t)
    if all(isinstance(d, int) for t in g.inputs for d in t.shape or ()):
        infer_shapes(g)
    return g, name


def w(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def f32(*values: float) -> np.ndarray:
    return np.array(values, np.float32)


def conv(
    c: int = 16,
    k: int = 16,
    hw: tuple[int, int] = (40, 40),
    kernel: tuple[int, int] = (3, 3),
    stride: tuple[int, int] = (1, 1),
    pads: tuple[int, ...] = (0, 0, 0, 0),
    dil: tuple[int, int] = (1, 1),
    group: int = 1,
) -> tuple[Graph, str]:
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(pads),
             "dilations": list(dil), "group": group}  # fmt: skip
    return layer("Conv", [(1, c, *hw), w(k, c // group, *kernel)], attrs, name="c1")


def deconv(
    c: int = 8,
    k: int = 8,
    hw: tuple[int, int] = (8, 8),
    kernel: tuple[int, int] = (2, 2),
    stride: tuple[int, int] = (2, 2),
    pads: tuple[int, ...] = (0, 0, 0, 0),
    dil: tuple[int, int] = (1, 1),
    group: int = 1,
    output_padding: tuple[int, int] = (0, 0),
) -> tuple[Graph, str]:
    attrs = {"kernel_shape": list(kernel), "strides": list(stride), "pads": list(pads),
             "dilations": list(dil), "group": group, "output_padding": list(output_padding)}  # fmt: skip
    return layer("ConvTranspose", [(1, c, *hw), w(c, k // group, *kernel)], attrs, name="up3")


def pool(
    op: str = "MaxPool",
    kernel: tuple[int, ...] = (2, 2),
    stride: tuple[int, ...] = (2, 2),
    pads: tuple[int, ...] = (0, 0, 0, 0),
    hw: tuple[int, ...] = (32, 32),
    count_include_pad: int | None = None,
) -> tuple[Graph, str]:
    attrs: dict[str, Any] = {"kernel_shape": list(kernel), "strides": list(stride),
                             "pads": list(pads)}  # fmt: skip
    if count_include_pad is not None:
        attrs["count_include_pad"] = count_include_pad
    return layer(op, [(1, 4, *hw)], attrs, name="p1")


def clip(lo: float | None, hi: float | None, dynamic_max: bool = False) -> tuple[Graph, str]:
    hi_in: Any = (1,) if dynamic_max else (None if hi is None else f32(hi).reshape(()))
    lo_in = None if lo is None else f32(lo).reshape(())
    return layer("Clip", [(1, 4, 8, 8), lo_in, hi_in], name="clip")


def resize(
    scales: tuple[float, ...] | None = (1, 1, 2, 2),
    mode: str = "nearest",
    coord: str = "asymmetric",
    nearest: str = "floor",
    sizes: tuple[int, ...] | None = None,
    shape: tuple[int, ...] = (1, 4, 8, 8),
) -> tuple[Graph, str]:
    attrs = {"mode": mode, "coordinate_transformation_mode": coord, "nearest_mode": nearest}
    s = f32(*scales) if scales is not None else None
    z = i64(*sizes) if sizes is not None else None
    return layer("Resize", [shape, None, s, z], attrs, name="rs")


def slice_(
    starts: tuple[int, ...],
    ends: tuple[int, ...],
    axes: tuple[int, ...],
    steps: tuple[int, ...] | None = None,
    shape: tuple[int, ...] = (1, 8, 8, 8),
    dynamic_starts: bool = False,
) -> tuple[Graph, str]:
    st: Any = (len(starts),) if dynamic_starts else i64(*starts)
    ins = [shape, st, i64(*ends), i64(*axes), i64(*steps) if steps else None]
    g = Graph("t")
    tensors: list[Any] = []
    for i, spec in enumerate(ins):
        if spec is None:
            tensors.append(None)
        elif isinstance(spec, np.ndarray):
            tensors.append(g.add_constant(f"k{i}", spec))
        else:
            tensors.append(g.add_input(f"x{i}", tuple(spec), "int64" if i else "float32"))
    node = g.add_node("Slice", tensors, 1, {}, name="sl")
    g.mark_output(node.outputs[0])
    if not dynamic_starts:
        infer_shapes(g)
    return g, "sl"


def comparison(op: str = "Equal", cast_to: int | None = 10) -> tuple[Graph, str]:
    then = "Cast" if cast_to is not None else None
    return layer(op, [(1, 4, 8, 8), (1, 4, 8, 8)], name="cmp", then=then,
                 then_attrs={"to": cast_to})  # fmt: skip


def cast_after_equal() -> tuple[Graph, str]:
    g, _ = comparison("Equal", 10)
    return g, "next"


def shuffle(
    op: str, shape: tuple[int, ...], target: Any, then: str | None = None
) -> tuple[Graph, str]:
    if op == "Reshape":
        return layer("Reshape", [shape, i64(*target)], name="rs1", then=then,
                     then_attrs={"axis": 1} if then == "Concat" else None)  # fmt: skip
    return layer("Transpose", [shape], {"perm": list(target)}, name="tr1")


def bn(dynamic_scale: bool = False) -> tuple[Graph, str]:
    scale: Any = (4,) if dynamic_scale else w(4) + 1
    return layer("BatchNormalization", [(1, 4, 8, 8), scale, w(4), w(4), w(4) + 1],
                 {"epsilon": 1e-5}, name="bn")  # fmt: skip


# ----- the table ----------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    build: Any
    ok: bool
    reason: str = ""  # substring of the verdict reason (failure) or note (success)
    versions: tuple[int, ...] = (1, 2)
    precision: str = "fp16"
    trt: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


CASES = [
    # --- general (§1.1) ---
    Case("fp32-refused", lambda: conv(), False, "FP32 not supported on DLA (Conv: FP16 and INT8 only)", precision="fp32"),
    Case("fp16-ok", lambda: conv(), True),
    Case("int8-ok", lambda: conv(), True, precision="int8"),
    Case("batch-4096", lambda: layer("Relu", [(4096, 1, 2, 2)]), True),
    Case("batch-4097", lambda: layer("Relu", [(4097, 1, 2, 2)]), False, "input batch 4097 > DLA max 4096 (batch = product of all dims but the last 3)"),
    Case("batch-5d-4096", lambda: layer("Relu", [(2, 2048, 1, 2, 2)]), True),
    Case("batch-5d-4098", lambda: layer("Relu", [(2, 2049, 1, 2, 2)]), False, "input batch 4098"),
    Case("dim-8192", lambda: layer("Relu", [(1, 8192, 1, 1)]), True),
    Case("dim-8193", lambda: layer("Relu", [(1, 1, 8193, 1)]), False, "input dim 8193 > DLA max 8192"),
    Case("dynamic-shape", lambda: layer("Relu", [("batch", 3, 8, 8)]), False,
         "dynamic shape (input dim 0 is 'batch'): DLA needs static shapes"),
    Case("unlisted-op", lambda: layer("RoiAlign", [(1, 4, 8, 8)]), False, "RoiAlign is not supported on DLA"),
    # --- Conv (§1.2) ---
    Case("conv-1d", lambda: layer("Conv", [(1, 4, 16), w(4, 4, 3)], {"kernel_shape": [3], "pads": [0, 0], "strides": [1], "dilations": [1], "group": 1}), False, "1 spatial dims (DLA supports 2-D only)"),
    Case("conv-3d", lambda: layer("Conv", [(1, 4, 8, 8, 8), w(4, 4, 3, 3, 3)], {"kernel_shape": [3, 3, 3], "pads": [0] * 6, "strides": [1] * 3, "dilations": [1] * 3, "group": 1}), False, "3 spatial dims"),
    Case("conv-kernel-32", lambda: conv(c=1, k=1, kernel=(32, 32)), True),
    Case("conv-kernel-33", lambda: conv(c=1, k=1, kernel=(33, 33)), False, "Conv 'c1': kernel 33x33 > DLA max 32"),
    Case("conv-kernel-1x33", lambda: conv(c=1, k=1, kernel=(1, 33)), False, "kernel 1x33 > DLA max 32"),
    Case("conv-pad-31", lambda: conv(c=1, k=1, kernel=(32, 32), pads=(31, 31, 31, 31)), True),
    Case("conv-pad-32", lambda: conv(c=1, k=1, kernel=(32, 32), pads=(32, 32, 32, 32)), False, "padding (32,32) > DLA max 31"),
    Case("conv-pad-below-kernel", lambda: conv(kernel=(3, 3), pads=(2, 2, 2, 2)), True),
    Case("conv-pad-equals-kernel", lambda: conv(kernel=(3, 3), pads=(3, 0, 3, 0)), False, "padding (3,0) not below kernel 3x3 (DLA needs padding < kernel)"),
    Case("conv-pad-asymmetric", lambda: conv(kernel=(1, 3), pads=(0, 1, 1, 1)), False, "padding [0,1,1,1] not below kernel 1x3"),
    Case("conv-stride-8", lambda: conv(stride=(8, 8)), True),
    Case("conv-stride-9", lambda: conv(stride=(9, 1)), False, "stride 9x1 > DLA max 8"),
    Case("conv-dilation-32", lambda: conv(c=1, k=1, kernel=(2, 2), dil=(32, 32)), True),
    Case("conv-dilation-33", lambda: conv(c=1, k=1, kernel=(2, 2), dil=(33, 33)), False, "dilation 33x33 > DLA max 32"),
    Case("conv-maps-8192", lambda: conv(c=1, k=8192, hw=(1, 1), kernel=(1, 1)), True),
    Case("conv-maps-8193", lambda: conv(c=1, k=8193, hw=(1, 1), kernel=(1, 1)), False, "8193"),
    Case("conv-groups-8192", lambda: conv(c=8192, k=8192, hw=(2, 2), kernel=(1, 1), group=8192), True),
    Case("conv-groups-8193", lambda: conv(c=8193, k=8193, hw=(1, 1), kernel=(1, 1), group=8193), False, "8193"),
    Case("int8-grouped-4-per-group", lambda: conv(c=16, k=16, group=4), True, precision="int8"),
    Case("int8-grouped-6-per-group", lambda: conv(c=24, k=24, group=4), False, "INT8 grouped conv with 6 channels per group (needs a multiple of 4)", precision="int8"),
    Case("fp16-grouped-6-per-group", lambda: conv(c=24, k=24, group=4), True),
    Case("int8-depthwise", lambda: conv(c=16, k=16, group=16), True, precision="int8"),
    # CBUF: C=64 3x3 FP16 -> 1 weight bank; data banks = ceil(W*3/256): W=1280 -> 15, W=1281 -> 16.
    Case("cbuf-16-banks", lambda: conv(c=64, k=64, hw=(4, 1280)), True),
    Case("cbuf-17-banks", lambda: conv(c=64, k=64, hw=(4, 1281)), False, "convolution buffer needs 17 banks (weights 1 + data 16) > 16 on DLA"),
    Case("cbuf-int8-halves-data", lambda: conv(c=64, k=64, hw=(4, 1281)), True, precision="int8"),
    Case("cbuf-undilated", lambda: conv(c=64, k=64, hw=(40, 640)), True),
    Case("cbuf-dilation-counts", lambda: conv(c=64, k=64, hw=(40, 640), dil=(3, 3)), False, "needs 19 banks (weights 1 + data 18)"),
    # --- Gemm / MatMul as 1x1 conv ---
    Case("matmul-const", lambda: layer("MatMul", [(1, 64), w(64, 32)], name="fc"), True),
    Case("matmul-two-inputs", lambda: layer("MatMul", [(1, 64), (64, 32)], name="fc"), False, "MatMul with two run-time inputs is not supported on DLA"),
    Case("matmul-3d", lambda: layer("MatMul", [(1, 7, 64), w(64, 32)], name="fc"), False, "MatMul on a 3-D input"),
    Case("gemm-transA", lambda: layer("Gemm", [(64, 1), w(64, 32)], {"transA": 1}, name="fc"), False, "transA=1"),
    Case("gemm-maps-8192", lambda: layer("Gemm", [(1, 64), w(8192, 64), w(8192)], {"transB": 1}, name="fc"), True),
    Case("gemm-maps-8193", lambda: layer("Gemm", [(1, 64), w(8193, 64), w(8193)], {"transB": 1}, name="fc"), False, "8193"),
    Case("gemm-cbuf", lambda: layer("Gemm", [(1, 8192), w(16, 8192)], {"transB": 1}, name="fc"), True, precision="int8"),
    # --- ConvTranspose ---
    Case("deconv-ok", lambda: deconv(), True),
    Case("deconv-padding", lambda: deconv(kernel=(3, 3), pads=(1, 1, 1, 1)), False, "ConvTranspose 'up3': padding (1,1) not supported on DLA (must be 0)"),
    Case("deconv-output-padding", lambda: deconv(kernel=(3, 3), output_padding=(1, 1)), False, "output_padding (1,1) not supported on DLA (must be 0)"),
    Case("deconv-kernel-22", lambda: deconv(kernel=(22, 22), stride=(2, 2)), True),
    Case("deconv-kernel-23-square", lambda: deconv(kernel=(23, 23), stride=(2, 2)), False, "square kernel 23x23 in [23,32] is disabled on DLA"),
    Case("deconv-kernel-32x31", lambda: deconv(kernel=(32, 31), stride=(2, 2)), True),
    Case("deconv-kernel-33", lambda: deconv(kernel=(33, 1), stride=(1, 1)), False, "kernel 33x1 not supported on DLA (allowed: [1,32] or 1x64/1x96/1x128/64x1/96x1/128x1)"),
    Case("deconv-kernel-1x64", lambda: deconv(kernel=(1, 64), stride=(1, 64), hw=(4, 2)), True),
    Case("deconv-kernel-1x65", lambda: deconv(kernel=(1, 65), stride=(1, 1), hw=(4, 2)), False, "kernel 1x65 not supported"),
    Case("deconv-stride-22", lambda: deconv(kernel=(2, 2), stride=(22, 22)), True),
    Case("deconv-stride-23-square", lambda: deconv(kernel=(2, 2), stride=(23, 23)), False, "square stride 23x23"),
    Case("deconv-stride-33", lambda: deconv(kernel=(2, 2), stride=(33, 1)), False, "stride 33x1 not supported"),
    Case("deconv-groups-2", lambda: deconv(c=8, k=8, group=2), False, "groups 2 not supported on DLA (must be 1)"),
    Case("deconv-dilation-2", lambda: deconv(dil=(2, 2)), False, "dilation 2x2 > DLA max 1"),
    Case("deconv-1d", lambda: layer("ConvTranspose", [(1, 4, 8), w(4, 4, 2)], {"kernel_shape": [2], "strides": [2], "pads": [0, 0], "dilations": [1], "group": 1}), False, "1 spatial dims"),
    Case("deconv-maps-8193", lambda: deconv(c=1, k=8193, hw=(1, 1), kernel=(1, 1), stride=(1, 1)), False, "8193"),
    # --- pooling ---
    Case("maxpool-window-8", lambda: pool(kernel=(8, 8), stride=(8, 8)), True),
    Case("maxpool-window-9", lambda: pool(kernel=(9, 9), stride=(8, 8)), False, "window 9x9 > DLA max 8"),
    Case("avgpool-window-9", lambda: pool("AveragePool", kernel=(1, 9), stride=(1, 1), count_include_pad=1), False, "window 1x9 > DLA max 8"),
    Case("maxpool-pad-7", lambda: pool(kernel=(8, 8), stride=(1, 1), pads=(7, 7, 7, 7)), True),
    Case("maxpool-pad-8", lambda: pool(kernel=(8, 8), stride=(1, 1), pads=(8, 0, 0, 0)), False, "padding [8,0,0,0] outside DLA range [0,7]"),
    Case("maxpool-stride-16", lambda: pool(kernel=(2, 2), stride=(16, 16)), True),
    Case("maxpool-stride-17", lambda: pool(kernel=(2, 2), stride=(17, 1)), False, "stride 17x1 > DLA max 16"),
    Case("maxpool-1d", lambda: pool(kernel=(2,), stride=(2,), pads=(0, 0), hw=(16,)), False, "1 spatial dims"),
    Case("avgpool-exclusive-padded-xavier", lambda: pool("AveragePool", kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), count_include_pad=0), False,
         "average pool excluding padding (count_include_pad=0) with padding (1,1) not supported on DLA (inclusive padding only)", versions=(1,)),
    Case("avgpool-exclusive-padded-orin", lambda: pool("AveragePool", kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), count_include_pad=0), True, versions=(2,)),
    Case("avgpool-inclusive-padded", lambda: pool("AveragePool", kernel=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1), count_include_pad=1), True),
    Case("avgpool-exclusive-unpadded", lambda: pool("AveragePool", kernel=(2, 2), stride=(2, 2), count_include_pad=0), True),
    Case("globalavgpool", lambda: layer("GlobalAveragePool", [(1, 4, 7, 7)]), False, "GlobalAveragePool does not run on DLA"),
    Case("globalmaxpool-orin", lambda: layer("GlobalMaxPool", [(1, 4, 7, 7)]), True, versions=(2,)),
    Case("globalmaxpool-orin-trt-8.6.2", lambda: layer("GlobalMaxPool", [(1, 4, 7, 7)]), False, "GlobalMaxPool needs TensorRT >= 8.6.12 on DLA (target has 8.6.2)", versions=(2,), trt="8.6.2"),
    Case("globalmaxpool-xavier", lambda: layer("GlobalMaxPool", [(1, 4, 7, 7)]), False, "supported on Orin's DLA only", versions=(1,)),
    # --- activations ---
    Case("relu", lambda: layer("Relu", [(1, 4, 8, 8)]), True, precision="int8"),
    Case("leakyrelu", lambda: layer("LeakyRelu", [(1, 4, 8, 8)], {"alpha": 0.1}), True, precision="int8"),
    Case("sigmoid-int8-upgraded", lambda: layer("Sigmoid", [(1, 4, 8, 8)]), True, "runs in FP16 (INT8 not supported for Sigmoid on DLA)", precision="int8"),
    Case("tanh-int8-upgraded", lambda: layer("Tanh", [(1, 4, 8, 8)]), True, "runs in FP16", precision="int8"),
    Case("clip-relu6", lambda: clip(0, 6), True),
    Case("clip-max-1", lambda: clip(0, 1), True),
    Case("clip-max-127", lambda: clip(0, 127), True),
    Case("clip-max-128", lambda: clip(0, 128), False, "Clip max 128 outside DLA clipped-ReLU range [1,127]"),
    Case("clip-max-0.5", lambda: clip(0, 0.5), False, "Clip max 0.5 outside"),
    Case("clip-min-neg", lambda: clip(-1, 6), False, "Clip min -1: DLA runs Clip as clipped ReLU (min must be 0)"),
    Case("clip-no-max", lambda: clip(0, None), False, "Clip without max: DLA runs Clip as clipped ReLU with max in [1,127]"),
    Case("clip-dynamic-max", lambda: clip(0, None, dynamic_max=True), False, "Clip bounds must be constant"),
    Case("hardswish", lambda: layer("HardSwish", [(1, 4, 8, 8)]), False, "HardSwish is not a DLA activation (ReLU, Sigmoid, TanH, Clip, LeakyReLU only)"),
    Case("hardsigmoid", lambda: layer("HardSigmoid", [(1, 4, 8, 8)]), False, "HardSigmoid is not a DLA activation"),
    Case("gelu", lambda: layer("Gelu", [(1, 4, 8, 8)]), False, "Gelu is not a DLA activation"),
    Case("prelu-const", lambda: layer("PRelu", [(1, 4, 8, 8), w(4, 1, 1)]), True),
    Case("prelu-dynamic", lambda: layer("PRelu", [(1, 4, 8, 8), (4, 1, 1)]), False, "PRelu slope 'x1' must be a build-time constant on DLA"),
    # --- element-wise ---
    Case("add", lambda: layer("Add", [(1, 4, 8, 8), (1, 4, 8, 8)]), True, precision="int8"),
    Case("mul", lambda: layer("Mul", [(1, 4, 8, 8), (1, 4, 8, 8)]), True),
    Case("max", lambda: layer("Max", [(1, 4, 8, 8), (1, 4, 8, 8)]), True),
    Case("min", lambda: layer("Min", [(1, 4, 8, 8), (1, 4, 8, 8)]), True),
    Case("sum", lambda: layer("Sum", [(1, 4, 8, 8), (1, 4, 8, 8), (1, 4, 8, 8)]), True),
    Case("sub-orin", lambda: layer("Sub", [(1, 4, 8, 8), (1, 4, 8, 8)]), True, versions=(2,)),
    Case("sub-xavier-scale-sum", lambda: layer("Sub", [(1, 4, 8, 8), (1, 4, 8, 8)]), True, "runs as Scale + Sum on Xavier's DLA (no native Sub)", versions=(1,)),
    Case("div-orin-trt10", lambda: layer("Div", [(1, 4, 8, 8), (1, 4, 8, 8)]), True, versions=(2,)),
    Case("div-orin-jetpack5", lambda: layer("Div", [(1, 4, 8, 8), (1, 4, 8, 8)]), False, "Div needs TensorRT >= 8.6.12 on DLA (target has 8.5.2)", versions=(2,), trt="8.5.2"),
    Case("div-xavier", lambda: layer("Div", [(1, 4, 8, 8), (1, 4, 8, 8)]), False, "Div needs TensorRT >= 8.6.12", versions=(1,)),
    Case("pow-trt10", lambda: layer("Pow", [(1, 4, 8, 8), (1, 4, 8, 8)]), True, versions=(2,)),
    Case("pow-trt8", lambda: layer("Pow", [(1, 4, 8, 8), (1, 4, 8, 8)]), False, "Pow needs TensorRT >= 10.0", versions=(2,), trt="8.6.2"),
    # --- comparison and the Cast it must feed ---
    Case("equal-cast-fp16", lambda: comparison("Equal", 10), True, precision="int8", versions=(2,)),
    Case("equal-cast-int8", lambda: comparison("Equal", 3), True, precision="int8", versions=(2,)),
    Case("equal-cast-fp32", lambda: comparison("Equal", 1), False, "Equal output must feed a Cast to float16/int8 directly on DLA", precision="int8", versions=(2,)),
    Case("equal-no-cast", lambda: comparison("Equal", None), False, "must feed a Cast", precision="int8", versions=(2,)),
    Case("equal-fp16", lambda: comparison("Equal", 10), False, "FP16 not supported on DLA (Equal: INT8 only)", versions=(2,)),
    Case("greater-trt10", lambda: comparison("Greater", 10), True, precision="int8", versions=(2,)),
    Case("less-trt8.6.2", lambda: comparison("Less", 10), False, "Less needs TensorRT >= 8.6.12", precision="int8", versions=(2,), trt="8.6.2"),
    Case("equal-xavier", lambda: comparison("Equal", 10), False, "Equal (comparison) is supported on Orin's DLA only", precision="int8", versions=(1,)),
    Case("cast-after-equal", cast_after_equal, True, precision="int8", versions=(2,)),
    Case("cast-alone", lambda: layer("Cast", [(1, 4, 8, 8)], {"to": 10}), False, "Cast is not supported on DLA"),
    # --- scale, LRN ---
    Case("batchnorm-const", bn, True, "runs as a Scale layer"),
    Case("batchnorm-dynamic", lambda: bn(dynamic_scale=True), False, "BatchNormalization parameter 'x1' must be a build-time constant"),
    Case("lrn-9", lambda: layer("LRN", [(1, 16, 8, 8)], {"size": 9}), True),
    Case("lrn-3", lambda: layer("LRN", [(1, 16, 8, 8)], {"size": 3}), True),
    Case("lrn-11", lambda: layer("LRN", [(1, 16, 8, 8)], {"size": 11}), False, "LRN window 11 not in DLA set {3,5,7,9}"),
    Case("lrn-4", lambda: layer("LRN", [(1, 16, 8, 8)], {"size": 4}), False, "LRN window 4"),
    Case("lrn-int8-upgraded", lambda: layer("LRN", [(1, 16, 8, 8)], {"size": 5}), True, "runs in FP16", precision="int8"),
    # --- concat ---
    Case("concat-channels", lambda: layer("Concat", [(1, 4, 8, 8), (1, 6, 8, 8)], {"axis": 1}), True, precision="int8"),
    Case("concat-channels-neg", lambda: layer("Concat", [(1, 4, 8, 8), (1, 6, 8, 8)], {"axis": -3}), True),
    Case("concat-height", lambda: layer("Concat", [(1, 4, 8, 8), (1, 4, 2, 8)], {"axis": 2}), False, "concatenation on axis 2 of a 4-D tensor: DLA concatenates on the channel axis (third from last) only"),
    Case("concat-batch", lambda: layer("Concat", [(1, 4, 8, 8), (1, 4, 8, 8)], {"axis": 0}), False, "axis 0"),
    Case("concat-one-input", lambda: layer("Concat", [(1, 4, 8, 8)], {"axis": 1}), False, "1 input(s): DLA concatenation needs >= 2"),
    # --- resize ---
    Case("resize-nearest-32", lambda: resize((1, 1, 32, 32)), True),
    Case("resize-nearest-33", lambda: resize((1, 1, 33, 1)), False, "nearest resize scale 33x1 not an integer in [1,32] on DLA"),
    Case("resize-nearest-1.5", lambda: resize((1, 1, 1.5, 1.5)), False, "nearest resize scale 1.5x1.5 not an integer"),
    Case("resize-downscale", lambda: resize((1, 1, 0.5, 0.5)), False, "0.5x0.5 not an integer in [1,32]"),
    Case("resize-linear-4", lambda: resize((1, 1, 4, 4), "linear", "half_pixel"), True),
    Case("resize-linear-5", lambda: resize((1, 1, 5, 5), "linear", "half_pixel"), False, "linear resize scale 5x5 not an integer in [1,4]"),
    Case("resize-linear-pytorch-half-pixel", lambda: resize((1, 1, 2, 2), "linear", "pytorch_half_pixel"), True),
    Case("resize-linear-align-corners", lambda: resize((1, 1, 2, 2), "linear", "align_corners"), False, "linear Resize with coordinate mode 'align_corners' not supported"),
    Case("resize-nearest-half-pixel-floor", lambda: resize(coord="half_pixel", nearest="round_prefer_floor"), True),
    Case("resize-nearest-half-pixel-ceil", lambda: resize(coord="half_pixel", nearest="round_prefer_ceil"), True),
    Case("resize-nearest-asymmetric-ceil", lambda: resize(coord="asymmetric", nearest="ceil"), False, "nearest Resize with asymmetric + ceil not supported"),
    Case("resize-nearest-align-corners", lambda: resize(coord="align_corners", nearest="round_prefer_floor"), False, "align_corners + round_prefer_floor"),
    Case("resize-cubic", lambda: resize((1, 1, 2, 2), "cubic", "half_pixel"), False, "Resize mode 'cubic' not supported on DLA"),
    Case("resize-nc-scale", lambda: resize((1, 2, 2, 2)), False, "resize scales 1,2 on N,C (DLA needs 1)"),
    Case("resize-3-scales", lambda: resize((1, 1, 2), shape=(1, 4, 8)), False, "3 resize scales (DLA needs exactly 4)"),
    Case("resize-sizes", lambda: resize(None, sizes=(1, 4, 16, 16)), False, "Resize to output sizes (setOutputDimensions) is not supported on DLA"),
    # --- unary ---
    Case("abs", lambda: layer("Abs", [(1, 4, 8, 8)]), True),
    Case("sin-orin", lambda: layer("Sin", [(1, 4, 8, 8)]), True, versions=(2,)),
    Case("sin-orin-trt8.5", lambda: layer("Sin", [(1, 4, 8, 8)]), False, "Sin needs TensorRT >= 8.6.12", versions=(2,), trt="8.5.2"),
    Case("cos-xavier", lambda: layer("Cos", [(1, 4, 8, 8)]), False, "Cos is supported on Orin's DLA only", versions=(1,)),
    Case("exp", lambda: layer("Exp", [(1, 4, 8, 8)]), False, "Exp is not a DLA unary operation"),
    # --- slice / split ---
    Case("slice-channels", lambda: slice_((0,), (4,), (1,)), True),
    Case("slice-int8-runs-fp16", lambda: slice_((0,), (4,), (1,)), True, "runs in FP16 (INT8 not supported for Slice on DLA)", precision="int8"),
    Case("slice-step-2", lambda: slice_((0,), (8,), (1,), (2,)), False, "Slice steps 2 not supported on DLA (stride must be 1)"),
    Case("slice-first-dim", lambda: slice_((0,), (1,), (0,), shape=(2, 8, 8, 8)), False, "slicing the first dim is not supported on DLA"),
    Case("slice-first-dim-whole", lambda: slice_((0,), (2,), (0,), shape=(2, 8, 8, 8)), True),
    Case("slice-3d", lambda: slice_((0,), (4,), (1,), shape=(1, 8, 8)), False, "slicing a 3-D tensor (DLA slices 4-D tensors only)"),
    Case("slice-dynamic", lambda: slice_((0,), (4,), (1,), dynamic_starts=True), False, "Slice starts must be constant on DLA"),
    Case("split-channels", lambda: layer("Split", [(1, 8, 4, 4), i64(4, 4)], {"axis": 1}, outputs=2), True),
    Case("split-batch", lambda: layer("Split", [(2, 8, 4, 4), i64(1, 1)], {"axis": 0}, outputs=2), False, "splitting the first dim is not supported on DLA"),
    # --- softmax (Orin only) ---
    Case("softmax-accurate-1000", lambda: layer("Softmax", [(1, 1000, 1, 1)], {"axis": 1}), True, versions=(2,)),
    Case("softmax-accurate-8192", lambda: layer("Softmax", [(1, 8192, 1, 1)], {"axis": 1}), True, versions=(2,)),
    Case("softmax-approx-1024", lambda: layer("Softmax", [(1, 1024, 2, 1)], {"axis": 1}), True, "approximate softmax (axis length 1024 <= 1024)", versions=(2,)),
    Case("softmax-approx-1025", lambda: layer("Softmax", [(1, 1025, 2, 1)], {"axis": 1}), False, "softmax axis length 1025 > 1024 with other dims 2x1 not all 1", versions=(2,)),
    Case("softmax-spatial", lambda: layer("Softmax", [(1, 4, 8, 8)], {"axis": -1}), True, "approximate softmax", versions=(2,)),
    Case("softmax-batch-axis", lambda: layer("Softmax", [(2, 4, 1, 1)], {"axis": 0}), False, "softmax over axis 0, a batch dim", versions=(2,)),
    Case("softmax-int8-fp16", lambda: layer("Softmax", [(1, 10, 1, 1)], {"axis": 1}), True, "runs in FP16", precision="int8", versions=(2,)),
    Case("softmax-xavier", lambda: layer("Softmax", [(1, 1000, 1, 1)], {"axis": 1}), False, "Softmax is supported on Orin's DLA only, not on Xavier's DLA", versions=(1,)),
    # --- shuffle (Orin only) ---
    Case("reshape-4d", lambda: shuffle("Reshape", (1, 16, 4, 4), (1, 256, 1, 1)), True, versions=(2,)),
    Case("reshape-batch", lambda: shuffle("Reshape", (2, 16, 4, 4), (1, 32, 4, 4)), False, "changes the batch dim", versions=(2,)),
    Case("reshape-to-2d", lambda: shuffle("Reshape", (1, 16, 4, 4), (1, 256)), False, "Reshape to a 2-D tensor (DLA shuffles 4-D tensors only)", versions=(2,)),
    Case("reshape-from-3d", lambda: shuffle("Reshape", (1, 16, 16), (1, 16, 4, 4)), False, "Reshape of a 3-D tensor", versions=(2,)),
    Case("reshape-next-to-concat", lambda: shuffle("Reshape", (1, 16, 4, 4), (1, 256, 1, 1), then="Concat"), True, "next to Concat: splits the DLA subgraph", versions=(2,)),
    Case("transpose-keeps-batch", lambda: shuffle("Transpose", (1, 4, 8, 8), (0, 2, 3, 1)), True, versions=(2,)),
    Case("transpose-moves-batch", lambda: shuffle("Transpose", (2, 4, 8, 8), (1, 0, 2, 3)), False, "Transpose perm 1,0,2,3 moves the batch dim", versions=(2,)),
    Case("reshape-xavier", lambda: shuffle("Reshape", (1, 16, 4, 4), (1, 256, 1, 1)), False, "Reshape (Shuffle) is supported on Orin's DLA only", versions=(1,)),
    # --- reduce (Orin only) ---
    Case("reducemax-hw", lambda: layer("ReduceMax", [(1, 4, 8, 8), i64(2, 3)], {"keepdims": 1}), True, versions=(2,)),
    Case("reducemax-batch", lambda: layer("ReduceMax", [(2, 4, 8, 8), i64(0)], {"keepdims": 1}), False, "reducing over the batch dim (axes 0)", versions=(2,)),
    Case("reducemax-3d", lambda: layer("ReduceMax", [(4, 8, 8), i64(2)], {"keepdims": 1}), False, "reducing a 3-D tensor", versions=(2,)),
    Case("reducemax-xavier", lambda: layer("ReduceMax", [(1, 4, 8, 8), i64(2, 3)], {"keepdims": 1}), False, "ReduceMax is supported on Orin's DLA only", versions=(1,)),
    Case("reducemean", lambda: layer("ReduceMean", [(1, 4, 8, 8), i64(2, 3)], {"keepdims": 1}), False, "ReduceMean is not supported on DLA (Reduce MAX only"),
    # --- not on the DLA ---
    Case("gather", lambda: layer("Gather", [(1, 4, 8, 8), i64(0)], {"axis": 1}), False, "Gather is not supported on DLA ('No DLA support'"),
    Case("pad", lambda: layer("Pad", [(1, 4, 8, 8), i64(0, 0, 1, 1, 0, 0, 1, 1)]), False, "Pad is not supported on DLA"),
    Case("layernorm", lambda: layer("LayerNormalization", [(1, 4, 8), w(8), w(8)], {"axis": -1}), False, "LayerNormalization is not supported on DLA"),
    Case("instancenorm", lambda: layer("InstanceNormalization", [(1, 4, 8, 8), w(4), w(4)]), False, "InstanceNormalization is not supported on DLA"),
    Case("topk", lambda: layer("TopK", [(1, 10), i64(3)], outputs=2), False, "TopK is not supported on DLA"),
    Case("quantize", lambda: layer("QuantizeLinear", [(1, 4), f32(0.1)]), False, "explicit Q/DQ quantization is not supported on DLA"),
    Case("custom-domain", lambda: _custom(), False, "custom-domain op 'com.acme::Fancy' is not supported on DLA"),
]  # fmt: skip


def _custom() -> tuple[Graph, str]:
    g = Graph("t")
    x = g.add_input("x", (1, 4))
    n = g.add_node("Fancy", [x], 1, name="f", domain="com.acme")
    g.mark_output(n.outputs[0])
    return g, "f"


def _params():
    for case in CASES:
        for version in case.versions:
            yield pytest.param(case, version, id=f"dla{version}-{case.id}")


@pytest.mark.parametrize("case, version", list(_params()))
def test_dla_restriction(case: Case, version: int):
    graph, name = case.build()
    node = graph.node(name)
    env = SupportEnv(tensorrt=case.trt or DEFAULT_TRT[version])
    result = evaluate(dla_table(version), node, graph, case.precision, env)
    verdict = result.verdict(node)
    assert verdict.ok == case.ok, verdict.reason
    if case.reason:
        assert case.reason in verdict.reason
    if not case.ok:
        assert verdict.reason.startswith(f"{node.op} '{name}': ")


def test_every_rule_of_both_tables_is_exercised():
    """Each op with checks in a DLA table appears in at least one case for that version."""
    for version in (1, 2):
        exercised = set()
        for case in CASES:
            if version in case.versions:
                graph, name = case.build()
                exercised.add(graph.node(name).op)
        listed = {op for op, rule in dla_table(version).ops.items() if rule.checks}
        missing = listed - exercised - {"Atan", "Atanh", "Flatten", "Squeeze", "Unsqueeze"}
        assert not missing, f"dla{version}: no case for {sorted(missing)}"


@pytest.mark.parametrize(
    "geo, int8, banks",
    [
        # hand-computed from the pseudocode in dla.md §1.2
        (ConvGeometry(c=64, k=64, r=3, s=3, w=1280, dil_h=1, groups=1), False, (1, 15)),
        (ConvGeometry(c=64, k=64, r=3, s=3, w=1281, dil_h=1, groups=1), False, (1, 16)),
        (ConvGeometry(c=64, k=64, r=3, s=3, w=1281, dil_h=1, groups=1), True, (1, 8)),
        # weights: 512*9*2 = 9216 B -> roundUp 128 = 9216 -> 1 bank; data ceil(32*160/4)=1280 x 3
        (ConvGeometry(c=512, k=256, r=3, s=3, w=160, dil_h=1, groups=1), False, (1, 15)),
        # 2048*5*5*2 = 102400 B -> 4 banks; data ceil(ceil(4096/32)*20/4)=640 x 5 -> 13
        (ConvGeometry(c=2048, k=8, r=5, s=5, w=20, dil_h=1, groups=1), False, (4, 13)),
        # dilation: dilatedKernelH = (3-1)*4+1 = 9; entries ceil(2*100/4)=50 -> ceil(450/256)=2
        (ConvGeometry(c=32, k=8, r=3, s=3, w=100, dil_h=4, groups=1), False, (1, 2)),
    ],
)
def test_cbuf_pseudocode(geo: ConvGeometry, int8: bool, banks: tuple[int, int]):
    # the one formula (dla_sim.formats), which the support check and the DLA compiler share
    precision = "int8" if int8 else "fp16"
    assert cbuf_banks_needed(geo.c, geo.r, geo.s, geo.w, geo.dil_h, precision) == banks


@pytest.mark.parametrize("version", [1, 2])
def test_tables_mark_unconfirmed_rules(version: int):
    table = dla_table(version)
    assert table.ops["Pow"].unconfirmed or version == 1 and table.ops["Pow"].requires
    flagged = [op for op, r in table.ops.items()
               if r.unconfirmed or any(c.unconfirmed for c in r.checks)]  # fmt: skip
    assert "Reshape" in flagged and "Conv" in flagged


@pytest.mark.parametrize("version", [1, 2])
def test_every_imported_op_has_its_own_dla_verdict(version: int):
    """No imported op falls through to the table's generic unlisted reason."""
    from partitioner.onnx_import import SUPPORTED_OPS

    table = dla_table(version)
    assert sorted(SUPPORTED_OPS - {"Upsample"} - set(table.ops)) == []  # Upsample imports as Resize


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize(
    "build, reason",
    [
        (lambda: layer("Mod", [(1, 4, 8, 8), (1, 4, 8, 8)], {"fmod": 1}), "Mod is not a DLA element-wise operation (Sum, Sub, Prod, Max, Min, Div, Pow only)"),
        (lambda: layer("ScatterND", [(4, 3), i64(1, 0).reshape(2, 1), (2, 3)]), "ScatterND is not supported on DLA (DLA-SW: reconstruct Scatter"),
        (lambda: layer("Einsum", [(2, 3, 4), (2, 4, 5)], {"equation": "bij,bjk->bik"}), "Einsum is not in the DLA supported-layer list"),
        (lambda: layer("GridSample", [(1, 2, 4, 4), (1, 3, 3, 2)], {"mode": "linear"}), "GridSample is not in the DLA supported-layer list"),
        (lambda: layer("NonZero", [(2, 3)]), "NonZero's output size depends on its values"),
        (lambda: layer("ReduceL2", [(1, 4, 8, 8), i64(1)]), "ReduceL2 is not supported on DLA (Reduce MAX only)"),
        (lambda: layer("IsInf", [(1, 4, 8, 8)]), "IsInf is not a DLA unary operation and yields bool"),
        (lambda: layer("Sqrt", [(1, 4, 8, 8)]), "Sqrt is not a DLA unary operation"),
        (lambda: layer("GreaterOrEqual", [(1, 4, 8, 8), (1, 4, 8, 8)]), "GreaterOrEqual is not a DLA comparison"),
    ],
)  # fmt: skip
def test_new_ops_leave_the_dla_with_their_reason(version: int, build, reason: str):
    graph, name = build()
    node = graph.node(name)
    env = SupportEnv(tensorrt=DEFAULT_TRT[version])
    verdict = evaluate(dla_table(version), node, graph, "fp16", env).verdict(node)
    assert not verdict.ok and reason in verdict.reason, verdict.reason


# ----- GPU table --------------------------------------------------------------------------------


def test_gpu_table_lists_exactly_what_the_gpu_lowering_runs():
    from gpu_kernels.lowering import lowered_ops

    assert set(gpu_table().ops) == lowered_ops()


def test_every_imported_op_runs_somewhere():
    from devices.cpu import supported_ops
    from partitioner.onnx_import import SUPPORTED_OPS

    assert SUPPORTED_OPS <= set(supported_ops())


@pytest.mark.parametrize(
    "build, precision, ok, reason",
    [
        (lambda: conv(), "fp32", True, ""),
        (lambda: conv(), "int8", True, ""),
        (lambda: layer("HardSwish", [(1, 4, 8, 8)]), "int8", True, "runs in FP16 (INT8 not supported for HardSwish on GPU)"),
        (lambda: layer("Relu", [("batch", 3, 8, 8)]), "fp16", True, ""),
        (lambda: conv(c=1, k=1, kernel=(33, 33)), "fp16", True, ""),
        (lambda: layer("Hardmax", [(1, 4)], {"axis": -1}), "fp16", False, "Hardmax has no GPU kernel in Tandem"),
    ],
)  # fmt: skip
def test_gpu_table(build, precision, ok, reason):
    graph, name = build()
    node = graph.node(name)
    verdict = evaluate(gpu_table(), node, graph, precision).verdict(node)
    assert verdict.ok == ok and reason in verdict.reason


# ----- table validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("device: dla\nlabel: DLA\nops:\n  Conv:\n    precisions: [fp64]\n",
         r"t\.yaml:5: ops\.Conv\.precisions: expected a list of fp32 / fp16 / int8"),
        ("device: dla\nlabel: DLA\nops:\n  Conv:\n    precisions: [fp16]\n    checks:\n      - {check: kernal, max: 3}\n",
         r"t\.yaml:7: ops\.Conv\.checks\[1\]\.check: expected a known check kind"),
        ("device: npu\nlabel: X\nops: {}\n", r"t\.yaml:1: device: expected 'dla' or 'gpu'"),
        ("device: dla\nlabel: DLA\nops:\n  Conv: {}\n", r"t\.yaml:4: op 'Conv' needs 'precisions'"),
        ("device: dla\nlabel: DLA\nops:\n  Conv: {like: Nope}\n", r"t\.yaml:4: ops\.Conv\.like:"),
        ("device: dla\nlabel: DLA\nlimits: {max_batch: -1}\nops: {}\n", r"t\.yaml:3: limits\.max_batch:"),
    ],
)  # fmt: skip
def test_bad_table_names_file_line_field(tmp_path, text: str, message: str):
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_table(path)
