"""``Runtime``, ``Engine`` and ``ExecutionContext``: a plan loaded and run (TensorRT's
``Runtime.deserialize_cuda_engine`` / ``ICudaEngine`` / ``IExecutionContext``).

An engine is a decoded plan (no code runs while loading: the plan has no pickle). A context runs
it with the plan runtime: GPU segments on CUDA when this machine has the plan's GPU, else on the
numpy reference; DLA segments on the emulator (on a Jetson, through TensorRT).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from devices.plan import Plan, decode_plan, encode_plan
from devices.plan_header import Binding
from devices.runtime import PlanRunner, RuntimeError_, plan_footprint
from partitioner.errors import InputError
from partitioner.profiles import check_shape, dims_text
from tandem.buffers import address_of, read_buffer, write_buffer
from tandem.builder import Logger
from tandem.network import DataType
from tandem.profiler import report
from tandem.trt_names import TrtApi
from tandem.trt_types import ProfilingVerbosity, nptype


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class Runtime(TrtApi):
    """Deserialises plans. ``backend`` chooses where GPU segments run: auto | cuda | cpu."""

    _trt_api = "Runtime"

    def __init__(self, logger: Logger | None = None, backend: str = "auto") -> None:
        self.logger = logger or Logger()
        self.backend = backend

    def deserialize_cuda_engine(self, serialized: bytes | bytearray | memoryview) -> Engine:
        data = bytes(serialized)
        return Engine(decode_plan(data, where="<serialized engine>"), self.backend)


class Engine(TrtApi):
    """A built plan: its I/O tensors, profiles and layers (TensorRT's ``ICudaEngine``)."""

    _trt_api = "ICudaEngine"

    def __init__(self, plan: Plan, backend: str = "auto") -> None:
        self.plan = plan
        self.backend = backend
        head = plan.record
        self._io = [(b, TensorIOMode.INPUT) for b in head.inputs] + [
            (b, TensorIOMode.OUTPUT) for b in head.outputs
        ]
        self._by_name = {b.name: (b, mode) for b, mode in self._io}
        self.profiles = head.optimization_profiles()

    @property
    def name(self) -> str:
        model = self.plan.record.model
        return "engine" if model is None else model

    @property
    def target(self) -> str:
        return self.plan.target

    @property
    def num_io_tensors(self) -> int:
        return len(self._io)

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0].name

    def _binding(self, name: str) -> tuple[Binding, TensorIOMode]:
        try:
            return self._by_name[name]
        except KeyError:
            raise InputError(
                f"engine has no I/O tensor '{name}'; it has {', '.join(self._by_name)}"
            ) from None

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._binding(name)[1]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        """The shape with -1 for each dynamic dimension (as TensorRT reports it)."""
        shape = self._binding(name)[0].shape or []
        return tuple(d if isinstance(d, int) else -1 for d in shape)

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.of(self._binding(name)[0].dtype or "float32")

    @property
    def num_optimization_profiles(self) -> int:
        return max(1, len(self.profiles))

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        """``[min, opt, max]`` of input ``name`` in a profile (the static shape without any)."""
        if not self.profiles:
            shape = self.get_tensor_shape(name)
            return [shape, shape, shape]
        if not 0 <= profile_index < len(self.profiles):
            raise InputError(f"profile {profile_index} does not exist; the engine has "
                             f"{len(self.profiles)}")
        return list(self.profiles[profile_index].get_shape(name))

    @property
    def num_layers(self) -> int:
        return len(self.plan.record.layers)

    @property
    def device_memory_size(self) -> int:
        """Bytes of activations live at the peak of a run (the footprint estimate the runtime's
        memory check uses), at each input's largest shape: its last profile's max, or the
        static shape. TensorRT's figure also counts tactic scratch, which Tandem has none of."""
        shapes = {}
        for name in self.plan.record.input_names:
            shapes[name] = (self.get_tensor_profile_shape(name, len(self.profiles) - 1)[2]
                            if self.profiles else self.get_tensor_shape(name))
        return int(plan_footprint(self.plan, shapes).peak_bytes)

    @property
    def profiling_verbosity(self) -> ProfilingVerbosity:
        """What the inspector tells (plans from ``tandem build`` record everything)."""
        return ProfilingVerbosity[self.plan.record.profiling_verbosity or "DETAILED"]

    @property
    def device_types(self) -> dict[str, str]:
        """Layer name -> device (``gpu``, ``dla0``, ``dla1``, ``cpu``) as placed at build."""
        return {entry.name: entry.device for entry in self.plan.record.layers}

    def serialize(self) -> bytes:
        return encode_plan(self.plan)

    def create_engine_inspector(self) -> EngineInspector:
        return EngineInspector(self)

    def create_execution_context(self) -> ExecutionContext:
        return ExecutionContext(self)


