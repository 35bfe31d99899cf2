"""ONNX model → Graph IR, normalised to the opset-21 form.

Every default-domain opset from 11 to 21 imports to one form so that the layers below handle one
version of each op: attributes that later opsets turned into inputs become Constant inputs,
``Upsample`` becomes ``Resize``, Softmax's coerced-2D semantics (opset < 13) are rewritten
exactly, and Conv / ConvTranspose / pools / LRN / Gemm get every attribute made explicit.
``Constant`` nodes and initializers become :class:`~partitioner.ir.Constant` tensors.

Only this module and ``onnx_export`` import onnx.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper, numpy_helper

from partitioner.bindings import (
    ANONYMOUS_PARAMS,
    DYNAMIC_VALUE,
    anonymous_dim,
    bind_shape,
    resolve_bindings,
)
from partitioner.errors import (
    GraphError,
    ModelError,
    ShapeError,
    TandemError,
    UnsupportedOpError,
)
from partitioner.ir import Constant, Dim, Graph, Node, Shape, Tensor
from partitioner.passes.padding import resolve_auto_pad
from partitioner.plugins import PLUGINS
from partitioner.shape_inference import ShapeRule, infer_shapes

MIN_OPSET = 11
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
_DEFAULT_DOMAINS = ("", "ai.onnx")
_MAX_NAMES_SHOWN = 20


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
    model, label = _load(source)
    opset = _default_opset(model, label)
    # registered plugins (partitioner.plugins) import like ops passed in ``custom_ops``
    custom = {**PLUGINS.shape_rules(), **dict(custom_ops or {})}
    _check_text(model, label)
    _check_ops(model, label, SUPPORTED_OPS | set(custom))
    importer = _Importer(model, label, opset, dict(fixed_dims or {}), dict(input_shapes or {}))
    graph = importer.build()
    rules = {k: v for k, v in custom.items() if v is not None}
    _finish(graph, importer, label, rules)
    return graph


# ----- loading and validation ----------------------------------------------------------------
def _load(source: str | os.PathLike[str] | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    if isinstance(source, onnx.ModelProto):
        label = f"model '{source.graph.name or '<unnamed>'}'"
        _check_structure(source, label)
        for tensor in _all_initializers(source):
            if external_data_helper.uses_external_data(tensor) and not tensor.HasField("raw_data"):
                raise ModelError(
                    f"{label}: initializer '{tensor.name}' keeps its data in an external file; "
                    "pass the model's path instead of a ModelProto"
                )
        return source, label
    path = Path(os.fspath(source))
    label = str(path)
    if not path.exists():
        raise ModelError(f"{label}: no such file; expected an ONNX model (.onnx)")
    if path.is_dir():
        raise ModelError(f"{label}: is a directory; expected an ONNX model file (.onnx)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and friends; any failure means the same
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(
            f"{label}: not an ONNX model or a truncated protobuf ({reason}); "
            "expected a file written by onnx.save"
        ) from None
    _check_structure(model, label)
    try:
        external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as err:  # onnx raises OSError, ValueError or its own ValidationError
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"{label}: cannot read its external weight data: {reason}") from None
    return model, label


def _all_initializers(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    return list(model.graph.initializer)


def _check_structure(model: onnx.ModelProto, label: str) -> None:
    """Catch files that parse as protobuf but are not (complete) ONNX models."""
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise ModelError(
            f"{label}: not an ONNX model or a truncated protobuf (no IR version or no graph); "
            "expected a file written by onnx.save"
        )
    if not model.opset_import:
        raise ModelError(
            f"{label}: truncated or invalid ONNX model (it declares no opset); "
            "expected a file written by onnx.save"
        )
    if not model.graph.output:
        raise ModelError(f"{label}: the graph has no outputs; the file may be truncated")


def _default_opset(model: onnx.ModelProto, label: str) -> int:
    versions = [o.version for o in model.opset_import if o.domain in _DEFAULT_DOMAINS]
    if not versions:
        raise ModelError(
            f"{label}: declares no default-domain opset; Tandem imports opsets "
            f"{MIN_OPSET}..{MAX_OPSET}"
        )
    opset = int(versions[0])
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ModelError(
            f"{label}: opset {opset} is not supported; Tandem imports opsets "
            f"{MIN_OPSET}..{MAX_OPSET} (convert with onnx.version_converter.convert_version)"
        )
    return opset


def _check_text(model: onnx.ModelProto, label: str) -> None:
    """Every name the importer reads is text. ONNX strings are UTF-8; protobuf hands a field
    that is not back as ``bytes``, which would surface later as a type error in a report."""

    def bad(value: object) -> bool:
        return isinstance(value, bytes)

    g = model.graph
    if bad(g.name):
        raise ModelError(f"{label}: the graph's name is not UTF-8 ({g.name!r})")
    for kind, items in (("input", g.input), ("output", g.output), ("value_info", g.value_info),
                        ("initializer", g.initializer)):  # fmt: skip
        for item in items:
            if bad(item.name):
                raise ModelError(f"{label}: a graph {kind}'s name is not UTF-8 ({item.name!r})")
    for i, n in enumerate(g.node):
        where = f"node #{i}" if bad(n.name) or not n.name else f"layer '{n.name}'"
        for field, value in (("name", n.name), ("op_type", n.op_type), ("domain", n.domain)):
            if bad(value):
                raise ModelError(f"{label}: {where}: its {field} is not UTF-8 ({value!r})")
        for t in (*n.input, *n.output):
            if bad(t):
                raise ModelError(f"{label}: {where}: a tensor name is not UTF-8 ({t!r})")


def _op_key(node: onnx.NodeProto) -> str:
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def _check_ops(model: onnx.ModelProto, label: str, allowed: Collection[str]) -> None:
    """Raise one UnsupportedOpError naming every unsupported op type and its layers."""
    used: set[str] = {o.name for o in model.graph.output}
    for n in model.graph.node:
        used.update(n.input)
    bad: dict[str, list[str]] = {}
    for i, n in enumerate(model.graph.node):
        key = _op_key(n)
        name = n.name or f"#{i}"
        if key not in allowed:
            bad.setdefault(key, []).append(name)
            continue
        # Dropout's mask and MaxPool's Indices are computed (the CPU reference has them);
        # BatchNormalization's running mean / var only exist in training mode (opset 14+):
        # the saved statistics of older opsets are not computed.
        training = key == "BatchNormalization" and int(_attr(n, "training_mode", 0))
        stats = n.output[3:] if training else n.output[1:]
        if key == "BatchNormalization" and any(o and o in used for o in stats):
            bad.setdefault(f"{key} (statistics outputs outside training mode)", []).append(name)
    if bad:
        parts = []
        for key, names in bad.items():
            shown = ", ".join(names[:_MAX_NAMES_SHOWN])
            if len(names) > _MAX_NAMES_SHOWN:
                shown += f", and {len(names) - _MAX_NAMES_SHOWN} more"
            parts.append(f"{key} ({len(names)}: {shown})")
        raise UnsupportedOpError(
            f"{label}: unsupported operators: {'; '.join(parts)}; "
            "see partitioner.onnx_import.SUPPORTED_OPS for what Tandem imports, or register "
            "a plugin for a custom op (docs/plugins.md)"
        )


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for a in node.attribute:
        if a.name == name:
            return _attr_value(a)
    return default


def _attr_value(a: onnx.AttributeProto) -> Any:
    value = onnx.helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        if value and isinstance(value[0], bytes):
            return [v.decode("utf-8") for v in value]
        if value and isinstance(value[0], onnx.TensorProto):
            return [numpy_helper.to_array(v) for v in value]
        if a.type == onnx.AttributeProto.INTS:
            return [int(v) for v in value]
        if a.type == onnx.AttributeProto.FLOATS:
            return [float(v) for v in value]
        return list(value)
    return value


def _dtype_name(elem_type: int) -> str | None:
    if elem_type == 0:
        return None
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError):
        return None


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
        dtype = _dtype_name(tt.elem_type)
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
            elif n.domain in _DEFAULT_DOMAINS and n.op_type in _CHECKED_OPS:
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
        value = _attr_value(a)
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
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UnsupportedOpError(f"{self.label}: layer '{name}' has a subgraph attribute")
        self.domain = "" if n.domain in _DEFAULT_DOMAINS else n.domain
        handler = _HANDLERS.get(n.op_type, _plain) if not self.domain else _plain
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


# ----- per-op normalisation to the opset-21 form ----------------------------------------------
_Handler = Callable[
    [_Importer, str, str, list["Tensor | None"], list["Tensor | None"], dict[str, Any]], None
]


def _plain(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    imp.emit(op, name, ins, outs, attrs)


def _set_input(ins: list[Tensor | None], index: int, t: Tensor) -> None:
    while len(ins) <= index:
        ins.append(None)
    ins[index] = t


def _attr_to_input(attr: str, index: int) -> _Handler:
    """Ops whose ``attr`` became input ``index`` (int64) in a later opset."""

    def handler(
        imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
        attrs: dict[str, Any],
    ) -> None:
        if attr in attrs:
            _set_input(ins, index, imp.const(f"{name}_{attr}", attrs.pop(attr)))
        imp.emit(op, name, ins, outs, attrs)

    return handler


def _split(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    if "split" in attrs:
        _set_input(ins, 1, imp.const(f"{name}_split", attrs.pop("split")))
    if len(ins) < 2 or ins[1] is None:
        attrs.setdefault("num_outputs", len(outs))
    imp.emit(op, name, ins, outs, attrs)


def _softmax(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    node = imp.emit(op, name, ins, outs, attrs)
    if imp.opset < 13:
        # Coerced-2D semantics: rewritten once ranks are known (see _fix_legacy_softmax).
        node.attrs["axis"] = int(attrs.get("axis", 1))
        imp.legacy_softmax.append(node)


def _upsample(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    # Upsample's index mapping is Resize's asymmetric mode (with floor for nearest).
    mode = str(attrs.get("mode", "nearest"))
    mode = "linear" if mode in ("linear", "bilinear") else mode
    new_attrs: dict[str, Any] = {"mode": mode, "coordinate_transformation_mode": "asymmetric"}
    if mode == "nearest":
        new_attrs["nearest_mode"] = "floor"
    scales = ins[1] if len(ins) > 1 else None
    if "scales" in attrs:
        scales = imp.const(f"{name}_scales", attrs["scales"], np.float32)
    imp.emit("Resize", name, [ins[0], None, scales], outs, new_attrs)


def _resize(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    # Opset 11 required roi and scales even when unused: an empty tensor means "absent".
    for i in (1, 2):
        t = ins[i] if i < len(ins) else None
        if isinstance(t, Constant) and t.values.size == 0:
            ins[i] = None
    imp.emit(op, name, ins, outs, attrs)


def _drop_unused_extra_outputs(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    """Dropout's mask, MaxPool's Indices, BatchNorm's running stats: kept only if read."""
    if op == "BatchNormalization":
        if not int(attrs.pop("training_mode", 0)):
            attrs.pop("momentum", None)
        else:  # batch statistics: no longer a per-channel affine, nothing folds it away
            attrs["training_mode"] = 1
            attrs.setdefault("momentum", 0.9)
        attrs.pop("spatial", None)
        attrs.setdefault("epsilon", 1e-5)
    if op == "Dropout":
        if "ratio" in attrs:  # an attribute until opset 12
            _set_input(ins, 1, imp.const(f"{name}_ratio", attrs.pop("ratio"), np.float32))
        mode = ins[2] if len(ins) > 2 else None
        if isinstance(mode, Constant) and bool(np.asarray(mode.values).reshape(-1)[0]):
            raise UnsupportedOpError(
                f"{imp.label}: Dropout '{name}' runs in training mode; "
                "export the model in eval mode"
            )
    if all(imp.unused(t) for t in outs[1:]):
        for t in outs[1:]:
            if t is not None:
                imp.graph.remove_tensor(t)
        outs = outs[:1]
    if op == "MaxPool":
        _pool(imp, op, name, ins, outs, attrs)
    else:
        imp.emit(op, name, ins, outs, attrs)


