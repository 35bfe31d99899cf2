"""Squeeze-and-excitation blocks as two kernels of ``se.cu``: the per-(n, c) sums, whose last
CTAs also run the first FC and its activation (``se_pool``, or ``se_dw_pool`` where a depthwise
convolution writes the block's input and sums what it writes), then ``se_scale``, whose CTAs
each compute the second FC and the gate for their tile of channels and stream ``x * gate`` over
their pixels.

Which blocks qualify is :func:`partitioner.passes.fusion.squeeze_excitation`'s answer, asked
through :meth:`Lowering.fuse_squeeze_excitation` when the lowering reaches the block's pool, so
the GPU cost model prices exactly these kernels. Before, a block took five to seven launches:
the pool, two GEMM-tile convolutions on a 1x1 image (with a pad copy where the hidden width is
not a multiple of 8) and the element-wise Mul.

Work split (``THREADS`` threads a CTA everywhere): the pools give each CTA a block of an
image's pixels (and a tile of its channels), so their grids grow with the batch and the pixel
count; the partial sums of the blocks go to a workspace (N x B x C, FP32). The last CTA of each
(image, channel tile) to finish adds them in block order and multiplies the tile's means by its
columns of the first FC (N x tiles x S); the last of those of each image adds the tiles' shares
in tile order: the hidden layer (N x S). Counters per (image, tile) and per image, left at
zero, make that the same bits whichever CTAs are last. ``se_scale`` tiles the same way (pixel
blocks x channel tiles x images): the
second FC is C x S multiply-adds an image, which one CTA ran as a chain of dependent weight
reads (MobileNetV3-Large's 960 x 240 block: 67 us at batch 1, H200); spread over the tiles, each
CTA reads only its tile's weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import ACT, Launch, Ref, Value
from partitioner.ir import Node
from partitioner.passes.fusion import SqueezeExcitation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

THREADS = 256  # SE_THREADS in se.cu
SCALE_UNROLL = 4  # SE_SCALE_UNROLL in se.cu: pixels a se_scale thread loads at once
# Pixels a pool thread sums (se_dw_pool: strips of a row, lowering/conv.py's dw_strip),
# the most that still give the grid POOL_WAVES CTAs an SM (fewer at batch 1, where a thread's
# pixels are a latency chain), and the most pixel blocks an image (the partial sums its last
# CTA adds a channel).
POOL_PIXELS = (4, 2, 1)
POOL_WAVES = 4
MAX_POOL_BLOCKS = 256
# se_scale's blocks grow (fewer CTAs, each computing its tile's gate once) while the grid keeps
# SCALE_WAVES CTAs an SM, up to SCALE_MAX_PIXELS pixels a block.
SCALE_WAVES = 4
SCALE_MAX_PIXELS = 1024
# The most second-FC weight reads a row of se_scale's threads makes for its tile's gate. Narrow
# tiles split a pixel's channels over CTAs (strided rows instead of whole ones), so tiles narrow
# only as far as the gate needs. (Measured on the H200: going back to whole-row tiles did not
# undo se_scale's batch-32 slowdown on EfficientNet-B0 -- BENCHMARKS.md, session 12.)
SCALE_FC_STEPS = 8


def pool_tiling(hw: int, cv: int, n: int, sm_count: int) -> tuple[int, int, int]:
    """(CT channel vectors a CTA, B pixel blocks an image, pixels a block) of ``se_pool`` and
    ``se_dw_pool`` over ``n`` images of ``hw`` pixels (se_dw_pool: strips) of ``cv`` channel
    vectors on ``sm_count`` SMs: the vectors split evenly over tiles of at most 32 lanes,
    256 / CT pixel rows, 4, 2 or 1 pixels a row."""
    tiles = math.ceil(cv / 32)
    ct = math.ceil(cv / tiles)
    rows = THREADS // ct
    for pixels in POOL_PIXELS:
        chunk = rows * pixels
        if n * tiles * math.ceil(hw / chunk) >= POOL_WAVES * sm_count:
            break
    blocks = math.ceil(hw / chunk)
    if blocks > MAX_POOL_BLOCKS:
        chunk = math.ceil(hw / MAX_POOL_BLOCKS)
        blocks = math.ceil(hw / chunk)
    return ct, blocks, chunk


def scale_tiling(hw: int, cv: int, n: int, sm_count: int, v: int,
                 s: int) -> tuple[int, int, int]:
    """(CT channel vectors a CTA, B pixel blocks an image, pixels a block) of ``se_scale`` over
    vectors of ``v`` channels, for a hidden layer of ``s`` units: tiles as wide as the pools'
    (up to 32 vectors: whole pixel rows, contiguous in memory) unless the gate's second FC
    would then take a row of threads more than SCALE_FC_STEPS weight reads (256 / CT rows
    share the s terms): MobileNetV3's 960 x 240 blocks take 8-vector tiles, whose gates spread
    the FC over 15 CTAs at batch 1. Blocks of 256 / CT rows x SCALE_UNROLL pixels (x 2, 4, ...
    while the grid still has SCALE_WAVES CTAs an SM: a CTA computes its tile's gate once)."""
    lanes = 32 if v == 1 else max(8, min(32, THREADS * SCALE_FC_STEPS // max(s, 1)))
    tiles = math.ceil(cv / lanes)
    ct = math.ceil(cv / tiles)
    chunk = THREADS // ct * SCALE_UNROLL
    while chunk < hw and chunk < SCALE_MAX_PIXELS \
            and n * tiles * math.ceil(hw / (2 * chunk)) >= SCALE_WAVES * sm_count:
        chunk *= 2
    return ct, math.ceil(hw / chunk), chunk


@dataclass(frozen=True)
class Excitation:
    """What the two kernels of one SE block share: the workspace (FP32: the partial sums N x
    blocks x C, the channel tiles' shares of the first FC N x tiles x S, the hidden layer N x
    S), the counters (per (image, tile), then per image; left at zero) and the FC parameters
    {w1, w2t} in the activations' type, then at the next 16 bytes {b1, b2} in FP32 (se.cu's
    se_biases)."""

    ws: Value
    hidden: Value
    fc: Ref
    counters: Ref
    s: int
    act: tuple[int, float, float]  # fc1's activation (se.cu ACT_*, alpha, beta)
    gate: tuple[int, float, float]  # the gate's


def se_workspace(lw: Lowering, se: SqueezeExcitation, n: int, c: int, blocks: int,
                 tiles: int) -> Excitation:
    """The workspace, counters and FC parameters of ``se`` over ``n`` images of ``c`` channels
    whose pool runs ``blocks`` pixel blocks x ``tiles`` channel tiles an image."""
    w1 = se.fc1.constant_input(1)
    w2 = se.fc2.constant_input(1)
    assert w1 is not None and w2 is not None  # squeeze_excitation made sure
    s = int(w1.shape[0])
    b1, b2 = se.fc1.constant_input(2), se.fc2.constant_input(2)
    wt = np.float16 if lw.dt == "f16" else np.float32
    finite = float(np.finfo(wt).max)  # saturated as Lowering.weight does
    weights = np.clip(np.concatenate([w1.reshape(s, c).reshape(-1),
                                      w2.reshape(c, s).T.reshape(-1)]), -finite, finite)
    wbytes = weights.astype(wt).view(np.uint8)
    biases = np.concatenate([b1.reshape(-1) if b1 is not None else np.zeros(s),
                             b2.reshape(-1) if b2 is not None else np.zeros(c)])
    fc = np.concatenate([wbytes, np.zeros(-wbytes.size % 16, np.uint8),
                         biases.astype(np.float32).view(np.uint8)])
    ws = lw.new_value((n * blocks * c + n * tiles * s + n * s,), "plain", "f32")
    hidden = Value(ws.buf, (n, s), "plain", "f32", offset=n * blocks * c + n * tiles * s)
    return Excitation(ws, hidden, lw.weight(fc), lw.weight(np.zeros(n * tiles + n, np.int32)), s,
                      (ACT[se.act[0]], se.act[1], se.act[2]),
                      (ACT[se.gate[0]], se.gate[1], se.gate[2]))


def pool_smem(v: int) -> int:
    """Dynamic shared memory bytes of ``se_pool`` / ``se_dw_pool``: the block sums' 256 x V
    floats, then a tile's means (at most 256) and their group sums (256)."""
    return THREADS * max(v, 2) * 4


def lower_squeeze_excitation(lw: Lowering, pool: Node) -> bool:
    """Emit the SE block whose squeeze is ``pool`` as two kernels; False when ``pool`` does not
    start one (then it is lowered as a plain pool)."""
    se = lw.fuse_squeeze_excitation(pool)
    if se is None:
        return False
    x = lw.conv_input(lw.value(se.x, pool), pool.name, align=1)
    n, c, h, w = x.shape
    hw = h * w
    v = 8 if lw.dt == "f16" and all(e % 8 == 0 for e in (c, x.cs or c, x.offset)) else 1
    ct, blocks, chunk = pool_tiling(hw, c // v, n, lw.sm_count)
    tiles = math.ceil(c // v / ct)
    ex = se_workspace(lw, se, n, c, blocks, tiles)
    lw.emit(Launch(pool.name, f"se_pool_{'x8_' if v == 8 else ''}{lw.dt}",
                   (blocks, tiles, n), THREADS,
                   [lw.ref(x), lw.ref(ex.ws), ex.fc, ex.counters],
                   [n, hw, c, x.cs or c, ct, chunk, ex.s, ex.act[0]], list(ex.act[1:]),
                   smem=pool_smem(v)))
    lower_se_scale(lw, se, x, ex)
    return True


def lower_se_scale(lw: Lowering, se: SqueezeExcitation, x: Value, ex: Excitation) -> None:
    """The ``se_scale`` kernel of ``se`` over its input ``x`` (NHWC), given the hidden layer
    (FP32, N x S, written by the pool kernel's last CTAs)."""
    n, c, h, w = x.shape
    hw = h * w
    y = lw.out_nhwc(se.out, (n, c, h, w), int8_ok=lw.dt == "f16")
    xcs, ycs = x.cs or c, y.cs or c
    x8 = lw.dt == "f16" and all(v % 8 == 0 for v in (c, xcs, ycs, x.offset, y.offset))
    v = 8 if x8 else 1
    ct, blocks, chunk = scale_tiling(hw, c // v, n, lw.sm_count, v, ex.s)
    kernel = f"se_scale_{'x8_' if x8 else ''}{lw.dt}{'_i8' if y.dtype == 'i8' else ''}"
    lw.emit(Launch(se.scale.name, kernel, (blocks, math.ceil(c // v / ct), n), THREADS,
                   [lw.ref(x), lw.ref(ex.hidden), lw.ref(y), ex.fc],
                   [n, hw, c, xcs, ycs, ct, chunk, ex.s, ex.gate[0]],
                   [1.0 / y.scale if y.scale else 1.0, *ex.gate[1:]],
                   smem=(ex.s + (THREADS + ct) * v) * 4))
    lw.values[se.out.name] = y
