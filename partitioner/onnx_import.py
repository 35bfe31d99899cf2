"""ONNX model → Graph IR, normalised to the opset-21 form: the import's front and its graph builder.

Every default-domain opset from 11 to 21 imports to one form so that the layers below handle one
version of each op: attributes that later opsets turned into inputs become Constant inputs,
``Upsample`` becomes ``Resize``, Softmax's coerced-2D semantics (opset < 13) are rewritten
exactly, and Conv / ConvTranspose / pools / LRN / Gemm get every attribute made explicit.
``Constant`` nodes and initializers become :class:`~partitioner.ir.Constant` tensors.

This module owns what Tandem imports (opsets, :data:`SUPPORTED_OPS`) and building the graph:
tensors, node names, onnx.checker per node, then shape inference. Reading and refusing the file
is ``onnx_load``'s; each op's normalisation is ``onnx_opset``'s. Only these ``onnx_*`` modules
(and ``onnx_export``) import onnx.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from partitioner.bindings import (
    ANONYMOUS_PARAMS,
    DYNAMIC_VALUE,
    anonymous_dim,
    bind_shape,
    resolve_bindings,
)
from partitioner.errors import GraphError, ModelError, ShapeError, TandemError, UnsupportedOpError
from partitioner.ir import Constant, Dim, Graph, Node, Shape, Tensor
from partitioner.onnx_load import (
    DEFAULT_DOMAINS,
    attr_value,
    check_ops,
    check_text,
    dtype_name,
    load_model,
)
from partitioner.onnx_opset import HANDLERS, RENAMED_OPS, emit_as_is, fix_legacy_softmax
from partitioner.passes.padding import resolve_auto_pad
from partitioner.plugins import PLUGINS
from partitioner.shape_inference import ShapeRule, infer_shapes

MIN_OPSET = 7  # opset 7 made arithmetic broadcast as numpy does (onnx_opset: 7..20 -> 21)
MAX_OPSET = 21
TARGET_OPSET = 21

SUPPORTED_OPS: frozenset[str] = frozenset(
    {
        # convolution, dense, normalisation
        "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization",
        "InstanceNormalization", "LayerNormalization", "LRN",
        # activations
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Clip", "HardSigmoid", "HardSwish",
        "Elu", "Selu", "Softplus", "Gelu", "Erf", "Mish",
        # pooling
        "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
        # element-wise
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sqrt", "Exp", "Log", "Abs", "Neg",
        "Reciprocal", "Floor", "Ceil", "Sum", "Not", "Where", "Equal", "Greater", "Less",
        # shape and data movement
        "Concat", "Split", "Slice", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze",
        "Pad", "Resize", "Upsample", "Gather", "Shape", "Constant", "ConstantOfShape", "Cast",
        "Identity", "Dropout", "Expand", "Tile", "Range",
        # reductions, softmax, selection
        "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "TopK",
        "ArgMax",
        # quantisation
        "QuantizeLinear", "DequantizeLinear",
        # what real exporters add (torchvision, transformers, Ultralytics): math and logic
        "Mod", "Mean", "Sign", "Round", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh",
        "Cosh", "Asinh", "Acosh", "Atanh", "Softsign", "Celu", "ThresholdedRelu", "IsNaN",
        "IsInf", "And", "Or", "Xor", "GreaterOrEqual", "LessOrEqual", "CastLike", "Size",
        # ... reductions and selection
        "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
        "ReduceSumSquare", "ArgMin", "Hardmax", "CumSum", "Einsum",
        # ... indexing, rearrangement, sampling, detection (data-dependent sizes on the host)
        "GatherElements", "GatherND", "ScatterND", "ScatterElements", "OneHot", "Trilu",
        "DepthToSpace", "SpaceToDepth", "GridSample", "NonZero", "NonMaxSuppression",
        # ... recurrent layers (paddle2onnx's CRNN text recognisers)
        "RNN", "GRU", "LSTM",
    }
)  # fmt: skip

# Ops onnx.checker checks against their schema: Tandem's own (plugins) have none, and the checker
# refuses Upsample from opset 10 on as deprecated, where ONNX Runtime (and Tandem) still run it.
_CHECKED_OPS = SUPPORTED_OPS - {"Upsample"}


def import_onnx(
    source: str | os.PathLike[str] | onnx.ModelProto,
    *,
    fixed_dims: Mapping[str, int] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    custom_ops: Mapping[str, ShapeRule | None] | None = None,
) -> Graph:
    """Read an ONNX model (a path or a ModelProto) into a :class:`Graph` in opset-21 form.

    Dynamic input dims (named, ``?``, unnamed, -1) import as symbols (``partitioner.bindings``).
    ``fixed_dims`` binds some by name or ``INPUT:AXIS`` (``{"batch": 1, "x:2": 48}``) and
    ``input_shapes`` by whole input shapes (``--shapes``); other dynamic dims stay symbolic
    strings. Shapes are inferred for every tensor (see ``shape_inference``).
    ``custom_ops`` admits plugin ops beyond :data:`SUPPORTED_OPS`, keyed ``"Op"`` or
    ``"domain::Op"``, each with an optional shape rule (without one, the file's value_info
    shapes are kept); they import as-is, attributes converted, domain kept.
    """
    model, label = load_model(source)
    opset = _default_opset(model, label)
    # registered plugins (partitioner.plugins) import like ops passed in ``custom_ops``
    custom = {**PLUGINS.shape_rules(), **dict(custom_ops or {})}
    check_text(model, label)
    check_ops(model, label, SUPPORTED_OPS | set(RENAMED_OPS) | set(custom))
    importer = _Importer(model, label, opset, dict(fixed_dims or {}), dict(input_shapes or {}))
    graph = importer.build()
    rules = {k: v for k, v in custom.items() if v is not None}
    _finish(graph, importer, label, rules)
    return graph


def _default_opset(model: onnx.ModelProto, label: str) -> int:
    versions = [o.version for o in model.opset_import if o.domain in DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(
            f"{label}: declares no default-domain opset; Tandem imports opsets "
            f"{MIN_OPSET}..{MAX_OPSET}"
        )
    opset = int(versions[0])
    if opset < MIN_OPSET:
        # onnx.version_converter upgrades such a file, but its Upsample -> Resize step changes
        # linear resizing from Upsample's asymmetric coordinates to half_pixel (torchvision's
        # deeplabv3 at opset 9: 0.61 max rel err against ONNX Runtime on the original)
        raise ModelError(
            f"{label}: opset {opset} is not supported; Tandem imports opsets "
            f"{MIN_OPSET}..{MAX_OPSET}: re-export at opset {MIN_OPSET} or later, or upgrade with "
            f"onnx.version_converter.convert_version and check the result against ONNX Runtime "
            f"on this file (its Upsample -> Resize step changes linear resizing)"
        )
    if opset > MAX_OPSET:
        raise ModelError(
            f"{label}: opset {opset} is not supported; Tandem imports opsets "
            f"{MIN_OPSET}..{MAX_OPSET} (convert with onnx.version_converter.convert_version)"
        )
    return opset


# ----- building the graph --------------------------------------------------------------------
class _Importer:
    def __init__(
        self,
        model: onnx.ModelProto,
        label: str,
        opset: int,
        fixed_dims: dict[str, int],
        input_shapes: dict[str, Sequence[int]],
    ) -> None:
        self.model = model
        self.label = label
        self.opset = opset
        self.fixed_dims = fixed_dims
        self.input_shapes = input_shapes
        name = model.graph.name or Path(label).stem or "graph"
        self.graph = Graph(name, opset=TARGET_OPSET)
        self.domain = ""  # of the node being added; plugin ops keep theirs
        self.read_names = {i for n in model.graph.node for i in n.input} | {
            o.name for o in model.graph.output
        }
        # Softmax / LogSoftmax of opset < 13, normalised once ranks are known.
        self.legacy_softmax: list[Node] = []
        self.checker = onnx.checker.C.CheckerContext()
        self.checker.ir_version = model.ir_version
        self.checker.opset_imports = {
            "" if o.domain == "ai.onnx" else o.domain: o.version for o in model.opset_import
        }

    # -- tensors ---------------------------------------------------------------------------
    def type_info(
        self, vi: onnx.ValueInfoProto, is_input: bool = False
    ) -> tuple[Shape | None, str | None]:
        """Shape and dtype; a graph input's dynamic dims become symbols (anonymous ones named
        ``INPUT:AXIS``), elsewhere an anonymous dim is unknown (``None``): only a shared name
        ties dims together."""
        if not vi.type.HasField("tensor_type"):
            raise ModelError(
                f"{self.label}: '{vi.name}' is not a tensor ({vi.type.WhichOneof('value')}); "
                "Tandem imports tensor inputs and outputs only"
            )
        tt = vi.type.tensor_type
        dtype = dtype_name(tt.elem_type)
        if not tt.HasField("shape"):
            return None, dtype
        dims: list[Dim] = []
        for axis, d in enumerate(tt.shape.dim):
            if d.HasField("dim_value") and d.dim_value != DYNAMIC_VALUE:
                dims.append(int(d.dim_value))
            elif d.HasField("dim_param") and d.dim_param not in ANONYMOUS_PARAMS:
                dims.append(d.dim_param)
            else:
                dims.append(anonymous_dim(vi.name, axis) if is_input else None)
        return tuple(dims), dtype

    def build(self) -> Graph:
        g = self.graph
        mg = self.model.graph
        g.metadata.update(
            {
                "source": self.label,
                "source_opset": str(self.opset),
                "producer": f"{self.model.producer_name} {self.model.producer_version}".strip(),
            }
        )
        for init in mg.initializer:
            self.add_tensor_name(init.name, "initializer")
            self.onnx_check(onnx.checker.check_tensor, init, f"initializer '{init.name}'")
            try:
                values = numpy_helper.to_array(init)
            except Exception as err:  # malformed tensor payloads surface as assorted errors
                raise ModelError(
                    f"{self.label}: initializer '{init.name}' cannot be read ({err}); "
                    "the file may be truncated"
                ) from None
            g.add_constant(init.name, values)
        if mg.sparse_initializer:
            raise ModelError(f"{self.label}: sparse initializers are not supported")
        for vi in mg.input:
            if vi.name in g.tensors and isinstance(g.tensors[vi.name], Constant):
                continue  # IR < 4 lists initializers among inputs; the initializer wins
            shape, dtype = self.type_info(vi, is_input=True)
            self.add_tensor_name(vi.name, "graph input")
            t = g.add_variable(vi.name, shape, dtype or "float32")
            g.inputs.append(t)
        try:
            bound = resolve_bindings(g.inputs, self.fixed_dims, self.input_shapes)
        except ShapeError as err:
            raise ShapeError(f"{self.label}: {err}") from None
        for t in g.inputs:
            t.shape = bind_shape(t.shape, bound)
        hints: dict[str, tuple[Shape | None, str | None]] = {}
        for vi in list(mg.value_info) + list(mg.output):
            if vi.type.HasField("tensor_type"):
                shape, dtype = self.type_info(vi)
                hints[vi.name] = (bind_shape(shape, bound), dtype)
        names = self.node_names()
        for n, name in zip(mg.node, names):
            what = f"layer '{name}' ({n.op_type})"
            if n.op_type == "Constant":  # only its value: ORT takes value_floats at opset 11 too
                for a in n.attribute:
                    if a.type == onnx.AttributeProto.TENSOR:
                        self.onnx_check(onnx.checker.check_tensor, a.t, what)
            elif n.domain in DEFAULT_DOMAINS and n.op_type in _CHECKED_OPS:
                self.onnx_check(onnx.checker.check_node, n, what)
        # Create every produced tensor first so that nodes may appear out of order in the file.
        for n, name in zip(mg.node, names):
            if n.op_type == "Constant":
                self.add_tensor_name(n.output[0], f"output of '{name}'")
                g.add_constant(n.output[0], self.constant_value(n, name))
                continue
            for o in n.output:
                if o:
                    self.add_tensor_name(o, f"output of '{name}'")
                    shape, dtype = hints.get(o, (None, None))
                    g.add_variable(o, shape, dtype)
        for n, name in zip(mg.node, names):
            if n.op_type != "Constant":
                self.add_node(n, name)
        for vi in mg.output:
            if vi.name not in g.tensors:
                raise GraphError(
                    f"{self.label}: graph output '{vi.name}' is produced by no node, input or "
                    "initializer"
                )
            g.mark_output(g.tensors[vi.name])
        return g

    def onnx_check(self, check: Callable[..., None], proto: Any, what: str) -> None:
        """onnx.checker on one node or tensor: required inputs present, attribute types, data
        sizes matching dims. Not ``check_model``: it also refuses what ONNX Runtime runs (nodes
        out of topological order, graph outputs without a shape), and the importer checks the
        graph's structure itself with messages that name every tensor and layer involved."""
        try:
            check(proto, self.checker)
        except onnx.checker.ValidationError as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else "invalid"
            raise ModelError(f"{self.label}: {what}: {reason}") from None

    def add_tensor_name(self, name: str, what: str) -> None:
        if not name:
            raise ModelError(f"{self.label}: a {what} has an empty tensor name")
        if name in self.graph.tensors:
            raise GraphError(
                f"{self.label}: tensor name '{name}' is defined twice (again as {what}); "
                "ONNX requires each tensor to be produced once"
            )

    def node_names(self) -> list[str]:
        """ONNX names kept; empty or repeated ones become ``<op>_<n>``, deterministically."""
        taken = {n.name for n in self.model.graph.node if n.name}
        seen: set[str] = set()
        counters: Counter[str] = Counter()
        names = []
        for n in self.model.graph.node:
            name = n.name
            if not name or name in seen:
                while True:
                    name = f"{n.op_type}_{counters[n.op_type]}"
                    counters[n.op_type] += 1
                    if name not in taken and name not in seen:
                        break
            seen.add(name)
            names.append(name)
        return names

    def constant_value(self, n: onnx.NodeProto, name: str) -> np.ndarray:
        if len(n.attribute) != 1:
            raise ModelError(f"{self.label}: Constant '{name}' needs exactly one value attribute")
        a = n.attribute[0]
        if a.name == "sparse_value":
            raise ModelError(f"{self.label}: Constant '{name}' uses sparse_value (unsupported)")
        value = attr_value(a)
        if a.name == "value":
            return np.asarray(value)
        dtype = {"value_float": np.float32, "value_floats": np.float32,
                 "value_int": np.int64, "value_ints": np.int64}.get(a.name)  # fmt: skip
        if dtype is None:
            raise ModelError(f"{self.label}: Constant '{name}' has {a.name}, which is unsupported")
        return np.asarray(value, dtype=dtype)

    # -- nodes -------------------------------------------------------------------------------
    def tensor_or_none(self, name: str, layer: str) -> Tensor | None:
        if not name:
            return None
        t = self.graph.tensors.get(name)
        if t is None:
            raise GraphError(
                f"{self.label}: layer '{layer}' reads '{name}', which no node, graph input or "
                "initializer provides"
            )
        return t

    def const(self, base: str, values: Any, dtype: Any = np.int64) -> Constant:
        return self.graph.add_constant(
            self.graph.unique_name(base), np.asarray(values, dtype=dtype)
        )

    def add_node(self, n: onnx.NodeProto, name: str) -> None:
        inputs: list[Tensor | None] = [self.tensor_or_none(i, name) for i in n.input]
        while inputs and inputs[-1] is None:
            inputs.pop()
        outputs: list[Tensor | None] = [self.graph.tensors[o] if o else None for o in n.output]
        attrs = {a.name: attr_value(a) for a in n.attribute}
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UnsupportedOpError(f"{self.label}: layer '{name}' has a subgraph attribute")
        self.domain = "" if n.domain in DEFAULT_DOMAINS else n.domain
        handler = HANDLERS.get(n.op_type, emit_as_is) if not self.domain else emit_as_is
        handler(self, n.op_type, name, inputs, outputs, attrs)

    def emit(
        self,
        op: str,
        name: str,
        inputs: Sequence[Tensor | None],
        outputs: Sequence[Tensor | None],
        attrs: dict[str, Any],
    ) -> Node:
        outs = list(outputs)
        while outs and outs[-1] is None:
            outs.pop()
        real: list[Tensor] = []
        for i, t in enumerate(outs):
            # An omitted optional output in the middle still needs a tensor in the IR.
            real.append(t if t is not None else self.graph.add_variable(
                self.graph.unique_name(f"{name}_unused{i}")))  # fmt: skip
        ins = list(inputs)
        while ins and ins[-1] is None:
            ins.pop()
        return self.graph.add_node(op, ins, real, attrs, name=name, domain=self.domain)

    def unused(self, t: Tensor | None) -> bool:
        """True when no node of the file reads ``t`` and it is no graph output (judged on the
        file: consumers appear in the IR only as their nodes are added)."""
        return t is None or t.name not in self.read_names


# ----- after the graph is built: order, shapes, shape-dependent normalisation ------------------
def _finish(graph: Graph, importer: _Importer, label: str, rules: dict[str, ShapeRule]) -> None:
    try:
        graph.toposort()
        infer_shapes(graph, rules)
    except TandemError as err:
        msg = str(err)
        raise type(err)(msg if msg.startswith(label) else f"{label}: {msg}") from None
    if fix_legacy_softmax(graph, importer.legacy_softmax):
        graph.toposort()
        infer_shapes(graph, rules)
    resolve_auto_pad(graph)
    # Constants that normalisation disconnected (an opset-11 Resize's empty roi, say).
    for t in [t for t in graph.constants() if not t.consumers and t not in graph.outputs]:
        graph.remove_tensor(t)
    graph.lint()
