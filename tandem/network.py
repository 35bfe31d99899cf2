"""``NetworkDefinition``: a network built layer by layer (TensorRT's ``INetworkDefinition``),
or filled from an ONNX file by :class:`OnnxParser`. Either way it is the project's IR ``Graph``.

Each ``add_*`` method appends ONNX-form nodes to the graph (``Conv``, ``Relu``, ``MaxPool``, ...,
with every attribute explicit as the importer would produce) and returns a layer object whose
properties (``stride_nd``, ``padding_nd``, ``alpha``, ...) edit that node, as TensorRT's layer
setters do. Shapes are inferred on demand, so a property set after ``add_*`` is honoured.

Differences from TensorRT, on purpose: ``add_fully_connected`` returns a 2-D ``(N, K)`` tensor
(Flatten + Gemm, as ONNX exporters write it), not TensorRT's ``(N, K, 1, 1)``; a dynamic input
dimension is ``-1`` as in TensorRT and becomes the symbolic dim ``<input>_d<axis>``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import numpy as np

from partitioner.errors import GraphError, ModelError, ShapeError, TandemError
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.shape_inference import infer_shapes
from tandem.trt_names import TrtApi
from tandem.trt_types import LayerType, NetworkDefinitionCreationFlag, layer_type


class DataType(enum.Enum):
    """Tensor element types (TensorRT's ``DataType``); values are IR dtype names."""

    FLOAT = "float32"
    HALF = "float16"
    INT8 = "int8"
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"
    UINT8 = "uint8"

    @classmethod
    def of(cls, dtype: str | None) -> DataType:
        for member in cls:
            if member.value == dtype:
                return member
        raise ModelError(f"dtype {dtype!r} has no DataType")

    @property
    def precision(self) -> str:
        """The layer-precision string (``fp32`` / ``fp16`` / ``int8``)."""
        names = {"float32": "fp32", "float16": "fp16", "int8": "int8"}
        if self.value not in names:
            raise ModelError(f"{self} is not a layer precision: use FLOAT, HALF or INT8")
        return names[self.value]


float32, float16, int8, int32, int64 = (DataType.FLOAT, DataType.HALF, DataType.INT8,
                                        DataType.INT32, DataType.INT64)


class ActivationType(enum.Enum):
    RELU = "Relu"
    SIGMOID = "Sigmoid"
    TANH = "Tanh"
    LEAKY_RELU = "LeakyRelu"
    ELU = "Elu"
    SELU = "Selu"
    SOFTPLUS = "Softplus"
    CLIP = "Clip"
    HARD_SIGMOID = "HardSigmoid"


class PoolingType(enum.Enum):
    MAX = "MaxPool"
    AVERAGE = "AveragePool"


class ElementWiseOperation(enum.Enum):
    SUM = "Add"
    PROD = "Mul"
    SUB = "Sub"
    DIV = "Div"
    MAX = "Max"
    MIN = "Min"
    POW = "Pow"


class MatrixOperation(enum.Enum):
    NONE = 0
    TRANSPOSE = 1


# ----- tensors and layers ----------------------------------------------------------------------
class ITensor(TrtApi):
    """A tensor of a network; ``shape`` uses -1 for a dynamic dimension, as TensorRT does."""

    _trt_api = "ITensor"

    def __init__(self, network: NetworkDefinition, tensor: Tensor) -> None:
        self._network = network
        self._tensor = tensor

    @property
    def name(self) -> str:
        return self._tensor.name

    @name.setter
    def name(self, value: str) -> None:
        self._network._rename_tensor(self._tensor, value)

    @property
    def shape(self) -> tuple[int, ...]:
        self._network._infer()
        shape = self._tensor.shape
        if shape is None:
            raise ShapeError(f"tensor '{self.name}' has an unknown shape")
        return tuple(d if isinstance(d, int) else -1 for d in shape)

    @property
    def dtype(self) -> DataType:
        self._network._infer()
        return DataType.of(self._tensor.dtype or "float32")

    @property
    def is_network_input(self) -> bool:
        return self._tensor in self._network.graph.inputs

    @property
    def is_network_output(self) -> bool:
        return self._tensor in self._network.graph.outputs

    def __repr__(self) -> str:
        return f"ITensor({self.name!r})"


class ILayer(TrtApi):
    """A layer: one IR node (its ``name`` is the layer name placement and rules use)."""

    _trt_api = "ILayer"

    def __init__(self, network: NetworkDefinition, node: Node) -> None:
        self._network = network
        self._node = node

    @property
    def name(self) -> str:
        return self._node.name

    @name.setter
    def name(self, value: str) -> None:
        self._network._rename_node(self._node, value)

    @property
    def type(self) -> LayerType:
        """TensorRT's layer type (``LayerType.CONVOLUTION``, ...); ``op_type`` is the ONNX op."""
        return layer_type(self._node.op)

    @property
    def op_type(self) -> str:
        """The ONNX op of the layer (``Conv``, ``Relu``, ...)."""
        return self._node.op

    @property
    def num_inputs(self) -> int:
        return len(self._node.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self._node.outputs)

    def get_input(self, index: int) -> ITensor | None:
        t = self._node.input(index)
        return ITensor(self._network, t) if t is not None else None

    def get_output(self, index: int) -> ITensor:
        if not 0 <= index < len(self._node.outputs):
            raise GraphError(f"layer '{self.name}' has {self.num_outputs} output(s), no {index}")
        return ITensor(self._network, self._node.outputs[index])

    # per-layer precision, as TensorRT's ``layer.precision`` (the builder turns it into a rule)
    @property
    def precision(self) -> DataType:
        p = self._network.layer_precisions.get(self.name)
        return {"fp16": DataType.HALF, "int8": DataType.INT8}.get(p or "", DataType.FLOAT)

    @precision.setter
    def precision(self, value: DataType) -> None:
        self._network.layer_precisions[self.name] = value.precision

    @property
    def precision_is_set(self) -> bool:
        return self.name in self._network.layer_precisions

    def reset_precision(self) -> None:
        self._network.layer_precisions.pop(self.name, None)

    # output types, as TensorRT's ``set_output_type``: a Tandem layer computes and writes in one
    # precision, so a float output type constrains the layer's precision (see the builder)
    def set_output_type(self, index: int, dtype: DataType) -> None:
        self.get_output(index)  # the index must exist
        self._network.output_types[(self.name, int(index))] = DataType(dtype)

    def get_output_type(self, index: int) -> DataType:
        key = (self.name, int(index))
        return self._network.output_types.get(key) or self.get_output(index).dtype

    def output_type_is_set(self, index: int) -> bool:
        return (self.name, int(index)) in self._network.output_types

    def reset_output_type(self, index: int) -> None:
        self._network.output_types.pop((self.name, int(index)), None)

    def _pairs(self, key: str) -> tuple[int, ...]:
        return tuple(self._node.attrs[key])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.op_type})"


