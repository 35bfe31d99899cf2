"""A small graph builder over ``onnx.helper``: one method per layer kind, seeded weights.

Models in the zoo are written against this class so each one reads like its paper's table.
Every method returns the name of the tensor it produced. Weights are drawn from one seeded
generator in build order, so a (model, seed) pair always gives the same bytes.

The builder emits the form each op has in the requested opset (11 to 21): Clip bounds,
Unsqueeze axes, ReduceMean axes and Resize's roi move between attributes and inputs across
those opsets, and HardSwish (14), LayerNormalization (17) and Gelu (20) are spelled out as
their primitive decompositions where the opset predates them. That lets the zoo exercise the
importer's opset normalisation with real topologies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from partitioner.errors import InternalError, TandemError

MIN_OPSET = 11
MAX_OPSET = 21


class ZooError(TandemError):
    """A zoo request the zoo cannot satisfy: unknown model, bad resolution, batch or opset."""


class GraphBuilder:
    """Accumulates ONNX nodes and initializers; ``build()`` returns a checked ModelProto."""

    def __init__(self, name: str, seed: int = 0, opset: int = 17) -> None:
        self.name = name
        self.opset = opset
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self._names: set[str] = set()
        self._const_cache: dict[tuple[str, bytes, tuple[int, ...]], str] = {}

    # ----- names, constants, raw nodes -------------------------------------------------------
    def unique(self, base: str) -> str:
        """``base`` if unused, else ``base_1``, ``base_2``, ... (node and tensor names alike)."""
        name, i = base, 0
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def input(self, name: str, shape: Sequence[int]) -> str:
        self._names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
        return name

    def const(self, values: np.ndarray, name: str) -> str:
        """An initializer. Scalars and small integer constants (shapes, axes) are shared."""
        values = np.asarray(values)
        small = values.ndim == 0 or (values.dtype.kind == "i" and values.size <= 16)
        key = (str(values.dtype), values.tobytes(), values.shape)
        if small and key in self._const_cache:
            return self._const_cache[key]
        tensor_name = self.unique(name)
        self.initializers.append(numpy_helper.from_array(values, tensor_name))
        if small:
            self._const_cache[key] = tensor_name
        return tensor_name

    def ints(self, values: Sequence[int], name: str = "const") -> str:
        return self.const(np.asarray(values, dtype=np.int64), name)

    def scalar(self, value: float, name: str) -> str:
        return self.const(np.asarray(value, dtype=np.float32), name)

    def op(
        self,
        op_type: str,
        inputs: Sequence[str],
        name: str,
        n_outputs: int = 1,
        **attrs: Any,
    ) -> str:
        """Append one node named ``name``; its outputs are ``name`` (and ``name_1``...)."""
        outs = self.op_multi(op_type, inputs, name, n_outputs, **attrs)
        return outs[0]

    def op_multi(
        self,
        op_type: str,
        inputs: Sequence[str],
        name: str,
        n_outputs: int,
        **attrs: Any,
    ) -> list[str]:
        node_name = self.unique(name)
        outputs = [node_name] + [self.unique(f"{node_name}_{i}") for i in range(1, n_outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outputs, node_name, **attrs))
        return outputs

    # ----- weights ----------------------------------------------------------------------------
    def he_normal(self, shape: Sequence[int], fan_in: int, gain: float = 2.0) -> np.ndarray:
        std = np.sqrt(gain / max(fan_in, 1))
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape: Sequence[int], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, size=shape).astype(np.float32)

    # ----- convolution and normalisation --------------------------------------------------------
    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        pad: int | None = None,
        group: int = 1,
        bias: bool = True,
        dilation: int = 1,
        name: str = "conv",
        gain: float = 2.0,
    ) -> str:
        """2-D convolution, square kernel; ``pad`` defaults to 'same' for odd kernels."""
        if cin % group or cout % group:
            raise InternalError(f"conv '{name}': channels {cin}->{cout} not divisible by {group}")
        pad = dilation * (kernel - 1) // 2 if pad is None else pad
        fan_in = cin // group * kernel * kernel
        w = self.const(
            self.he_normal((cout, cin // group, kernel, kernel), fan_in, gain), f"{name}.weight"
        )
        inputs = [x, w]
        if bias:
            inputs.append(self.const(self.uniform((cout,), -0.1, 0.1), f"{name}.bias"))
        return self.op(
            "Conv",
            inputs,
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
            dilations=[dilation, dilation],
            group=group,
        )

    def conv_transpose(
        self, x: str, cin: int, cout: int, kernel: int, stride: int, name: str = "deconv"
    ) -> str:
        # ConvTranspose weight layout is (C_in, C_out/group, kH, kW); each output pixel sees
        # cin * (kernel/stride)^2 inputs, which is the fan-in that keeps the variance.
        fan_in = cin * max(kernel // stride, 1) ** 2
        w = self.const(self.he_normal((cin, cout, kernel, kernel), fan_in), f"{name}.weight")
        b = self.const(self.uniform((cout,), -0.1, 0.1), f"{name}.bias")
        return self.op(
            "ConvTranspose",
            [x, w, b],
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
        )

    def bn(
        self, x: str, channels: int, name: str = "bn", gamma: tuple[float, float] = (0.7, 1.3)
    ) -> str:
        """BatchNormalization with non-trivial running statistics so BN folding is exercised.

        The running variance is drawn near 1 and the mean near 0: He-initialised inputs have
        roughly unit variance, so activations stay in range through deep stacks.
        """
        scale = self.const(self.uniform((channels,), *gamma), f"{name}.weight")
        shift = self.const(self.uniform((channels,), -0.1, 0.1), f"{name}.bias")
        mean = self.const(self.uniform((channels,), -0.1, 0.1), f"{name}.running_mean")
        var = self.const(self.uniform((channels,), 0.6, 1.6), f"{name}.running_var")
        return self.op("BatchNormalization", [x, scale, shift, mean, var], name, epsilon=1e-5)

    def gemm(self, x: str, cin: int, cout: int, name: str = "fc", gain: float = 1.0) -> str:
        """Fully connected layer in torch's exported form: Gemm with transB=1."""
        w = self.const(self.he_normal((cout, cin), cin, gain), f"{name}.weight")
        b = self.const(self.uniform((cout,), -0.1, 0.1), f"{name}.bias")
        return self.op("Gemm", [x, w, b], name, alpha=1.0, beta=1.0, transB=1)

    def linear(self, x: str, cin: int, cout: int, name: str = "linear", gain: float = 1.0) -> str:
        """MatMul + Add bias on the last axis, as transformers export."""
        w = self.const(self.he_normal((cin, cout), cin, gain), f"{name}.weight")
        b = self.const(self.uniform((cout,), -0.02, 0.02), f"{name}.bias")
        return self.op("Add", [self.op("MatMul", [x, w], f"{name}.matmul"), b], f"{name}.add")

    def layer_norm(self, x: str, dim: int, name: str = "ln") -> str:
        """LayerNormalization on the last axis; its primitive form before opset 17."""
        gamma = self.const(self.uniform((dim,), 0.8, 1.2), f"{name}.weight")
        beta = self.const(self.uniform((dim,), -0.05, 0.05), f"{name}.bias")
        if self.opset >= 17:
            return self.op("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-6)
        mean = self.reduce_mean(x, [-1], f"{name}.mean")
        centred = self.op("Sub", [x, mean], f"{name}.sub")
        square = self.op("Mul", [centred, centred], f"{name}.sq")
        var = self.reduce_mean(square, [-1], f"{name}.var")
        var_eps = self.op("Add", [var, self.scalar(1e-6, "eps")], f"{name}.add_eps")
        std = self.op("Sqrt", [var_eps], f"{name}.std")
        normed = self.op("Div", [centred, std], f"{name}.div")
        scaled = self.op("Mul", [normed, gamma], f"{name}.scale")
        return self.op("Add", [scaled, beta], f"{name}.shift")

    # ----- activations ------------------------------------------------------------------------
    def act(self, x: str, kind: str, name: str = "act") -> str:
        """``relu``, ``relu6``, ``silu``, ``hardswish``, ``hardsigmoid``, ``sigmoid``, ``gelu``."""
        if kind == "relu":
            return self.op("Relu", [x], name)
        if kind == "relu6":
            return self.clip(x, 0.0, 6.0, name)
        if kind == "silu":  # torch exports SiLU as x * Sigmoid(x)
            return self.op("Mul", [x, self.op("Sigmoid", [x], f"{name}.sigmoid")], f"{name}.mul")
        if kind == "hardsigmoid":  # torch's relu6(x + 3) / 6
            return self.op("HardSigmoid", [x], name, alpha=1.0 / 6.0, beta=0.5)
        if kind == "hardswish":
            if self.opset >= 14:
                return self.op("HardSwish", [x], name)
            gate = self.op("HardSigmoid", [x], f"{name}.gate", alpha=1.0 / 6.0, beta=0.5)
            return self.op("Mul", [x, gate], f"{name}.mul")
        if kind == "sigmoid":
            return self.op("Sigmoid", [x], name)
        if kind == "gelu":
            if self.opset >= 20:
                return self.op("Gelu", [x], name)
            # 0.5 * x * (1 + erf(x / sqrt(2))), the form torch exports before opset 20
            scaled = self.op("Div", [x, self.scalar(float(np.sqrt(2.0)), "sqrt2")], f"{name}.div")
            erf = self.op("Erf", [scaled], f"{name}.erf")
            one_plus = self.op("Add", [erf, self.scalar(1.0, "one")], f"{name}.add")
            half_x = self.op("Mul", [x, self.scalar(0.5, "half")], f"{name}.half")
            return self.op("Mul", [half_x, one_plus], f"{name}.mul")
        raise InternalError(f"unknown activation '{kind}'")

    def clip(self, x: str, low: float, high: float, name: str = "clip") -> str:
        lo, hi = self.scalar(low, f"clip_min_{low:g}"), self.scalar(high, f"clip_max_{high:g}")
        return self.op("Clip", [x, lo, hi], name)

    # ----- pooling, shape and tensor ops ----------------------------------------------------------
    def max_pool(
        self, x: str, kernel: int, stride: int, pad: int = 0, name: str = "maxpool"
    ) -> str:
        return self.op(
            "MaxPool",
            [x],
            name,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            pads=[pad, pad, pad, pad],
        )

    def global_avg_pool(self, x: str, name: str = "gap") -> str:
        return self.op("GlobalAveragePool", [x], name)

    def flatten(self, x: str, name: str = "flatten") -> str:
        return self.op("Flatten", [x], name, axis=1)

    def concat(self, xs: Sequence[str], axis: int, name: str = "concat") -> str:
        return self.op("Concat", list(xs), name, axis=axis)

    def reshape(self, x: str, shape: Sequence[int], name: str = "reshape") -> str:
        return self.op("Reshape", [x, self.ints(shape, "shape")], name)

    def transpose(self, x: str, perm: Sequence[int], name: str = "transpose") -> str:
        return self.op("Transpose", [x], name, perm=list(perm))

    def split(self, x: str, sizes: Sequence[int], axis: int, name: str = "split") -> list[str]:
        """Split into pieces of ``sizes`` along ``axis`` (attribute before opset 13)."""
        if self.opset >= 13:
            inputs = [x, self.ints(sizes, "split_sizes")]
            return self.op_multi("Split", inputs, name, len(sizes), axis=axis)
        return self.op_multi("Split", [x], name, len(sizes), axis=axis, split=list(sizes))

    def gather(self, x: str, index: int, axis: int, name: str = "gather") -> str:
        """Pick one index along ``axis`` (a scalar index, so that axis disappears)."""
        return self.op(
            "Gather", [x, self.const(np.asarray(index, dtype=np.int64), "index")], name, axis=axis
        )

    def reduce_mean(self, x: str, axes: Sequence[int], name: str = "mean") -> str:
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.ints(axes, "axes")], name, keepdims=1)
        return self.op("ReduceMean", [x], name, axes=list(axes), keepdims=1)

    def resize_nearest(self, x: str, scale: float = 2.0, name: str = "upsample") -> str:
        """Nearest-neighbour upsampling by ``scale`` on H and W, as torch exports it."""
        scales = self.const(np.asarray([1.0, 1.0, scale, scale], dtype=np.float32), "resize_scales")
        # roi may be omitted ('') from opset 13; opset 11 requires a (possibly empty) tensor.
        roi = "" if self.opset >= 13 else self.const(np.zeros(0, dtype=np.float32), "resize_roi")
        return self.op(
            "Resize",
            [x, roi, scales],
            name,
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        )

    def rename(self, tensor: str, new_name: str) -> str:
        """Give a produced tensor a public name (a graph output such as ``logits``)."""
        if new_name in self._names:
            raise InternalError(f"cannot rename '{tensor}' to '{new_name}': the name is taken")
        self._names.add(new_name)
        for node in self.nodes:
            for outs in (node.output, node.input):
                for i, name in enumerate(outs):
                    if name == tensor:
                        outs[i] = new_name
        return new_name

    # ----- finish -----------------------------------------------------------------------------
    def build(self, outputs: Sequence[str], doc: str = "") -> onnx.ModelProto:
        """The ModelProto with graph outputs typed by ONNX shape inference, then fully checked."""
        graph = helper.make_graph(
            self.nodes,
            self.name,
            self.inputs,
            [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
            self.initializers,
            doc_string=doc,
        )
        opset = helper.make_opsetid("", self.opset)
        model = helper.make_model(graph, opset_imports=[opset], producer_name="tandem-zoo")
        model.ir_version = helper.find_min_ir_version_for([opset])
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        known = {vi.name: vi for vi in inferred.graph.output}
        del model.graph.output[:]
        model.graph.output.extend(known[o] for o in outputs)
        onnx.checker.check_model(model, full_check=True)
        return model
