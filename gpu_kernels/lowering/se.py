"""Squeeze-and-excitation blocks as two kernels of ``se.cu``: per-(n, c) sums (``se_pool``),
then both FCs, the gate and the scale of the block's input in one pass (``se_scale``).

Which blocks qualify is :func:`partitioner.passes.fusion.squeeze_excitation`'s answer, asked
through :meth:`Lowering.fuse_squeeze_excitation` when the lowering reaches the block's pool, so
the GPU cost model prices exactly these kernels. Before, a block took five to seven launches:
the pool, two GEMM-tile convolutions on a 1x1 image (with a pad copy where the hidden width is
not a multiple of 8) and the element-wise Mul. Where a depthwise convolution writes the block's
input, it sums its output per channel itself (``se_dw_pool``, :mod:`.conv`) and ``se_scale``
follows it directly: the pool reads nothing again.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gpu_kernels.lowering.program import ACT, Launch, Value
from partitioner.ir import Node
from partitioner.passes.fusion import SqueezeExcitation

if TYPE_CHECKING:
    from gpu_kernels.lowering.values import Lowering

THREADS = 256  # SE_THREADS in se.cu
POOL_CHANNELS = 32  # SE_POOL_CHANNELS in se.cu
# Elements a se_scale CTA streams at least: enough that recomputing the FCs stays a small part
# of its work (and at least the 2 C S weights it reads for them), few enough that a batch-1
# image still spreads over many SMs.
SCALE_ELEMENTS = 4096
# Pixels a se_pool CTA sums at least before the image is split over more CTAs, and the most
# splits (se_scale adds that many partial sums per channel).
POOL_PIXELS = 256
MAX_POOL_SPLITS = 32


def scale_pixels(hw: int, c: int, s: int) -> int:
    """Pixels one ``se_scale`` CTA scales (``c`` channels, ``s`` hidden units)."""
    return max(1, min(hw, math.ceil(max(SCALE_ELEMENTS, 2 * c * s) / c)))


def pool_splits(hw: int) -> int:
    """Pixel ranges ``se_pool`` sums an image's channels in (its grid's z)."""
    return max(1, min(MAX_POOL_SPLITS, hw // POOL_PIXELS))


def dw_pool_blocks(per_image: int) -> tuple[int, int]:
    """(CTAs an image, elements a CTA) of ``se_dw_pool`` over ``per_image`` elements (of
    its V channels): a thread an element, at most MAX_POOL_SPLITS partial sums a channel."""
    chunk = max(THREADS, math.ceil(per_image / MAX_POOL_SPLITS))
    return math.ceil(per_image / chunk), chunk


def lower_squeeze_excitation(lw: Lowering, pool: Node) -> bool:
    """Emit the SE block whose squeeze is ``pool`` as two kernels; False when ``pool`` does not
    start one (then it is lowered as a plain pool)."""
    se = lw.fuse_squeeze_excitation(pool)
    if se is None:
        return False
    x = lw.conv_input(lw.value(se.x, pool), pool.name, align=1)
    n, c, h, w = x.shape
    hw = h * w
    splits = pool_splits(hw)
    sums = lw.new_value((n, splits, c), "plain", "f32")
    lw.emit(Launch(pool.name, f"se_pool_{lw.dt}", (math.ceil(c / POOL_CHANNELS), n, splits),
                   THREADS, [lw.ref(x), lw.ref(sums)], [n, hw, c, x.cs or c, splits]))
    lower_se_scale(lw, se, x, sums)
    return True


def lower_se_scale(lw: Lowering, se: SqueezeExcitation, x: Value, sums: Value) -> None:
    """The ``se_scale`` kernel of ``se`` over its input ``x`` (NHWC), given the per-channel
    sums in ``sums`` (FP32, N x splits x C: se_pool's or se_dw_pool's partial sums)."""
    n, c, h, w = x.shape
    hw = h * w
    splits = sums.shape[1]
    w1 = se.fc1.constant_input(1)
    w2 = se.fc2.constant_input(1)
    assert w1 is not None and w2 is not None  # squeeze_excitation made sure
    s = int(w1.shape[0])
    b1, b2 = se.fc1.constant_input(2), se.fc2.constant_input(2)
    y = lw.out_nhwc(se.out, (n, c, h, w), int8_ok=lw.dt == "f16")
    pixels = scale_pixels(hw, c, s)
    ptrs = [lw.ref(x), lw.ref(sums), lw.weight(w1.reshape(s, c), lw.dt),
            lw.weight(b1.astype(np.float32)) if b1 is not None else None,
            lw.weight(w2.reshape(c, s).T, lw.dt),
            lw.weight(b2.astype(np.float32)) if b2 is not None else None, lw.ref(y)]
    ints = [n, hw, c, s, x.cs or c, y.cs or c, ACT[se.act[0]], ACT[se.gate[0]], pixels,
            splits]
    x8 = lw.dt == "f16" and all(v % 8 == 0 for v in (c, ints[4], ints[5], x.offset, y.offset))
    kernel = f"se_scale_{'x8_' if x8 else ''}{lw.dt}{'_i8' if y.dtype == 'i8' else ''}"
    floats = [se.act[1], se.act[2], se.gate[1], se.gate[2], 1.0 / y.scale if y.scale else 1.0]
    lw.emit(Launch(se.scale.name, kernel, (math.ceil(hw / pixels), n, 1), THREADS, ptrs, ints,
                   floats, smem=(2 * c + s) * 4))
    lw.values[se.out.name] = y
