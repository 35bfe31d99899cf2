"""Small INT8 networks for the GPU's INT8 path, and the reference they must match.

The reference is the FP32 numpy backend run layer by layer with the quantisation the GPU applies
inserted where the lowering put it ("fake quantisation"): the input of every INT8 convolution is
quantised with its scale, every weight of one per output channel (max-abs / 127), and every
tensor the lowering stores as INT8 is rounded to its grid. What is left between the two is the
GPU's FP16 staging of (accumulator + bias), i.e. FP16 rounding — so the comparison checks the
integer arithmetic itself, not just "close to FP32".
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from devices.cpu import CpuRunner, evaluate_node
from gpu_kernels.lowering import Lowering, Value
from gpu_kernels.tactics import heuristic
from partitioner.ir import Constant, Graph


def _conv(name: str, x: str, cin: int, cout: int, k: int, rng: np.random.Generator,
          stride: int = 1, group: int = 1, relu: bool = True) -> tuple[list, list, str]:
    wt = (rng.standard_normal((cout, cin // group, k, k)) * (1.5 / np.sqrt(cin // group * k * k))
          ).astype(np.float32)
    b = (rng.standard_normal(cout) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(wt, f"{name}.w"), numpy_helper.from_array(b, f"{name}.b")]
    out = f"{name}.out"
    nodes = [helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name,
                              kernel_shape=[k, k], strides=[stride, stride],
                              pads=[k // 2] * 4, group=group)]
    if relu:
        nodes.append(helper.make_node("Relu", [out], [f"{name}.act"], name=f"{name}.relu"))
        out = f"{name}.act"
    return nodes, inits, out


def _model(name: str, shape: tuple[int, ...], nodes: list, inits: list, out: str
           ) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name,
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def models() -> dict[str, onnx.ModelProto]:
    """name -> model; each exercises one INT8 path of the lowering / kernels."""
    rng = np.random.default_rng(7)
    out: dict[str, onnx.ModelProto] = {}

    # INT8 -> INT8 chain; odd sizes; last conv has K = 13 (tail of a 16-byte output chunk)
    n1, i1, a = _conv("c1", "x", 16, 32, 3, rng)
    n2, i2, b = _conv("c2", a, 32, 13, 1, rng, relu=False)
    out["chain"] = _model("chain", (1, 16, 13, 11), n1 + n2, i1 + i2, b)

    # residual block: the block input is INT8 and read by a conv and (fused) the residual Add
    n0, i0, h = _conv("c0", "x", 32, 32, 3, rng)
    n1, i1, a = _conv("c1", h, 32, 32, 3, rng)
    n2, i2, b = _conv("c2", a, 32, 32, 3, rng, relu=False)
    add = [helper.make_node("Add", [b, h], ["sum"], name="add"),
           helper.make_node("Relu", ["sum"], ["blk"], name="blk.relu")]
    n3, i3, c = _conv("c3", "blk", 32, 48, 3, rng, stride=2, relu=False)
    out["resblock"] = _model("resblock", (2, 32, 15, 15), n0 + n1 + n2 + add + n3,
                             i0 + i1 + i2 + i3, c)

    # depthwise (FP16 kernel) writing INT8 for the next pointwise conv
    n1, i1, a = _conv("pw1", "x", 32, 32, 1, rng)
    n2, i2, b = _conv("dw", a, 32, 32, 3, rng, group=32)
    n3, i3, c = _conv("pw2", b, 32, 24, 1, rng, relu=False)
    out["depthwise"] = _model("depthwise", (1, 32, 14, 14), n1 + n2 + n3, i1 + i2 + i3, c)

    # long reduction at 7x7: split-K with the last-CTA reduction in the INT8 kernel
    n1, i1, a = _conv("big", "x", 256, 512, 3, rng, relu=False)
    out["splitk"] = _model("splitk", (1, 256, 7, 7), n1, i1, a)

    # two INT8 convs writing their channel slices of one INT8 Concat, read by a third
    n1, i1, a = _conv("ca", "x", 16, 16, 3, rng)
    n2, i2, b = _conv("cb", "x", 16, 32, 1, rng)
    cat = [helper.make_node("Concat", [a, b], ["cat"], name="cat", axis=1)]
    n3, i3, c = _conv("cc", "cat", 48, 16, 3, rng, relu=False)
    out["concat"] = _model("concat", (1, 16, 10, 10), n1 + n2 + cat + n3, i1 + i2 + i3, c)

    # RGB stem (FP16 tensor cores, channels padded) requantising into an INT8 conv
    n1, i1, a = _conv("stem", "x", 3, 16, 7, rng, stride=2)
    n2, i2, b = _conv("c2", a, 16, 16, 3, rng, relu=False)
    out["stem"] = _model("stem", (1, 3, 17, 17), n1 + n2, i1 + i2, b)
    return out


def minmax_scales(graph: Graph, batches: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per-tensor scale = max|value| / 127 over ``batches`` (the FP32 reference's tensors)."""
    amax: dict[str, float] = {}
    with CpuRunner(graph, capture=True) as runner:
        for feeds in batches:
            outs = runner.infer(feeds)
            for name, v in {**feeds, **runner.captured, **outs}.items():
                if np.issubdtype(v.dtype, np.floating):
                    amax[name] = max(amax.get(name, 0.0), float(np.max(np.abs(v))))
    return {k: v / 127.0 for k, v in amax.items() if v > 0}