class EngineInspector:
    """Per-layer information (TensorRT's ``IEngineInspector``); JSON as ``--exportLayerInfo``.
    As in TensorRT, what it tells follows the build's ``config.profiling_verbosity``: DETAILED
    everything, LAYER_NAMES_ONLY the names, NONE nothing."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _layer(self, layer: dict[str, Any], format: LayerInformationFormat) -> Any:
        verbosity = self.engine.profiling_verbosity
        if verbosity == ProfilingVerbosity.LAYER_NAMES_ONLY:
            return layer["Name"] if format != LayerInformationFormat.JSON else {
                "Name": layer["Name"]}
        if format == LayerInformationFormat.JSON:
            return layer
        return f"{layer['Name']} [{layer['LayerType']}] on {layer['Device']} {layer['Precision']}"

    def get_layer_information(self, index: int, format: LayerInformationFormat) -> str:
        if self.engine.profiling_verbosity == ProfilingVerbosity.NONE:
            return ""
        layer = self._layer(layer_info(self.engine.plan)["Layers"][index], format)
        return json.dumps(layer) if format == LayerInformationFormat.JSON else str(layer)

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        if self.engine.profiling_verbosity == ProfilingVerbosity.NONE:
            return ""
        info = layer_info(self.engine.plan)
        layers = [self._layer(layer, format) for layer in info["Layers"]]
        if format == LayerInformationFormat.JSON:
            return json.dumps({**info, "Layers": layers})
        return "\n".join(str(layer) for layer in layers)


def layer_info(plan: Plan) -> dict[str, Any]:
    """trtexec's ``--exportLayerInfo`` layout: ``{"Layers": [...], "Bindings": [...]}``."""
    head = plan.record
    segment_of = {name: seg for seg in head.segments for name in seg.layers}
    layers = []
    for entry in head.layers:
        seg = segment_of.get(entry.name)
        layers.append({
            "Name": entry.name,
            "LayerType": entry.op,
            "Device": entry.device.upper(),
            "Precision": entry.precision,
            "Segment": seg.name if seg else None,
            "Reason": entry.reason,
            "PredictedMs": entry.predicted_ms,
            "SegmentInputs": list(seg.inputs) if seg else [],
            "SegmentOutputs": list(seg.outputs) if seg else [],
        })
    return {"Layers": layers, "Bindings": head.input_names + head.output_names}


