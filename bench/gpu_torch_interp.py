"""A small ONNX -> PyTorch interpreter over Tandem's IR, for benchmarking with the same weights.

``TorchGraph(graph)`` is an ``nn.Module`` whose forward runs each IR node with the matching
torch op (cuDNN convolutions, etc.). onnx2torch is not installed on the benchmark machine, and
this keeps the comparison exact: both sides read the very same ONNX initializers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from partitioner.ir import Graph, Node


class TorchGraph(torch.nn.Module):
    def __init__(self, graph: Graph, dtype: torch.dtype = torch.float16) -> None:
        super().__init__()
        self.graph = graph
        self.dtype = dtype
        self.order = graph.topological_order()
        self.consts: dict[str, Any] = {}
        self._names: dict[str, str] = {}
        for i, t in enumerate(graph.constants()):
            v = t.values
            if v.dtype.kind == "f" and v.size == 1 and v.ndim <= 1:
                self.consts[t.name] = float(v.reshape(-1)[0])  # scalars stay Python floats
            elif v.dtype.kind == "f" and v.size > 0:
                key = f"c{i}"
                self.register_buffer(key, torch.from_numpy(np.array(v, copy=True)).to(dtype))
                self._names[t.name] = key
            else:  # index / shape constants as Python ints: no numpy inside torch.compile
                self.consts[t.name] = v.tolist()
        self.in_names = [t.name for t in graph.inputs]
        self.out_names = [t.name for t in graph.outputs]

    def _get(self, env: dict[str, Any], name: str) -> Any:
        if name in env:
            return env[name]
        if name in self._names:
            return getattr(self, self._names[name])
        return self.consts[name]

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        env: dict[str, Any] = dict(zip(self.in_names, xs))
        for node in self.order:
            ins = [self._get(env, t.name) if t is not None else None for t in node.inputs]
            outs = run_node(node, ins, self.dtype)
            for t, v in zip(node.outputs, outs):
                env[t.name] = v
        return tuple(env[n] for n in self.out_names)


def _ints(v: Any) -> list[int]:
    return [int(x) for x in v] if isinstance(v, list) else [int(v)]


def _shape(node: Node, i: int = 0) -> list[int]:
    return [int(d) for d in node.outputs[i].static_shape()]


def _pad_asym(x: torch.Tensor, pads: list[int], value: float = 0.0
              ) -> tuple[torch.Tensor, list[int]]:
    """Symmetric pads go to the op; asymmetric ones are applied with F.pad first."""
    h0, w0, h1, w1 = pads
    if h0 == h1 and w0 == w1:
        return x, [h0, w0]
    return F.pad(x, (w0, w1, h0, h1), value=value), [0, 0]


# ONNX TensorProto element types a Cast may target; floats become the module's dtype, so a mask
# cast to float does not promote the FP16 activations it meets to FP32
_CAST = {6: torch.int32, 7: torch.int64, 9: torch.bool}


def run_node(node: Node, ins: list[Any], dtype: torch.dtype = torch.float16) -> list[Any]:
    op, a = node.op, node.attrs
    x = ins[0]
    if op == "Conv":
        x, pad = _pad_asym(x, list(a.get("pads", [0, 0, 0, 0])))
        return [F.conv2d(x, ins[1], ins[2] if len(ins) > 2 else None, a.get("strides", [1, 1]),
                         pad, a.get("dilations", [1, 1]), a.get("group", 1))]
    if op == "ConvTranspose":
        pads = list(a.get("pads", [0, 0, 0, 0]))
        y = F.conv_transpose2d(x, ins[1], ins[2] if len(ins) > 2 else None,
                               a.get("strides", [1, 1]), [pads[0], pads[1]],
                               a.get("output_padding", [0, 0]), a.get("group", 1),
                               a.get("dilations", [1, 1]))
        return [y]
    if op in ("MaxPool", "AveragePool"):
        is_max = op == "MaxPool"
        x, pad = _pad_asym(x, list(a.get("pads", [0, 0, 0, 0])), -65504.0 if is_max else 0.0)
        if is_max:
            return [F.max_pool2d(x, a["kernel_shape"], a.get("strides", [1, 1]), pad,
                                 a.get("dilations", [1, 1]), bool(a.get("ceil_mode", 0)))]
        return [F.avg_pool2d(x, a["kernel_shape"], a.get("strides", [1, 1]), pad,
                             bool(a.get("ceil_mode", 0)), bool(a.get("count_include_pad", 0)))]
    if op == "GlobalAveragePool":
        return [x.mean((2, 3), keepdim=True)]
    if op in ("Flatten", "Reshape", "Squeeze", "Unsqueeze"):
        return [x.reshape(_shape(node))]
    if op == "Cast" and isinstance(x, torch.Tensor):
        return [x.to(_CAST.get(a["to"], dtype))]
    if op in ("Identity", "Dropout", "Cast"):
        return [x]
    if op == "Expand":
        return [x.expand(_shape(node))]
    if op == "Pad" and a.get("mode", "constant") == "constant":
        pads, value = _ints(ins[1]), ins[2] if len(ins) > 2 and ins[2] is not None else 0.0
        half = len(pads) // 2  # ONNX: all begins, then all ends; F.pad: last axis first
        flat = [p for i in reversed(range(half)) for p in (pads[i], pads[half + i])]
        return [F.pad(x, flat, value=float(value))]
    if op == "Where":  # scalar branches in the module's dtype: no promotion of what meets them
        a_, b_ = (torch.tensor(v, dtype=dtype, device=x.device) if isinstance(v, float) else v
                  for v in ins[1:3])  # fmt: skip
        return [torch.where(x, a_, b_)]
    if op == "Gemm":
        A = x.t() if a.get("transA", 0) else x
        B = ins[1].t() if a.get("transB", 0) else ins[1]
        y = a.get("alpha", 1.0) * (A @ B)
        if len(ins) > 2 and ins[2] is not None:
            y = y + a.get("beta", 1.0) * ins[2]
        return [y]
    if op == "MatMul":
        return [torch.matmul(x, ins[1])]
    if op == "Transpose":
        return [x.permute(*a.get("perm", list(range(x.dim()))[::-1]))]
    if op == "Split":
        axis = a.get("axis", 0)
        sizes = [int(t.static_shape()[axis]) for t in node.outputs]
        return list(torch.split(x, sizes, axis))
    if op == "Concat":
        return [torch.cat([t for t in ins if t is not None], a["axis"])]
    if op == "Slice":
        st, en = _ints(ins[1]), _ints(ins[2])
        axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else range(len(st))
        steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(st)
        idx = [slice(None)] * x.dim()
        for ax, s, e, sp in zip(axes, st, en, steps):
            idx[int(ax)] = slice(int(s), int(min(e, 2**62)), int(sp))
        return [x[tuple(idx)]]
    if op == "Gather":
        axis = a.get("axis", 0)
        if isinstance(ins[1], torch.Tensor) or np.ndim(ins[1]) > 1:
            # run-time indices (token ids into an embedding), or constant ones of any rank
            idx = torch.as_tensor(ins[1], device=x.device)
            flat = torch.index_select(x, axis, idx.reshape(-1))
            return [flat.reshape(*x.shape[:axis], *idx.shape, *x.shape[axis + 1 :])]
        if not isinstance(ins[1], list):
            return [x.select(axis, int(ins[1]))]
        return [torch.index_select(x, axis, torch.tensor(ins[1], device=x.device))]
    if op == "Resize":
        out = _shape(node)[2:]
        mode = a.get("mode", "nearest")
        if mode == "nearest":
            return [F.interpolate(x, size=out, mode="nearest")]
        ac = a.get("coordinate_transformation_mode", "half_pixel") == "align_corners"
        return [F.interpolate(x, size=out, mode="bilinear", align_corners=ac)]
    if op == "Softmax":
        return [torch.softmax(x, a.get("axis", -1))]
    if op == "LayerNormalization":
        axis = a.get("axis", -1) % x.dim()
        return [F.layer_norm(x, x.shape[axis:], ins[1], ins[2] if len(ins) > 2 else None,
                             a.get("epsilon", 1e-5))]
    if op == "BatchNormalization":
        return [F.batch_norm(x, ins[3], ins[4], ins[1], ins[2], False, 0.0,
                             a.get("epsilon", 1e-5))]
    if op == "ReduceMean":
        axes = _ints(ins[1])
        return [x.mean(axes, keepdim=bool(a.get("keepdims", 1)))]
    binary = {"Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div,
              "Pow": torch.pow, "Max": torch.maximum, "Min": torch.minimum,
              "And": torch.logical_and, "Or": torch.logical_or, "Equal": torch.eq,
              "Less": torch.lt, "Greater": torch.gt}
    if op in binary:
        y = ins[1]
        if isinstance(x, list):  # an integer / boolean constant (kept as a list, see __init__)
            x = torch.as_tensor(x, device=y.device)
        if isinstance(y, list):
            y = torch.as_tensor(y, device=x.device)
        return [binary[op](x, y)]
    if op == "Clip":
        lo = ins[1] if len(ins) > 1 else None
        hi = ins[2] if len(ins) > 2 else None
        return [torch.clamp(x, lo, hi)]
    if op == "HardSigmoid":
        return [torch.clamp(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0, 1)]
    if op == "LeakyRelu":
        return [F.leaky_relu(x, a.get("alpha", 0.01))]
    unary = {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
             "HardSwish": F.hardswish, "Erf": torch.erf, "Exp": torch.exp, "Sqrt": torch.sqrt,
             "Neg": torch.neg, "Abs": torch.abs, "Gelu": F.gelu, "IsNaN": torch.isnan,
             "Not": torch.logical_not}
    if op in unary:
        return [unary[op](x)]
    raise NotImplementedError(f"torch interpreter: op {op} ({node.name})")
