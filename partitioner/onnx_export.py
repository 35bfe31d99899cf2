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


def export_onnx(graph: Graph, opset: int | None = None) -> onnx.ModelProto:
    """A checked ONNX model computing ``graph``; ``opset`` defaults to 21."""
    target = EXPORT_OPSET if opset is None else int(opset)
    if not 11 <= target <= onnx.defs.onnx_opset_version():
        raise ModelError(
            f"cannot export graph '{graph.name}' at opset {target}; "
            f"expected 11..{onnx.defs.onnx_opset_version()}"
        )
    build_opset = max(target, EXPORT_OPSET)
    outputs = set(id(t) for t in graph.outputs)
    initializers = [
        numpy_helper.from_array(np.asarray(t.values), t.name)
        for t in graph.constants()
        if id(t) not in outputs
    ]
    nodes = [
        helper.make_node("Constant", [], [t.name], name=f"{t.name}/const",
                         value=numpy_helper.from_array(np.asarray(t.values)))  # fmt: skip
        for t in graph.outputs
        if isinstance(t, Constant)
    ]
    nodes += [_node(n) for n in graph.topological_order()]
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
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", build_opset)], producer_name="tandem"
    )
    model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", build_opset)])
    for key, value in graph.metadata.items():
        model.metadata_props.add(key=key, value=str(value))
    if target < build_opset:
        try:
            model = onnx.version_converter.convert_version(model, target)
        except Exception as err:  # the converter raises bare RuntimeErrors with C++ text
            raise ModelError(
                f"cannot convert graph '{graph.name}' down to opset {target}: "
                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}"
            ) from None
    return model


def _node(n: Node) -> onnx.NodeProto:
    ins = [t.name if t is not None else "" for t in n.inputs]
    attrs = {k: _attr(v) for k, v in n.attrs.items() if not _empty(v)}
    return helper.make_node(
        n.op, ins, [t.name for t in n.outputs], name=n.name, domain=n.domain or None, **attrs
    )


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
