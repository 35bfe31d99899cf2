"""What a Jetson's TensorRT receives for one DLA segment, in the style of its TensorRT generation.

Two generations take a DLA segment differently (NVIDIA's TensorRT 11.4.1 guide, "Strongly Typed
Networks for DLA": the FP16/INT8 builder flags were removed in 11.0; network tensor types decide
precision; DLA returns on Jetson AGX Orin with JetPack 7.2.2):

- **implicit** (JetPack 5 / TensorRT 8.5, JetPack 6 / TensorRT 10.3): the segment as plain FP32
  ONNX; the builder gets ``FP16`` (and ``INT8``) flags, ``default_device_type = DLA``, and for
  INT8 a calibration cache in TensorRT's text format (``TRT-100300-EntropyCalibration2``, one
  ``tensor: <big-endian float32 hex>`` line per tensor) holding the plan's calibrated scales.
- **strongly typed** (JetPack 7.2 / TensorRT 11.4): no precision flags and no calibrator. The
  exported segment carries its precision: FP32 inputs are Cast to FP16 on entry and outputs
  Cast back to FP32 on exit, every weight and computed tensor is FP16, and each tensor the
  plan's loadable stores as INT8 goes through a QuantizeLinear/DequantizeLinear pair with that
  tensor's scale (FP16, the network's type: DequantizeLinear-19/20 output the scale's type;
  held to FP16's range, see ``FP16_SCALE_RANGE``);
  an INT8 convolution's weights are quantised here, from their FP32 values, exactly as the
  emulator quantises them (``dla_sim.numerics.quantize_weights_per_channel``: per output channel,
  ``max|w| / 127``, ties away from zero) and stored as an INT8 initializer read by a
  DequantizeLinear (TensorRT's pre-quantised weights form). A QuantizeLinear on FP16 weights
  would round them to FP16 first and move some across a rounding boundary: one INT8 step on a
  share of RepVGG's weights, up to 2 steps on its convolutions' outputs (issue 18). Opset 20, as
  NVIDIA's AutoCast migration example writes.

Which tensors are INT8 comes from the segment's compiled loadable (``TensorDesc.dtype``), so the
exported Q/DQ sit exactly where the emulator quantises: engine-op boundaries, with data-movement
layers keeping their input's scale (TensorRT requires equal scales there). No TensorRT here: this
module makes the files; ``devices.dla.DlaHardwareBackend`` hands them to TensorRT on a board.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from devices.io import write_atomic
from devices.plan import Plan
from dla_sim.calibration import format_cache
from dla_sim.compiler import compile_loadable
from dla_sim.loadable import Loadable
from dla_sim.numerics import quantize_weights_per_channel
from partitioner.errors import InputError, TandemError
from partitioner.ir import Graph
from partitioner.onnx_export import export_onnx


@dataclass(frozen=True)
class TrtGeneration:
    """How one TensorRT generation takes a DLA segment."""

    name: str
    tensorrt: str  # the version the files are written for
    jetpack: str
    strongly_typed: bool
    opset: int
    #: the version field of a calibration cache's header (NV_TENSORRT_VERSION: 8.5.2 -> 8502,
    #: 10.3.0 -> 100300); None where there is no calibrator
    cache_version: str | None


TRT8 = TrtGeneration("trt8", "8.5.2", "5", False, 17, "8502")
TRT10 = TrtGeneration("trt10", "10.3.0", "6", False, 17, "100300")
TRT11 = TrtGeneration("trt11", "11.4.1", "7.2", True, 20, None)
GENERATIONS = {g.name: g for g in (TRT8, TRT10, TRT11)}


def generation_for(jetpack: str | None = None, tensorrt: str | None = None) -> TrtGeneration:
    """The generation of a board from its facts: TensorRT's version when known (on the board,
    ``tensorrt.__version__``), else JetPack's (``tandem board facts``: ``6.2+b77``)."""
    for what, value, table in (
        ("TensorRT", tensorrt, {8: TRT8, 10: TRT10, 11: TRT11}),
        ("JetPack", jetpack, {5: TRT8, 6: TRT10, 7: TRT11}),
    ):
        if not value:
            continue
        m = re.match(r"\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(value))
        major = int(m.group(1)) if m else -1
        found = table.get(major)
        if found is None and major > max(table):
            found = table[max(table)]  # a newer release keeps the strongly typed rules
        if found is not None and m is not None and what == "TensorRT" and found.cache_version:
            # the cache header carries the exact version (NV_TENSORRT_VERSION), as TensorRT
            # writes it: 8.6.2 -> 8602 (8.x: M*1000), 10.3.0 -> 100300 (10.x: M*10000)
            minor, patch = int(m.group(2) or 0), int(m.group(3) or 0)
            number = major * (1000 if major < 10 else 10000) + minor * 100 + patch
            found = replace(found, tensorrt=str(value).strip(), cache_version=str(number))
        if found is not None:
            return found
        known = ", ".join(str(k) for k in table)
        raise InputError(f"{what} {value}: no DLA export for it; expected major {known}")
    raise InputError("no TensorRT or JetPack version to pick the DLA export style from")


@dataclass
class SegmentExport:
    """The files TensorRT gets for one DLA segment."""

    segment: str
    generation: TrtGeneration
    precision: str
    model: onnx.ModelProto
    #: the builder configuration (flags and DLA settings), as TensorRT's Python API names them
    builder: dict[str, Any]
    #: the calibration cache text (implicit generations, INT8); None otherwise
    cache: str | None = None
    #: tensor -> the scale its Q/DQ pair carries (strongly typed, INT8)
    qdq: dict[str, float] = field(default_factory=dict)
    #: weight initializer -> the per-output-channel scales of its INT8 form's DequantizeLinear
    #: (strongly typed, INT8)
    weight_qdq: dict[str, list[float]] = field(default_factory=dict)

    def write(self, folder: str | Path) -> list[Path]:
        """``<segment>.onnx``, ``<segment>.json`` (builder settings) and, with a calibration
        cache, ``<segment>.cache``; each written atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", self.segment)
        files = {f"{stem}.onnx": self.model.SerializeToString()}
        if self.cache is not None:
            files[f"{stem}.cache"] = self.cache.encode("utf-8")
        doc = {"segment": self.segment, "tensorrt": self.generation.tensorrt,
               "jetpack": self.generation.jetpack, "precision": self.precision,
               "builder": self.builder, "qdq_scales": self.qdq}  # fmt: skip
        files[f"{stem}.json"] = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
        written = []
        for name, data in files.items():
            write_atomic(folder / name, data)
            written.append(folder / name)
        return written


def int8_scales(loadable: Loadable) -> dict[str, float]:
    """Tensor -> scale of every tensor the loadable stores as INT8."""
    return {
        name: float(desc.scale)
        for name, desc in loadable.tensors.items()
        if desc.dtype == "int8" and desc.scale is not None
    }


def export_segment(
    graph: Graph,
    precision: str,
    generation: TrtGeneration,
    *,
    scales: Mapping[str, float] | None = None,
    loadable: Loadable | None = None,
    dla_version: int = 2,
    dla_core: int = 0,
    gpu_fallback: bool = False,
) -> SegmentExport:
    """The export of DLA segment ``graph`` at ``precision`` (``fp16`` | ``int8``). INT8 needs
    the plan's ``scales``; ``loadable`` (the plan's compiled segment) says which tensors are
    INT8, else the segment is compiled here with ``scales`` to find out."""
    if precision not in ("fp16", "int8"):
        raise TandemError(
            f"DLA segment '{graph.name}': precision {precision}; the DLA runs fp16 or int8"
        )
    builder: dict[str, Any] = {
        "default_device_type": "DLA",
        "DLA_core": dla_core,
        "flags": ["GPU_FALLBACK"] if gpu_fallback else [],
    }
    int8: dict[str, float] = {}
    if precision == "int8":
        if not scales:
            raise TandemError(
                f"INT8 DLA segment '{graph.name}' has no calibration scales in its plan; "
                "rebuild it with --calib DIR|FILE or --calib-random N"
            )
        if loadable is None:
            loadable = compile_loadable(graph, "int8", dla_version, dict(scales), graph.name)
        int8 = int8_scales(loadable)
    model = export_onnx(graph, opset=generation.opset)
    model.graph.name = graph.name
    if not generation.strongly_typed:
        builder["flags"] = ["FP16", *(["INT8"] if precision == "int8" else []), *builder["flags"]]
        cache = None
        if precision == "int8":
            own = {t: float(s) for t, s in scales.items() if t in graph.tensors}  # type: ignore[union-attr]
            cache = format_cache(own, "entropy", generation.cache_version or "100300")
        return SegmentExport(graph.name, generation, precision, model, builder, cache)
    builder["network_flags"] = ["STRONGLY_TYPED"]  # deprecated and ignored from 11.0: harmless
    typed, qdq, weights = strongly_typed(model, int8)
    return SegmentExport(graph.name, generation, precision, typed, builder, None, qdq, weights)


def export_plan(
    plan: Plan, generation: TrtGeneration, gpu_fallback: bool = False
) -> list[SegmentExport]:
    """Every DLA segment of ``plan``, in plan order."""
    head = plan.record
    out = []
    for rec in head.segments:
        if not rec.device.startswith("dla") or rec.loadable is None:
            continue
        loadable = Loadable.from_bytes(
            bytes(plan.blob(rec.loadable).data),
            f"{plan.path or 'plan'}: segment {rec.name!r} loadable",
        )
        out.append(
            export_segment(
                plan.segment_graph(rec),
                rec.precision or "fp16",
                generation,
                scales=head.calibration,
                loadable=loadable,
                dla_version=loadable.dla_version,
                dla_core=int(rec.device[3:] or 0),
                gpu_fallback=gpu_fallback,
            )
        )
    return out


# ----- the strongly typed form ----------------------------------------------------------------
# Inputs that ONNX types as float32 whatever the network computes in (Resize's scales; roi
# follows it), so they stay FP32: they are shape arithmetic, not compute.
_FP32_SLOTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
# The weight input of the conv engine's ops and the axis of its output channels.
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1, "MatMul": -1}
_F32, _F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def strongly_typed(
    model: onnx.ModelProto, int8: Mapping[str, float]
) -> tuple[onnx.ModelProto, dict[str, float], dict[str, list[float]]]:
    """``model`` (FP32, as exported) rewritten so that every tensor's type is explicit: FP16
    compute between Casts at the I/O, Q/DQ pairs on the ``int8`` tensors. Returns the model,
    the scale each activation's Q/DQ pair carries and each weight's per-channel scales."""
    fp32 = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return quantize_dequantize(fp16_typed(model), int8, np.float16, fp32)


def fp16_typed(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` computing in FP16: weights and constants FP16 (but Resize's scales), internal
    casts to FP32 made casts to FP16, FP32 inputs Cast to ``NAME/fp16`` on entry and FP32
    outputs Cast back from ``NAME/fp16`` on exit."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    del g.value_info[:]
    pinned = {
        node.input[i]
        for node in g.node
        for i in range(len(node.input))
        if (node.op_type, i) in _FP32_SLOTS
    }
    for init in g.initializer:
        if init.data_type == _F32 and init.name not in pinned:
            init.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init)), init.name))
    for node in g.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == _F32:
                if not (set(node.output) & pinned):
                    attr.t.CopyFrom(
                        numpy_helper.from_array(_to_fp16(numpy_helper.to_array(attr.t)))
                    )
            elif attr.name in ("to", "dtype") and attr.type == onnx.AttributeProto.INT:
                if attr.i == _F32:
                    attr.i = _F16
    renames: dict[str, str] = {}
    head: list[onnx.NodeProto] = []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == _F32:
            renames[vi.name] = f"{vi.name}/fp16"
            head.append(_cast(vi.name, renames[vi.name], _F16))
    tail: list[onnx.NodeProto] = []
    outputs = {vi.name for vi in g.output if vi.type.tensor_type.elem_type == _F32}
    for node in g.node:
        for i, name in enumerate(node.output):
            if name in outputs:
                node.output[i] = renames[name] = f"{name}/fp16"
    for vi in g.output:
        if vi.name in outputs:
            tail.append(_cast(renames[vi.name], vi.name, _F32))
    for node in g.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
    nodes = [*head, *g.node, *tail]
    del g.node[:]
    g.node.extend(nodes)
    return m


def quantize_dequantize(
    model: onnx.ModelProto,
    int8: Mapping[str, float],
    dtype: Any = np.float32,
    weights: Mapping[str, np.ndarray] | None = None,
) -> tuple[onnx.ModelProto, dict[str, float], dict[str, list[float]]]:
    """``model`` with a QuantizeLinear/DequantizeLinear pair (scales of ``dtype``, the
    network's float type) after each tensor of ``int8`` -- read by all its consumers -- and
    the weights of convolutions whose input is quantised as INT8 initializers (quantised per
    output channel as the emulator does, from ``weights``' values where given: the FP32
    weights of a model whose initializers were made FP16) read by a DequantizeLinear. A
    network output keeps its float type (the DLA's outputs are FP16, kCHW16, unless an INT8
    output format is asked for). The pair follows the tensor's ``NAME/fp16`` form where
    :func:`fp16_typed` made one."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    del g.value_info[:]
    made = {out for node in g.node for out in node.output}
    outputs = {vi.name for vi in g.output}
    qdq: dict[str, float] = {}
    pairs: list[onnx.NodeProto] = []
    for name, scale in int8.items():
        src = f"{name}/fp16" if f"{name}/fp16" in made else name
        if name in outputs or src in outputs:
            continue
        deq = _qdq_pair(g, pairs, src, f"{name}/qdq", network_scale(scale, dtype), None)
        for node in g.node:
            if node.op_type == "Cast" and node.output[0] in outputs:
                continue  # the exit Cast reads the output itself
            for i, inp in enumerate(node.input):
                if inp == src:
                    node.input[i] = deq
        qdq[name] = float(scale)
    inits = {init.name: init for init in g.initializer}
    dequantized = {n.output[0] for n in pairs if n.op_type == "DequantizeLinear"}
    quantized: dict[str, list[float]] = {}
    shared: dict[str, str] = {}  # a weight read by several layers (RetinaNet's head convs on
    # every FPN level) gets one Q/DQ pair; a second pair of the same name is an invalid model
    for node in g.node:
        axis = _weight_axis(node)
        wname = node.input[1] if len(node.input) > 1 else ""
        if axis is None or node.input[0] not in dequantized or wname not in inits:
            continue
        if wname in shared:
            node.input[1] = shared[wname]
            continue
        w = (weights or {}).get(wname)
        w = numpy_helper.to_array(inits[wname]) if w is None else w
        axis = axis % w.ndim
        q, scale = quantize_weights_per_channel(np.moveaxis(np.asarray(w, np.float64), axis, 0))
        per_channel = network_scale(scale, dtype)
        stem = f"{wname}/qdq"
        g.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(np.moveaxis(q, 0, axis)), f"{stem}/q"),
            numpy_helper.from_array(per_channel, f"{stem}/scale"),
            numpy_helper.from_array(np.zeros(per_channel.shape, np.int8), f"{stem}/zero"),
        ])  # fmt: skip
        pairs.append(helper.make_node("DequantizeLinear", [f"{stem}/q", f"{stem}/scale",
                                      f"{stem}/zero"], [f"{stem}/dq"], name=f"{stem}/dq",
                                      axis=axis))  # fmt: skip
        node.input[1] = shared[wname] = f"{stem}/dq"
        quantized[wname] = [float(v) for v in per_channel]
    # a weight read only through its INT8 form leaves the file
    read = {i for node in [*g.node, *pairs] for i in node.input}
    kept = [init for init in g.initializer if init.name in read or init.name not in shared]
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = [*pairs, *g.node]
    del g.node[:]
    ready = {vi.name for vi in g.input} | {init.name for init in g.initializer}
    g.node.extend(_topological(nodes, ready))
    typed = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    return typed, qdq, quantized


