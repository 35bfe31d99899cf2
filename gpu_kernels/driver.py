"""The CUDA driver through cuda-python (``cuda.bindings.driver``): context, memory, modules,
launches, events and CUDA-graph capture. Imported only where a GPU is used.

``check()`` is the one place that turns a cuda-python result code into an exception.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from partitioner.errors import TandemError


class CudaError(TandemError):
    """A CUDA driver call failed; the message carries the decoded CUDA error."""


def _driver() -> Any:
    try:
        from cuda.bindings import driver
    except ImportError as err:
        raise CudaError(
            f"cuda-python is not installed ({err}); install tandem-rt[cuda] to use the GPU"
        ) from None
    return driver


def check(result: Any, what: str = "CUDA call") -> Any:
    """``(err, *values)`` from cuda-python -> values (None, one or a tuple); raise on error."""
    drv = _driver()
    if not isinstance(result, tuple):
        result = (result,)
    err, values = result[0], result[1:]
    if int(err) != 0:
        name = getattr(err, "name", str(int(err)))
        try:
            _, text = drv.cuGetErrorString(err)
            text = text.decode() if isinstance(text, bytes) else str(text)
        except Exception:  # the error string itself is best effort
            text = ""
        raise CudaError(f"{what} failed: {name}{': ' + text if text else ''}")
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class KArgs(ctypes.Structure):
    """Mirror of ``struct KArgs`` in common.cuh: the single by-value argument of every kernel."""

    _fields_ = [("p", ctypes.c_longlong * 8), ("i", ctypes.c_int * 32), ("f", ctypes.c_float * 8)]

    @classmethod
    def make(cls, ptrs: list[int] = (), ints: list[int] = (), floats: list[float] = ()) -> KArgs:
        a = cls()
        if len(ptrs) > 8 or len(ints) > 32 or len(floats) > 8:
            raise CudaError("kernel arguments overflow KArgs (8 pointers, 32 ints, 8 floats)")
        for j, v in enumerate(ptrs):
            a.p[j] = int(v)
        for j, v in enumerate(ints):
            a.i[j] = int(v)
        for j, v in enumerate(floats):
            a.f[j] = float(v)
        return a


@dataclass
class DeviceInfo:
    name: str
    arch: int  # e.g. 90
    sm_count: int
    max_smem_optin: int


class Context:
    """The primary context of one device plus a non-blocking stream (CUDA graphs need one)."""

    def __init__(self, device: int = 0) -> None:
        drv = self.drv = _driver()
        check(drv.cuInit(0), "cuInit")
        self.device = check(drv.cuDeviceGet(device), "cuDeviceGet")
        self.ctx = check(drv.cuDevicePrimaryCtxRetain(self.device), "cuDevicePrimaryCtxRetain")
        check(drv.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        attr = drv.CUdevice_attribute

        def get(a: Any) -> int:
            return int(check(drv.cuDeviceGetAttribute(a, self.device), "cuDeviceGetAttribute"))

        major = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        minor = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        raw = check(drv.cuDeviceGetName(256, self.device), "cuDeviceGetName")
        self.info = DeviceInfo(
            name=raw.split(b"\0")[0].decode(errors="replace"),
            arch=major * 10 + minor,
            sm_count=get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            max_smem_optin=get(attr.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN),
        )
        self.stream = check(drv.cuStreamCreate(1), "cuStreamCreate")  # CU_STREAM_NON_BLOCKING

    # ----- memory ------------------------------------------------------------------------
    def alloc(self, nbytes: int) -> int:
        return int(check(self.drv.cuMemAlloc(max(256, int(nbytes))), f"cuMemAlloc({nbytes})"))

    def free(self, ptr: int) -> None:
        check(self.drv.cuMemFree(ptr), "cuMemFree")

    def alloc_host(self, shape: tuple[int, ...], dtype: Any) -> tuple[int, np.ndarray]:
        """Page-locked host memory as a numpy array (fast, truly asynchronous copies)."""
        dt = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape, dtype=np.int64)) * dt.itemsize)
        ptr = int(check(self.drv.cuMemAllocHost(nbytes), f"cuMemAllocHost({nbytes})"))
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(ptr))
        return ptr, raw[: nbytes - (nbytes % dt.itemsize)].view(dt)[
            : int(np.prod(shape, dtype=np.int64))].reshape(shape)

    def free_host(self, ptr: int) -> None:
        check(self.drv.cuMemFreeHost(ptr), "cuMemFreeHost")

    def upload(self, ptr: int, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        if a.nbytes:
            check(self.drv.cuMemcpyHtoD(ptr, a.ctypes.data, a.nbytes), "cuMemcpyHtoD")

    def download(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        out = np.empty(shape, dtype=dtype)
        if out.nbytes:
            check(self.drv.cuMemcpyDtoH(out.ctypes.data, ptr, out.nbytes), "cuMemcpyDtoH")
        return out

    def upload_async(self, ptr: int, array: np.ndarray) -> None:
        check(self.drv.cuMemcpyHtoDAsync(ptr, array.ctypes.data, array.nbytes, self.stream),
              "cuMemcpyHtoDAsync")

    def download_async(self, ptr: int, out: np.ndarray) -> None:
        check(self.drv.cuMemcpyDtoHAsync(out.ctypes.data, ptr, out.nbytes, self.stream),
              "cuMemcpyDtoHAsync")

    def memset(self, ptr: int, byte: int, nbytes: int) -> None:
        check(self.drv.cuMemsetD8(ptr, byte, nbytes), "cuMemsetD8")

    def memset_async(self, ptr: int, byte: int, nbytes: int) -> None:
        check(self.drv.cuMemsetD8Async(ptr, byte, nbytes, self.stream), "cuMemsetD8Async")

    def synchronize(self) -> None:
        check(self.drv.cuStreamSynchronize(self.stream), "cuStreamSynchronize")

    # ----- modules and launches ----------------------------------------------------------
    def load_module(self, cubin: bytes) -> Module:
        image = np.frombuffer(cubin, dtype=np.uint8).copy()
        mod = check(self.drv.cuModuleLoadData(image.ctypes.data), "cuModuleLoadData")
        return Module(self, mod)

    def launch(self, func: Any, grid: tuple[int, int, int], block: int, args: KArgs,
               smem: int = 0, programmatic: bool = False) -> None:
        """Launch on this context's stream. ``programmatic`` (sm_90+): programmatic dependent
        launch, the kernel may be scheduled before the previous one in the stream retires; it
        must begin with griddepcontrol.wait (every Tandem kernel does, see common.cuh)."""
        if not programmatic:
            check(
                self.drv.cuLaunchKernel(func, grid[0], grid[1], grid[2], block, 1, 1, smem,
                                        self.stream, ((args,), (None,)), 0),
                "cuLaunchKernel",
            )
            return
        drv = self.drv
        attr = drv.CUlaunchAttribute()
        attr.id = drv.CUlaunchAttributeID.CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
        attr.value.programmaticStreamSerializationAllowed = 1
        cfg = drv.CUlaunchConfig()
        cfg.gridDimX, cfg.gridDimY, cfg.gridDimZ = grid
        cfg.blockDimX, cfg.blockDimY, cfg.blockDimZ = block, 1, 1
        cfg.sharedMemBytes = smem
        cfg.hStream = self.stream
        cfg.attrs = [attr]
        cfg.numAttrs = 1
        check(drv.cuLaunchKernelEx(cfg, func, ((args,), (None,)), 0), "cuLaunchKernelEx")

    # ----- events and graphs -------------------------------------------------------------
    def event(self) -> Any:
        return check(self.drv.cuEventCreate(0), "cuEventCreate")

    def record(self, event: Any) -> None:
        check(self.drv.cuEventRecord(event, self.stream), "cuEventRecord")

    def elapsed_ms(self, start: Any, end: Any) -> float:
        check(self.drv.cuEventSynchronize(end), "cuEventSynchronize")
        fn = getattr(self.drv, "cuEventElapsedTime", None) or self.drv.cuEventElapsedTime_v2
        return float(check(fn(start, end), "cuEventElapsedTime"))

    def begin_capture(self) -> None:
        mode = self.drv.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        check(self.drv.cuStreamBeginCapture(self.stream, mode), "cuStreamBeginCapture")

    def end_capture(self) -> CudaGraph:
        graph = check(self.drv.cuStreamEndCapture(self.stream), "cuStreamEndCapture")
        exe = check(self.drv.cuGraphInstantiate(graph, 0), "cuGraphInstantiate")
        return CudaGraph(self, graph, exe)


class Module:
    def __init__(self, ctx: Context, handle: Any) -> None:
        self.ctx = ctx
        self.handle = handle
        self._funcs: dict[str, Any] = {}

    def function(self, name: str, smem: int = 0) -> Any:
        """A kernel by its extern "C" name; raises its dynamic shared-memory limit if needed."""
        f = self._funcs.get(name)
        if f is None:
            drv = self.ctx.drv
            f = check(drv.cuModuleGetFunction(self.handle, name.encode()),
                      f"cuModuleGetFunction({name})")
            self._funcs[name] = f
        if smem > 48 * 1024:
            attr = self.ctx.drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(self.ctx.drv.cuFuncSetAttribute(f, attr, smem), "cuFuncSetAttribute")
        return f


class CudaGraph:
    """An instantiated CUDA graph; ``launch()`` replays every captured kernel in one call."""

    def __init__(self, ctx: Context, graph: Any, exe: Any) -> None:
        self.ctx = ctx
        self.graph = graph
        self.exe = exe

    def launch(self) -> None:
        check(self.ctx.drv.cuGraphLaunch(self.exe, self.ctx.stream), "cuGraphLaunch")

    def destroy(self) -> None:
        check(self.ctx.drv.cuGraphExecDestroy(self.exe), "cuGraphExecDestroy")
        check(self.ctx.drv.cuGraphDestroy(self.graph), "cuGraphDestroy")