class ExecutionContext(TrtApi):
    """Runs an engine: ``set_input_shape`` for dynamic inputs, then ``execute(feeds)`` with
    numpy arrays, or TensorRT's ``set_tensor_address`` + ``execute_async_v3(stream)`` /
    ``execute_v2(bindings)`` with buffer addresses (see :mod:`tandem.buffers`)."""

    _trt_api = "IExecutionContext"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: an :class:`~tandem.profiler.IProfiler`: gets each run's segment times
        self.profiler: Any = None
        self._addresses: dict[str, int] = {}
        self._runner = PlanRunner(engine.plan, engine.backend)
        self._runner.activate()
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._last: dict[str, tuple[int, ...]] = {}
        self.active_optimization_profile = 0

    # ----- shapes -----
    def set_input_shape(self, name: str, shape: Sequence[int]) -> bool:
        """Fix a dynamic input's shape for the next runs; refused (InputError) when the shape
        is outside the active optimisation profile or contradicts a static dimension."""
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            raise InputError(f"'{name}' is an output; set_input_shape takes an input")
        shape = tuple(int(d) for d in shape)
        static = self.engine.get_tensor_shape(name)
        if len(shape) != len(static) or any(s not in (-1, d) for s, d in zip(static, shape)):
            raise InputError(f"input '{name}': shape {dims_text(shape)} does not fit the "
                             f"engine's {dims_text(static)} (-1 = dynamic)")
        profiles = self.engine.profiles
        if profiles:
            check_shape(profiles, {name: np.empty(shape, np.uint8)},
                        self.active_optimization_profile)
        self._shapes[name] = shape
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self._shapes:
            return self._shapes[name]
        if name in self._last:
            return self._last[name]
        return self.engine.get_tensor_shape(name)

    @property
    def all_shape_inputs_specified(self) -> bool:
        return True  # a Tandem plan has no shape-tensor inputs

    def infer_shapes(self) -> list[str]:
        """The dynamic inputs whose shape is not set yet (empty when every shape is known), as
        TensorRT's ``infer_shapes`` lists them."""
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        return [n for n in names if self.engine.get_tensor_mode(n) == TensorIOMode.INPUT
                and -1 in self.engine.get_tensor_shape(n) and n not in self._shapes]

    @property
    def all_binding_shapes_specified(self) -> bool:
        return all(
            -1 not in self.engine.get_tensor_shape(n) or n in self._shapes
            for n in (self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors))
            if self.engine.get_tensor_mode(n) == TensorIOMode.INPUT
        )

    # ----- running -----
    def execute(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once; returns ``{output name: array}``."""
        arrays = {name: np.asarray(v) for name, v in feeds.items()}
        for name, shape in self._shapes.items():
            if name in arrays and tuple(arrays[name].shape) != shape:
                raise InputError(f"input '{name}' has shape {dims_text(arrays[name].shape)} but "
                                 f"set_input_shape gave {dims_text(shape)}")
        if self.engine.profiles:
            check_shape(self.engine.profiles, arrays, self.active_optimization_profile)
        outputs = self._runner.infer(arrays)
        self._last = {name: tuple(a.shape) for name, a in {**arrays, **outputs}.items()}
        if self.profiler is not None:
            report(self.profiler, self._runner.segment_ms, self._runner.backends())
        return outputs

    # ----- TensorRT's address-based I/O -----
    def set_tensor_address(self, name: str, memory: Any) -> bool:
        """The buffer of I/O tensor ``name``: a device pointer (cuda-python, PyTorch) or a
        host address (a numpy array's ``ctypes.data``)."""
        self.engine.get_tensor_mode(name)  # the name must be an I/O tensor
        self._addresses[name] = address_of(memory, f"set_tensor_address('{name}')")
        return True

    def get_tensor_address(self, name: str) -> int:
        self.engine.get_tensor_mode(name)
        return self._addresses.get(name, 0)

    def set_optimization_profile_async(self, profile_index: int, stream_handle: Any) -> bool:
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            raise InputError(f"profile {profile_index} does not exist; the engine has "
                             f"{self.engine.num_optimization_profiles}")
        self.active_optimization_profile = int(profile_index)
        return True

    def execute_async_v3(self, stream_handle: Any = 0) -> bool:
        """Run on the buffers given by ``set_tensor_address``. Work already queued on the
        stream (input copies) finishes first; the results are in the output buffers when this
        returns (the runtime's CUDA segments run on their own stream), so later work on the
        stream sees them."""
        _synchronize(stream_handle)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        unset = [n for n in names if n not in self._addresses]
        if unset:
            raise InputError(f"no address for tensor(s) {', '.join(unset)}: call "
                             "set_tensor_address(name, pointer) for every I/O tensor first")
        feeds = {}
        for name in names:
            if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
                continue
            shape = self.get_tensor_shape(name) if name in self._shapes else (
                self.engine.get_tensor_shape(name))
            if -1 in shape:
                raise InputError(f"input '{name}' is dynamic ({dims_text(shape)}): call "
                                 "set_input_shape before execute_async_v3")
            dtype = nptype(self.engine.get_tensor_dtype(name))
            feeds[name] = read_buffer(self._addresses[name], shape, dtype)
        outputs = self.execute(feeds)
        for name, array in outputs.items():
            write_buffer(self._addresses[name], array)
        return True

    def execute_v2(self, bindings: Sequence[Any]) -> bool:
        """Run synchronously on ``bindings``: one buffer address per I/O tensor, in the
        engine's I/O tensor order (``get_tensor_name(i)``)."""
        count = self.engine.num_io_tensors
        if len(bindings) != count:
            raise InputError(f"execute_v2: {len(bindings)} binding(s) given, the engine has "
                             f"{count} I/O tensors (in get_tensor_name(i) order)")
        for i, memory in enumerate(bindings):
            self.set_tensor_address(self.engine.get_tensor_name(i), memory)
        return self.execute_async_v3(0)

    def execute_async(self, feeds: Mapping[str, np.ndarray], stream: Any) -> dict[str, np.ndarray]:
        """Run with GPU segments on CUDA (needs the plan's GPU here, else an error).

        The runtime's GPU segments use their own stream: the call returns after the work is
        done, so ``stream`` only orders this call after work already queued on it.
        """
        backends = set(self._runner.backends().values())
        if "cuda" not in backends:
            raise RuntimeError_(
                "execute_async needs CUDA: this context runs "
                + (", ".join(sorted(backends)) or "nothing")
                + f" (the plan is for {self.engine.target}, built for GPU arch "
                f"{self.engine.plan.record.arch}); use execute(), or build for "
                "target 'host' on a machine with a GPU"
            )
        _synchronize(stream)
        return self.execute(feeds)

    @property
    def backends(self) -> dict[str, str]:
        """Segment -> where it runs here (``cuda``, ``cpu``, ``dla-emulator``)."""
        return self._runner.backends()

    @property
    def notes(self) -> list[str]:
        return list(self._runner.notes)

    def close(self) -> None:
        if self._runner.is_active:
            self._runner.deactivate()

    def __enter__(self) -> ExecutionContext:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a finaliser must not raise (e.g. at interpreter exit)
            pass


def _synchronize(stream: Any) -> None:
    """Wait for a CUDA stream given as a ``cuda.core`` Stream, a driver handle, or an int."""
    if hasattr(stream, "cuda_stream"):  # a torch.cuda.Stream
        stream = stream.cuda_stream
    if hasattr(stream, "sync"):
        stream.sync()
        return
    if stream is None or int(stream) == 0:
        return
    from cuda.bindings import driver

    (err,) = driver.cuStreamSynchronize(driver.CUstream(int(stream)))
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError_(f"cuStreamSynchronize failed: {err}")


def _refitter_class() -> type:
    """``tandem.Refitter``: targets.refit's Refitter, also taking an :class:`Engine` (as
    TensorRT's ``Refitter(engine, logger)`` does)."""
    from targets.refit import Refitter as PlanRefitter

    class Refitter(PlanRefitter):  # type: ignore[misc, valid-type]
        __doc__ = PlanRefitter.__doc__

        def __init__(self, engine: Any, logger: Logger | None = None) -> None:
            super().__init__(engine.plan if isinstance(engine, Engine) else engine)
            self.engine = engine if isinstance(engine, Engine) else None
            self.logger = logger

        def refit_cuda_engine(self) -> Any:
            """From an Engine: refit it in place (contexts created afterwards see the new
            weights) and return True, as TensorRT does; from a plan: the new Plan."""
            plan = super().refit_cuda_engine()
            if self.engine is None:
                return plan
            self.engine.plan = plan
            return True

    return Refitter