class IConvolutionLayer(ILayer):
    @property
    def stride_nd(self) -> tuple[int, ...]:
        return self._pairs("strides")

    @stride_nd.setter
    def stride_nd(self, value: Sequence[int]) -> None:
        self._node.attrs["strides"] = _ints(value, len(self._node.attrs["kernel_shape"]))

    @property
    def padding_nd(self) -> tuple[int, ...]:
        pads = self._node.attrs["pads"]
        return tuple(pads[: len(pads) // 2])

    @padding_nd.setter
    def padding_nd(self, value: Sequence[int]) -> None:
        v = _ints(value, len(self._node.attrs["kernel_shape"]))
        self._node.attrs["pads"] = v + v  # symmetric: [x1_begin, x2_begin, x1_end, x2_end]

    @property
    def dilation_nd(self) -> tuple[int, ...]:
        return self._pairs("dilations")

    @dilation_nd.setter
    def dilation_nd(self, value: Sequence[int]) -> None:
        self._node.attrs["dilations"] = _ints(value, len(self._node.attrs["kernel_shape"]))

    @property
    def num_groups(self) -> int:
        return int(self._node.attrs["group"])

    @num_groups.setter
    def num_groups(self, value: int) -> None:
        self._node.attrs["group"] = int(value)


class IPoolingLayer(IConvolutionLayer):
    """Stride / padding as for convolutions; ``average_count_excludes_padding`` as TensorRT."""

    @property
    def average_count_excludes_padding(self) -> bool:
        return not self._node.attrs.get("count_include_pad", 0)

    @average_count_excludes_padding.setter
    def average_count_excludes_padding(self, value: bool) -> None:
        if self._node.op == "AveragePool":
            self._node.attrs["count_include_pad"] = 0 if value else 1


class IActivationLayer(ILayer):
    """``alpha`` / ``beta`` mean what they mean in TensorRT (CLIP: min / max)."""

    @property
    def alpha(self) -> float:
        if self._node.op == "Clip":
            return float(self._node.constant_input(1))  # type: ignore[arg-type]
        return float(self._node.attrs.get("alpha", 0.0))

    @alpha.setter
    def alpha(self, value: float) -> None:
        self._set_param(0, value)

    @property
    def beta(self) -> float:
        if self._node.op == "Clip":
            return float(self._node.constant_input(2))  # type: ignore[arg-type]
        return float(self._node.attrs.get("beta", 0.0))

    @beta.setter
    def beta(self, value: float) -> None:
        self._set_param(1, value)

    def _set_param(self, which: int, value: float) -> None:
        node, graph = self._node, self._network.graph
        if node.op == "Clip":
            old = node.input(which + 1)
            base = f"{node.name}_{'min' if which == 0 else 'max'}"
            const = graph.add_constant(graph.unique_name(base), np.array(value, np.float32))
            graph.set_input(node, which + 1, const)
            if old is not None and not old.consumers:
                graph.remove_tensor(old)
        elif node.op in ("LeakyRelu", "Elu", "Selu", "HardSigmoid"):
            key = "alpha" if which == 0 else ("gamma" if node.op == "Selu" else "beta")
            node.attrs[key] = float(value)
        else:
            raise ModelError(f"{node.op} activation '{node.name}' has no parameter to set")


class IConcatenationLayer(ILayer):
    @property
    def axis(self) -> int:
        return int(self._node.attrs["axis"])

    @axis.setter
    def axis(self, value: int) -> None:
        self._node.attrs["axis"] = int(value)


class IConstantLayer:
    """A constant tensor (weights); not a layer that runs, so it has no node of its own."""

    def __init__(self, network: NetworkDefinition, tensor: Constant) -> None:
        self._network = network
        self._tensor = tensor
        self.name = tensor.name

    def get_output(self, index: int = 0) -> ITensor:
        return ITensor(self._network, self._tensor)


def _ints(value: Sequence[int] | int, rank: int) -> list[int]:
    items = [int(value)] * rank if isinstance(value, int) else [int(v) for v in value]
    if len(items) != rank:
        raise ShapeError(f"expected {rank} values, got {list(items)}")
    return items


def _weights(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind != "f":
        raise ModelError(f"{name}: weights must be floating point, got {array.dtype}")
    return array.astype(np.float32, copy=False)


# ----- the network -----------------------------------------------------------------------------
class NetworkDefinition(TrtApi):
    """A network under construction; ``graph`` is the IR it builds."""

    _trt_api = "INetworkDefinition"

    def __init__(self, name: str = "network", flags: int = 0) -> None:
        self.graph = Graph(name)
        #: ``1 << NetworkDefinitionCreationFlag`` bits, as ``builder.create_network(flags)``
        self.flags = int(flags)
        known = sum(1 << int(f) for f in NetworkDefinitionCreationFlag)
        if self.flags & ~known:
            raise GraphError(
                f"create_network({flags}): unknown NetworkDefinitionCreationFlag bits; expected "
                "1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH or STRONGLY_TYPED)"
            )
        #: layer name -> "fp32" | "fp16" | "int8" (set through ``layer.precision``)
        self.layer_precisions: dict[str, str] = {}
        #: (layer name, output index) -> type, set through ``layer.set_output_type``
        self.output_types: dict[tuple[str, int], DataType] = {}
        #: the ONNX file this network came from (OnnxParser), for messages and the plan header
        self.source: str | None = None
        self._dirty = True

    @property
    def name(self) -> str:
        return self.graph.name

    def get_flag(self, flag: NetworkDefinitionCreationFlag) -> bool:
        return bool(self.flags & (1 << int(flag)))

    @property
    def strongly_typed(self) -> bool:
        return self.get_flag(NetworkDefinitionCreationFlag.STRONGLY_TYPED)

    # ----- queries -----
    @property
    def num_layers(self) -> int:
        return len(self.graph.nodes)

    def get_layer(self, index: int) -> ILayer:
        return _wrap(self, self.graph.nodes[index])

    def __iter__(self) -> Any:
        return (self.get_layer(i) for i in range(self.num_layers))

    @property
    def num_inputs(self) -> int:
        return len(self.graph.inputs)

    def get_input(self, index: int) -> ITensor:
        return ITensor(self, self.graph.inputs[index])

    @property
    def num_outputs(self) -> int:
        return len(self.graph.outputs)

    def get_output(self, index: int) -> ITensor:
        return ITensor(self, self.graph.outputs[index])

    # ----- building -----
    def add_input(self, name: str, dtype: DataType, shape: Sequence[int]) -> ITensor:
        dims = tuple(f"{name}_d{i}" if int(d) < 0 else int(d) for i, d in enumerate(shape))
        return ITensor(self, self.graph.add_input(name, dims, DataType(dtype).value))

    def mark_output(self, tensor: ITensor) -> None:
        self.graph.mark_output(tensor._tensor)

    def add_constant(self, shape: Sequence[int], weights: Any) -> IConstantLayer:
        array = np.asarray(weights).reshape(tuple(shape))
        const = self.graph.add_constant(self.graph.unique_name("constant"), array)
        return IConstantLayer(self, const)

    def add_convolution_nd(
        self,
        input: ITensor,
        num_output_maps: int,
        kernel_shape: Sequence[int],
        kernel: Any,
        bias: Any = None,
    ) -> IConvolutionLayer:
        k = [int(d) for d in kernel_shape]
        in_channels = input.shape[1]
        if in_channels < 0:
            raise ShapeError(f"convolution on '{input.name}': the channel dim must be static")
        w = _weights(kernel, "convolution kernel")
        groups_ch = w.size // (num_output_maps * int(np.prod(k)))
        w = w.reshape(num_output_maps, groups_ch, *k)
        ins: list[Tensor | None] = [input._tensor, self._const("conv_w", w)]
        if bias is not None:
            ins.append(self._const("conv_b", _weights(bias, "convolution bias").reshape(-1)))
        attrs = {
            "kernel_shape": k,
            "strides": [1] * len(k),
            "pads": [0] * (2 * len(k)),
            "dilations": [1] * len(k),
            "group": max(1, in_channels // groups_ch),
        }
        return IConvolutionLayer(self, self._node("Conv", ins, attrs, "conv"))

    def add_activation(self, input: ITensor, type: ActivationType) -> IActivationLayer:
        op = ActivationType(type).value
        ins: list[Tensor | None] = [input._tensor]
        attrs: dict[str, Any] = {}
        if op == "Clip":
            ins += [self._const("clip_min", np.array(0.0, np.float32)),
                    self._const("clip_max", np.array(6.0, np.float32))]
        elif op == "LeakyRelu":
            attrs["alpha"] = 0.01
        elif op == "Elu":
            attrs["alpha"] = 1.0
        elif op == "HardSigmoid":
            attrs.update(alpha=0.2, beta=0.5)
        elif op == "Selu":
            attrs.update(alpha=1.67326319217681884765625, gamma=1.05070102214813232421875)
        return IActivationLayer(self, self._node(op, ins, attrs, op.lower()))

    def add_pooling_nd(
        self, input: ITensor, type: PoolingType, window_size: Sequence[int]
    ) -> IPoolingLayer:
        op = PoolingType(type).value
        k = [int(d) for d in window_size]
        attrs: dict[str, Any] = {
            "kernel_shape": k,
            "strides": [1] * len(k),
            "pads": [0] * (2 * len(k)),
            "ceil_mode": 0,
        }
        if op == "MaxPool":
            attrs["dilations"] = [1] * len(k)
        else:
            attrs["count_include_pad"] = 0  # TensorRT's default excludes padding
        return IPoolingLayer(self, self._node(op, [input._tensor], attrs, "pool"))

    def add_elementwise(
        self, input1: ITensor, input2: ITensor, op: ElementWiseOperation
    ) -> ILayer:
        kind = ElementWiseOperation(op).value
        return ILayer(self, self._node(kind, [input1._tensor, input2._tensor], {}, kind.lower()))

    def add_fully_connected(
        self, input: ITensor, num_outputs: int, kernel: Any, bias: Any = None
    ) -> ILayer:
        """``y = flatten(x) @ kernel.T + bias`` with ``kernel`` (num_outputs, features)."""
        flat = self._node("Flatten", [input._tensor], {"axis": 1}, "flatten")
        w = _weights(kernel, "fully-connected kernel")
        w = w.reshape(int(num_outputs), -1)
        ins: list[Tensor | None] = [flat.outputs[0], self._const("fc_w", w)]
        if bias is not None:
            ins.append(self._const("fc_b", _weights(bias, "fully-connected bias").reshape(-1)))
        attrs = {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 1}
        return ILayer(self, self._node("Gemm", ins, attrs, "fc"))

    def add_matrix_multiply(
        self, input0: ITensor, op0: MatrixOperation, input1: ITensor, op1: MatrixOperation
    ) -> ILayer:
        a, b = input0._tensor, input1._tensor
        if op0 == MatrixOperation.TRANSPOSE:
            a = self._transpose_last2(a)
        if op1 == MatrixOperation.TRANSPOSE:
            b = self._transpose_last2(b)
        return ILayer(self, self._node("MatMul", [a, b], {}, "matmul"))

    def add_concatenation(self, inputs: Sequence[ITensor]) -> IConcatenationLayer:
        if not inputs:
            raise GraphError("add_concatenation needs at least one input")
        rank = len(inputs[0].shape)
        axis = rank - 3 if rank >= 3 else 0  # TensorRT's default axis
        node = self._node("Concat", [t._tensor for t in inputs], {"axis": axis}, "concat")
        return IConcatenationLayer(self, node)

    def add_softmax(self, input: ITensor, axis: int = -1) -> ILayer:
        return ILayer(self, self._node("Softmax", [input._tensor], {"axis": int(axis)},
                                       "softmax"))

    # ----- internals -----
    def _transpose_last2(self, t: Tensor) -> Tensor:
        rank = len(t.shape or ())
        if rank < 2:
            raise ShapeError(f"cannot transpose '{t.name}': rank {rank} < 2")
        perm = list(range(rank - 2)) + [rank - 1, rank - 2]
        return self._node("Transpose", [t], {"perm": perm}, "transpose").outputs[0]

    def _const(self, base: str, values: np.ndarray) -> Constant:
        return self.graph.add_constant(self.graph.unique_name(base), values)

    def _node(self, op: str, inputs: list[Tensor | None], attrs: dict[str, Any],
              base: str) -> Node:
        name = self.graph.unique_name(f"{base}_{len(self.graph.nodes)}", kind="node")
        node = self.graph.add_node(op, inputs, 1, attrs, name=name)
        self._dirty = True
        return node

    def _infer(self) -> None:
        try:
            infer_shapes(self.graph)
        except TandemError:
            raise
        except Exception as err:  # a half-built network: say which, never a raw traceback
            raise ShapeError(f"network '{self.name}': cannot infer shapes: {err}") from None

    def _rename_node(self, node: Node, name: str) -> None:
        if name == node.name:
            return
        if any(n.name == name for n in self.graph.nodes):
            raise GraphError(f"layer name '{name}' is already used in network '{self.name}'")
        old = node.name
        self.graph.rename_node(node, name)
        if old in self.layer_precisions:
            self.layer_precisions[name] = self.layer_precisions.pop(old)
        for (layer, index) in [k for k in self.output_types if k[0] == old]:
            self.output_types[(name, index)] = self.output_types.pop((layer, index))

    def _rename_tensor(self, tensor: Tensor, name: str) -> None:
        if name == tensor.name:
            return
        if name in self.graph.tensors:
            raise GraphError(f"tensor name '{name}' is already used in network '{self.name}'")
        self.graph.rename_tensor(tensor, name)


def _wrap(network: NetworkDefinition, node: Node) -> ILayer:
    cls = {
        "Conv": IConvolutionLayer,
        "MaxPool": IPoolingLayer,
        "AveragePool": IPoolingLayer,
        "Concat": IConcatenationLayer,
    }.get(node.op)
    if cls is None and node.op in {t.value for t in ActivationType}:
        cls = IActivationLayer
    return (cls or ILayer)(network, node)
