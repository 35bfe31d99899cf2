"""Reading an ONNX file for the importer: loading it, refusing what is not a whole model, and
decoding attribute and dtype fields into Python values.

Everything here judges the file as written, before any IR exists, so each message names the file
and the layer or tensor at fault. The opset range and the op set are ``onnx_import``'s (its public
contract); :func:`check_ops` is handed the allowed set.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Any

import onnx
from onnx import external_data_helper, numpy_helper

from partitioner.errors import ModelError, UnsupportedOpError

#: The default ONNX domain, as files spell it.
DEFAULT_DOMAINS = ("", "ai.onnx")
_MAX_NAMES_SHOWN = 20


def load_model(source: str | os.PathLike[str] | onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The model with its external weights read, and the label every message starts with."""
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


def check_text(model: onnx.ModelProto, label: str) -> None:
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
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def check_ops(model: onnx.ModelProto, label: str, allowed: Collection[str]) -> None:
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
            return attr_value(a)
    return default


def attr_value(a: onnx.AttributeProto) -> Any:
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


def dtype_name(elem_type: int) -> str | None:
    if elem_type == 0:
        return None
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
    except (KeyError, ValueError):
        return None
