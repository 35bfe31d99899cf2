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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from devices.plan import encode_plan
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.policy import Rule
from partitioner.profiles import OptimizationProfile
from tandem.network import ILayer, NetworkDefinition


class Logger:
    """TensorRT-style logger; Tandem's library code never prints, so this only keeps a level."""

    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = WARNING) -> None:
        self.min_severity = min_severity


class BuilderFlag(enum.Enum):
    FP16 = "fp16"
    INT8 = "int8"
    GPU_FALLBACK = "gpu_fallback"


class DeviceType(enum.Enum):
    GPU = "gpu"
    DLA = "dla"


class IInt8Calibrator:
    """Base for INT8 calibrators (TensorRT's ``IInt8EntropyCalibrator2``): Tandem always runs
    EntropyCalibrator2 over the batches. Override ``get_batch`` (return ``{input: array}``, or
    None when done) and, to use a cache, the two cache methods (TensorRT's text format)."""

    def get_batch_size(self) -> int:
        return 1

    def get_batch(self, names: Sequence[str]) -> dict[str, np.ndarray] | None:
        raise NotImplementedError("a calibrator must implement get_batch(names)")

    def read_calibration_cache(self) -> bytes | None:
        return None

    def write_calibration_cache(self, cache: bytes) -> None:
        return None


IInt8EntropyCalibrator2 = IInt8Calibrator


class BuilderConfig:
    """What to build: precision flags, default device, DLA core, per-layer pins, profiles."""

    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.default_device_type = DeviceType.GPU  # TensorRT's default
        self.DLA_core = 0
        #: a catalog board (``orin-agx-64gb``), a target YAML path, or ``host``
        self.target = "host"
        self.power_mode: str | None = None
        self.int8_calibrator: IInt8Calibrator | None = None
        #: ``trt`` (TensorRT's placement rules) or ``cost`` (the cost model)
        self.partition = "trt"
        self.profiles: list[OptimizationProfile] = []
        self.device_types: dict[str, DeviceType] = {}
        self.timing_cache: TimingCache | None = None

    # ----- flags -----
    def set_flag(self, flag: BuilderFlag) -> None:
        self.flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: BuilderFlag) -> None:
        self.flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return BuilderFlag(flag) in self.flags

    # ----- devices -----
    def set_device_type(self, layer: ILayer | str, device_type: DeviceType) -> None:
        self.device_types[_layer_name(layer)] = DeviceType(device_type)

    def get_device_type(self, layer: ILayer | str) -> DeviceType:
        return self.device_types.get(_layer_name(layer), self.default_device_type)

    def reset_device_type(self, layer: ILayer | str) -> None:
        self.device_types.pop(_layer_name(layer), None)

    def is_device_type_set(self, layer: ILayer | str) -> bool:
        return _layer_name(layer) in self.device_types

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
        if BuilderFlag.INT8 in self.flags:
            return "int8"
        return "fp16" if BuilderFlag.FP16 in self.flags else "fp32"


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


class Builder:
    """Creates networks, configs and profiles, and builds plans (TensorRT's ``Builder``)."""

    def __init__(self, logger: Logger | None = None) -> None:
        self.logger = logger or Logger()

    def create_network(self, flags: int = 0) -> NetworkDefinition:
        return NetworkDefinition()

    def create_builder_config(self) -> BuilderConfig:
        return BuilderConfig()

    def create_optimization_profile(self) -> OptimizationProfile:
        return OptimizationProfile()

    def build_serialized_network(self, network: NetworkDefinition, config: BuilderConfig) -> bytes:
        """The plan's bytes (write them to a ``.plan`` file, or give them to ``Runtime``)."""
        from devices.calibration import Calibration
        from targets.build import build, resolve_target
        from targets.request import BuildRequest

        if not network.graph.outputs:
            raise ConfigError(f"network '{network.name}' has no outputs: call mark_output()")
        graph = _prepare(network)
        cache = config.timing_cache
        request = BuildRequest(
            model=network.source or network.name,
            target=resolve_target(config.target, config.power_mode),
            policy=_policy(network, config),
            graph=graph,
            profiles=tuple(config.profiles),
            calibration=Calibration(
                config.int8_calibrator,
                hint="set config.int8_calibrator (a tandem.IInt8EntropyCalibrator2 whose "
                "get_batch returns input dicts)",
            ),
            timing_cache=cache._cache if cache is not None else None,
        )
        return encode_plan(build(request).plan)


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
    policy = policy.with_overrides(
        default_device=config.default_device_type.value,
        gpu_fallback=BuilderFlag.GPU_FALLBACK in config.flags,
    )
    rules: list[Rule] = []
    names = set(config.device_types) | set(network.layer_precisions)
    for name in sorted(names):
        device = config.device_types.get(name)
        rules.append(Rule(
            index=len(rules) + 1,
            regex=f"^{re.escape(name)}$",
            device=device.value if device else None,  # type: ignore[arg-type]
            precision=network.layer_precisions.get(name),  # type: ignore[arg-type]
        ))
    return replace(policy, rules=tuple(rules), source="BuilderConfig")
