"""Lower the DLA engine operations other than the convolution core to their parameters.

An SDP post-operation (activation, batch-norm, element-wise with a constant or a second tensor)
chained after a convolution or standalone; PDP pooling; Rubik transpose / resize / reshape; BDMA
concat / split / slice. Each function reads one ONNX node and returns the parameters the
loadable stores for it; per-channel constants go to the context's blobs. The convolution core
itself is ``conv_lowering``'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dla_sim.compile_context import CompileContext
from dla_sim.fusion import SDP_BINARY_OPS, variable_inputs
from dla_sim.loadable import EngineOp
from partitioner.ir import Constant, Node, Tensor

_BINARY_KIND = {
    "Add": "add",
    "Sum": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Max": "max",
    "Min": "min",
    "Pow": "pow",
    "Equal": "eq",
    "Greater": "gt",
    "Less": "lt",
}


def post_op(ctx: CompileContext, node: Node, main: Tensor, op: EngineOp) -> dict[str, Any]:
    """The SDP post-operation ``node`` applies to ``main``, what ``op`` has produced so far."""
    a = node.attrs
    prefix = f"{op.name}.{node.name}"
    if node.op == "BatchNormalization":
        vals = [node.constant_input(i) for i in range(1, 5)]
        if any(v is None for v in vals):
            raise ctx.fail(node, "batch-norm parameters must be build-time constants")
        gamma, beta, mean, var = (np.asarray(v, np.float64) for v in vals)  # type: ignore[arg-type]
        scale = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
        shift = beta - mean * scale
        rank = len(main.shape or (1, 1, 1, 1))
        bshape = (1, -1) + (1,) * (rank - 2)
        return {
            "op": "affine",
            "scale": ctx.add_blob(f"{prefix}.scale", scale.reshape(bshape)),
            "shift": ctx.add_blob(f"{prefix}.shift", shift.reshape(bshape)),
            "layer": node.name,
        }
    if node.op == "Relu":
        return {"op": "relu", "layer": node.name}
    if node.op == "Clip":
        lo, hi = node.constant_input(1), node.constant_input(2)
        if (node.input(1) is not None and lo is None) or (node.input(2) is not None and hi is None):
            raise ctx.fail(node, "clip bounds must be build-time constants")
        return {
            "op": "clip",
            "min": -math.inf if lo is None else float(np.asarray(lo)),
            "max": math.inf if hi is None else float(np.asarray(hi)),
            "layer": node.name,
        }
    if node.op == "LeakyRelu":
        return {"op": "leaky", "alpha": float(a.get("alpha", 0.01)), "layer": node.name}
    if node.op == "PRelu":
        slope = node.constant_input(1)
        if slope is None:
            raise ctx.fail(node, "the PReLU slope must be a build-time constant")
        return {
            "op": "prelu",
            "blob": ctx.add_blob(f"{prefix}.slope", np.asarray(slope, np.float64)),
            "layer": node.name,
        }
    if node.op == "HardSigmoid":
        return {
            "op": "hardsigmoid",
            "alpha": float(a.get("alpha", 0.2)),
            "beta": float(a.get("beta", 0.5)),
            "layer": node.name,
        }
    if node.op in ("Sigmoid", "Tanh", "Abs", "Neg", "Identity", "Sin", "Cos", "Atanh", "Atan"):
        return {"op": node.op.lower(), "layer": node.name}
    if node.op in ("Dropout", "Cast"):
        # Inference-time Dropout is the identity; on the DLA a Cast only follows a
        # comparison, to FP16 / INT8, which the output tensor's storage already is.
        return {"op": "identity", "layer": node.name}
    if node.op in SDP_BINARY_OPS:
        ins = [t for t in node.inputs if t is not None]
        if len(ins) == 1:
            return {"op": "identity", "layer": node.name}
        if len(ins) != 2:
            raise ctx.fail(
                node, f"element-wise {node.op} takes 2 inputs on the DLA, got {len(ins)}"
            )
        kind = _BINARY_KIND[node.op]
        reverse = ins[0] is not main
        other = ins[0] if reverse else ins[1]
        if isinstance(other, Constant):
            return {
                "op": "const",
                "kind": kind,
                "reverse": reverse,
                "layer": node.name,
                "blob": ctx.add_blob(f"{prefix}.operand", np.asarray(other.values, np.float64)),
            }
        op.inputs.append(other.name)
        return {
            "op": "eltwise",
            "kind": kind,
            "reverse": reverse,
            "operand": len(op.inputs) - 1,
            "layer": node.name,
        }
    raise ctx.fail(node, "not an SDP operation")


def pool_params(ctx: CompileContext, node: Node) -> dict[str, Any]:
    """PDP pooling parameters, standalone or read on the fly after a convolution."""
    x = variable_inputs(node)[0]
    xs = ctx.shape_of(x, node)
    ys = ctx.shape_of(node.outputs[0], node)
    if len(xs) != 4:
        raise ctx.fail(node, f"pooling runs on 4-D tensors only, got {xs}")
    if node.op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMax"):
        if node.op == "ReduceMax":
            axes = node.constant_input(1)
            axes_l = (
                sorted(int(v) % 4 for v in np.asarray(axes).reshape(-1)) if axes is not None else []
            )
            if axes_l != [2, 3] or not int(node.attrs.get("keepdims", 1)):
                raise ctx.fail(node, "only a keepdims max over H and W runs on the DLA")
        mode = "avg" if node.op == "GlobalAveragePool" else "max"
        return {
            "mode": mode,
            "kernel": xs[2:],
            "strides": [1, 1],
            "pads": [0, 0, 0, 0],
            "count_include_pad": 1,
            "layer": node.name,
        }
    kernel = list(node.attrs.get("kernel_shape", [1, 1]))
    strides = list(node.attrs.get("strides", [1, 1]))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    dil = list(node.attrs.get("dilations", [1, 1]))
    if any(d != 1 for d in dil):
        raise ctx.fail(node, f"pooling dilation {dil} is not supported on the DLA")
    # ceil_mode: extend the end padding so the window count matches the output shape.
    for i in range(2):
        need = (ys[2 + i] - 1) * strides[i] + kernel[i] - (xs[2 + i] + pads[i] + pads[i + 2])
        pads[i + 2] += max(0, need)
    mode = "max" if node.op == "MaxPool" else "avg"
    return {
        "mode": mode,
        "kernel": kernel,
        "strides": strides,
        "pads": pads,
        "count_include_pad": int(node.attrs.get("count_include_pad", 0)),
        "layer": node.name,
        "pads_declared": list(node.attrs.get("pads", [0, 0, 0, 0])),
    }


def rubik_params(ctx: CompileContext, node: Node) -> dict[str, Any]:
    """Rubik parameters: transpose, resize or reshape."""
    x = variable_inputs(node)[0]
    xs = ctx.shape_of(x, node)
    ys = ctx.shape_of(node.outputs[0], node)
    if node.op == "Transpose":
        perm = node.attrs.get("perm") or list(range(len(xs)))[::-1]
        return {"kind": "transpose", "perm": [int(p) for p in perm]}
    if node.op == "Resize":
        mode = node.attrs.get("mode", "nearest")
        ctm = node.attrs.get("coordinate_transformation_mode", "half_pixel")
        nmode = node.attrs.get("nearest_mode", "round_prefer_floor")
        if len(xs) != 4 or xs[:2] != ys[:2]:
            raise ctx.fail(node, "resize must keep N and C and act on 4-D tensors")
        return {
            "kind": "resize",
            "mode": str(mode),
            "coordinate_transformation_mode": str(ctm),
            "nearest_mode": str(nmode),
            "scales": [ys[2] / xs[2], ys[3] / xs[3]],
        }
    return {"kind": "reshape", "shape": ys}


def bdma_params(ctx: CompileContext, node: Node) -> dict[str, Any]:
    """BDMA parameters: concat, split or slice."""
    xs = ctx.shape_of(variable_inputs(node)[0], node)
    rank = len(xs)
    if node.op == "Concat":
        return {"kind": "concat", "axis": int(node.attrs.get("axis", 1)) % rank}
    if node.op == "Split":
        axis = int(node.attrs.get("axis", 0)) % rank
        sizes = [ctx.shape_of(t, node)[axis] for t in node.outputs]
        return {"kind": "split", "axis": axis, "sizes": sizes}
    starts, ends = node.constant_input(1), node.constant_input(2)
    if starts is None or ends is None:
        raise ctx.fail(node, "slice bounds must be build-time constants")
    axes_v = node.constant_input(3)
    steps_v = node.constant_input(4)
    if (node.input(3) is not None and axes_v is None) or (
        node.input(4) is not None and steps_v is None
    ):
        raise ctx.fail(node, "slice axes and steps must be build-time constants")
    starts_l = [int(v) for v in np.asarray(starts).reshape(-1)]
    axes = (
        [int(v) % rank for v in np.asarray(axes_v).reshape(-1)]
        if axes_v is not None
        else list(range(len(starts_l)))
    )
    steps = (
        [int(v) for v in np.asarray(steps_v).reshape(-1)]
        if steps_v is not None
        else [1] * len(axes)
    )
    ends_l = [int(v) for v in np.asarray(ends).reshape(-1)]
    index = []
    for d in range(rank):
        if d in axes:
            i = axes.index(d)
            index.append(list(slice(starts_l[i], ends_l[i], steps[i]).indices(xs[d])))
        else:
            index.append([0, xs[d], 1])
    return {"kind": "slice", "index": index}
