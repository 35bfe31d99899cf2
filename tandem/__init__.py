"""Tandem: run neural networks on Jetson SoCs split between the GPU and the DLA.

This package is the public Python API and the ``tandem`` CLI; it only wires the layers below.
The API names follow TensorRT's (``tandem.Builder``, ``tandem.Runtime``, ...; README "Python
API"); they load on first use so that ``import tandem`` (and the CLI) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported lazily, PEP 562)
_EXPORTS = {
    **dict.fromkeys(
        (
            "NetworkDefinition", "INetworkDefinition", "ITensor", "ILayer",
            "IConvolutionLayer", "IPoolingLayer", "IActivationLayer", "IConcatenationLayer",
            "IConstantLayer", "DataType", "ActivationType", "PoolingType",
            "ElementWiseOperation", "MatrixOperation", "float32", "float16", "int8", "int32",
            "int64",
        ),
        "tandem.network",
    ),
    **dict.fromkeys(
        (
            "Builder", "BuilderConfig", "IBuilderConfig", "BuilderFlag", "DeviceType",
            "Logger", "ILogger", "TimingCache", "IInt8Calibrator", "IInt8EntropyCalibrator2",
        ),
        "tandem.builder",
    ),
    **dict.fromkeys(
        (
            "LayerType", "NetworkDefinitionCreationFlag", "MemoryPoolType",
            "ProfilingVerbosity", "EngineCapability", "nptype", "volume",
            "init_libnvinfer_plugins",
        ),
        "tandem.trt_types",
    ),
    "OnnxParser": "tandem.onnx_parser",
    "IProfiler": "tandem.profiler",
    "UnsupportedApiError": "tandem.trt_names",
    **dict.fromkeys(
        (
            "Runtime", "Engine", "ICudaEngine", "ExecutionContext", "IExecutionContext",
            "EngineInspector", "TensorIOMode", "LayerInformationFormat",
        ),
        "tandem.engine",
    ),
    "TandemError": "partitioner.errors",
    "OptimizationProfile": "partitioner.profiles",
    "IOptimizationProfile": "partitioner.profiles",
    "Refitter": "tandem.engine",
    "PluginRegistry": "partitioner.plugins",
    "get_plugin_registry": "partitioner.plugins",
}
_ALIASES = {
    "INetworkDefinition": "NetworkDefinition",
    "IBuilderConfig": "BuilderConfig",
    "ICudaEngine": "Engine",
    "IExecutionContext": "ExecutionContext",
    "IOptimizationProfile": "OptimizationProfile",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        # a TensorRT 10 name Tandem lacks: a TandemError naming it (and still an AttributeError)
        from tandem.trt_names import missing

        raise missing("tensorrt", name)
    mod = importlib.import_module(module)
    if name == "Refitter":
        value: Any = mod._refitter_class()
    elif name == "get_plugin_registry":
        value = lambda: mod.PLUGINS  # noqa: E731 - TensorRT's accessor for the registry
    else:
        value = getattr(mod, _ALIASES.get(name, name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
