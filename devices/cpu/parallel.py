"""Coarse-grained parallelism for the heavy numpy calls: big GEMMs and im2col copies.

OpenBLAS parallelises one GEMM internally with busy-waiting threads that meet at barriers.
When other processes share the cores that is very fragile: on this project's 2-core machine at
load average ~6, a set of ResNet-50 GEMMs took 73.6 ms (median) with 2 OpenBLAS threads, 39.2
ms with 1, and 15.0 ms when split in two halves computed by two Python threads with 1 BLAS
thread each (numpy releases the GIL inside ``matmul`` and copies). Independent halves need no
barrier, so a descheduled worker delays only its own half.

:func:`parallelism` turns this on for a block (``CpuRunner`` wraps each inference in it): it
sets OpenBLAS to one thread and makes :func:`matmul` / :func:`copy_into` split their work over
``workers`` threads. Outside such a block both are the plain numpy calls, so code that calls
``evaluate_node`` directly (the constant folder) is unaffected.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np

from devices.cpu.threads import blas_threads

# Below this many multiply-adds (or copied elements) a split costs more than it saves.
MIN_SPLIT_MACS = 1 << 21
MIN_SPLIT_ELEMENTS = 1 << 17

_WORKERS: ContextVar[int] = ContextVar("tandem_cpu_workers", default=1)
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ThreadPoolExecutor(workers, thread_name_prefix="tandem-cpu")
            _POOLS[workers] = pool
        return pool


@contextmanager
def parallelism(workers: int | None) -> Iterator[None]:
    """Within the block, split big GEMMs and copies over ``workers`` threads (1 BLAS thread each).

    ``None`` or 1 leaves numpy and OpenBLAS exactly as they are.
    """
    if workers is None or workers <= 1:
        yield
        return
    token = _WORKERS.set(workers)
    try:
        with blas_threads(1):
            yield
    finally:
        _WORKERS.reset(token)


def workers() -> int:
    """The worker count in effect for the calling context (1 outside ``parallelism``)."""
    return _WORKERS.get()


def _chunks(size: int, parts: int) -> list[tuple[int, int]]:
    bounds = [size * i // parts for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(bounds, bounds[1:]) if hi > lo]


def _run_all(calls: list[Callable[[], object]]) -> None:
    """Run the calls on the pool (the first one on this thread) and re-raise any failure."""
    pool = _pool(len(calls))
    futures: list[Future[object]] = [pool.submit(c) for c in calls[1:]]
    error: BaseException | None = None
    try:
        calls[0]()
    except BaseException as err:  # wait for the others before raising
        error = err
    for f in futures:
        exc = f.exception()
        error = error or exc
    if error is not None:
        raise error


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``np.matmul(a, b)`` for ``a`` (..., M, K) and ``b`` (..., K, N), split over the workers.

    The split runs along N (columns of ``b`` and of the result) or, when N is the smaller side,
    along M; each piece is a strided view, which BLAS takes as a sub-matrix without a copy.
    """
    n_workers = _WORKERS.get()
    if n_workers <= 1 or a.ndim < 2 or b.ndim < 2:
        return np.matmul(a, b)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if m * n * k * math.prod(batch) < MIN_SPLIT_MACS:
        return np.matmul(a, b)
    out = np.empty((*batch, m, n), dtype=np.result_type(a, b))
    if n >= m:
        parts = _chunks(n, n_workers)
        calls = [
            (lambda lo=lo, hi=hi: np.matmul(a, b[..., lo:hi], out=out[..., lo:hi]))
            for lo, hi in parts
        ]
    else:
        parts = _chunks(m, n_workers)
        calls = [
            (lambda lo=lo, hi=hi: np.matmul(a[..., lo:hi, :], b, out=out[..., lo:hi, :]))
            for lo, hi in parts
        ]
    _run_all(calls)  # type: ignore[arg-type]
    return out


def copy_into(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``dst[...] = src`` split along the longest axis over the workers; returns ``dst``."""
    n_workers = _WORKERS.get()
    if n_workers <= 1 or dst.size < MIN_SPLIT_ELEMENTS or dst.ndim == 0:
        np.copyto(dst, src)
        return dst
    axis = int(np.argmax(dst.shape))
    parts = _chunks(dst.shape[axis], n_workers)
    if len(parts) < 2:
        np.copyto(dst, src)
        return dst

    def piece(lo: int, hi: int) -> None:
        index = (slice(None),) * axis + (slice(lo, hi),)
        np.copyto(dst[index], src[index])

    _run_all([(lambda lo=lo, hi=hi: piece(lo, hi)) for lo, hi in parts])  # type: ignore[misc]
    return dst


# Element-wise work is split into cache-sized pieces (1 MiB of float32) so that each piece's
# result is still in cache when it is copied into the output.
_PIECE = 1 << 18
MIN_SPLIT_ELEMENTWISE = 1 << 19


def elementwise(fn: Callable[..., np.ndarray], *arrays: np.ndarray) -> np.ndarray:
    """``fn(*arrays)`` for an element-wise ``fn`` over same-shape arrays, split over the workers.

    Falls back to one plain call for small inputs, mismatched shapes (broadcasting) or
    non-contiguous arrays.
    """
    n_workers = _WORKERS.get()
    first = arrays[0]
    if (
        n_workers <= 1
        or first.size < MIN_SPLIT_ELEMENTWISE
        or any(a.shape != first.shape or not a.flags.c_contiguous for a in arrays)
    ):
        return fn(*arrays)
    flats = [a.reshape(-1) for a in arrays]
    probe = np.asarray(fn(*(f[:1] for f in flats)))
    out = np.empty(first.size, dtype=probe.dtype)

    def run_range(lo: int, hi: int) -> None:
        for start in range(lo, hi, _PIECE):
            stop = min(start + _PIECE, hi)
            out[start:stop] = fn(*(f[start:stop] for f in flats))

    ranges = _chunks(first.size, n_workers)
    _run_all([(lambda lo=lo, hi=hi: run_range(lo, hi)) for lo, hi in ranges])  # type: ignore[misc]
    return out.reshape(first.shape)
