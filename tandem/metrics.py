"""Accuracy numbers: how far an output is from its reference, as the project reports them.

Non-finite values are compared by identity: NaN against NaN and an infinity against the same
infinity at the same position are equal (both sides computed the same overflow or 0/0) and are
counted apart from the numbers; anything else against a NaN or an infinity is a mismatch. The
errors are accumulated over chunks in float64, so comparing gigabyte outputs needs no float64
copy of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

_CHUNK = 1 << 18  # elements per chunk: a few float64 temporaries of 2 MiB each


@dataclass(frozen=True)
class Closeness:
    max_abs: float
    mean_abs: float
    max_rel: float  # max|a - b| / max|b|: robust to reference values near zero
    cosine: float
    shape_ok: bool
    nonfinite_equal: int = 0  # positions where both sides hold the same NaN or infinity
    nonfinite_mismatch: int = 0  # positions where a NaN or infinity meets anything else

    def within(self, atol: float, rtol: float) -> bool:
        return (
            self.shape_ok
            and self.nonfinite_mismatch == 0
            and (self.max_abs <= atol or self.max_rel <= rtol)
        )

    def as_dict(self) -> dict[str, float | bool | int]:
        return asdict(self)


def closeness(actual: np.ndarray, reference: np.ndarray) -> Closeness:
    """Errors over the finite pairs; a pair with a NaN or infinity on either side counts as
    equal when both sides hold the same one, else as a mismatch (max errors are then inf)."""
    if actual.shape != reference.shape:
        nan = float("nan")
        return Closeness(nan, nan, nan, nan, False)
    a_all, b_all = actual.reshape(-1), reference.reshape(-1)
    if a_all.size == 0:
        return Closeness(0.0, 0.0, 0.0, 1.0, True)
    max_abs = sum_abs = scale = dot = norm_a = norm_b = 0.0
    finite_pairs = same = differ = 0
    for start in range(0, a_all.size, _CHUNK):
        a = a_all[start : start + _CHUNK].astype(np.float64)
        b = b_all[start : start + _CHUNK].astype(np.float64)
        finite = np.isfinite(a) & np.isfinite(b)
        if not finite.all():
            odd = ~finite
            # same NaN / same-signed infinity on both sides; -inf vs inf or NaN vs inf differ
            twins = odd & ((a == b) | (np.isnan(a) & np.isnan(b)))
            same += int(twins.sum())
            differ += int(odd.sum()) - int(twins.sum())
            a, b = a[finite], b[finite]
        finite_pairs += a.size
        if a.size == 0:
            continue
        diff = np.abs(a - b)
        max_abs = max(max_abs, float(diff.max()))
        sum_abs += float(diff.sum())
        scale = max(scale, float(np.abs(b).max()))
        dot += float(np.dot(a, b))
        norm_a += float(np.dot(a, a))
        norm_b += float(np.dot(b, b))
    norms = float(np.sqrt(norm_a) * np.sqrt(norm_b))
    cosine = dot / norms if norms > 0 else (1.0 if max_abs == 0 else 0.0)  # of the finite pairs
    if differ:
        inf = float("inf")
        return Closeness(inf, inf, inf, cosine, True, same, differ)
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    mean_abs = sum_abs / finite_pairs if finite_pairs else 0.0
    return Closeness(max_abs, mean_abs, max_rel, cosine, True, same, differ)
