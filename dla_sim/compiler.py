"""Compile a DLA segment graph into a :class:`~dla_sim.loadable.Loadable`.

Layers are grouped into engine operations (``fusion.group_nodes``), then each group is lowered:

- ``conv``: convolution / deconvolution / fully-connected on the convolution core
  (``conv_lowering``). Per-channel linear layers directly after it (batch-norm, multiply / add by
  a per-channel constant) are folded into its weights and bias, as TensorRT does; the rest of the
  chain becomes SDP post-operations (activations, element-wise with a second tensor) and an
  optional PDP pooling read on the fly (``engine_lowering``).
- ``sdp`` / ``pdp`` / ``cdp`` / ``rubik`` / ``bdma`` / ``softmax``: one standalone engine op.

This module owns the driver: the entry point, which tensors are stored as INT8 or FP16 and in
which format, and the dispatch of each group to its lowering.

INT8: a tensor is stored as INT8 when ``scales`` has its scale (real = q * scale); otherwise
FP16, as TensorRT runs layers lacking scales in FP16. Weights are quantised per output channel
(symmetric, round half away from zero, to [-127, 127]); biases to INT32 in the accumulator's
scale. Data-movement layers (reshape, transpose, slice, max-pool, nearest resize) keep their
input's scale, which keeps them exact (TensorRT requires equal scales there, dla.md §1.2).
"""

from __future__ import annotations

import math
from typing import Any

from dla_sim import formats
from dla_sim.compile_context import CompileContext, DlaCompileError
from dla_sim.conv_lowering import finish_conv, lower_conv
from dla_sim.engine_lowering import bdma_params, pool_params, post_op, rubik_params
from dla_sim.fusion import Group, engine_of, group_nodes, variable_inputs
from dla_sim.hardware import DlaConfig, dla_config
from dla_sim.loadable import EngineOp, Loadable, LoadableError, TensorDesc
from partitioner.ir import Graph

SCALE_PRESERVING = frozenset(
    {
        "Reshape",
        "Transpose",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Slice",
        "Split",
        "MaxPool",
        "GlobalMaxPool",
        "ReduceMax",
        "Identity",
    }
)


def compile_loadable(
    graph: Graph,
    precision: str,
    dla_version: int,
    scales: dict[str, float] | None = None,
    name: str | None = None,
    *,
    output_dtype: str | None = None,
    config: DlaConfig | None = None,
    metadata_only: bool = False,
    layer_precisions: dict[str, str] | None = None,
    input_format: str | None = None,
) -> Loadable:
    """Compile ``graph`` (every layer DLA-eligible, static shapes) into a loadable.

    ``precision`` is ``"fp16"`` or ``"int8"``; ``scales`` maps tensor names to INT8 scales
    (``amax / 127``, as a calibration cache holds them). ``output_dtype`` sets the storage of
    the loadable's outputs: ``"float16"`` (kCHW16, the default, as TensorRT keeps network
    outputs floating point) or ``"int8"`` (kCHW32, needs the outputs' scales). ``config``
    overrides the built-in hardware of ``dla_version``. ``metadata_only`` skips weight
    quantisation and blobs (what the latency model needs: shapes, formats, engine ops); INT8
    tensors without scales are then assumed calibrated, and a CBUF overflow is recorded instead
    of raised. ``layer_precisions`` pins convolution layers (by name) to ``"fp16"`` inside an
    INT8 loadable, as TensorRT's ``--layerPrecisions`` does; their INT8 input is converted to
    FP16 first. ``input_format`` ``"hwc4"`` (kDLA_HWC4) or ``"dla_linear"`` sets how inputs are
    laid out (default: the native kCHW32 / kCHW16); HWC4 takes at most 4 channels.
    """
    if precision not in ("fp16", "int8"):
        raise DlaCompileError(
            f"the DLA runs fp16 or int8, not '{precision}'; pick one of them for segment "
            f"'{name or graph.name}'"
        )
    cfg = config or dla_config(dla_version)
    label = name or graph.name
    ctx = _Compiler(graph, precision, cfg, dict(scales or {}), label, output_dtype)
    ctx.metadata_only = metadata_only
    ctx.layer_precisions = dict(layer_precisions or {})
    loadable = ctx.run()
    if input_format is not None:
        _set_input_format(loadable, input_format)
    return loadable


def _set_input_format(loadable: Loadable, fmt: str) -> None:
    if fmt not in ("hwc4", "dla_linear", "native"):
        raise DlaCompileError(
            f"loadable '{loadable.name}': input format '{fmt}' is not a DLA input format; "
            "use hwc4, dla_linear or native"
        )
    for name in loadable.inputs:
        desc = loadable.tensors[name]
        target = formats.native_format(desc.dtype) if fmt == "native" else fmt
        if target == "hwc4" and formats.as_nchw(tuple(desc.shape))[1] > 4:
            raise DlaCompileError(
                f"loadable '{loadable.name}': input '{name}' has "
                f"{formats.as_nchw(tuple(desc.shape))[1]} channels; kDLA_HWC4 takes at most 4"
            )
        desc.format = target
        desc.bytes = formats.tensor_bytes(tuple(desc.shape), target, desc.dtype)