# The FP16 range a Q/DQ scale of an FP16 network is held to: at most 65504 / 128, so that the
# most negative INT8 value (-128) dequantises to a finite FP16 number (a tensor of an FP16
# network cannot exceed 65504 anyway: an attention mask filled with -3.4e38 has a calibrated
# scale of 2.7e36, which is inf in FP16 and made ONNX Runtime's DequantizeLinear give NaN), and
# at least FP16's smallest subnormal, 2**-24, so that no scale rounds to zero.
FP16_SCALE_RANGE = (2.0**-24, 65504.0 / 128.0)


def network_scale(scale: Any, dtype: Any) -> np.ndarray:
    """``scale`` as the Q/DQ pair of a network of float type ``dtype`` carries it."""
    values = np.asarray(scale, np.float64)
    if np.dtype(dtype) == np.float16:
        values = np.clip(values, *FP16_SCALE_RANGE)
    return values.astype(dtype)


def _to_fp16(values: np.ndarray) -> np.ndarray:
    # saturate instead of overflowing to inf: TensorRT clamps FP16 weights the same way
    return np.clip(values, -65504.0, 65504.0).astype(np.float16)


def _cast(src: str, dst: str, to: int) -> onnx.NodeProto:
    return helper.make_node("Cast", [src], [dst], name=f"{dst}/cast", to=to)


