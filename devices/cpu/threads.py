"""Set the thread count of the OpenBLAS that numpy carries, at run time.

The convolution GEMMs run in OpenBLAS, whose threads busy-wait: on a machine where other work
holds the cores, two BLAS threads on two cores measured 3.6x *slower* on ResNet-50 than one
(1707 ms vs 477 ms at load average 7). Callers that know the machine is shared pick the count
here; ``OPENBLAS_NUM_THREADS`` only works before numpy is imported.

Only OpenBLAS builds are handled (numpy's wheels bundle one); with any other BLAS these
functions do nothing and report ``None``.
"""

from __future__ import annotations

import ctypes
import glob
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np

_SETTERS = (
    "scipy_openblas_set_num_threads64_",
    "scipy_openblas_set_num_threads",
    "openblas_set_num_threads64_",
    "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_",
    "scipy_openblas_get_num_threads",
    "openblas_get_num_threads64_",
    "openblas_get_num_threads",
)


@cache
def _openblas() -> tuple[ctypes.CDLL, str, str] | None:
    """numpy's OpenBLAS library with its set / get symbol names, or None."""
    numpy_dir = os.path.dirname(np.__file__)
    candidates = sorted(glob.glob(os.path.join(numpy_dir, os.pardir, "numpy.libs", "*openblas*")))
    candidates += sorted(glob.glob(os.path.join(numpy_dir, ".libs", "*openblas*")))
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)  # already loaded by numpy: this returns the same handle
        except OSError:
            continue
        setter = next((s for s in _SETTERS if hasattr(lib, s)), None)
        getter = next((g for g in _GETTERS if hasattr(lib, g)), None)
        if setter and getter:
            return lib, setter, getter
    return None


def get_blas_threads() -> int | None:
    """OpenBLAS's current thread count, or None when numpy does not use OpenBLAS."""
    found = _openblas()
    if found is None:
        return None
    lib, _, getter = found
    return int(getattr(lib, getter)())


def set_blas_threads(count: int) -> int | None:
    """Use ``count`` OpenBLAS threads from now on; returns the previous count (None: no-op)."""
    if count < 1:
        raise ValueError(f"thread count must be >= 1, got {count}")
    found = _openblas()
    if found is None:
        return None
    lib, setter, _ = found
    previous = get_blas_threads()
    getattr(lib, setter)(ctypes.c_int(count))
    return previous


@contextmanager
def blas_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` OpenBLAS threads (None leaves the setting alone)."""
    if count is None:
        yield
        return
    previous = set_blas_threads(count)
    try:
        yield
    finally:
        if previous is not None:
            set_blas_threads(previous)
