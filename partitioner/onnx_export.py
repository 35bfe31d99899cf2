"""Graph IR → a standalone ONNX model (for ONNX Runtime checks, DLA segments, ``surgeon``).

The IR is in opset-21 form, so models are written at opset 21 and, when a lower opset is asked
for, converted down with onnx's version converter. Constants become initializers (or Constant
nodes where a constant is itself a graph output); every tensor with a known dtype gets a
value_info entry with its (possibly symbolic) shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from partitioner.errors import ModelError
from partitioner.ir import Constant, Graph, Node, Tensor

EXPORT_OPSET = 21
MIN_EXPORT_OPSET = 11

# Ops that do not exist below an opset: exporting them lower is refused.
_INTRODUCED = {"HardSwish": 14, "LayerNormalization": 17, "Mish": 18, "Gelu": 20,
               "Celu": 12, "GreaterOrEqual": 12, "LessOrEqual": 12, "Einsum": 12,
               "Trilu": 14, "CastLike": 15, "GridSample": 16}  # fmt: skip
_REDUCE_AXES_INPUT_FROM_18 = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                              "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
# Attributes (IR name: default) that older opsets lack; dropped when default, else refused.
_NEWER_ATTRS: dict[str, list[tuple[int, str, Any]]] = {
    "Split": [(18, "num_outputs", None)],
    "Shape": [(15, "start", 0), (15, "end", None)],
    "Reshape": [(14, "allowzero", 0)],
    "AveragePool": [(19, "dilations", None)],
    "Cast": [(19, "saturate", 1)],
    "QuantizeLinear": [(19, "saturate", 1), (21, "block_size", 0), (21, "output_dtype", 0)],
    "DequantizeLinear": [(21, "block_size", 0)],
    "Resize": [(18, "antialias", 0), (18, "axes", None), (18, "keep_aspect_ratio_policy",
                                                             "stretch")],
    "ArgMax": [(12, "select_last_index", 0)],
    **{op: [(18, "noop_with_empty_axes", 0)] for op in _REDUCE_AXES_INPUT_FROM_18},
    "ReduceSum": [(13, "noop_with_empty_axes", 0)],
    "ArgMin": [(12, "select_last_index", 0)],
    "GatherND": [(12, "batch_dims", 0)],
    "ScatterND": [(16, "reduction", "none")],
    "ScatterElements": [(16, "reduction", "none")],
    **{op: [(14, "layout", 0)] for op in ("RNN", "GRU", "LSTM")},
}  # fmt: skip
# Inputs that were attributes before an opset: (opset it became an input, index, attribute).
_INPUT_WAS_ATTR = {
    "Split": (13, 1, "split"),
    "Squeeze": (13, 1, "axes"),
    "Unsqueeze": (13, 1, "axes"),
    "ReduceSum": (13, 1, "axes"),
    **{op: (18, 1, "axes") for op in _REDUCE_AXES_INPUT_FROM_18},
    "Dropout": (12, 1, "ratio"),
}


def export_onnx(graph: Graph, opset: int | None = None) -> onnx.ModelProto:
    """A checked ONNX model computing ``graph``; ``opset`` defaults to 21.

    Below 21, ops are rewritten to the older form (inputs back to attributes and so on); an op
    that the older opset cannot express raises :class:`ModelError` naming the layer.
    """
    target = EXPORT_OPSET if opset is None else int(opset)
    if not MIN_EXPORT_OPSET <= target <= onnx.defs.onnx_opset_version():
        raise ModelError(
            f"cannot export graph '{graph.name}' at opset {target}; "
            f"expected {MIN_EXPORT_OPSET}..{onnx.defs.onnx_opset_version()}"
        )
    outputs = set(id(t) for t in graph.outputs)
    nodes = [
        helper.make_node("Constant", [], [t.name], name=f"{t.name}/const",
                         value=numpy_helper.from_array(np.asarray(t.values)))  # fmt: skip
        for t in graph.outputs
        if isinstance(t, Constant)
    ]
    nodes += [_node(n, target) for n in graph.topological_order()]
    used = {i for n in nodes for i in n.input}
    initializers = [
        numpy_helper.from_array(np.asarray(t.values), t.name)
        for t in [*graph.constants(), _EMPTY]
        if id(t) not in outputs and t.name in used
    ]
    if _EMPTY.name in used and _EMPTY.name in graph.tensors:
        raise ModelError(f"graph '{graph.name}' uses the reserved tensor name '{_EMPTY.name}'")
    inputs = [_value_info(t) for t in graph.inputs]
    outs = [_value_info(t) for t in graph.outputs]
    io_names = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}
    value_info = [
        _value_info(t)
        for t in graph.tensors.values()
        if not isinstance(t, Constant) and t.name not in io_names and t.dtype is not None
        and t.producer is not None
    ]  # fmt: skip
    g = helper.make_graph(nodes, graph.name, inputs, outs, initializers, value_info=value_info)
    opset_id = helper.make_opsetid("", target)
    # Plugin ops keep their domain; ONNX needs each domain declared (version 1 by convention).
    domains = sorted({n.domain for n in graph.nodes} - {"", "ai.onnx"})
    opsets = [opset_id] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(g, opset_imports=opsets, producer_name="tandem")
    model.ir_version = helper.find_min_ir_version_for([opset_id])
    for key, value in graph.metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    return model


# Stands for the empty float tensor older Resize needs in unused input slots.
_EMPTY = Constant("tandem_empty_float", np.zeros((0,), np.float32))


def _node(n: Node, opset: int) -> onnx.NodeProto:
    inputs: list[Tensor | None] = list(n.inputs)
    attrs = dict(n.attrs)
    if opset < EXPORT_OPSET and n.domain in ("", "ai.onnx"):
        _downgrade(n, opset, inputs, attrs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    names = [t.name if t is not None else "" for t in inputs]
    converted = {k: _attr(v) for k, v in attrs.items() if not _empty(v)}
    return helper.make_node(
        n.op, names, [t.name for t in n.outputs], name=n.name, domain=n.domain or None,
        **converted,
    )


def _refuse(n: Node, opset: int, what: str) -> ModelError:
    return ModelError(f"cannot export layer '{n.name}' ({n.op}) at opset {opset}: {what}")


def _downgrade(n: Node, opset: int, inputs: list[Tensor | None], attrs: dict[str, Any]) -> None:
    """Rewrite an opset-21-form node, in place, into the form ``opset`` defines."""
    since = _INTRODUCED.get(n.op)
    if since is not None and opset < since:
        raise _refuse(n, opset, f"{n.op} exists from opset {since}; export at {since} or later")
    for introduced, key, default in _NEWER_ATTRS.get(n.op, []):
        if opset < introduced and key in attrs:
            value = attrs[key]
            keep_default = default is not None and value == default
            if key == "dilations" and all(d == 1 for d in value):
                keep_default = True
            if key == "num_outputs" and (len(inputs) < 2 or inputs[1] is None):
                keep_default = True  # older Split splits equally by output count
            if not keep_default:
                raise _refuse(n, opset, f"attribute {key}={value!r} needs opset {introduced}")
            del attrs[key]
    moved = _INPUT_WAS_ATTR.get(n.op)
    if moved is not None and opset < moved[0]:
        _, index, key = moved
        t = inputs[index] if index < len(inputs) else None
        if t is not None:
            if not isinstance(t, Constant):
                raise _refuse(n, opset, f"'{key}' is computed at run time, older opsets need "
                                        "a constant attribute")  # fmt: skip
            values = np.asarray(t.values)
            attrs[key] = float(values) if key == "ratio" else [int(v) for v in values.reshape(-1)]
            inputs[index] = None
    if n.op == "Dropout" and opset < 12 and len(inputs) > 2 and inputs[2] is not None:
        raise _refuse(n, opset, "training_mode is an input only from opset 12")
    if n.op in ("Softmax", "LogSoftmax", "Hardmax") and opset < 13:
        x = inputs[0]
        axis = int(attrs.get("axis", -1))
        rank = len(x.shape) if x is not None and x.shape is not None else None
        if axis != -1 and (rank is None or axis % rank != rank - 1):
            raise _refuse(n, opset, "only the last axis has the same meaning before opset 13")
        attrs["axis"] = -1
    if n.op == "Resize" and opset < 13:
        # Opset 11 requires roi and scales as inputs; empty tensors stand for "unused".
        while len(inputs) < 3:
            inputs.append(None)
        for i in (1, 2):
            if inputs[i] is None and (i == 1 or len(inputs) > 3):
                inputs[i] = _EMPTY
        if attrs.get("coordinate_transformation_mode") == "half_pixel_symmetric":
            raise _refuse(n, opset, "half_pixel_symmetric needs opset 19")
    if n.op in ("ScatterND", "ScatterElements") and opset < 18:
        if attrs.get("reduction") in ("max", "min"):
            raise _refuse(n, opset, f"reduction '{attrs['reduction']}' needs opset 18")
    if n.op == "GridSample" and opset < 20:  # the opset-16 names; 2-D only
        mode = attrs.get("mode", "linear")
        attrs["mode"] = {"linear": "bilinear", "cubic": "bicubic"}.get(mode, mode)
        x = inputs[0]
        if x is not None and x.shape is not None and len(x.shape) != 4:
            raise _refuse(n, opset, "GridSample of a non-4-D input needs opset 20")
    if n.op == "Pad" and opset < 18 and len(inputs) > 3 and inputs[3] is not None:
        raise _refuse(n, opset, "Pad with an axes input needs opset 18")


def _empty(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 0


def _attr(v: Any) -> Any:
    """IR attribute values (python / numpy) as onnx.helper.make_attribute accepts them."""
    if isinstance(v, np.ndarray):
        return numpy_helper.from_array(v)
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        if all(isinstance(x, np.ndarray) for x in v):
            return [numpy_helper.from_array(x) for x in v]
        return [x.item() if isinstance(x, np.generic) else x for x in v]
    return v


def _value_info(t: Tensor) -> onnx.ValueInfoProto:
    elem = (
        helper.np_dtype_to_tensor_dtype(np.dtype(t.dtype))
        if t.dtype is not None
        else onnx.TensorProto.UNDEFINED
    )
    if t.shape is None:
        return helper.make_tensor_value_info(t.name, elem, None)
    dims = [d if d is not None else "" for d in t.shape]
    vi = helper.make_tensor_value_info(t.name, elem, dims)
    # helper turns "" into a dim_param of ""; an unknown dim is a dim with neither field set.
    for d, proto in zip(t.shape, vi.type.tensor_type.shape.dim):
        if d is None:
            proto.Clear()
    return vi