def _qdq_pair(
    g: onnx.GraphProto,
    pairs: list[onnx.NodeProto],
    src: str,
    stem: str,
    scale: Any,
    axis: int | None,
) -> str:
    zero = np.zeros(np.shape(scale), np.int8)
    g.initializer.extend([numpy_helper.from_array(scale, f"{stem}/scale"),
                          numpy_helper.from_array(zero, f"{stem}/zero")])  # fmt: skip
    args = [f"{stem}/scale", f"{stem}/zero"]
    q = helper.make_node("QuantizeLinear", [src, *args], [f"{stem}/q"], name=f"{stem}/q")
    dq = helper.make_node("DequantizeLinear", [f"{stem}/q", *args], [f"{stem}/dq"],
                          name=f"{stem}/dq")  # fmt: skip
    if axis is not None:  # per channel (weights); activations are per tensor
        for node in (q, dq):
            node.attribute.append(helper.make_attribute("axis", axis))
    pairs += [q, dq]
    return f"{stem}/dq"


def _weight_axis(node: onnx.NodeProto) -> int | None:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    return _WEIGHT_AXIS.get(node.op_type)


def _topological(nodes: list[onnx.NodeProto], ready: set[str]) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is made before it is read (the Q/DQ pairs were
    appended apart from the nodes they follow)."""
    ready = set(ready) | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            names = ", ".join(n.name or n.op_type for n in rest[:3])
            raise TandemError(f"strongly typed export: nodes {names} read tensors never made")
        pending = rest
    return ordered
