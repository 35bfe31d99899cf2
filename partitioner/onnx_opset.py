"""Per-op normalisation of opsets 7..20 to the opset-21 form, as the importer adds each node.

One handler per op that changed across those opsets: attributes that later opsets turned into
inputs become Constant inputs (Slice <= 9, Pad and Clip <= 10, TopK <= 9, axes, splits),
``Upsample`` and opset 10's ``Resize`` become an asymmetric ``Resize``, ``Scatter`` is
``ScatterElements``, Conv / ConvTranspose / pools / LRN /
Gemm get every attribute made explicit, and optional extra outputs nobody reads are dropped.
Softmax's coerced-2D semantics (opset < 13) need ranks, so the handler only records the node and
:func:`fix_legacy_softmax` rewrites it after shape inference. Handlers see the importer only
through :class:`Importer`, so this module does not import ``onnx_import``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from partitioner.errors import UnsupportedOpError
from partitioner.ir import Constant, Graph, Node, Tensor


class Importer(Protocol):
    """What a handler uses of ``onnx_import``'s importer while it adds one node."""

    label: str
    opset: int
    graph: Graph
    legacy_softmax: list[Node]

    def const(self, base: str, values: Any, dtype: Any = np.int64) -> Constant: ...

    def emit(
        self,
        op: str,
        name: str,
        inputs: Sequence[Tensor | None],
        outputs: Sequence[Tensor | None],
        attrs: dict[str, Any],
    ) -> Node: ...

    def unused(self, t: Tensor | None) -> bool: ...


_Handler = Callable[
    [Importer, str, str, list["Tensor | None"], list["Tensor | None"], dict[str, Any]], None
]


