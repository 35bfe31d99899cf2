"""Convolutions: Conv (tensor-core implicit GEMM, SIMT tiles, direct and depthwise kernels; INT8
on tensor cores) and ConvTranspose, with their epilogues.

Fusions done here: Conv + bias (+ BatchNorm, folded earlier by the importer's passes) +
activation (incl. x*sigmoid(x) = SiLU) + residual Add (+ activation after the Add). A strided
RGB stem runs as space-to-depth plus a stride-1 convolution (:func:`_space_to_depth`). A
depthwise convolution feeding a squeeze-and-excitation block also sums its output per channel
(the block's squeeze) and the SE kernel follows it (:mod:`.se`).

INT8 (see :mod:`~gpu_kernels.lowering.int8` for when): weights are quantised per output channel
(symmetric, max-abs / 127), the epilogue dequantises (input scale x weight scale[k]), adds bias /
residual / activation in FP32 and writes INT8 requantised by the output's scale when every
reader takes INT8, else FP16.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import ACT, DTYPE_BYTES, Launch, Ref, Value, grid1d
from gpu_kernels.lowering.registry import constant, register
from gpu_kernels.lowering.se import (
    THREADS,
    Excitation,
    lower_se_scale,
    pool_smem,
    pool_tiling,
    se_workspace,
)
from gpu_kernels.tactics import DIRECT, ConvProblem, mma_eligible
from partitioner.capability import Verdict
from partitioner.ir import Node, Tensor
from partitioner.passes.fusion import Activation, SqueezeExcitation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

# Output pixels of a row a depthwise thread computes (depthwise.cuh): DW_STRIP (as there) where
# the grid fills the GPU, else 1 (the *_px1_* kernels); dw_strip decides.
DW_STRIP = 4
# CTAs an SM that make one full wave of the strip kernels: the 8-channel ones take 106-128
# registers a thread, so an SM holds 2 of their 256-thread CTAs.
DW_FILL_CTAS = 2


def dw_strip(p: ConvProblem, v: int, sm_count: int) -> int:
    """Output pixels a thread of depthwise ``p`` (conv_dw, se_dw_pool) computes, ``v`` channels
    a thread, on ``sm_count`` SMs. A strip of DW_STRIP loads each weight tap and shared input
    column once for its pixels (the MobileNets 7-12 % faster at batch 32 on the H200) but
    divides the threads by DW_STRIP. Where the grid of a strip a thread (256 threads a CTA;
    se_dw_pool's is at most about as large) is less than one full wave, DW_FILL_CTAS CTAs on
    every SM, SMs sit idle or half-empty and the time is a thread's longer chain of loads:
    there a pixel a thread spreads the same outputs over 4x the threads and SMs. (At batch 1
    MobileNetV2's largest depthwise layer is 49 CTAs of strips for the H200's 132 SMs: strips
    made the MobileNets 3-7 % slower there.)"""
    ctas = math.ceil(p.n * p.p * math.ceil(p.q / DW_STRIP) * (p.k // v) / 256)
    return DW_STRIP if ctas >= DW_FILL_CTAS * sm_count else 1


def _dw_vector(lw: Lowering, p: ConvProblem, x: Value, y: Value) -> int:
    """Channels a depthwise thread takes: 8 (16-byte accesses) where FP16 and C, every pixel
    stride and both base offsets are multiples of 8, else 1."""
    return 8 if lw.dt == "f16" and all(
        c % 8 == 0 for c in (p.c, x.cs or p.c, y.cs or p.k, x.offset, y.offset)) else 1


def _dw_kernel(family: str, strip: int, v: int) -> str:
    """``conv_dw`` / ``se_dw_pool`` entry point for a strip and vector, less the type suffix."""
    return f"{family}{'_px1' if strip == 1 else ''}{'_x8' if v == 8 else ''}"


def groups_per_bundle(groups: int, c_per_group: int, k_per_group: int) -> int:
    """How many groups of a grouped convolution the tensor-core kernel runs as one dense
    convolution (a bundle, conv_mma.cu), or 0 where it cannot. ResNeXt's and RegNet's groups
    read 4-64 channels each: too few for 16-byte channel chunks, so the SIMT kernel ran them
    (ResNeXt-50 at batch 1 on the H200: its 16 grouped layers 0.44 of 0.81 ms). A bundle of m
    groups reads m * c_per_group channels (a multiple of 8) and writes m * k_per_group (a
    multiple of 32: the narrowest tiles the cost model prices are 32 wide), with weights zero
    outside each output channel's own group: m times the multiply-adds, on tensor cores. The
    smallest such m that divides ``groups``, at most 16."""
    for m in range(1, min(groups, 16) + 1):
        if groups % m == 0 and m * c_per_group % 8 == 0 and m * k_per_group % 32 == 0:
            return m
    return 0


def _bundle_weights(wk: np.ndarray, groups: int, m: int) -> np.ndarray:
    """Grouped weights [K][R][S][C/g] as a bundle's dense [K][R][S][m * C/g]: output channel k
    (group gi) keeps its taps at input channels (gi % m) * C/g ..., zeros elsewhere."""
    K, R, S, cg = wk.shape
    out = np.zeros((K, R, S, m * cg), wk.dtype)
    for k in range(K):
        j = k // (K // groups) % m
        out[k, :, :, j * cg:(j + 1) * cg] = wk[k]
    return out


def _weights_refusal(node: Node) -> str | None:
    w = constant(node, 1)
    if w is None or w.ndim not in (3, 4):
        return "only 1-D and 2-D convolutions with constant weights run on the GPU"
    if node.input(2) is not None and constant(node, 2) is None:
        return "run-time bias is not supported"
    return None


def _conv_ok(node: Node, arch: int, precision: str) -> Verdict:
    why = _weights_refusal(node)
    return Verdict.no(why) if why else Verdict.yes()


def _as_2d(lw: Lowering, node: Node, x: Value) -> tuple[Value, np.ndarray, list[int],
                                                          list[int], list[int]]:
    """A 1-D convolution (wav2vec2's and Whisper's front ends) as a 2-D one of height 1:
    x (N, C, L) seen as (N, C, 1, L), weights (K, C/g, R) as (K, C/g, 1, R); returns x, the
    weights, strides, pads (top, left, bottom, right) and dilations."""
    w = constant(node, 1)
    assert w is not None  # _conv_ok made sure
    st = list(node.attrs.get("strides", [1] * (w.ndim - 2)))
    pads = list(node.attrs.get("pads", [0] * 2 * (w.ndim - 2)))
    dil = list(node.attrs.get("dilations", [1] * (w.ndim - 2)))
    if w.ndim == 4:
        return x, w, st, pads, dil
    x = lw.ensure(x, "plain", None, node.name)
    x4 = Value(x.buf, (x.shape[0], x.shape[1], 1, x.shape[2]), "plain", x.dtype, x.offset,
               scale=x.scale)
    return x4, w[:, :, None, :], [1, st[0]], [0, pads[0], 0, pads[1]], [1, dil[0]]


@register("Conv", supports=_conv_ok)
def lower_conv(lw: Lowering, node: Node) -> None:
    s_in = lw.int8.conv_scale(node)
    x = lw.value(node.input(0), node, raw=s_in is not None)
    b = constant(node, 2)
    x, w, st, pads, dil = _as_2d(lw, node, x)
    groups = int(node.attrs.get("group", 1))
    K, Cg, R, S = (int(d) for d in w.shape)
    N, C, H, W = x.shape
    out_shape = lw.out_shape(node)
    one_d = len(out_shape) == 3
    if one_d:
        out_shape = (out_shape[0], out_shape[1], 1, out_shape[2])
    P, Q = out_shape[2], out_shape[3]
    if node.name in lw.pad_fold:  # a zero Pad before it: x is its input, unpadded
        pads[0] += lw.pad_fold[node.name][0]
        pads[1] += lw.pad_fold[node.name][1]
    # fusions: activation, residual add, activation after the add
    ep = lw.fuse_epilogue(node, out_shape)
    act, res, res_after, t = ep.act, ep.residual, ep.res_after, ep.out
    # weights: OIHW -> [K][R][S][C/g]
    wk = np.ascontiguousarray(np.transpose(w, (0, 2, 3, 1)))
    if s_in is not None:
        _conv_int8(lw, node, s_in, x, wk, b, res, t, out_shape, act, res_after,
                   (st[0], st[1]), (pads[0], pads[1]), (dil[0], dil[1]))
        return  # (1-D convolutions never run INT8: conv_scale takes 4-D weights only)
    if groups == C == K and Cg == 1:
        wk = np.ascontiguousarray(np.transpose(w[:, 0], (1, 2, 0)))  # depthwise: [R][S][C]
        xin = lw.conv_input(x, node.name)
    elif groups == 1 and C % 8 and lw.dt == "f16" and lw.arch >= 80:
        s = st[0]
        if s > 1 and st[1] == s and list(dil) == [1, 1] and C * s * s <= 16 \
                and x.layout == "plain" and x.custom is None and x.dtype in ("f32", "f16"):
            # an RGB stem with stride s: as a stride-1 convolution over C*s*s channels it
            # has fewer zero taps than with C padded to 8, and needs no memset
            xin, wk = _space_to_depth(lw, node.name, x, w, s, pads, P, Q)
            _, C, H, W = xin.shape
            R, S, st, pads = wk.shape[1], wk.shape[2], [1, 1], [0, 0, 0, 0]
        else:  # zero-pad channels to a multiple of 8 so tensor cores take it
            xin = _padded_nhwc(lw, x, -(-C // 8) * 8, node.name)
            C = xin.cs
            wk = np.concatenate([wk, np.zeros((K, R, S, C - wk.shape[3]), wk.dtype)],
                                axis=3)
    else:
        xin = lw.conv_input(x, node.name)
    bundle = 0
    m = groups_per_bundle(groups, Cg, K // groups) \
        if groups > 1 and not groups == C == K and lw.dt == "f16" and lw.arch >= 80 else 0
    if m:  # tensor cores, m groups at a time (conv_mma.cu's bundles)
        wk, C, bundle, groups = _bundle_weights(wk, groups, m), m * Cg, m * K // groups, 1
    rv = lw.conv_input(lw.value(res, node, raw=True), node.name) if res else None
    problem = ConvProblem(N, H, W, C, K, P, Q, R, S, (st[0], st[1]), (pads[0], pads[1]),
                          (dil[0], dil[1]), groups,
                          "float16" if lw.dt == "f16" else "float32", bundle)
    # the tensor-core kernel and the FP16 depthwise kernel can requantise to INT8
    depthwise = groups == C == K and Cg == 1
    y = lw.out_nhwc(t, out_shape, int8_ok=mma_eligible(problem, lw.arch)
                      or (depthwise and lw.dt == "f16"))
    # the squeeze of the SE block it feeds in its epilogue, then the SE (its input is read by
    # the pool and the Mul, so it is INT8 only as part of an INT8 Concat: then the plain path)
    se = lw.fuse_se_pool(node, ep) if depthwise and not one_d and y.dtype == lw.dt else None
    if se is not None:
        ex = _depthwise_pooled(lw, node.name, problem, xin, lw.weight(wk, lw.dt),
                               lw.weight(b.astype(np.float32)) if b is not None else None,
                               rv, y, act, res_after, se)
        lw.values[t.name] = y
        lower_se_scale(lw, se, y, ex)
        return
    conv_launch(lw, node.name, problem, xin, lw.weight(wk, lw.dt),
                     lw.weight(b.astype(np.float32)) if b is not None else None,
                     rv, y, act, res_after)
    if one_d:  # (N, K, 1, L) NHWC read as (N, K, L): a view
        ys = y.strides()
        y = Value(y.buf, (N, K, Q), "strided", y.dtype, y.offset, y.cs, (ys[0], ys[1], ys[3]),
                  scale=y.scale)
    lw.values[t.name] = y


def _conv_int8(lw: Lowering, node: Node, s_in: float, x: Value, wk: np.ndarray,
               b: np.ndarray | None, res: Tensor | None, t: Tensor,
               out_shape: tuple[int, ...], act: Activation, res_after: int,
               stride: tuple[int, int], pad: tuple[int, int],
               dilation: tuple[int, int]) -> None:
    """The INT8 tensor-core convolution: per-channel weight scales, fused requantisation."""
    N, C, H, W = x.shape
    K, R, S, _ = wk.shape
    aligned = x.layout == "nhwc" and x.dtype == "i8" and x.scale == s_in \
        and (x.cs or C) % 16 == 0 and x.offset % 16 == 0
    xin = x if aligned else lw.ensure(x, "nhwc", "i8", node.name, scale=s_in)
    amax = np.abs(wk.reshape(K, -1)).max(axis=1).astype(np.float64)
    w_scale = np.where(amax > 0, amax / 127.0, 1.0)
    wq = np.clip(np.rint(wk / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
    dq = lw.weight((s_in * w_scale).astype(np.float32))
    rv = None
    if res is not None:
        rv = lw.value(res, node, raw=True)
        if not (rv.layout == "nhwc" and rv.dtype == "i8" and rv.offset % 8 == 0
                and (rv.cs or rv.shape[1]) % 8 == 0):
            rv = lw.conv_input(rv, node.name)
    y = lw.out_nhwc(t, out_shape, int8_ok=True)
    problem = ConvProblem(N, H, W, C, K, out_shape[2], out_shape[3], R, S, stride, pad,
                          dilation, 1, "int8")
    conv_launch(lw, node.name, problem, xin, lw.weight(wq),
                     lw.weight(b.astype(np.float32)) if b is not None else None,
                     rv, y, act, res_after, dq)
    lw.values[t.name] = y


def _space_to_depth(lw: Lowering, layer: str, x: Value, w: np.ndarray, s: int, pads: list[int],
                    P: int, Q: int) -> tuple[Value, np.ndarray]:
    """A stride-``s`` convolution of plain NCHW ``x`` with weights ``w`` (OIHW) as a stride-1,
    unpadded one: returns the rearranged NHWC input (C*s*s channels, padded to 8) and the
    [K][R'][S'][C'] weights, R' = ceil(R / s). Tap (s*a + b) of the original reads what
    input pixel (o + a), channel block b of the rearranged one holds."""
    N, C, H, W = x.shape
    K, _, R, S = w.shape
    ka, kb = -(-R // s), -(-S // s)
    U, V, cp = P + ka - 1, Q + kb - 1, -(-C * s * s // 8) * 8
    y = lw.new_value((N, cp, U, V), "nhwc")
    lw.emit(Launch(layer, f"space_to_depth_{x.dtype}_f16", grid1d(N * U * V), 256,
                     [lw.ref(x), lw.ref(y)], [N, C, H, W, s, pads[0], pads[1], U, V, cp]))
    taps = np.zeros((K, ka * s, kb * s, C), np.float32)  # the taps past R, S are zero
    taps[:, :R, :S] = np.transpose(w, (0, 2, 3, 1))
    # [K][a_h][b_h][a_w][b_w][C] -> [K][a_h][a_w][(b_h * s + b_w) * C + c]
    taps = taps.reshape(K, ka, s, kb, s, C).transpose(0, 1, 3, 2, 4, 5)
    wk = np.zeros((K, ka, kb, cp), np.float32)
    wk[..., :s * s * C] = taps.reshape(K, ka, kb, s * s * C)
    return y, wk


def _padded_nhwc(lw: Lowering, x: Value, cp: int, layer: str) -> Value:
    """``x`` as NHWC with ``cp`` channels per pixel, the extra channels zero."""
    key = (id(x.buf), x.offset, x.shape, x.layout, x.cs, "pad", cp)
    if key not in lw.converted:
        N, C, H, W = x.shape
        buf = lw.new_buf(N * H * W * cp * DTYPE_BYTES[lw.dt])
        out = Value(buf, x.shape, "nhwc", lw.dt, 0, cp)
        lw.emit(Launch(layer, "memset", (1, 1, 1), 0, [lw.ref(out)], [buf.nbytes]))
        lw.copy(x, out, layer)
        lw.converted[key] = out
    return lw.converted[key]


def conv_launch(lw: Lowering, layer: str, p: ConvProblem, x: Value, w: Ref, bias: Ref | None,
                res: Value | None, y: Value, act: Activation,
                res_after: int, dq: Ref | None = None, d2s: int = 0) -> None:
    """``d2s`` = F > 0: ``p`` is a 1x1 GEMM to F*F*Ko columns, (dy*F + dx)*Ko + ko, that the
    kernel (tensor-core or SIMT tiles) writes upsampled into ``y`` (N, Ko, H*F, W*F)
    (:func:`_deconv_as_gemm`; no residual)."""
    tactic = lw.choose(p) if mma_eligible(p, lw.arch) else DIRECT
    ints = p.conv_ints(ACT[act[0]], res_after, x.cs, y.cs, (res.cs or p.k) if res else 0)
    if d2s:
        assert p.groups == 1 and res is None and y.dtype != "i8", layer
        if tactic.kind == "mma":
            tactic = replace(tactic, d2s=True)  # the chosen tile, with the upsampling epilogue
        ints[15] = d2s  # the groups slot carries F (d2s.cuh)
        ints[19] = y.cs or p.k // (d2s * d2s)  # ycs: elements between output pixels
    res_i8, out_i8 = int(res is not None and res.dtype == "i8"), int(y.dtype == "i8")
    # only the tensor-core kernel reads the INT8 flags (i[22:24], f[2:4]) and dq (p[7])
    floats = [act[1], act[2], 1.0 / y.scale if out_i8 else 0.0,
              res.scale if res is not None and res_i8 else 0.0]
    resr = lw.ref(res) if res else None
    if tactic.kind == "direct":
        n = p.n * p.p * p.q * p.k
        kernel = "conv_dw" if p.groups == p.c == p.k else "conv_direct"
        if p.groups == 1 and not out_i8:  # SIMT implicit GEMM, 64x64 tiles
            grid = (math.ceil(p.gemm_m / 64), math.ceil(p.k / 64), 1)
            # the upsampling build is its own module (conv_tiled_d2s.cu), reading the FastDiv
            # by Q where conv_mma has it
            kernel, more = ("conv_tiled_d2s", p.mma_ints(1)) if d2s else ("conv_tiled", [])
            lw.emit(Launch(layer, f"{kernel}_{lw.dt}", grid, 256,
                             [lw.ref(x), w, bias, resr, lw.ref(y)], ints + more, floats,
                             problem=p, tactic=tactic))
            return
        if out_i8:  # only the FP16 depthwise kernels have an INT8-output variant
            assert kernel == "conv_dw" and lw.dt == "f16", layer
        if kernel == "conv_dw":  # a thread a strip of pixels of a row x v channels
            v = _dw_vector(lw, p, x, y)
            strip = dw_strip(p, v, lw.sm_count)
            kernel = _dw_kernel(kernel, strip, v)
            n = p.n * p.p * math.ceil(p.q / strip) * p.k // v
        suffix = "_i8" if out_i8 else ""
        lw.emit(Launch(layer, f"{kernel}_{lw.dt}{suffix}", grid1d(n), 256,
                         [lw.ref(x), w, bias, resr, lw.ref(y)], ints, floats,
                         problem=p, tactic=tactic))
        return
    grid = tactic.grid(p, lw.sm_count)
    partial = tactic.workspace_floats(p, lw.sm_count)
    if not partial:
        lw.emit(Launch(layer, tactic.kernel, grid, tactic.threads,
                         [lw.ref(x), w, bias, resr, lw.ref(y), None, None, dq],
                         ints + p.mma_ints(1, res_i8, out_i8), floats, tactic.smem_bytes,
                         tactic, p))
        return
    ws = Value(lw.new_buf(partial * 4), (partial,), "plain", "f32")
    counters = lw.weight(np.zeros(tactic.tiles(p), np.int32))  # persistent zeros
    lw.emit(Launch(layer, tactic.kernel, grid, tactic.threads,
                     [lw.ref(x), w, bias, resr, lw.ref(y), lw.ref(ws), counters, dq],
                     ints + p.mma_ints(tactic.splits, res_i8, out_i8), floats,
                     tactic.smem_bytes, tactic, p))


def _depthwise_pooled(lw: Lowering, layer: str, p: ConvProblem, x: Value, w: Ref,
                      bias: Ref | None, res: Value | None, y: Value, act: Activation,
                      res_after: int, se: SqueezeExcitation) -> Excitation:
    """A depthwise convolution that also sums its output per channel, its last CTAs running
    ``se``'s first FC (``se_dw_pool``); returns what ``se_scale`` reads."""
    ints = p.conv_ints(ACT[act[0]], res_after, x.cs, y.cs, (res.cs or p.k) if res else 0)
    v = _dw_vector(lw, p, x, y)
    strip = dw_strip(p, v, lw.sm_count)
    # its pixel blocks are blocks of strips of a row, a thread's unit
    ct, blocks, chunk = pool_tiling(p.p * math.ceil(p.q / strip), p.k // v, p.n, lw.sm_count)
    tiles = math.ceil(p.k // v / ct)
    ex = se_workspace(lw, se, p.n, p.k, blocks, tiles)
    lw.emit(Launch(layer, f"{_dw_kernel('se_dw_pool', strip, v)}_{lw.dt}",
                   (blocks, tiles, p.n), THREADS,
                   [lw.ref(x), w, bias, lw.ref(res) if res else None, lw.ref(y), lw.ref(ex.ws),
                    ex.fc, ex.counters], ints + [ct, chunk, ex.s, ex.act[0]],
                   [act[1], act[2], *ex.act[1:]], smem=pool_smem(v), problem=p,
                   tactic=DIRECT))
    return ex


@register("ConvTranspose", supports=_conv_ok)
def lower_conv_transpose(lw: Lowering, node: Node) -> None:
    x = lw.ensure(lw.value(node.input(0), node), "nhwc", lw.dt, node.name)
    w = constant(node, 1)
    assert w is not None  # _conv_ok made sure
    b = constant(node, 2)
    groups = int(node.attrs.get("group", 1))
    C, Kg, R, S = (int(d) for d in w.shape)
    Cg = C // groups
    K = Kg * groups
    # ONNX [C][K/g][R][S] -> [K][R][S][C/g]
    wk = w.reshape(groups, Cg, Kg, R, S).transpose(0, 2, 3, 4, 1).reshape(K, R, S, Cg)
    N, _, H, W = x.shape
    out_shape = lw.out_shape(node)
    st = list(node.attrs.get("strides", [1, 1]))
    pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
    dil = list(node.attrs.get("dilations", [1, 1]))
    ep = lw.fuse_epilogue(node, out_shape)
    act, t = ep.act, ep.out
    if [R, S] == st and not any(pads) and dil == [1, 1] and groups == 1 \
            and tuple(out_shape[2:]) == (H * R, W * S):
        # stride == kernel (U-Net's 2x2/2): non-overlapping taps, so it is a 1x1
        # convolution to R*S*K channels (tensor cores) writing each tap's pixels in place
        lw.values[t.name] = _deconv_as_gemm(lw, node, x, wk, b, act, out_shape, t)
        return
    y = lw.new_value(out_shape, "nhwc")
    ints = [N, H, W, C, K, out_shape[2], out_shape[3], R, S, st[0], st[1], pads[0], pads[1],
            dil[0], dil[1], groups, ACT[act[0]]]
    bias = lw.weight(b.astype(np.float32)) if b is not None else None
    lw.emit(Launch(node.name, f"conv_transpose_direct_{lw.dt}",
                     grid1d(int(np.prod(out_shape))), 256,
                     [lw.ref(x), lw.weight(wk, lw.dt), bias, None, lw.ref(y)],
                     ints, [act[1], act[2]]))
    lw.values[t.name] = y


def _deconv_as_gemm(lw: Lowering, node: Node, x: Value, wk: np.ndarray, b: np.ndarray | None,
                   act: Activation, out_shape: tuple[int, ...],
                   t: Tensor) -> Value:
    """GEMM column (r*S + s)*K + k of input pixel (n, h, w) is output pixel (n, h*R + r,
    w*S + s), channel k. With square taps the GEMM's kernel stores it there itself (-DD2S:
    conv_mma.cu, or conv_tiled_d2s.cu for FP32, C % 8 and below sm_80); other taps (2x1)
    write the GEMM's output and a depth-to-space copy moves it."""
    K, R, S, C = wk.shape
    N, _, H, W = x.shape
    w2 = np.ascontiguousarray(wk.transpose(1, 2, 0, 3).reshape(R * S * K, 1, 1, C))
    bias = np.tile(b.astype(np.float32), R * S) if b is not None else None
    p = ConvProblem(N, H, W, C, R * S * K, H, W, 1, 1,
                    dtype="float16" if lw.dt == "f16" else "float32")
    w_ref, b_ref = lw.weight(w2, lw.dt), lw.weight(bias) if bias is not None else None
    if R == S:
        y = lw.out_nhwc(t, out_shape)  # a Concat's channel slice when one awaits it
        conv_launch(lw, node.name, p, x, w_ref, b_ref, None, y, act, 0, d2s=R)
        return y
    mid = lw.new_value((N, R * S * K, H, W), "nhwc")
    conv_launch(lw, node.name, p, x, w_ref, b_ref, None, mid, act, 0)
    y = lw.out_nhwc(t, out_shape)
    P, Q = out_shape[2], out_shape[3]
    cs = y.cs or K
    # mid[n, h, w, r, s, k] -> y[n, h*R + r, w*S + s, k]
    src = [H * W * R * S * K, W * R * S * K, R * S * K, S * K, K, 1]
    dst = [P * Q * cs, R * Q * cs, S * cs, Q * cs, cs, 1]
    lw.copy(mid, y, f"{node.name}:depth_to_space", [N, H, W, R, S, K], src, dst)
    return y

