"""Accuracy numbers: how far an output is from its reference, as the project reports them."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Closeness:
    max_abs: float
    mean_abs: float
    max_rel: float  # max|a - b| / max|b|: robust to reference values near zero
    cosine: float
    shape_ok: bool

    def within(self, atol: float, rtol: float) -> bool:
        return self.shape_ok and (self.max_abs <= atol or self.max_rel <= rtol)

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def closeness(actual: np.ndarray, reference: np.ndarray) -> Closeness:
    if actual.shape != reference.shape:
        nan = float("nan")
        return Closeness(nan, nan, nan, nan, False)
    a = actual.astype(np.float64).ravel()
    b = reference.astype(np.float64).ravel()
    if a.size == 0:
        return Closeness(0.0, 0.0, 0.0, 1.0, True)
    diff = np.abs(a - b)
    scale = float(np.max(np.abs(b)))
    max_abs = float(diff.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    norms = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(np.dot(a, b) / norms) if norms > 0 else (1.0 if max_abs == 0 else 0.0)
    return Closeness(max_abs, float(diff.mean()), max_rel, cosine, True)