def emit_as_is(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    """Ops that need no normalisation to the opset-21 form, and every plugin op."""
    imp.emit(op, name, ins, outs, attrs)


def _set_input(ins: list[Tensor | None], index: int, t: Tensor) -> None:
    while len(ins) <= index:
        ins.append(None)
    ins[index] = t


def _attr_defaults(**defaults: Any) -> _Handler:
    """Ops whose ONNX defaults the opset-21 form states explicitly, so readers need not."""

    def handler(
        imp: Importer,
        op: str,
        name: str,
        ins: list[Tensor | None],
        outs: list[Tensor | None],
        attrs: dict[str, Any],
    ) -> None:
        for key, default in defaults.items():
            attrs.setdefault(key, default)
        imp.emit(op, name, ins, outs, attrs)

    return handler


def _split(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    if "split" in attrs:
        _set_input(ins, 1, imp.const(f"{name}_split", attrs.pop("split")))
    if len(ins) < 2 or ins[1] is None:
        attrs.setdefault("num_outputs", len(outs))
    imp.emit(op, name, ins, outs, attrs)


def _softmax(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    node = imp.emit(op, name, ins, outs, attrs)
    if imp.opset < 13:
        # Coerced-2D semantics: rewritten once ranks are known (see fix_legacy_softmax).
        node.attrs["axis"] = int(attrs.get("axis", 1))
        imp.legacy_softmax.append(node)


def _attrs_to_inputs(*moves: tuple[str, int, Any]) -> _Handler:
    """Ops whose attributes became inputs (name, input index, dtype; None: the data input's)
    in a later opset: Slice's starts / ends / axes (opset 10), Pad's pads and value and Clip's
    min / max (opset 11), the axes of Squeeze, Unsqueeze and the reductions (opsets 13, 18)."""

    def handler(
        imp: Importer,
        op: str,
        name: str,
        ins: list[Tensor | None],
        outs: list[Tensor | None],
        attrs: dict[str, Any],
    ) -> None:
        x = ins[0] if ins else None
        for attr, index, dtype in moves:
            if attr in attrs:
                dt = dtype or np.dtype((x.dtype if x is not None else None) or "float32")
                _set_input(ins, index, imp.const(f"{name}_{attr}", attrs.pop(attr), dt))
        imp.emit(op, name, ins, outs, attrs)

    return handler


def _topk(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    if "k" in attrs:  # opset <= 9: k an attribute, a 1-element int64 input since 10
        _set_input(ins, 1, imp.const(f"{name}_k", [int(attrs.pop("k"))]))
    imp.emit(op, name, ins, outs, attrs)


def _batchnorm(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    # opsets 7 / 8: spatial=1 (the default) is the only form later opsets kept
    if int(attrs.pop("spatial", 1)) != 1:
        raise UnsupportedOpError(f"{imp.label}: BatchNormalization '{name}': spatial=0 "
                                 "(per-element statistics, opsets 7-8) is not supported")
    _drop_unused_extra_outputs(imp, op, name, ins, outs, attrs)


# Ops of old opsets that import under their later name, with the same maths: no layer of the
# graph ever has the old one (onnx_import admits them beside SUPPORTED_OPS)
RENAMED_OPS: dict[str, str] = {"Scatter": "ScatterElements"}  # renamed in opset 11


def _renamed(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    imp.emit(RENAMED_OPS[op], name, ins, outs, attrs)


def _upsample(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
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
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    if imp.opset < 11:  # opset 10's Resize (X, scales) is Upsample's maths
        _upsample(imp, op, name, ins, outs, attrs)
        return
    # Opset 11 required roi and scales even when unused: an empty tensor means "absent".
    for i in (1, 2):
        t = ins[i] if i < len(ins) else None
        if isinstance(t, Constant) and t.values.size == 0:
            ins[i] = None
    imp.emit(op, name, ins, outs, attrs)


def _drop_unused_extra_outputs(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
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


def _spatial_rank(imp: Importer, weight_or_x: Tensor | None, attrs: dict[str, Any]) -> int | None:
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
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
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
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
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


def _grid_sample(
    imp: Importer,
    op: str,
    name: str,
    ins: list[Tensor | None],
    outs: list[Tensor | None],
    attrs: dict[str, Any],
) -> None:
    # opset 20 renamed the modes (and allowed N-d); opset 16's names map one to one
    mode = str(attrs.get("mode", "bilinear" if imp.opset < 20 else "linear"))
    attrs["mode"] = {"bilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
    imp.emit(op, name, ins, outs, attrs)


_MORE_REDUCTIONS = ("ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                    "ReduceSumSquare")  # fmt: skip
# Ops absent here import through emit_as_is.
_AXES_TO_INPUT = _attrs_to_inputs(("axes", 1, np.int64))  # Squeeze, Unsqueeze, reductions

HANDLERS: dict[str, _Handler] = {
    "GridSample": _grid_sample,
    "Split": _split,
    "Squeeze": _AXES_TO_INPUT,
    "Unsqueeze": _AXES_TO_INPUT,
    "ReduceMean": _AXES_TO_INPUT,
    "ReduceSum": _AXES_TO_INPUT,
    "ReduceMax": _AXES_TO_INPUT,
    "ReduceMin": _AXES_TO_INPUT,
    **{op: _AXES_TO_INPUT for op in _MORE_REDUCTIONS},
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
    "Hardmax": _softmax,
    "Upsample": _upsample,
    "Resize": _resize,
    "Slice": _attrs_to_inputs(("starts", 1, np.int64), ("ends", 2, np.int64),
                              ("axes", 3, np.int64)),
    "Pad": _attrs_to_inputs(("pads", 1, np.int64), ("value", 2, None)),
    "Clip": _attrs_to_inputs(("min", 1, None), ("max", 2, None)),
    "TopK": _topk,
    **dict.fromkeys(RENAMED_OPS, _renamed),
    "Dropout": _drop_unused_extra_outputs,
    "BatchNormalization": _batchnorm,
    "MaxPool": _drop_unused_extra_outputs,
    "AveragePool": _pool,
    "Conv": _conv,
    "ConvTranspose": _conv,
    "Gemm": _attr_defaults(alpha=1.0, beta=1.0, transA=0, transB=0),
    "LRN": _attr_defaults(alpha=1e-4, beta=0.75, bias=1.0),
}


def fix_legacy_softmax(graph: Graph, nodes: list[Node]) -> bool:
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
