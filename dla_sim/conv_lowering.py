"""Lower a DLA convolution-core operation: convolution, deconvolution, fully-connected.

``lower_conv`` reads the layer's geometry and keeps its weights and bias in float64;
``finish_conv``, once every tensor's storage is known, folds the per-channel linear
post-operations that follow (batch-norm, multiply / add by a per-channel constant) into them as
TensorRT does, quantises them (INT8: per output channel, symmetric, to [-127, 127]; biases to
INT32 in the accumulator's scale) or casts them to FP16, and checks the layer fits the
convolution buffer (CBUF).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dla_sim import formats
from dla_sim.compile_context import CompileContext, DlaCompileError
from dla_sim.fusion import variable_inputs
from dla_sim.loadable import EngineOp
from dla_sim.numerics import quantize_weights_per_channel, round_half_away
from partitioner.ir import Node


def lower_conv(ctx: CompileContext, op: EngineOp, node: Node) -> None:
    """Fill ``op``'s convolution-core parameters from ``node``; keep its float weights for later."""
    x = variable_inputs(node)[0]
    xs = ctx.shape_of(x, node)
    out_shape = ctx.shape_of(node.outputs[0], node)
    w = node.constant_input(1)
    if w is None:
        raise ctx.fail(node, "weights must be a build-time constant")
    p: dict[str, Any] = {}
    if node.op == "Conv":
        if w.ndim != 4:
            raise ctx.fail(node, f"only 2-D convolution runs on the DLA (weights {w.shape})")
        p.update(
            kind="conv",
            kernel=list(w.shape[2:]),
            strides=list(node.attrs.get("strides", [1, 1])),
            pads=list(node.attrs.get("pads", [0, 0, 0, 0])),
            dilations=list(node.attrs.get("dilations", [1, 1])),
            group=int(node.attrs.get("group", 1)),
            channel_axis=1,
        )
        weights, bias_in = w, node.constant_input(2)
        k_out = w.shape[0]
    elif node.op == "ConvTranspose":
        if w.ndim != 4:
            raise ctx.fail(node, f"only 2-D deconvolution runs on the DLA (weights {w.shape})")
        group = int(node.attrs.get("group", 1))
        if group != 1:
            raise ctx.fail(node, f"deconvolution groups must be 1, got {group}")
        # Store as (K, C, R, S) so per-output-channel scales run along axis 0 everywhere.
        weights = w.transpose(1, 0, 2, 3)
        bias_in = node.constant_input(2)
        k_out = weights.shape[0]
        p.update(
            kind="deconv",
            kernel=list(w.shape[2:]),
            strides=list(node.attrs.get("strides", [1, 1])),
            pads=list(node.attrs.get("pads", [0, 0, 0, 0])),
            dilations=list(node.attrs.get("dilations", [1, 1])),
            output_padding=list(node.attrs.get("output_padding", [0, 0])),
            group=1,
            channel_axis=1,
        )
    else:  # Gemm / MatMul with a constant second input: FullyConnected
        if node.op == "Gemm":
            if int(node.attrs.get("transA", 0)):
                raise ctx.fail(node, "Gemm with transA=1 is not a fully-connected layer")
            b = w.T if int(node.attrs.get("transB", 0)) else w
            weights = b.T * float(node.attrs.get("alpha", 1.0))  # (K, Cin)
            c = node.constant_input(2)
            if node.input(2) is not None and c is None:
                raise ctx.fail(node, "Gemm's C input must be a build-time constant")
            bias_in = (
                None
                if c is None
                else np.broadcast_to(
                    np.asarray(c, np.float64) * float(node.attrs.get("beta", 1.0)),
                    (b.shape[1],),
                )
            )
        else:
            if w.ndim != 2:
                raise ctx.fail(node, f"MatMul weights must be 2-D, got {w.shape}")
            weights, bias_in = w.T, None
        k_out = weights.shape[0]
        p.update(
            kind="fc",
            kernel=[1, 1],
            strides=[1, 1],
            pads=[0, 0, 0, 0],
            dilations=[1, 1],
            group=1,
            channel_axis=len(out_shape) - 1,
        )
    bias = (
        np.zeros(k_out) if bias_in is None else np.asarray(bias_in, np.float64).reshape(-1).copy()
    )
    c_in = xs[1] if p["kind"] != "fc" else xs[-1]
    p.update(in_channels=int(c_in), out_channels=int(k_out))
    op.params.update(p)
    # Weights stay float64 here; `finish_conv` folds per-channel constants and quantises them.
    op.params["_weights"] = weights
    op.params["_bias"] = bias