class _Compiler(CompileContext):
    """Drives one compilation: groups layers, plans tensor storage, lowers each group."""

    # ----- tensor storage ----------------------------------------------------------------
    def plan_scales(self, groups: list[Group]) -> dict[str, float | None]:
        """The INT8 scale of every tensor the loadable stores (None: stored as FP16)."""
        plan: dict[str, float | None] = {}
        if self.precision != "int8":
            return plan
        for t in self.graph.inputs:
            plan[t.name] = self._scale(t.name)
        for node in self.graph.topological_order():
            for out in node.outputs:
                own = self._scale(out.name)
                ins = variable_inputs(node)
                if node.op in SCALE_PRESERVING and ins and plan.get(ins[0].name):
                    own = plan[ins[0].name]
                if node.op == "Resize" and ins and plan.get(ins[0].name):
                    mode = node.attrs.get("mode", "nearest")
                    if isinstance(mode, bytes):
                        mode = mode.decode()
                    if mode == "nearest":
                        own = plan[ins[0].name]
                plan[out.name] = own
        return plan

    def _scale(self, name: str) -> float | None:
        if self.metadata_only and not self.scales:
            return 1.0
        s = self.scales.get(name)
        if s is None or not math.isfinite(float(s)) or float(s) <= 0.0:
            return None
        return float(s)

    def storage_dtype(self, name: str, scale: float | None) -> str:
        is_output = any(t.name == name for t in self.graph.outputs)
        if is_output and self.output_dtype is not None:
            if self.output_dtype not in ("float16", "int8"):
                raise DlaCompileError(
                    f"loadable '{self.label}': output dtype '{self.output_dtype}' is not a DLA "
                    "output format; use float16 (kCHW16) or int8 (kCHW32)"
                )
            if self.output_dtype == "int8" and scale is None:
                raise DlaCompileError(
                    f"loadable '{self.label}': output '{name}' is asked for as int8 but has no "
                    "INT8 scale; calibrate it or ask for float16"
                )
            return self.output_dtype
        if is_output:
            # TensorRT's network outputs are floating point unless an INT8 output format is
            # asked for (trtexec --outputIOFormats=int8:chw32): kCHW16 by default.
            return "float16"
        return "int8" if scale is not None else "float16"

    # ----- main --------------------------------------------------------------------------
    def run(self) -> Loadable:
        groups = group_nodes(self.graph)
        for g in groups:
            if g.engine == "unsupported":
                raise self.fail(g.anchor, "no DLA engine implements this op; run it on the GPU")
        scale_plan = self.plan_scales(groups)
        ops: list[EngineOp] = []
        for index, g in enumerate(groups):
            op = self.lower(g, index)
            ops.append(op)
            for tname in op.inputs + op.outputs:
                if tname not in self.tensors:
                    t = self.graph.tensor(tname)
                    scale = scale_plan.get(tname)
                    dtype = self.storage_dtype(tname, scale)
                    shape = self.shape_of(t, g.anchor)
                    self.tensors[tname] = TensorDesc(
                        name=tname,
                        shape=shape,
                        dtype=dtype,
                        format=formats.native_format(dtype),
                        scale=scale if dtype == "int8" else None,
                        bytes=formats.tensor_bytes(
                            tuple(shape), formats.native_format(dtype), dtype
                        ),
                    )
        for op in ops:
            if op.engine == "conv":
                finish_conv(self, op)
        inputs = [t.name for t in self.graph.inputs]
        outputs = [t.name for t in self.graph.outputs]
        for tname in inputs + outputs:
            if tname not in self.tensors:
                raise DlaCompileError(
                    f"loadable '{self.label}': segment I/O tensor '{tname}' is not read or "
                    "written by any layer"
                )
        return Loadable(
            name=self.label,
            dla_version=self.cfg.version,
            precision=self.precision,
            inputs=inputs,
            outputs=outputs,
            tensors=self.tensors,
            ops=ops,
            blobs=self.blobs,
            metadata={"dla": self.cfg.name, "layers": sum(len(op.layers) for op in ops)},
        )

    # ----- lowering ----------------------------------------------------------------------
    def lower(self, g: Group, index: int) -> EngineOp:
        node = g.anchor
        ins = variable_inputs(node)
        if not ins:
            raise self.fail(node, "the layer has no run-time input")
        op = EngineOp(
            name=f"op{index:03d}_{g.engine}",
            engine=g.engine,
            layers=g.names,
            inputs=[ins[0].name],
            outputs=[t.name for t in g.nodes[-1].outputs],
        )
        if g.engine == "conv":
            lower_conv(self, op, node)
            main = node.outputs[0]
            rest = g.nodes[1:]
        elif g.engine == "sdp":
            main = ins[0]
            rest = g.nodes
            op.params["post"] = []
        elif g.engine == "pdp":
            op.params.update(pool_params(self, node))
            return op
        elif g.engine == "cdp":
            op.params.update(
                size=int(node.attrs.get("size", 5)),
                alpha=float(node.attrs.get("alpha", 1e-4)),
                beta=float(node.attrs.get("beta", 0.75)),
                bias=float(node.attrs.get("bias", 1.0)),
            )
            return op
        elif g.engine == "softmax":
            if not self.cfg.has_softmax:
                raise self.fail(node, "softmax needs DLA 2 (Orin)")
            rank = len(self.shape_of(ins[0], node))
            op.params["axis"] = int(node.attrs.get("axis", -1)) % rank
            return op
        elif g.engine == "rubik":
            op.params.update(rubik_params(self, node))
            return op
        else:  # bdma
            op.inputs = [t.name for t in ins]
            op.params.update(bdma_params(self, node))
            return op
        post: list[dict[str, Any]] = op.params.setdefault("post", [])
        for follower in rest:
            if engine_of(follower) == "pdp":
                op.params["pool"] = pool_params(self, follower)
                main = follower.outputs[0]
                continue
            post.append(post_op(self, follower, main, op))
            main = follower.outputs[0]
        return op


__all__ = ["DlaCompileError", "compile_loadable", "LoadableError"]
