"""Tensor memory given by address, as TensorRT's API takes it: ``set_tensor_address``,
``execute_v2(bindings)`` and calibrators' ``get_batch`` hand over raw pointers.

An address is a CUDA device pointer (``cudaMalloc`` through cuda-python, a PyTorch CUDA
tensor's ``data_ptr()``) when the CUDA driver says so, else host memory (a numpy array's
``ctypes.data``, pinned ``cudaMallocHost`` memory). Tandem's runtime works on numpy arrays,
so a device buffer is copied to the host before a run and results are copied back: the
pointers work as in TensorRT, without its zero-copy.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from partitioner.errors import InputError


def address_of(buffer: Any, what: str) -> int:
    """An integer address from what TensorRT scripts pass: an int, a cuda-python pointer
    (``CUdeviceptr``), a PyTorch tensor or a numpy array (its data)."""
    if isinstance(buffer, np.ndarray):
        return int(buffer.ctypes.data)
    if hasattr(buffer, "data_ptr"):
        return int(buffer.data_ptr())
    try:
        addr = int(buffer)
    except (TypeError, ValueError):
        raise InputError(
            f"{what}: expected a memory address (int, cuda-python pointer, torch tensor or "
            f"numpy array), got {type(buffer).__name__}"
        ) from None
    if addr <= 0:
        raise InputError(f"{what}: address {addr} is not a valid buffer (null or negative)")
    return addr


@functools.lru_cache(maxsize=1)
def _driver() -> Any:
    """cuda-python's driver module when a CUDA GPU is usable here, else None."""
    try:
        from cuda.bindings import driver  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        (err,) = driver.cuInit(0)
    except Exception:  # noqa: BLE001 - no libcuda here (cuda-python raises its own loader error)
        return None
    if err != driver.CUresult.CUDA_SUCCESS:
        return None
    err, count = driver.cuDeviceGetCount()
    return driver if err == driver.CUresult.CUDA_SUCCESS and count > 0 else None


def _ensure_context(driver: Any) -> None:
    """Pointer queries need a current context; scripts using the runtime API (cudart) or
    PyTorch use device 0's primary context, so that is the one made current when none is."""
    err, ctx = driver.cuCtxGetCurrent()
    if err == driver.CUresult.CUDA_SUCCESS and ctx is not None and int(ctx) != 0:
        return
    err, dev = driver.cuDeviceGet(0)
    err, ctx = driver.cuDevicePrimaryCtxRetain(dev)
    _check(driver, err, "cuDevicePrimaryCtxRetain")
    (err,) = driver.cuCtxSetCurrent(ctx)
    _check(driver, err, "cuCtxSetCurrent")


def _check(driver: Any, err: Any, call: str) -> None:
    if err != driver.CUresult.CUDA_SUCCESS:
        raise InputError(f"{call} failed: {err}")


def is_device_address(addr: int) -> bool:
    """True when ``addr`` is CUDA device (or managed) memory; False for host memory and on a
    machine without CUDA."""
    driver = _driver()
    if driver is None:
        return False
    _ensure_context(driver)
    attr = driver.CUpointer_attribute.CU_POINTER_ATTRIBUTE_MEMORY_TYPE
    err, kind = driver.cuPointerGetAttribute(attr, addr)
    if err != driver.CUresult.CUDA_SUCCESS:
        return False  # memory the driver does not know: plain host memory
    return int(kind) == int(driver.CUmemorytype.CU_MEMORYTYPE_DEVICE)


def read_buffer(addr: int, shape: Sequence[int], dtype: Any) -> np.ndarray:
    """A copy of the ``shape``/``dtype`` array stored at ``addr`` (host or device)."""
    out = np.empty(tuple(int(d) for d in shape), dtype=np.dtype(dtype))
    if out.nbytes == 0:
        return out
    if is_device_address(addr):
        driver = _driver()
        (err,) = driver.cuMemcpyDtoH(out.ctypes.data, addr, out.nbytes)
        _check(driver, err, "cuMemcpyDtoH")
    else:
        ctypes.memmove(out.ctypes.data, addr, out.nbytes)
    return out


def write_buffer(addr: int, array: np.ndarray) -> None:
    """Store ``array`` (C order) at ``addr`` (host or device)."""
    data = np.ascontiguousarray(array)
    if data.nbytes == 0:
        return
    if is_device_address(addr):
        driver = _driver()
        (err,) = driver.cuMemcpyHtoD(addr, data.ctypes.data, data.nbytes)
        _check(driver, err, "cuMemcpyHtoD")
    else:
        ctypes.memmove(addr, data.ctypes.data, data.nbytes)