def finish_conv(ctx: CompileContext, op: EngineOp) -> None:
    """Fold per-channel constants into conv weights; quantise; attach blobs."""
    weights: np.ndarray = op.params.pop("_weights")
    bias: np.ndarray = op.params.pop("_bias")
    post = op.params["post"]
    k = weights.shape[0]
    out_rank = len(ctx.tensors[op.outputs[0]].shape) if op.outputs[0] in ctx.tensors else 4
    folded = []
    while post:
        vec = _channel_affine(ctx, post[0], k, op.params["channel_axis"], out_rank)
        if vec is None:
            break
        s, t = vec
        if not ctx.metadata_only:
            weights = np.asarray(weights, np.float64) * s.reshape((-1,) + (1,) * (weights.ndim - 1))
            bias = bias * s + t
        folded.append(post.pop(0)["layer"])
    op.params["folded"] = folded
    x_desc = ctx.tensors[op.inputs[0]]
    conv_precision = "int8" if x_desc.dtype == "int8" else "fp16"
    if ctx.layer_precisions.get(op.layers[0], conv_precision) == "fp16":
        conv_precision = "fp16"
    op.params["precision"] = conv_precision
    # Bytes the DLA fetches: weights (1 or 2 B) + bias (int32 / fp16) + per-channel scale.
    elem = 1 if conv_precision == "int8" else 2
    op.params["weight_bytes"] = int(weights.size * elem + k * (8 if elem == 1 else 2))
    prefix = op.name
    if ctx.metadata_only:
        op.blobs = {}
    elif conv_precision == "int8":
        q, wscale = quantize_weights_per_channel(np.asarray(weights, np.float64))
        acc_scale = float(x_desc.scale) * wscale  # type: ignore[arg-type]
        bias_q = np.clip(round_half_away(bias / acc_scale), -(2**31), 2**31 - 1)
        op.blobs = {
            "weights": ctx.add_blob(f"{prefix}.weights", q),
            "wscale": ctx.add_blob(f"{prefix}.wscale", wscale.astype(np.float64)),
            "bias": ctx.add_blob(f"{prefix}.bias", bias_q.astype(np.int32)),
        }
    else:
        op.blobs = {
            "weights": ctx.add_blob(f"{prefix}.weights", np.asarray(weights).astype(np.float16)),
            "bias": ctx.add_blob(f"{prefix}.bias", bias.astype(np.float16)),
        }
    _check_cbuf(ctx, op, conv_precision)


def _channel_affine(
    ctx: CompileContext, post: dict[str, Any], k: int, channel_axis: int, rank: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(scale, shift) per output channel if ``post`` is linear per channel, else None."""
    if post["op"] == "affine":
        if ctx.blobs[post["scale"]].size != k or ctx.blobs[post["shift"]].size != k:
            return None
        s = ctx.blobs.pop(post["scale"]).reshape(-1)
        t = ctx.blobs.pop(post["shift"]).reshape(-1)
        return s, t
    if post["op"] != "const" or post["kind"] not in ("add", "sub", "mul", "div"):
        return None
    c = np.asarray(ctx.blobs[post["blob"]], np.float64)
    vec = _per_channel(c, k, channel_axis, rank)
    if vec is None:
        return None
    kind, rev = post["kind"], post["reverse"]
    one, zero = np.ones(k), np.zeros(k)
    if kind == "add":
        result = (one, vec)
    elif kind == "sub":
        result = (-one, vec) if rev else (one, -vec)
    elif kind == "mul":
        result = (vec, zero)
    elif not rev and np.all(vec != 0):
        result = (1.0 / vec, zero)
    else:
        return None
    del ctx.blobs[post["blob"]]
    return result


def _check_cbuf(ctx: CompileContext, op: EngineOp, precision: str) -> None:
    p = op.params
    x = ctx.tensors[op.inputs[0]]
    n, c, h, w = formats.as_nchw(tuple(x.shape))
    if p["kind"] == "fc":
        c, w = p["in_channels"], 1
    cg = c // max(1, p["group"])
    wt, data = formats.cbuf_banks_needed(
        cg, p["kernel"][0], p["kernel"][1], w, p["dilations"][0], precision
    )
    p["cbuf_banks"] = wt + data
    if wt + data > ctx.cfg.cbuf_banks and not ctx.metadata_only:
        raise DlaCompileError(
            f"loadable '{ctx.label}': layer '{op.layers[0]}' needs {wt} weight + {data} data "
            f"CBUF banks > {ctx.cfg.cbuf_banks} (input {c}x{h}x{w}, kernel "
            f"{p['kernel'][0]}x{p['kernel'][1]}); reduce the input or run it on the GPU"
        )


def _per_channel(c: np.ndarray, k: int, channel_axis: int, rank: int) -> np.ndarray | None:
    """``c`` as a length-k vector if it broadcasts only along the channel axis (or is scalar)."""
    if c.size == 1:
        return np.full(k, float(c.reshape(-1)[0]))
    if c.ndim > rank:
        return None
    full = (1,) * (rank - c.ndim) + c.shape
    axis = channel_axis % rank
    if full[axis] != k or any(d != 1 for i, d in enumerate(full) if i != axis):
        return None
    return c.reshape(-1).astype(np.float64)
