"""The DLA's number handling: rounding, saturation, symmetric INT8 quantisation.

Every INT8 operation here is exact: values are held as integers (in int64, or in float64, which
represents every integer below 2**53 exactly -- an int8 x int8 product is below 2**14, so a sum
of fewer than 2**39 of them is exact). Rounding is half away from zero, as the DLA rounds (and
unlike numpy's ``round``, which rounds half to even).
"""

from __future__ import annotations

import numpy as np

INT8_MIN = -128
INT8_MAX = 127


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (2.5 -> 3, -2.5 -> -3).

    ``floor(|x| + 0.5)`` would be wrong just below a tie (0.49999999999999994 + 0.5 rounds up
    to 1.0 in float64), so this rounds half to even and moves exact ties that went toward
    zero one step away from it; ``x - rint(x)`` is exact, so ties are found exactly.
    """
    a = np.asarray(x, dtype=np.float64)
    r = np.rint(a)
    diff = a - r
    toward_zero = (np.abs(diff) == 0.5) & (np.sign(diff) == np.sign(a))
    return np.where(toward_zero, r + np.sign(a), r)


def saturate_int8(x: np.ndarray) -> np.ndarray:
    """Clamp to [-128, 127] and store as int8 (the input must hold integers)."""
    return np.clip(x, INT8_MIN, INT8_MAX).astype(np.int8)


def quantize(x: np.ndarray, scale: float) -> np.ndarray:
    """Real values -> int8 with step ``scale``: round half away from zero, then saturate."""
    return saturate_int8(round_half_away(np.asarray(x, np.float64) / float(scale)))


def dequantize(q: np.ndarray, scale: float) -> np.ndarray:
    """int8 -> real values (float64, exact)."""
    return q.astype(np.float64) * float(scale)


def to_fp16(x: np.ndarray) -> np.ndarray:
    """Round to FP16 (round to nearest even, as IEEE conversion does), saturating to +-65504."""
    a = np.asarray(x)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.clip(a, -65504.0, 65504.0).astype(np.float16)


def quantize_weights_per_channel(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) INT8 weights: (int8 values, float64 scales).

    The scale of channel k is ``max|w[k]| / 127`` (1.0 for an all-zero channel), so weights use
    [-127, 127] as TensorRT's symmetric weight quantisation does.
    """
    w = np.asarray(w, np.float64)
    amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1) if w.size else np.zeros(w.shape[0])
    scale = np.where(amax > 0, amax / 127.0, 1.0)
    q = np.clip(round_half_away(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127)
    return q.astype(np.int8), scale
