"""``Builder`` and ``BuilderConfig``: TensorRT's build step on Tandem's cross-builder.

``Builder.build_serialized_network(network, config)`` places every layer for ``config.target``
(GPU / DLA / CPU on a host without a GPU), compiles DLA segments to loadables, and returns the
plan file's bytes — the same bytes ``tandem build`` writes. The configuration maps onto the
project's device policy: flags give the precision and GPU fallback, ``default_device_type`` and
``DLA_core`` the default device, ``set_device_type`` and ``layer.precision`` become ordered
rules that pin single layers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from devices.plan import encode_plan
from devices.plan_header import LayerRecord
from dla_sim.calibration import CalibrationError
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.policy import Rule
from partitioner.profiles import OptimizationProfile
from tandem.buffers import address_of, read_buffer
from tandem.network import DataType, ILayer, NetworkDefinition
from tandem.trt_names import TrtApi, UnsupportedApiError
from tandem.trt_types import (
    DLA_POOL_DEFAULTS,
    EngineCapability,
    MemoryPoolType,
    ProfilingVerbosity,
    check_pool_limit,
)


class ILogger(TrtApi):
    """TensorRT's logger interface: subclasses implement ``log(severity, msg)``. Tandem's
    library code never prints; the builder hands its warnings to the logger it was given."""

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)
    _trt_api = "ILogger"

    def __init__(self, min_severity: int = 2) -> None:
        self.min_severity = min_severity

    def log(self, severity: int, msg: str) -> None:
        raise NotImplementedError("an ILogger subclass implements log(severity, msg)")


class Logger(ILogger):
    """TensorRT's stock logger: keeps the messages at or above ``min_severity`` in
    ``messages`` (TensorRT's prints them; Tandem's library code does not print)."""

    _trt_api = "Logger"

    def __init__(self, min_severity: int = ILogger.WARNING) -> None:
        super().__init__(min_severity)
        self.messages: list[tuple[int, str]] = []

    def log(self, severity: int, msg: str) -> None:
        if severity <= self.min_severity:
            self.messages.append((severity, msg))


class BuilderFlag(enum.IntEnum):
    """Numbered as TensorRT 10's ``BuilderFlag`` (NvInfer.h), so ``config.flags`` bit masks
    written for TensorRT (``1 << int(trt.BuilderFlag.FP16)``) mean the same here."""

    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 4
    DISABLE_TIMING_CACHE = 5
    TF32 = 6
    SPARSE_WEIGHTS = 7
    #: layer precisions (``layer.precision``, ``set_output_type``) that cannot be met: a
    #: failed build (OBEY) or a warning (PREFER); without either, honoured where possible
    OBEY_PRECISION_CONSTRAINTS = 9
    PREFER_PRECISION_CONSTRAINTS = 10
    FP8 = 15
    BF16 = 17
    INT4 = 22

    def __str__(self) -> str:
        return f"BuilderFlag.{self.name}"


# Accepted, no effect on a Tandem plan: the runtime has no debug sync; every plan is refittable
# (tandem.Refitter); tactics come from the cost model unless a timing cache is set; FP32 GPU
# kernels do not use TF32 tensor cores; weights are dense. Refused: Tandem's precisions are
# FP32, FP16 and INT8.
_REFUSED = {BuilderFlag.BF16, BuilderFlag.FP8, BuilderFlag.INT4}


class DeviceType(enum.Enum):
    GPU = "gpu"
    DLA = "dla"


class IInt8Calibrator(TrtApi):
    """Base for INT8 calibrators (TensorRT's ``IInt8EntropyCalibrator2``): Tandem always runs
    EntropyCalibrator2 over the batches. Override ``get_batch(names)``: return one buffer
    address per name (device pointers from cuda-python / PyTorch, or host addresses), as
    TensorRT's calibrators do, or ``{input: array}``; None (or ``[]``) when done. To use a
    cache, override the two cache methods (TensorRT's text format)."""

    _trt_api = "IInt8Calibrator"

    def __init__(self) -> None:  # TensorRT's subclasses call the base __init__
        pass

    def get_batch_size(self) -> int:
        return 1

    def get_algorithm(self) -> str:
        return "ENTROPY_CALIBRATION_2"

    def get_batch(self, names: Sequence[str]) -> Any:
        raise NotImplementedError("a calibrator must implement get_batch(names)")

    def read_calibration_cache(self) -> bytes | None:
        return None

    def write_calibration_cache(self, cache: bytes) -> None:
        return None


IInt8EntropyCalibrator2 = IInt8Calibrator


class _AddressBatches:
    """A TensorRT calibrator seen through the calibration path's interface: the buffers its
    ``get_batch`` returns (addresses) are read at the network's input shapes."""

    def __init__(self, calibrator: Any, inputs: Mapping[str, tuple[tuple[int, ...], str]]):
        self.calibrator = calibrator
        self.inputs = inputs

    def get_batch(self, names: Sequence[str]) -> Mapping[str, Any] | None:
        got = self.calibrator.get_batch(list(names))
        if got is None or (isinstance(got, (list, tuple)) and not got):
            return None
        if isinstance(got, Mapping):
            return got
        if len(got) != len(names):
            raise CalibrationError(
                f"calibrator get_batch returned {len(got)} buffer(s) for {len(names)} input(s) "
                f"({', '.join(names)}); expected one address per input, in that order"
            )
        batch = {}
        for name, buffer in zip(names, got):
            shape, dtype = self.inputs[name]
            if isinstance(buffer, np.ndarray):  # an array itself: its own shape is checked
                batch[name] = buffer
                continue
            addr = address_of(buffer, f"calibrator get_batch, input '{name}'")
            batch[name] = read_buffer(addr, shape, dtype)
        return batch

    def read_calibration_cache(self) -> bytes | None:
        cached = self.calibrator.read_calibration_cache()
        return bytes(cached) if cached else None

    def write_calibration_cache(self, cache: bytes) -> None:
        self.calibrator.write_calibration_cache(cache)


class BuilderConfig(TrtApi):
    """What to build: precision flags, default device, DLA core, per-layer pins, profiles."""

    _trt_api = "IBuilderConfig"

    def __init__(self) -> None:
        self._flags: set[BuilderFlag] = set()
        self.default_device_type = DeviceType.GPU  # TensorRT's default
        self.DLA_core = 0
        #: a catalog board (``orin-agx-64gb``), a target YAML path, or ``host``; unset, a GPU
        #: build is for ``host`` and a DLA build is refused (there is no DLA to guess)
        self.target: str | None = None
        self.power_mode: str | None = None
        self.int8_calibrator: Any = None
        #: ``trt`` (TensorRT's placement rules) or ``cost`` (the cost model)
        self.partition = "trt"
        self.profiles: list[OptimizationProfile] = []
        self.device_types: dict[str, DeviceType] = {}
        self.timing_cache: TimingCache | None = None
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.engine_capability = EngineCapability.STANDARD
        self.memory_pools: dict[MemoryPoolType, int] = {}

    # ----- flags -----
    def set_flag(self, flag: BuilderFlag) -> None:
        flag = BuilderFlag(flag)
        if flag in _REFUSED:
            raise UnsupportedApiError(
                f"IBuilderConfig.set_flag(BuilderFlag.{flag.name}): Tandem builds FP32, FP16 "
                "and INT8 only; use BuilderFlag.FP16 or BuilderFlag.INT8"
            )
        self._flags.add(flag)

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return BuilderFlag(flag) in self._flags

    @property
    def flags(self) -> int:
        """The flags as TensorRT's bit mask (``1 << int(BuilderFlag.X)`` per flag set)."""
        return sum(1 << int(f) for f in self._flags)

    @flags.setter
    def flags(self, mask: int) -> None:
        known = {1 << int(f): f for f in BuilderFlag}
        unknown = int(mask) & ~sum(known)
        if unknown:
            raise ConfigError(f"config.flags = {mask}: bits {unknown:#x} are no BuilderFlag")
        self._flags = set()
        for bit, flag in known.items():
            if int(mask) & bit:
                self.set_flag(flag)

    # ----- memory pools -----
    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        """Recorded as TensorRT does (an upper bound). A Tandem build allocates no workspace and
        sizes DLA loadables with its own limits, so the values only travel with the config."""
        pool = MemoryPoolType(pool)
        self.memory_pools[pool] = check_pool_limit(pool, pool_size)

    def get_memory_pool_limit(self, pool: MemoryPoolType) -> int | None:
        pool = MemoryPoolType(pool)
        return self.memory_pools.get(pool, DLA_POOL_DEFAULTS.get(pool))

    # ----- devices -----
    def set_device_type(self, layer: ILayer | str, device_type: DeviceType) -> None:
        self.device_types[_layer_name(layer)] = DeviceType(device_type)

    def get_device_type(self, layer: ILayer | str) -> DeviceType:
        return self.device_types.get(_layer_name(layer), self.default_device_type)

    def reset_device_type(self, layer: ILayer | str) -> None:
        self.device_types.pop(_layer_name(layer), None)

    def is_device_type_set(self, layer: ILayer | str) -> bool:
        return _layer_name(layer) in self.device_types

    def can_run_on_DLA(self, layer: ILayer) -> bool:  # noqa: N802 - TensorRT's name
        """Whether ``layer`` can run on ``config.target``'s DLA at the config's precision;
        ``get_DLA_reason(layer)`` says why (or why not)."""
        return self._dla_verdict(layer).ok

    def get_DLA_reason(self, layer: ILayer) -> str:  # noqa: N802 - as can_run_on_DLA
        return self._dla_verdict(layer).reason or "all DLA restrictions met"

    def _dla_verdict(self, layer: ILayer) -> Any:
        from devices.capability import capabilities_for
        from partitioner.capability import Verdict
        from targets.build import resolve_target

        if self.target is None:
            raise ConfigError(f"can_run_on_DLA({layer.name}): set config.target to a board "
                              "with a DLA (e.g. 'orin-agx-64gb') first")
        target = resolve_target(self.target, self.power_mode)
        dla = capabilities_for(target, int(self.DLA_core)).get("dla")
        if dla is None:
            return Verdict.no(f"target {target.name} has no DLA")
        precision: Any = layer._network.layer_precisions.get(layer.name, self.precision)
        if precision == "fp32":
            return Verdict.no("DLA runs FP16/INT8 only: set BuilderFlag.FP16 or BuilderFlag.INT8")
        layer._network._infer()
        graph, node = layer._network.graph, layer._node
        verdict = dla.supports(node, graph, precision)
        if not verdict.ok and precision == "int8":  # as the build: INT8 layers may run FP16
            fp16 = dla.supports(node, graph, "fp16")
            if fp16.ok:
                return Verdict.yes(f"runs fp16 on the DLA ({verdict.reason})")
        return verdict

    # ----- profiles and caches -----
    def add_optimization_profile(self, profile: OptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self.profiles)

    def create_timing_cache(self, data: bytes = b"") -> TimingCache:
        return TimingCache(data)

    def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool = False) -> bool:
        self.timing_cache = cache
        return True

    def get_timing_cache(self) -> TimingCache | None:
        return self.timing_cache

    @property
    def precision(self) -> str:
        if BuilderFlag.INT8 in self._flags:
            return "int8"
        return "fp16" if BuilderFlag.FP16 in self._flags else "fp32"

    @property
    def wants_dla(self) -> bool:
        return (
            self.default_device_type == DeviceType.DLA
            or DeviceType.DLA in self.device_types.values()
            or self.engine_capability == EngineCapability.DLA_STANDALONE
        )


class TimingCache:
    """Measured tactic times (``gpu_kernels`` JSON). Stored in the plan; CUDA GPU segments read
    it when they pick tactics on the device (the cross-build itself times nothing)."""

    def __init__(self, data: bytes = b"") -> None:
        from gpu_kernels.timing_cache import TimingCache as Cache

        self._cache = Cache.from_json(data.decode("utf-8"), "<timing cache>") if data else Cache()

    def serialize(self) -> bytes:
        return self._cache.to_json().encode("utf-8")

    def combine(self, other: TimingCache, ignore_mismatch: bool = False) -> bool:
        self._cache.merge(other._cache)
        return True

    def __len__(self) -> int:
        return len(self._cache)


def _layer_name(layer: ILayer | str) -> str:
    return layer if isinstance(layer, str) else layer.name


# Compute capabilities with fast FP16 arithmetic (sm_53, sm_60, sm_62 and Volta on; sm_61
# runs FP16 at 1/64 rate) and with INT8 dot products (dp4a: sm_61 on), per the CUDA C++
# Programming Guide's "Arithmetic Instructions" throughput table.
_FAST_FP16_ARCHS = {53, 60, 62}


class Builder(TrtApi):
    """Creates networks, configs and profiles, and builds plans (TensorRT's ``Builder``)."""

    _trt_api = "IBuilder"

    def __init__(self, logger: ILogger | None = None) -> None:
        self.logger = logger or Logger()
        self._last_config: BuilderConfig | None = None

    def create_network(self, flags: int = 0) -> NetworkDefinition:
        return NetworkDefinition(flags=flags)

    def create_builder_config(self) -> BuilderConfig:
        self._last_config = BuilderConfig()
        return self._last_config

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    # ----- the platform: the target of this builder's latest config (``host`` without one) --
    def _platform(self) -> Any:
        from targets.build import resolve_target

        config = self._last_config
        name = config.target if config is not None and config.target else "host"
        return resolve_target(name, config.power_mode if config is not None else None)

    def _sm(self) -> int | None:
        gpu = self._platform().gpu
        return int(gpu.arch.removeprefix("sm_")) if gpu is not None else None

    @property
    def platform_has_fast_fp16(self) -> bool:
        sm = self._sm()
        return sm is not None and (sm in _FAST_FP16_ARCHS or sm >= 70)

    @property
    def platform_has_fast_int8(self) -> bool:
        sm = self._sm()
        return sm is not None and sm >= 61

    @property
    def num_DLA_cores(self) -> int:  # noqa: N802 - TensorRT's name
        dla = self._platform().dla
        return int(dla.cores) if dla is not None else 0

    def build_serialized_network(self, network: NetworkDefinition, config: BuilderConfig) -> bytes:
        """The plan's bytes (write them to a ``.plan`` file, or give them to ``Runtime``)."""
        from devices.calibration import Calibration, DataSource
        from targets.build import build, resolve_target
        from targets.request import BuildRequest

        if not network.graph.outputs:
            raise ConfigError(f"network '{network.name}' has no outputs: call mark_output()")
        _check_typing(network, config)
        capability = EngineCapability(config.engine_capability)
        if capability == EngineCapability.SAFETY:
            raise UnsupportedApiError(
                "EngineCapability.SAFETY needs NVIDIA's safety runtime, which Tandem does not "
                "target; use STANDARD, or DLA_STANDALONE for a DLA-only plan"
            )
        if capability == EngineCapability.DLA_STANDALONE and config.precision == "fp32":
            raise ConfigError("EngineCapability.DLA_STANDALONE: the DLA runs FP16/INT8 only; "
                              "set BuilderFlag.FP16 or BuilderFlag.INT8")
        graph = _prepare(network)
        cache = config.timing_cache
        calibrator = config.int8_calibrator
        request = BuildRequest(
            model=network.source or network.name,
            target=resolve_target(_target_name(config), config.power_mode),
            policy=_policy(network, config),
            graph=graph,
            profiles=tuple(config.profiles),
            calibration=Calibration(
                # a TensorRT-style calibrator's buffers are read at the input shapes; what
                # tandem.source_from_path gives (a folder of images or .npz, a cache) is a source
                calibrator if calibrator is None or isinstance(calibrator, DataSource)
                else _AddressBatches(calibrator, _input_specs(graph, config.profiles)),
                hint="set config.int8_calibrator (a tandem.IInt8EntropyCalibrator2 whose "
                "get_batch returns input buffers)",
            ),
            timing_cache=cache._cache if cache is not None else None,
        )
        plan = build(request).plan
        _check_precisions(network, config, plan.record.layers, self.logger)
        plan.header["profiling_verbosity"] = config.profiling_verbosity.name
        return encode_plan(plan)


def _target_name(config: BuilderConfig) -> str:
    """``config.target``; unset, ``host`` for a GPU build, and an error for a DLA build (it
    would otherwise be placed on this machine, which has no DLA: GPU or even all-CPU)."""
    if config.target is not None:
        return config.target
    if config.wants_dla:
        raise ConfigError(
            "config.target is not set, and this is a DLA build (default_device_type=DLA, a "
            "layer set to DeviceType.DLA, or EngineCapability.DLA_STANDALONE): set "
            "config.target to the board it is for (a catalog name such as 'orin-agx-64gb' or "
            "a target YAML path); 'host' builds for this machine, which has no DLA"
        )
    return "host"


def _check_typing(network: NetworkDefinition, config: BuilderConfig) -> None:
    """A STRONGLY_TYPED network takes precisions from its tensor types, as in TensorRT:
    precision flags and layer precisions are refused. Tandem honours FP32 types; an FP16
    tensor (mixed precision from types) is refused with the way to get it."""
    if not network.strongly_typed:
        return
    what = "NetworkDefinitionCreationFlag.STRONGLY_TYPED"
    flags = sorted(f.name for f in config._flags & {BuilderFlag.FP16, BuilderFlag.INT8})
    if flags:
        raise ConfigError(f"{what}: precisions come from tensor types, so BuilderFlag."
                          f"{flags[0]} is refused (as TensorRT refuses it); create the network "
                          "without STRONGLY_TYPED to use precision flags")
    if network.layer_precisions or network.output_types:
        first = next(iter(network.layer_precisions), None) or next(iter(network.output_types))[0]
        raise ConfigError(f"{what}: layer '{first}' has a precision or output type set; a "
                          "strongly typed network takes them from its tensors (use Cast)")
    half = [t.name for t in network.graph.tensors.values() if t.dtype in ("float16", "bfloat16")]
    if half:
        raise UnsupportedApiError(
            f"{what} with FP16 tensors ('{half[0]}', {len(half)} in all): Tandem does not yet "
            "build precisions from tensor types; build the FP32 network with BuilderFlag.FP16, "
            "or pin layers with layer.precision"
        )


def _precision_pins(network: NetworkDefinition) -> dict[str, str]:
    """Layer -> precision from ``layer.precision``, else from a float ``set_output_type``."""
    pins = dict(network.layer_precisions)
    for (name, index), dtype in network.output_types.items():
        if dtype not in (DataType.FLOAT, DataType.HALF, DataType.INT8):
            raise ConfigError(f"layer '{name}': set_output_type({index}, {dtype}): Tandem "
                              "constrains float outputs only (FLOAT, HALF, INT8)")
        pins.setdefault(name, dtype.precision)
    return pins


def _check_precisions(network: NetworkDefinition, config: BuilderConfig,
                      layers: Sequence[LayerRecord], logger: ILogger) -> None:
    """Precision constraints the plan does not meet: OBEY fails the build, otherwise a
    warning to the logger (TensorRT's PREFER and default behaviours)."""
    got: dict[str, str | None] = {entry.name: entry.precision for entry in layers}
    unmet = [(name, want, got[name]) for name, want in _precision_pins(network).items()
             if name in got and got[name] != want]
    if not unmet:
        return
    text = ", ".join(f"'{n}' ({want} set, runs {have})" for n, want, have in unmet[:10])
    if config.get_flag(BuilderFlag.OBEY_PRECISION_CONSTRAINTS):
        raise ConfigError(
            f"OBEY_PRECISION_CONSTRAINTS: {len(unmet)} layer(s) cannot run at their set "
            f"precision on {config.target or 'host'}: {text}; set PREFER_PRECISION_CONSTRAINTS "
            "instead, or change those layers' precision"
        )
    logger.log(ILogger.WARNING, f"{len(unmet)} layer(s) do not run at their set precision: "
               f"{text}")


def _input_specs(graph: Graph, profiles: Sequence[OptimizationProfile]
                 ) -> dict[str, tuple[tuple[int, ...], str]]:
    """Each input's shape and dtype for reading calibration buffers: static shapes, or the
    first profile's opt shape (where TensorRT calibrates too)."""
    specs = {}
    for t in graph.inputs:
        shape = tuple(t.shape or ())
        if not all(isinstance(d, int) for d in shape):
            if not profiles:
                raise ConfigError(f"input '{t.name}' is dynamic: add an optimization profile so "
                                  "calibration buffers have a shape")
            shape = tuple(profiles[0].get_shape(t.name)[1])
        specs[t.name] = (tuple(int(d) for d in shape), t.dtype or "float32")  # type: ignore[arg-type]
    return specs


def _prepare(network: NetworkDefinition) -> Graph:
    from devices.cpu import evaluate_node
    from partitioner.passes import simplify

    network._infer()
    graph = network.graph.clone()
    return simplify(graph, evaluate_node) or graph


def _policy(network: NetworkDefinition, config: BuilderConfig) -> Any:
    from targets.build import resolve_policy

    policy = resolve_policy(None, precision=config.precision, strategy=config.partition,
                            dla_core=int(config.DLA_core))
    if config.engine_capability == EngineCapability.DLA_STANDALONE:
        # every layer on the DLA or the build fails naming those that cannot run there
        policy = policy.with_overrides(default_device="dla", gpu_fallback=False,
                                       cpu_fallback=False)
    else:
        policy = policy.with_overrides(
            default_device=config.default_device_type.value,
            gpu_fallback=config.get_flag(BuilderFlag.GPU_FALLBACK),
        )
    rules: list[Rule] = []
    pins = _precision_pins(network)
    for name in sorted(set(config.device_types) | set(pins)):
        device = config.device_types.get(name)
        rules.append(Rule(
            index=len(rules) + 1,
            regex=f"^{re.escape(name)}$",
            device=device.value if device else None,  # type: ignore[arg-type]
            precision=pins.get(name),  # type: ignore[arg-type]
        ))
    return replace(policy, rules=tuple(rules), source="BuilderConfig")