def _spatial_rank(imp: _Importer, weight_or_x: Tensor | None, attrs: dict[str, Any]) -> int | None:
    if "kernel_shape" in attrs:
        return len(attrs["kernel_shape"])
    if weight_or_x is not None and weight_or_x.shape is not None:
        return len(weight_or_x.shape) - 2
    return None


def _explicit_window_attrs(attrs: dict[str, Any], k: int, dilations: bool = True) -> None:
    attrs.setdefault("strides", [1] * k)
    if dilations:
        attrs.setdefault("dilations", [1] * k)
    attrs.setdefault("pads", [0] * (2 * k))
    if attrs.get("auto_pad", "NOTSET") in ("NOTSET", ""):
        attrs.pop("auto_pad", None)
    elif attrs["auto_pad"] == "VALID":
        attrs["pads"] = [0] * (2 * k)
        attrs.pop("auto_pad")


def _conv(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    w = ins[1] if len(ins) > 1 else None
    if "kernel_shape" not in attrs and w is not None and w.shape is not None:
        if all(isinstance(d, int) for d in w.shape[2:]):
            attrs["kernel_shape"] = [int(d) for d in w.shape[2:]]  # type: ignore[arg-type]
    k = _spatial_rank(imp, w, attrs)
    attrs.setdefault("group", 1)
    if k is not None:
        _explicit_window_attrs(attrs, k)
        if op == "ConvTranspose":
            attrs.setdefault("output_padding", [0] * k)
    imp.emit(op, name, ins, outs, attrs)


def _pool(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    k = len(attrs.get("kernel_shape", []))
    if k:
        _explicit_window_attrs(attrs, k, dilations=op == "MaxPool" or imp.opset >= 19)
    attrs.setdefault("ceil_mode", 0)
    if op == "AveragePool":
        attrs.setdefault("count_include_pad", 0)
    if op == "MaxPool":
        attrs.setdefault("storage_order", 0)
    imp.emit(op, name, ins, outs, attrs)


def _gemm(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    for key, default in (("alpha", 1.0), ("beta", 1.0), ("transA", 0), ("transB", 0)):
        attrs.setdefault(key, default)
    imp.emit(op, name, ins, outs, attrs)


def _lrn(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    for key, default in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)):
        attrs.setdefault(key, default)
    imp.emit(op, name, ins, outs, attrs)


def _grid_sample(
    imp: _Importer, op: str, name: str, ins: list[Tensor | None], outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    # opset 20 renamed the modes (and allowed N-d); opset 16's names map one to one
    mode = str(attrs.get("mode", "bilinear" if imp.opset < 20 else "linear"))
    attrs["mode"] = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    imp.emit(op, name, ins, outs, attrs)


_MORE_REDUCTIONS = ("ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                    "ReduceSumSquare")  # fmt: skip
_HANDLERS: dict[str, _Handler] = {
    "GridSample": _grid_sample,
    "Split": _split,
    "Squeeze": _attr_to_input("axes", 1),
    "Unsqueeze": _attr_to_input("axes", 1),
    "ReduceMean": _attr_to_input("axes", 1),
    "ReduceSum": _attr_to_input("axes", 1),
    "ReduceMax": _attr_to_input("axes", 1),
    "ReduceMin": _attr_to_input("axes", 1),
    **{op: _attr_to_input("axes", 1) for op in _MORE_REDUCTIONS},
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "Hardmax": _softmax,
    "Upsample": _upsample,
    "Resize": _resize,
    "Dropout": _drop_unused_extra_outputs,
    "BatchNormalization": _drop_unused_extra_outputs,
    "MaxPool": _drop_unused_extra_outputs,
    "AveragePool": _pool,
    "Conv": _conv,
    "ConvTranspose": _conv,
    "Gemm": _gemm,
    "LRN": _lrn,
}


# ----- after the graph is built: order, shapes, shape-dependent normalisation ------------------
def _finish(
    graph: Graph, importer: _Importer, label: str, rules: dict[str, ShapeRule]
) -> None:
    try:
        graph.toposort()
        infer_shapes(graph, rules)
    except TandemError as err:
        msg = str(err)
        raise type(err)(msg if msg.startswith(label) else f"{label}: {msg}") from None
    if _fix_legacy_softmax(graph, importer.legacy_softmax):
        graph.toposort()
        infer_shapes(graph, rules)
    resolve_auto_pad(graph)
    # Constants that normalisation disconnected (an opset-11 Resize's empty roi, say).
    for t in [t for t in graph.constants() if not t.consumers and t not in graph.outputs]:
        graph.remove_tensor(t)
    graph.lint()


def _fix_legacy_softmax(graph: Graph, nodes: list[Node]) -> bool:
    """Opset < 13 Softmax coerces its input to 2-D at ``axis`` and normalises the flat tail.

    That is Softmax(axis=-1) when ``axis`` is the last dim; otherwise (or when the rank is
    unknown) Flatten(axis) -> Softmax(-1) -> Reshape(Shape(x)) computes it exactly.
    """
    changed = False
    for node in nodes:
        x = node.inputs[0]
        assert x is not None
        axis = int(node.attrs["axis"])
        if x.shape is not None and axis % max(len(x.shape), 1) == len(x.shape) - 1:
            node.attrs["axis"] = -1
            continue
        out = node.outputs[0]
        name, op = node.name, node.op
        held = graph.add_variable(graph.unique_name(f"{out.name}_held"))
        graph.replace_all_uses(out, held)
        graph.remove_node(node, remove_dangling=False)
        flat = graph.add_node("Flatten", [x], 1, {"axis": axis}, name=f"{name}/flatten")
        soft = graph.add_node(op, [flat.outputs[0]], 1, {"axis": -1}, name=name)
        shape = graph.add_node("Shape", [x], 1, {}, name=f"{name}/shape")
        graph.add_node("Reshape", [soft.outputs[0], shape.outputs[0]], [out], {},
                       name=f"{name}/reshape")  # fmt: skip
        graph.replace_all_uses(held, out)
        graph.remove_tensor(held)
        changed = True
    return changed
