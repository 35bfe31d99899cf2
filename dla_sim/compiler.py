"""Compile a DLA segment graph into a :class:`~dla_sim.loadable.Loadable`.

Layers are grouped into engine operations (``fusion.group_nodes``), then each group is lowered:

- ``conv``: convolution / deconvolution / fully-connected on the convolution core. Per-channel
  linear layers directly after it (batch-norm, multiply / add by a per-channel constant) are
  folded into its weights and bias, as TensorRT does; the rest of the chain becomes SDP
  post-operations (activations, element-wise with a second tensor) and an optional PDP pooling
  read on the fly.
- ``sdp`` / ``pdp`` / ``cdp`` / ``rubik`` / ``bdma`` / ``softmax``: one standalone engine op.

INT8: a tensor is stored as INT8 when ``scales`` has its scale (real = q * scale); otherwise
FP16, as TensorRT runs layers lacking scales in FP16. Weights are quantised per output channel
(symmetric, round half away from zero, to [-127, 127]); biases to INT32 in the accumulator's
scale. Data-movement layers (reshape, transpose, slice, max-pool, nearest resize) keep their
input's scale, which keeps them exact (TensorRT requires equal scales there, dla.md §1.2).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dla_sim import formats
from dla_sim.fusion import SDP_BINARY_OPS, Group, engine_of, group_nodes, variable_inputs
from dla_sim.hardware import DlaConfig, dla_config
from dla_sim.loadable import EngineOp, Loadable, LoadableError, TensorDesc
from dla_sim.numerics import quantize_weights_per_channel, round_half_away
from partitioner.errors import TandemError
from partitioner.ir import Constant, Graph, Node, Tensor


class DlaCompileError(TandemError):
    """A layer cannot be compiled for the DLA (unsupported op, parameters out of range)."""


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
_BINARY_KIND = {
    "Add": "add",
    "Sum": "add",
    "Sub": "sub",
    "Mul": "mul",
    "Div": "div",
    "Max": "max",
    "Min": "min",
    "Pow": "pow",
    "Equal": "eq",
    "Greater": "gt",
    "Less": "lt",
}


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


class _Compiler:
    def __init__(
        self,
        graph: Graph,
        precision: str,
        cfg: DlaConfig,
        scales: dict[str, float],
        label: str,
        output_dtype: str | None,
    ) -> None:
        self.graph = graph
        self.precision = precision
        self.cfg = cfg
        self.scales = scales
        self.label = label
        self.output_dtype = output_dtype
        self.blobs: dict[str, np.ndarray] = {}
        self.tensors: dict[str, TensorDesc] = {}
        self.metadata_only = False
        self.layer_precisions: dict[str, str] = {}

    def fail(self, node: Node, what: str) -> DlaCompileError:
        return DlaCompileError(
            f"loadable '{self.label}': layer '{node.name}' ({node.op}) cannot run on DLA "
            f"{self.cfg.version}: {what}"
        )

    # ----- tensors -----------------------------------------------------------------------
    def shape_of(self, t: Tensor, node: Node) -> list[int]:
        if not t.is_static:
            raise self.fail(
                node,
                f"tensor '{t.name}' has no static shape ({t.shape}); the DLA "
                "has no dynamic shapes -- give the model fixed input shapes",
            )
        return list(t.static_shape())

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
            self.finish(op)
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

    def add_blob(self, name: str, values: np.ndarray) -> str:
        self.blobs[name] = np.ascontiguousarray(values)
        return name

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
            self.lower_conv(op, node)
            main = node.outputs[0]
            rest = g.nodes[1:]
        elif g.engine == "sdp":
            main = ins[0]
            rest = g.nodes
            op.params["post"] = []
        elif g.engine == "pdp":
            op.params.update(self.pool_params(node))
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
            op.params.update(self.rubik_params(node))
            return op
        else:  # bdma
            op.inputs = [t.name for t in ins]
            op.params.update(self.bdma_params(node))
            return op
        post: list[dict[str, Any]] = op.params.setdefault("post", [])
        for follower in rest:
            if engine_of(follower) == "pdp":
                op.params["pool"] = self.pool_params(follower)
                main = follower.outputs[0]
                continue
            post.append(self.post_op(follower, main, op))
            main = follower.outputs[0]
        return op

    def lower_conv(self, op: EngineOp, node: Node) -> None:
        x = variable_inputs(node)[0]
        xs = self.shape_of(x, node)
        out_shape = self.shape_of(node.outputs[0], node)
        w = node.constant_input(1)
        if w is None:
            raise self.fail(node, "weights must be a build-time constant")
        p: dict[str, Any] = {}
        if node.op == "Conv":
            if w.ndim != 4:
                raise self.fail(node, f"only 2-D convolution runs on the DLA (weights {w.shape})")
            p.update(
                kind="conv",
                kernel=list(w.shape[2:]),
                strides=list(node.attrs.get("strides", [1, 1])),
                pads=list(node.attrs.get("pads", [0, 0, 0, 0])),
                dilations=list(node.attrs.get("dilations", [1, 1])),
                group=int(node.attrs.get("group", 1)),
                channel_axis=1,
            )
            weights, bias_in = w, node.constant_input(2)
            k_out = w.shape[0]
        elif node.op == "ConvTranspose":
            if w.ndim != 4:
                raise self.fail(node, f"only 2-D deconvolution runs on the DLA (weights {w.shape})")
            group = int(node.attrs.get("group", 1))
            if group != 1:
                raise self.fail(node, f"deconvolution groups must be 1, got {group}")
            # Store as (K, C, R, S) so per-output-channel scales run along axis 0 everywhere.
            weights = w.transpose(1, 0, 2, 3)
            bias_in = node.constant_input(2)
            k_out = weights.shape[0]
            p.update(
                kind="deconv",
                kernel=list(w.shape[2:]),
                strides=list(node.attrs.get("strides", [1, 1])),
                pads=list(node.attrs.get("pads", [0, 0, 0, 0])),
                dilations=list(node.attrs.get("dilations", [1, 1])),
                output_padding=list(node.attrs.get("output_padding", [0, 0])),
                group=1,
                channel_axis=1,
            )
        else:  # Gemm / MatMul with a constant second input: FullyConnected
            if node.op == "Gemm":
                if int(node.attrs.get("transA", 0)):
                    raise self.fail(node, "Gemm with transA=1 is not a fully-connected layer")
                b = w.T if int(node.attrs.get("transB", 0)) else w
                weights = b.T * float(node.attrs.get("alpha", 1.0))  # (K, Cin)
                c = node.constant_input(2)
                if node.input(2) is not None and c is None:
                    raise self.fail(node, "Gemm's C input must be a build-time constant")
                bias_in = (
                    None
                    if c is None
                    else np.broadcast_to(
                        np.asarray(c, np.float64) * float(node.attrs.get("beta", 1.0)),
                        (b.shape[1],),
                    )
                )
            else:
                if w.ndim != 2:
                    raise self.fail(node, f"MatMul weights must be 2-D, got {w.shape}")
                weights, bias_in = w.T, None
            k_out = weights.shape[0]
            p.update(
                kind="fc",
                kernel=[1, 1],
                strides=[1, 1],
                pads=[0, 0, 0, 0],
                dilations=[1, 1],
                group=1,
                channel_axis=len(out_shape) - 1,
            )
        bias = (
            np.zeros(k_out)
            if bias_in is None
            else np.asarray(bias_in, np.float64).reshape(-1).copy()
        )
        c_in = xs[1] if p["kind"] != "fc" else xs[-1]
        p.update(in_channels=int(c_in), out_channels=int(k_out))
        op.params.update(p)
        # Weights stay float64 here; `finish` folds per-channel constants and quantises them.
        op.params["_weights"] = weights
        op.params["_bias"] = bias

    # ----- post-operations (SDP) ---------------------------------------------------------
    def post_op(self, node: Node, main: Tensor, op: EngineOp) -> dict[str, Any]:
        a = node.attrs
        prefix = f"{op.name}.{node.name}"
        if node.op == "BatchNormalization":
            vals = [node.constant_input(i) for i in range(1, 5)]
            if any(v is None for v in vals):
                raise self.fail(node, "batch-norm parameters must be build-time constants")
            gamma, beta, mean, var = (np.asarray(v, np.float64) for v in vals)  # type: ignore[arg-type]
            scale = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            shift = beta - mean * scale
            rank = len(main.shape or (1, 1, 1, 1))
            bshape = (1, -1) + (1,) * (rank - 2)
            return {
                "op": "affine",
                "scale": self.add_blob(f"{prefix}.scale", scale.reshape(bshape)),
                "shift": self.add_blob(f"{prefix}.shift", shift.reshape(bshape)),
                "layer": node.name,
            }
        if node.op == "Relu":
            return {"op": "relu", "layer": node.name}
        if node.op == "Clip":
            lo, hi = node.constant_input(1), node.constant_input(2)
            if (node.input(1) is not None and lo is None) or (
                node.input(2) is not None and hi is None
            ):
                raise self.fail(node, "clip bounds must be build-time constants")
            return {
                "op": "clip",
                "min": -math.inf if lo is None else float(np.asarray(lo)),
                "max": math.inf if hi is None else float(np.asarray(hi)),
                "layer": node.name,
            }
        if node.op == "LeakyRelu":
            return {"op": "leaky", "alpha": float(a.get("alpha", 0.01)), "layer": node.name}
        if node.op == "PRelu":
            slope = node.constant_input(1)
            if slope is None:
                raise self.fail(node, "the PReLU slope must be a build-time constant")
            return {
                "op": "prelu",
                "blob": self.add_blob(f"{prefix}.slope", np.asarray(slope, np.float64)),
                "layer": node.name,
            }
        if node.op == "HardSigmoid":
            return {
                "op": "hardsigmoid",
                "alpha": float(a.get("alpha", 0.2)),
                "beta": float(a.get("beta", 0.5)),
                "layer": node.name,
            }
        if node.op in ("Sigmoid", "Tanh", "Abs", "Neg", "Identity", "Sin", "Cos", "Atanh", "Atan"):
            return {"op": node.op.lower(), "layer": node.name}
        if node.op in ("Dropout", "Cast"):
            # Inference-time Dropout is the identity; on the DLA a Cast only follows a
            # comparison, to FP16 / INT8, which the output tensor's storage already is.
            return {"op": "identity", "layer": node.name}
        if node.op in SDP_BINARY_OPS:
            ins = [t for t in node.inputs if t is not None]
            if len(ins) == 1:
                return {"op": "identity", "layer": node.name}
            if len(ins) != 2:
                raise self.fail(
                    node, f"element-wise {node.op} takes 2 inputs on the DLA, got {len(ins)}"
                )
            kind = _BINARY_KIND[node.op]
            reverse = ins[0] is not main
            other = ins[0] if reverse else ins[1]
            if isinstance(other, Constant):
                return {
                    "op": "const",
                    "kind": kind,
                    "reverse": reverse,
                    "layer": node.name,
                    "blob": self.add_blob(
                        f"{prefix}.operand", np.asarray(other.values, np.float64)
                    ),
                }
            op.inputs.append(other.name)
            return {
                "op": "eltwise",
                "kind": kind,
                "reverse": reverse,
                "operand": len(op.inputs) - 1,
                "layer": node.name,
            }
        raise self.fail(node, "not an SDP operation")

    # ----- other engines -----------------------------------------------------------------
    def pool_params(self, node: Node) -> dict[str, Any]:
        x = variable_inputs(node)[0]
        xs = self.shape_of(x, node)
        ys = self.shape_of(node.outputs[0], node)
        if len(xs) != 4:
            raise self.fail(node, f"pooling runs on 4-D tensors only, got {xs}")
        if node.op in ("GlobalAveragePool", "GlobalMaxPool", "ReduceMax"):
            if node.op == "ReduceMax":
                axes = node.constant_input(1)
                axes_l = (
                    sorted(int(v) % 4 for v in np.asarray(axes).reshape(-1))
                    if axes is not None
                    else []
                )
                if axes_l != [2, 3] or not int(node.attrs.get("keepdims", 1)):
                    raise self.fail(node, "only a keepdims max over H and W runs on the DLA")
            mode = "avg" if node.op == "GlobalAveragePool" else "max"
            return {
                "mode": mode,
                "kernel": xs[2:],
                "strides": [1, 1],
                "pads": [0, 0, 0, 0],
                "count_include_pad": 1,
                "layer": node.name,
            }
        kernel = list(node.attrs.get("kernel_shape", [1, 1]))
        strides = list(node.attrs.get("strides", [1, 1]))
        pads = list(node.attrs.get("pads", [0, 0, 0, 0]))
        dil = list(node.attrs.get("dilations", [1, 1]))
        if any(d != 1 for d in dil):
            raise self.fail(node, f"pooling dilation {dil} is not supported on the DLA")
        # ceil_mode: extend the end padding so the window count matches the output shape.
        for i in range(2):
            need = (ys[2 + i] - 1) * strides[i] + kernel[i] - (xs[2 + i] + pads[i] + pads[i + 2])
            pads[i + 2] += max(0, need)
        mode = "max" if node.op == "MaxPool" else "avg"
        return {
            "mode": mode,
            "kernel": kernel,
            "strides": strides,
            "pads": pads,
            "count_include_pad": int(node.attrs.get("count_include_pad", 0)),
            "layer": node.name,
            "pads_declared": list(node.attrs.get("pads", [0, 0, 0, 0])),
        }

    def rubik_params(self, node: Node) -> dict[str, Any]:
        x = variable_inputs(node)[0]
        xs = self.shape_of(x, node)
        ys = self.shape_of(node.outputs[0], node)
        if node.op == "Transpose":
            perm = node.attrs.get("perm") or list(range(len(xs)))[::-1]
            return {"kind": "transpose", "perm": [int(p) for p in perm]}
        if node.op == "Resize":
            mode = node.attrs.get("mode", "nearest")
            ctm = node.attrs.get("coordinate_transformation_mode", "half_pixel")
            nmode = node.attrs.get("nearest_mode", "round_prefer_floor")
            if len(xs) != 4 or xs[:2] != ys[:2]:
                raise self.fail(node, "resize must keep N and C and act on 4-D tensors")
            return {
                "kind": "resize",
                "mode": str(mode),
                "coordinate_transformation_mode": str(ctm),
                "nearest_mode": str(nmode),
                "scales": [ys[2] / xs[2], ys[3] / xs[3]],
            }
        return {"kind": "reshape", "shape": ys}

    def bdma_params(self, node: Node) -> dict[str, Any]:
        xs = self.shape_of(variable_inputs(node)[0], node)
        rank = len(xs)
        if node.op == "Concat":
            return {"kind": "concat", "axis": int(node.attrs.get("axis", 1)) % rank}
        if node.op == "Split":
            axis = int(node.attrs.get("axis", 0)) % rank
            sizes = [self.shape_of(t, node)[axis] for t in node.outputs]
            return {"kind": "split", "axis": axis, "sizes": sizes}
        starts, ends = node.constant_input(1), node.constant_input(2)
        if starts is None or ends is None:
            raise self.fail(node, "slice bounds must be build-time constants")
        axes_v = node.constant_input(3)
        steps_v = node.constant_input(4)
        if (node.input(3) is not None and axes_v is None) or (
            node.input(4) is not None and steps_v is None
        ):
            raise self.fail(node, "slice axes and steps must be build-time constants")
        starts_l = [int(v) for v in np.asarray(starts).reshape(-1)]
        axes = (
            [int(v) % rank for v in np.asarray(axes_v).reshape(-1)]
            if axes_v is not None
            else list(range(len(starts_l)))
        )
        steps = (
            [int(v) for v in np.asarray(steps_v).reshape(-1)]
            if steps_v is not None
            else [1] * len(axes)
        )
        ends_l = [int(v) for v in np.asarray(ends).reshape(-1)]
        index = []
        for d in range(rank):
            if d in axes:
                i = axes.index(d)
                index.append(list(slice(starts_l[i], ends_l[i], steps[i]).indices(xs[d])))
            else:
                index.append([0, xs[d], 1])
        return {"kind": "slice", "index": index}

    # ----- weights ---------------------------------------------------------------------
    def finish(self, op: EngineOp) -> None:
        """Fold per-channel constants into conv weights; quantise; attach blobs."""
        if op.engine != "conv":
            return
        weights: np.ndarray = op.params.pop("_weights")
        bias: np.ndarray = op.params.pop("_bias")
        post = op.params["post"]
        k = weights.shape[0]
        out_rank = len(self.tensors[op.outputs[0]].shape) if op.outputs[0] in self.tensors else 4
        folded = []
        while post:
            vec = self.channel_affine(post[0], k, op.params["channel_axis"], out_rank)
            if vec is None:
                break
            s, t = vec
            if not self.metadata_only:
                weights = np.asarray(weights, np.float64) * s.reshape(
                    (-1,) + (1,) * (weights.ndim - 1)
                )
                bias = bias * s + t
            folded.append(post.pop(0)["layer"])
        op.params["folded"] = folded
        x_desc = self.tensors[op.inputs[0]]
        conv_precision = "int8" if x_desc.dtype == "int8" else "fp16"
        if self.layer_precisions.get(op.layers[0], conv_precision) == "fp16":
            conv_precision = "fp16"
        op.params["precision"] = conv_precision
        # Bytes the DLA fetches: weights (1 or 2 B) + bias (int32 / fp16) + per-channel scale.
        elem = 1 if conv_precision == "int8" else 2
        op.params["weight_bytes"] = int(weights.size * elem + k * (8 if elem == 1 else 2))
        prefix = op.name
        if self.metadata_only:
            op.blobs = {}
        elif conv_precision == "int8":
            q, wscale = quantize_weights_per_channel(np.asarray(weights, np.float64))
            acc_scale = float(x_desc.scale) * wscale  # type: ignore[arg-type]
            bias_q = np.clip(round_half_away(bias / acc_scale), -(2**31), 2**31 - 1)
            op.blobs = {
                "weights": self.add_blob(f"{prefix}.weights", q),
                "wscale": self.add_blob(f"{prefix}.wscale", wscale.astype(np.float64)),
                "bias": self.add_blob(f"{prefix}.bias", bias_q.astype(np.int32)),
            }
        else:
            op.blobs = {
                "weights": self.add_blob(
                    f"{prefix}.weights", np.asarray(weights).astype(np.float16)
                ),
                "bias": self.add_blob(f"{prefix}.bias", bias.astype(np.float16)),
            }
        self.check_cbuf(op, conv_precision)

    def channel_affine(
        self, post: dict[str, Any], k: int, channel_axis: int, rank: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """(scale, shift) per output channel if ``post`` is linear per channel, else None."""
        if post["op"] == "affine":
            if self.blobs[post["scale"]].size != k or self.blobs[post["shift"]].size != k:
                return None
            s = self.blobs.pop(post["scale"]).reshape(-1)
            t = self.blobs.pop(post["shift"]).reshape(-1)
            return s, t
        if post["op"] != "const" or post["kind"] not in ("add", "sub", "mul", "div"):
            return None
        c = np.asarray(self.blobs[post["blob"]], np.float64)
        vec = _per_channel(c, k, channel_axis, rank)
        if vec is None:
            return None
        kind, rev = post["kind"], post["reverse"]
        one, zero = np.ones(k), np.zeros(k)
        if kind == "add":
            result = (one, vec)
        elif kind == "sub":
            result = (-one, vec) if rev else (one, -vec)
        elif kind == "mul":
            result = (vec, zero)
        elif not rev and np.all(vec != 0):
            result = (1.0 / vec, zero)
        else:
            return None
        del self.blobs[post["blob"]]
        return result

    def check_cbuf(self, op: EngineOp, precision: str) -> None:
        p = op.params
        x = self.tensors[op.inputs[0]]
        n, c, h, w = formats.as_nchw(tuple(x.shape))
        if p["kind"] == "fc":
            c, w = p["in_channels"], 1
        cg = c // max(1, p["group"])
        wt, data = formats.cbuf_banks_needed(
            cg, p["kernel"][0], p["kernel"][1], w, p["dilations"][0], precision
        )
        p["cbuf_banks"] = wt + data
        if wt + data > self.cfg.cbuf_banks and not self.metadata_only:
            raise DlaCompileError(
                f"loadable '{self.label}': layer '{op.layers[0]}' needs {wt} weight + {data} data "
                f"CBUF banks > {self.cfg.cbuf_banks} (input {c}x{h}x{w}, kernel "
                f"{p['kernel'][0]}x{p['kernel'][1]}); reduce the input or run it on the GPU"
            )


def _per_channel(c: np.ndarray, k: int, channel_axis: int, rank: int) -> np.ndarray | None:
    """``c`` as a length-k vector if it broadcasts only along the channel axis (or is scalar)."""
    if c.size == 1:
        return np.full(k, float(c.reshape(-1)[0]))
    if c.ndim > rank:
        return None
    full = (1,) * (rank - c.ndim) + c.shape
    axis = channel_axis % rank
    if full[axis] != k or any(d != 1 for i, d in enumerate(full) if i != axis):
        return None
    return c.reshape(-1).astype(np.float64)


__all__ = ["DlaCompileError", "compile_loadable", "LoadableError"]
