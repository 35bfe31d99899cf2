"""The DLA device: the bundled emulator as a runner, and the real-DLA path.

- :class:`DlaEmulatorRunner` runs a DLA segment through ``dla_sim`` (compile to a loadable, run
  with DLA numerics). Outputs are float32 NCHW arrays, like every other runner's.
- :class:`DlaHardwareBackend` is the path to a real DLA: export the segment as ONNX in the style
  of the board's TensorRT generation (``devices/dla_export.py``) and build it with TensorRT for
  ``DeviceType.DLA`` on a Jetson. It is detected through ``import tensorrt`` and the DLA core
  count, and refuses plainly everywhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.runner import BaseRunner
from dla_sim.calibration import parse_cache
from dla_sim.compiler import compile_loadable
from dla_sim.execute import run_loadable
from dla_sim.latency import LoadableTiming, predict_loadable
from dla_sim.loadable import Loadable
from partitioner.errors import TandemError
from partitioner.ir import Graph, Shape


class DlaUnavailableError(TandemError):
    """No real DLA here (no TensorRT, or TensorRT sees no DLA core)."""


class DlaEmulatorRunner(BaseRunner):
    """Run a DLA segment on the bundled emulator.

    Give either ``graph`` (compiled on activation at ``precision`` for DLA ``dla_version``,
    with INT8 ``scales``) or a ready ``loadable``.
    """

    def __init__(
        self,
        graph: Graph | None = None,
        *,
        loadable: Loadable | None = None,
        precision: str = "fp16",
        dla_version: int = 2,
        scales: Mapping[str, float] | None = None,
        output_dtype: str | None = None,
        layer_precisions: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        if graph is None and loadable is None:
            raise TandemError("DlaEmulatorRunner needs a segment graph or a compiled loadable")
        label = name or (loadable.name if loadable is not None else graph.name)  # type: ignore[union-attr]
        super().__init__(graph, f"dla-emu:{label}")
        self.loadable = loadable
        self.precision = precision
        self.dla_version = dla_version
        self.scales = dict(scales or {})
        self.output_dtype = output_dtype
        self.layer_precisions = dict(layer_precisions or {})
        self.label = label

    def activate_impl(self) -> None:
        if self.loadable is None:
            assert self.graph is not None
            self.loadable = compile_loadable(
                self.graph,
                self.precision,
                self.dla_version,
                self.scales,
                name=self.label,
                output_dtype=self.output_dtype,
                layer_precisions=self.layer_precisions,
            )

    def input_metadata(self) -> dict[str, tuple[str | None, Shape | None]]:
        if self.graph is not None:
            return super().input_metadata()
        if self.loadable is None:
            return {}
        # A bare loadable takes real-valued (or already DLA-typed) NCHW arrays of fixed shape.
        return {n: (None, tuple(self.loadable.tensors[n].shape)) for n in self.loadable.inputs}

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.loadable is not None
        return run_loadable(self.loadable, feeds)

    def predicted_timing(self, clock_hz: float, dram_bytes_per_s: float) -> LoadableTiming:
        """Per-op predicted DLA time of this segment (activates the runner if needed)."""
        self.activate()
        assert self.loadable is not None
        return predict_loadable(self.loadable, clock_hz, dram_bytes_per_s)


# ----- real DLA through TensorRT --------------------------------------------------------
@dataclass(frozen=True)
class DlaHardwareInfo:
    tensorrt_version: str
    dla_cores: int


class DlaHardwareBackend:
    """Build a segment for a real DLA with TensorRT (on a Jetson / DRIVE board only)."""

    def __init__(self) -> None:
        self._trt: Any = None

    def probe(self) -> DlaHardwareInfo:
        """TensorRT's version and DLA core count, or :class:`DlaUnavailableError` saying why."""
        try:
            import tensorrt as trt  # type: ignore[import-not-found]
        except ImportError:
            raise DlaUnavailableError(
                "no real DLA here: the TensorRT Python package is not installed (it ships with "
                "JetPack on Jetson boards); use the DLA emulator (--backend cpu) instead"
            ) from None
        builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        cores = int(getattr(builder, "num_DLA_cores", 0))
        if cores == 0:
            raise DlaUnavailableError(
                f"TensorRT {trt.__version__} sees no DLA core on this machine; DLA builds need "
                "a Jetson AGX/NX (Xavier or Orin) or a DRIVE board"
            )
        self._trt = trt
        return DlaHardwareInfo(str(trt.__version__), cores)

    def available(self) -> tuple[bool, str]:
        try:
            info = self.probe()
        except DlaUnavailableError as err:
            return False, str(err)
        return True, f"TensorRT {info.tensorrt_version}, {info.dla_cores} DLA core(s)"

    def build(
        self,
        graph: Graph,
        precision: str,
        dla_core: int = 0,
        calibration_cache: str | None = None,
        gpu_fallback: bool = False,
        scales: Mapping[str, float] | None = None,
        loadable: Loadable | None = None,
    ) -> bytes:
        """A serialized TensorRT engine running ``graph`` on DLA core ``dla_core``.

        The segment travels as :func:`devices.dla_export.export_segment` makes it for this
        board's TensorRT generation (TensorRT 8.5/10: FP32 ONNX, precision flags and the
        calibration cache; TensorRT 11: a strongly typed FP16 / Q-DQ ONNX, no flags). INT8
        scales come from ``scales`` (a plan's calibration) or a ``calibration_cache`` file."""
        from devices.dla_export import export_segment, generation_for

        info = self.probe()
        trt = self._trt
        if not 0 <= dla_core < info.dla_cores:
            raise DlaUnavailableError(
                f"DLA core {dla_core} does not exist; this board has {info.dla_cores}"
            )
        if precision == "int8" and scales is None and calibration_cache is not None:
            with open(calibration_cache) as f:
                _, scales = parse_cache(f.read(), calibration_cache)
        export = export_segment(
            graph,
            precision,
            generation_for(tensorrt=info.tensorrt_version),
            scales=scales,
            loadable=loadable,
            dla_core=dla_core,
            gpu_fallback=gpu_fallback,
        )
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        flags = 1 << int(typed) if export.generation.strongly_typed and typed is not None else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(export.model.SerializeToString()):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise TandemError(f"TensorRT cannot parse DLA segment '{graph.name}': {errors}")
        config = builder.create_builder_config()
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        for flag in export.builder["flags"]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        if export.cache is not None:
            # TensorRT reads the scales through a calibrator that has a cache and no batches,
            # as trtexec --calib does
            config.int8_calibrator = _cache_calibrator(trt, export.cache.encode("utf-8"))
        engine = builder.build_serialized_network(network, config)
        if engine is None:
            raise TandemError(
                f"TensorRT could not build DLA segment '{graph.name}' for core {dla_core}; "
                "run with gpu_fallback=True or check the layers against the DLA support table"
            )
        return bytes(engine)


