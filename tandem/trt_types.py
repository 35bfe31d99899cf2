"""TensorRT 10's enums and helpers that a ported script names: ``LayerType`` (with the ONNX op
each layer type comes from), ``NetworkDefinitionCreationFlag``, ``MemoryPoolType``,
``ProfilingVerbosity``, ``EngineCapability``, ``nptype`` and ``volume``.

Member names are TensorRT's (Python API reference, ``tensorrt.LayerType`` and friends:
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Graph/Layers.html
and .../infer/Core/BuilderConfig.html); what each means in Tandem is said where it differs.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import numpy as np

from partitioner.errors import ConfigError


class _Enum(enum.IntEnum):
    """Integer-valued as TensorRT's (``1 << int(flag)`` works); printed by name as TensorRT's."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class NetworkDefinitionCreationFlag(_Enum):
    """``builder.create_network(1 << int(flag))``. EXPLICIT_BATCH is what every Tandem network
    is (TensorRT 10 ignores it too); STRONGLY_TYPED takes precisions from the tensor types:
    see ``Builder.build_serialized_network``."""

    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class MemoryPoolType(_Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


#: TensorRT's documented defaults for the DLA pools ("Customizing DLA Memory Pools": managed
#: SRAM 1 MiB on Orin, local DRAM 1 GiB, global DRAM 512 MiB); the others default to the
#: device's memory, which a cross-build does not have: None.
DLA_POOL_DEFAULTS = {
    MemoryPoolType.DLA_MANAGED_SRAM: 1 << 20,
    MemoryPoolType.DLA_LOCAL_DRAM: 1 << 30,
    MemoryPoolType.DLA_GLOBAL_DRAM: 512 << 20,
}


def check_pool_limit(pool: MemoryPoolType, size: int) -> int:
    """TensorRT's rule for DLA pools: a power of 2 of at least 4 KiB (same docs page); a
    violation fails TensorRT's loadable compilation, so it is refused when set."""
    size = int(size)
    if size < 0:
        raise ConfigError(f"set_memory_pool_limit({pool.name}, {size}): expected a size >= 0")
    if pool in DLA_POOL_DEFAULTS and (size < 4096 or size & (size - 1)):
        raise ConfigError(
            f"set_memory_pool_limit({pool.name}, {size}): DLA pools must be a power of 2 of "
            "at least 4096 bytes (TensorRT fails the DLA loadable otherwise)"
        )
    return size


class ProfilingVerbosity(_Enum):
    """How much an engine's inspector tells: names only (TensorRT's default), nothing, or
    every layer's device, precision, segment and reason."""

    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class EngineCapability(_Enum):
    """STANDARD: GPU, DLA and fallbacks as configured. DLA_STANDALONE: every layer on the DLA,
    no GPU fallback, the plan's DLA segments being what cuDLA loads (the build fails naming
    the layers that cannot run there). SAFETY needs NVIDIA's safety runtime: refused."""

    STANDARD = 0
    SAFETY = 1
    DLA_STANDALONE = 2


class LayerType(_Enum):
    CONVOLUTION = 0
    CAST = 1
    ACTIVATION = 2
    POOLING = 3
    LRN = 4
    SCALE = 5
    SOFTMAX = 6
    DECONVOLUTION = 7
    CONCATENATION = 8
    ELEMENTWISE = 9
    PLUGIN = 10
    UNARY = 11
    PADDING = 12
    SHUFFLE = 13
    REDUCE = 14
    TOP_K = 15
    GATHER = 16
    MATRIX_MULTIPLY = 17
    RAGGED_SOFTMAX = 18
    CONSTANT = 19
    IDENTITY = 20
    PLUGIN_V2 = 21
    SLICE = 22
    SHAPE = 23
    PARAMETRIC_RELU = 24
    RESIZE = 25
    TRIP_LIMIT = 26
    RECURRENCE = 27
    ITERATOR = 28
    LOOP_OUTPUT = 29
    SELECT = 30
    FILL = 31
    QUANTIZE = 32
    DEQUANTIZE = 33
    CONDITION = 34
    CONDITIONAL_INPUT = 35
    CONDITIONAL_OUTPUT = 36
    SCATTER = 37
    EINSUM = 38
    ASSERTION = 39
    ONE_HOT = 40
    NON_ZERO = 41
    GRID_SAMPLE = 42
    NMS = 43
    REVERSE_SEQUENCE = 44
    NORMALIZATION = 45
    PLUGIN_V3 = 46
    SQUEEZE = 47
    UNSQUEEZE = 48
    CUMULATIVE = 49


def _ops(kind: LayerType, ops: Iterable[str]) -> dict[str, LayerType]:
    return dict.fromkeys(ops, kind)


#: The layer TensorRT's ONNX parser (onnx-tensorrt) makes for each ONNX op that Tandem imports
#: (``partitioner.onnx_import.SUPPORTED_OPS``; a test keeps the two in step). Where the parser
#: builds an op from several layers, the type is that of the layer computing the result
#: (HardSwish: ELEMENTWISE of x and its hard-sigmoid; LogSoftmax: SOFTMAX then a log).
_LAYER_TYPES: dict[str, LayerType] = {
    **_ops(LayerType.CONVOLUTION, ["Conv"]),
    **_ops(LayerType.DECONVOLUTION, ["ConvTranspose"]),
    **_ops(LayerType.MATRIX_MULTIPLY, ["Gemm", "MatMul"]),
    **_ops(LayerType.SCALE, ["BatchNormalization"]),
    **_ops(LayerType.NORMALIZATION, ["InstanceNormalization", "LayerNormalization"]),
    **_ops(LayerType.LRN, ["LRN"]),
    **_ops(
        LayerType.ACTIVATION,
        [
            "Relu",
            "LeakyRelu",
            "Sigmoid",
            "Tanh",
            "Clip",
            "HardSigmoid",
            "Elu",
            "Selu",
            "Softplus",
            "Gelu",
            "Softsign",
            "Celu",
            "ThresholdedRelu",
            "Mish",
        ],
    ),
    **_ops(LayerType.PARAMETRIC_RELU, ["PRelu"]),
    **_ops(LayerType.POOLING, ["MaxPool", "AveragePool"]),
    **_ops(
        LayerType.REDUCE,
        [
            "GlobalAveragePool",
            "GlobalMaxPool",
            "ReduceMean",
            "ReduceSum",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceLogSum",
            "ReduceLogSumExp",
            "ReduceSumSquare",
        ],
    ),
    **_ops(
        LayerType.ELEMENTWISE,
        [
            "Add",
            "Sub",
            "Mul",
            "Div",
            "Pow",
            "Max",
            "Min",
            "Sum",
            "Mean",
            "Mod",
            "Equal",
            "Greater",
            "Less",
            "GreaterOrEqual",
            "LessOrEqual",
            "And",
            "Or",
            "Xor",
            "HardSwish",
        ],
    ),
    **_ops(
        LayerType.UNARY,
        [
            "Sqrt",
            "Exp",
            "Log",
            "Abs",
            "Neg",
            "Reciprocal",
            "Floor",
            "Ceil",
            "Not",
            "Erf",
            "Sign",
            "Round",
            "Sin",
            "Cos",
            "Tan",
            "Asin",
            "Acos",
            "Atan",
            "Sinh",
            "Cosh",
            "Asinh",
            "Acosh",
            "Atanh",
            "IsNaN",
            "IsInf",
        ],
    ),
    **_ops(LayerType.SELECT, ["Where", "Trilu"]),
    **_ops(LayerType.CONCATENATION, ["Concat"]),
    **_ops(LayerType.SLICE, ["Split", "Slice", "Expand", "Tile", "Pad"]),
    **_ops(
        LayerType.SHUFFLE,
        [
            "Reshape",
            "Flatten",
            "Transpose",
            "DepthToSpace",
            "SpaceToDepth",
        ],
    ),
    **_ops(LayerType.SQUEEZE, ["Squeeze"]),
    **_ops(LayerType.UNSQUEEZE, ["Unsqueeze"]),
    **_ops(LayerType.RESIZE, ["Resize", "Upsample"]),
    **_ops(LayerType.GATHER, ["Gather", "GatherElements", "GatherND"]),
    **_ops(LayerType.SHAPE, ["Shape", "Size"]),
    **_ops(LayerType.CONSTANT, ["Constant"]),
    **_ops(LayerType.FILL, ["ConstantOfShape", "Range"]),
    **_ops(LayerType.CAST, ["Cast", "CastLike"]),
    **_ops(LayerType.IDENTITY, ["Identity", "Dropout"]),
    **_ops(LayerType.SOFTMAX, ["Softmax", "LogSoftmax", "Hardmax"]),
    **_ops(LayerType.TOP_K, ["TopK", "ArgMax", "ArgMin"]),
    **_ops(LayerType.QUANTIZE, ["QuantizeLinear"]),
    **_ops(LayerType.DEQUANTIZE, ["DequantizeLinear"]),
    **_ops(LayerType.CUMULATIVE, ["CumSum"]),
    **_ops(LayerType.EINSUM, ["Einsum"]),
    **_ops(LayerType.SCATTER, ["ScatterND", "ScatterElements"]),
    **_ops(LayerType.ONE_HOT, ["OneHot"]),
    **_ops(LayerType.GRID_SAMPLE, ["GridSample"]),
    **_ops(LayerType.NON_ZERO, ["NonZero"]),
    **_ops(LayerType.NMS, ["NonMaxSuppression"]),
    # TensorRT 10 has no RNN layer: the parser unrolls RNN/GRU/LSTM into a loop whose state is
    # a recurrence layer
    **_ops(LayerType.RECURRENCE, ["RNN", "GRU", "LSTM"]),
}


def layer_type(op: str) -> LayerType:
    """TensorRT's layer type for an ONNX op; an op outside the table is a plugin (Tandem
    imports only its supported ops and registered plugins)."""
    return _LAYER_TYPES.get(op, LayerType.PLUGIN_V3)


def mapped_ops() -> frozenset[str]:
    return frozenset(_LAYER_TYPES)


def nptype(dtype: object) -> type:
    """The numpy scalar type of a ``DataType`` (``trt.nptype(trt.float32)`` -> ``np.float32``)."""
    value = getattr(dtype, "value", dtype)
    try:
        return np.dtype(str(value)).type
    except TypeError:
        raise ConfigError(f"nptype({dtype!r}): not a tandem.DataType") from None


def volume(shape: Iterable[int]) -> int:
    """Number of elements of ``shape`` (``trt.volume``)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n


def init_libnvinfer_plugins(logger: object = None, namespace: str = "") -> bool:
    """TensorRT loads its bundled plugins here; Tandem's plugins register in Python
    (``tandem.get_plugin_registry()``), so there is nothing to load: True, as TensorRT returns."""
    return True