def lowering(graph: Graph, scales: dict[str, float], arch: int = 90) -> Lowering:
    """The INT8 lowering of ``graph`` (run), to inspect which values it keeps as INT8."""
    low = Lowering(graph, "int8", arch, lambda p: heuristic(p, arch, 132), scales)
    low.run()
    return low


def int8_values(low: Lowering) -> dict[str, Value]:
    return {name: v for name, v in low.values.items() if v.dtype == "i8"}


def fake_quant(x: np.ndarray, scale: float) -> np.ndarray:
    """Round to the INT8 grid: round half to even, saturate to [-128, 127]."""
    return (np.clip(np.rint(x / scale), -128, 127) * scale).astype(np.float32)


def quantised_weight(w: np.ndarray) -> np.ndarray:
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    s = np.where(amax > 0, amax / 127.0, 1.0).reshape(-1, *([1] * (w.ndim - 1)))
    return (np.clip(np.rint(w / s), -127, 127) * s).astype(np.float32)


def fake_quant_reference(graph: Graph, feeds: dict[str, np.ndarray], low: Lowering
                         ) -> dict[str, np.ndarray]:
    """The FP32 reference with the GPU's quantisation points (see the module docstring)."""
    stored = int8_values(low)
    env: dict[str, np.ndarray] = dict(feeds)
    for node in graph.topological_order():
        ins = [None if t is None else (t.values if isinstance(t, Constant) else env[t.name])
               for t in node.inputs]
        s_in = low.int8.conv_scale(node)
        if s_in is not None:
            x = node.inputs[0]
            assert x is not None
            scale = stored[x.name].scale if x.name in stored else s_in
            ins[0] = fake_quant(ins[0], scale)
            ins[1] = quantised_weight(ins[1])
        for t, v in zip(node.outputs, evaluate_node(node, ins)):
            env[t.name] = fake_quant(v, stored[t.name].scale) if t.name in stored else v
    return {t.name: env[t.name] for t in graph.outputs}


def qdq_model(zero_point_dtype: int = TensorProto.INT8, scale_shape: tuple[int, ...] = ()
              ) -> onnx.ModelProto:
    """x -> QuantizeLinear -> DequantizeLinear -> Conv -> y, as a QAT export has it."""
    rng = np.random.default_rng(3)
    scale = np.full(scale_shape, 0.02, np.float32)
    zp = np.zeros(scale_shape, np.int8 if zero_point_dtype == TensorProto.INT8 else np.uint8)
    inits = [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(zp, "zp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"], name="dq")]
    n1, i1, a = _conv("c1", "xd", 16, 8, 3, rng, relu=False)
    return _model("qdq", (1, 16, 9, 9), nodes + n1, inits + i1, a)