def _cache_calibrator(trt: Any, cache: bytes) -> Any:
    """A TensorRT ``IInt8EntropyCalibrator2`` that only hands over ``cache``."""

    class CacheCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: Any) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: Any) -> None:
            return None

    return CacheCalibrator()


class TrtDlaRunner(BaseRunner):
    """Run a DLA segment on a real DLA: build it with TensorRT for ``DeviceType.DLA`` on
    activation, then execute the engine with device buffers from the CUDA driver.

    Only a Jetson with TensorRT and a DLA gets this far; everywhere else ``activate`` raises
    :class:`DlaUnavailableError` (the runtime then uses the emulator). Untested off a board.
    """

    def __init__(
        self,
        graph: Graph,
        precision: str,
        dla_core: int = 0,
        scales: Mapping[str, float] | None = None,
        backend: DlaHardwareBackend | None = None,
        loadable: Loadable | None = None,
    ) -> None:
        super().__init__(graph, f"dla{dla_core}-trt:{graph.name}")
        self.segment = graph
        self.precision = precision
        self.dla_core = dla_core
        self.scales = dict(scales or {})
        self.backend = backend or DlaHardwareBackend()
        #: the plan's compiled segment: where the emulator stores INT8, so where TensorRT 11's
        #: export puts Q/DQ
        self.loadable = loadable
        self._context: Any = None
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}

    def activate_impl(self) -> None:
        from cuda.bindings import driver

        from gpu_kernels.driver import check

        engine_bytes = self.backend.build(
            self.segment,
            self.precision,
            self.dla_core,
            scales=self.scales or None,
            loadable=self.loadable,
        )
        trt = self.backend._trt
        check(driver.cuInit(0), "cuInit")
        device = check(driver.cuDeviceGet(0), "cuDeviceGet")
        ctx = check(driver.cuDevicePrimaryCtxRetain(device), "cuDevicePrimaryCtxRetain")
        check(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        runtime.DLA_core = self.dla_core
        self._engine = runtime.deserialize_cuda_engine(engine_bytes)
        self._context = self._engine.create_execution_context()
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            shape = tuple(self._engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            host = np.empty(shape, dtype)
            ptr = int(check(driver.cuMemAlloc(max(host.nbytes, 1)), "cuMemAlloc"))
            self._buffers[name] = (ptr, host)
            self._context.set_tensor_address(name, ptr)

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from cuda.bindings import driver

        from gpu_kernels.driver import check

        outputs = {t.name for t in self.segment.outputs}
        for name, (ptr, host) in self._buffers.items():
            if name in feeds:
                data = np.ascontiguousarray(feeds[name], dtype=host.dtype)
                check(driver.cuMemcpyHtoD(ptr, data, data.nbytes), "cuMemcpyHtoD")
        if not self._context.execute_async_v3(0):
            raise TandemError(f"TensorRT failed to run DLA segment '{self.segment.name}'")
        check(driver.cuStreamSynchronize(0), "cuStreamSynchronize")
        result = {}
        for name in outputs:
            ptr, host = self._buffers[name]
            check(driver.cuMemcpyDtoH(host, ptr, host.nbytes), "cuMemcpyDtoH")
            result[name] = host.astype(np.float32, copy=True)
        return result

    def deactivate_impl(self) -> None:
        from cuda.bindings import driver

        for ptr, _ in self._buffers.values():
            driver.cuMemFree(ptr)
        self._buffers, self._context = {}, None
