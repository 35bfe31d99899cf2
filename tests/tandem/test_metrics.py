"""closeness(): identical NaN / infinities are equal, any other meeting with one is a mismatch,
and errors over gigabyte outputs need no float64 copy of them."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from tandem.metrics import closeness

NAN, INF = np.nan, np.inf

CASES = [
    # (actual, reference, within 1e-4?, equal non-finite, differing non-finite)
    ([1.0, NAN, INF, -INF], [1.0, NAN, INF, -INF], True, 3, 0),
    ([1.0, NAN], [1.0, 2.0], False, 0, 1),  # a NaN against a number
    ([1.0, 2.0], [1.0, NAN], False, 0, 1),
    ([INF, 0.0], [-INF, 0.0], False, 0, 1),  # opposite infinities
    ([NAN, 0.0], [INF, 0.0], False, 0, 1),
    ([INF, 3.0], [1e30, 3.0], False, 0, 1),  # overflow on one side only
    ([NAN, 1.0], [NAN, 1.5], False, 1, 0),  # the numbers still have to agree
]


@pytest.mark.parametrize("actual, reference, ok, same, differ", CASES)
def test_non_finite_values(actual, reference, ok, same, differ) -> None:
    for dtype in (np.float32, np.float64):
        c = closeness(np.array(actual, dtype), np.array(reference, dtype))
        assert c.within(1e-4, 1e-4) is ok, (dtype, c)
        assert (c.nonfinite_equal, c.nonfinite_mismatch) == (same, differ)
        if differ:
            assert c.max_abs == np.inf and c.max_rel == np.inf


def test_errors_are_those_of_the_finite_pairs() -> None:
    a = np.array([NAN, 1.0, 2.0, INF, 4.0], np.float32)
    b = np.array([NAN, 1.0, 2.5, INF, 4.0], np.float32)
    c = closeness(a, b)
    assert (c.max_abs, c.mean_abs, c.max_rel) == (0.5, pytest.approx(0.5 / 3), 0.5 / 4)
    assert c.cosine == pytest.approx(
        np.dot([1, 2, 4], [1, 2.5, 4]) / np.linalg.norm([1, 2, 4]) / np.linalg.norm([1, 2.5, 4])
    )


def test_all_non_finite_and_identical_is_a_match() -> None:
    a = np.full((2, 3), -INF, np.float32)
    c = closeness(a, a.copy())
    assert c.within(0.0, 0.0) and c.nonfinite_equal == 6 and c.cosine == 1.0


def test_chunks_give_the_whole_array_answer_without_a_float64_copy() -> None:
    rng = np.random.default_rng(0)
    b = rng.standard_normal(10_000_001).astype(np.float32)  # 40 MB: many chunks and a bit
    a = b + rng.normal(0, 1e-3, b.size).astype(np.float32)
    a[-1], b[-1] = NAN, NAN
    tracemalloc.start()
    try:
        c = closeness(a, b)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16e6, f"peak {peak / 1e6:.1f} MB for a {a.nbytes / 1e6:.0f} MB output"
    x, y = a[:-1].astype(np.float64), b[:-1].astype(np.float64)
    assert c.max_abs == np.abs(x - y).max() and c.nonfinite_equal == 1
    assert c.mean_abs == pytest.approx(np.abs(x - y).mean(), rel=1e-9)
    assert c.max_rel == pytest.approx(np.abs(x - y).max() / np.abs(y).max(), rel=1e-12)
    cosine = np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y))
    assert c.cosine == pytest.approx(cosine, rel=1e-12)


def test_shape_mismatch_and_empty() -> None:
    assert not closeness(np.zeros(3), np.zeros(4)).within(1, 1)
    assert closeness(np.zeros((0, 2)), np.zeros((0, 2))).within(0, 0)
