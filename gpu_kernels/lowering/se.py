"""Squeeze-and-excitation blocks as two kernels of ``se.cu``: the per-(n, c) sums, whose last
CTA of each image also runs both FCs and the gate once (``se_pool``, or ``se_dw_pool`` where a
depthwise convolution writes the block's input and sums what it writes), then ``se_scale``,
one streaming pass of ``x * gate`` over batch x pixels x channel vectors.

Which blocks qualify is :func:`partitioner.passes.fusion.squeeze_excitation`'s answer, asked
through :meth:`Lowering.fuse_squeeze_excitation` when the lowering reaches the block's pool, so
the GPU cost model prices exactly these kernels. Before, a block took five to seven launches:
the pool, two GEMM-tile convolutions on a 1x1 image (with a pad copy where the hidden width is
not a multiple of 8) and the element-wise Mul.

Work split (``THREADS`` threads a CTA everywhere): the pools give each CTA a block of an
image's pixels (and a tile of its channels), so their grids grow with the batch and the pixel
count; the partial sums of the blocks go to a workspace (N x B x C, FP32) and the last CTA of
an image to finish (an int32 counter per image, left at zero) adds them in block order: the
same bits whichever CTA is last. ``se_scale`` reads the gate (N x C, FP32, after the sums in
the same workspace) and scales 4 vectors a thread.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import ACT, Launch, Ref, Value
from partitioner.ir import Node
from partitioner.passes.fusion import SqueezeExcitation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

THREADS = 256  # SE_THREADS in se.cu
SCALE_UNROLL = 4  # SE_SCALE_UNROLL in se.cu: vectors a se_scale thread
# Pixels a pool thread sums (se_dw_pool: a 3x3 or 5x5 window each), the most that still give
# the grid POOL_WAVES CTAs an SM (fewer at batch 1, where a thread's pixels are a latency
# chain), and the most pixel blocks an image (the partial sums its last CTA adds a channel).
POOL_PIXELS = (4, 2, 1)
POOL_WAVES = 4
MAX_POOL_BLOCKS = 256


def pool_tiling(hw: int, cv: int, n: int, sm_count: int) -> tuple[int, int, int]:
    """(CT channel vectors a CTA, B pixel blocks an image, pixels a block) of ``se_pool`` and
    ``se_dw_pool`` over ``n`` images of ``hw`` pixels of ``cv`` channel vectors on ``sm_count``
    SMs: the vectors split evenly over tiles of at most 32 lanes, 256 / CT pixel rows, 4, 2 or
    1 pixels a row."""
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


def scale_blocks(n: int, hw: int, cv: int) -> int:
    """CTAs of ``se_scale`` over ``n`` x ``hw`` pixels of ``cv`` channel vectors."""
    return math.ceil(n * hw * cv / (THREADS * SCALE_UNROLL))


def se_workspace(lw: Lowering, se: SqueezeExcitation, n: int, c: int,
                 blocks: int) -> tuple[Value, Value, list[Ref | None], list[int], list[float]]:
    """The pools' workspace (FP32 partial sums N x blocks x C, then the gate N x C) and gate
    view, and the pointers {fc params, counters}, ints {S, act, gate act} and floats {act a,
    act b, gate a, gate b} of ``se``'s excitation (se.cu's se_gate_if_last)."""
    w1 = se.fc1.constant_input(1)
    w2 = se.fc2.constant_input(1)
    assert w1 is not None and w2 is not None  # squeeze_excitation made sure
    s = int(w1.shape[0])
    b1, b2 = se.fc1.constant_input(2), se.fc2.constant_input(2)
    # {w1, w2t} in the activations' type, then at the next 16 bytes {b1, b2} in FP32
    wt = np.float16 if lw.dt == "f16" else np.float32
    finite = float(np.finfo(wt).max)  # saturated as Lowering.weight does
    weights = np.clip(np.concatenate([w1.reshape(s, c).reshape(-1),
                                      w2.reshape(c, s).T.reshape(-1)]), -finite, finite)
    wbytes = weights.astype(wt).view(np.uint8)
    biases = np.concatenate([b1.reshape(-1) if b1 is not None else np.zeros(s),
                             b2.reshape(-1) if b2 is not None else np.zeros(c)])
    fc = np.concatenate([wbytes, np.zeros(-wbytes.size % 16, np.uint8),
                         biases.astype(np.float32).view(np.uint8)])
    ws = lw.new_value((n * blocks * c + n * c,), "plain", "f32")
    gate = Value(ws.buf, (n, c), "plain", "f32", offset=n * blocks * c)
    ptrs = [lw.weight(fc), lw.weight(np.zeros(n, np.int32))]
    return (ws, gate, ptrs, [s, ACT[se.act[0]], ACT[se.gate[0]]],
            [se.act[1], se.act[2], se.gate[1], se.gate[2]])


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
    ws, gate, ptrs, ints, floats = se_workspace(lw, se, n, c, blocks)
    lw.emit(Launch(pool.name, f"se_pool_{'x8_' if v == 8 else ''}{lw.dt}",
                   (blocks, math.ceil(c // v / ct), n), THREADS, [lw.ref(x), lw.ref(ws), *ptrs],
                   [n, hw, c, x.cs or c, ct, chunk, *ints], floats,
                   smem=max(THREADS * v, c + max(ints[0], THREADS)) * 4))
    lower_se_scale(lw, se, x, gate)
    return True


def lower_se_scale(lw: Lowering, se: SqueezeExcitation, x: Value, gate: Value) -> None:
    """The ``se_scale`` kernel of ``se`` over its input ``x`` (NHWC), given the gate (FP32,
    N x C, written by the pool kernel's last CTA of each image)."""
    n, c, h, w = x.shape
    hw = h * w
    y = lw.out_nhwc(se.out, (n, c, h, w), int8_ok=lw.dt == "f16")
    ints = [n, hw, c, x.cs or c, y.cs or c]
    x8 = lw.dt == "f16" and all(v % 8 == 0 for v in (c, ints[3], ints[4], x.offset, y.offset))
    kernel = f"se_scale_{'x8_' if x8 else ''}{lw.dt}{'_i8' if y.dtype == 'i8' else ''}"
    floats = [1.0 / y.scale if y.scale else 1.0]
    lw.emit(Launch(se.scale.name, kernel, (scale_blocks(n, hw, c // (8 if x8 else 1)), 1, 1),
                   THREADS, [lw.ref(x), lw.ref(gate), lw.ref(y)], ints, floats))
    lw.values[se.out.name] = y
