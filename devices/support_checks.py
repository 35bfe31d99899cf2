"""The check kinds a support table names (``- {check: kernel, min: 1, max: 32}``).

Each check is a small function ``(view, params) -> None | failure text | Note``: ``None`` when
the layer passes, a failure (``kernel 33x33 > DLA max 32``; the caller prefixes the layer) or a
:class:`Note` that keeps the layer on the device but tells the user something. ``CHECKS`` maps
the YAML name to the function; ``devices/support.py`` loads tables and applies them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dla_sim.formats import cbuf_banks_needed
from partitioner.ir import Constant, Graph, Node

# ONNX TensorProto dtype codes that a comparison's Cast may convert to on the DLA.
_ONNX_DTYPE_NAMES = {1: "float32", 3: "int8", 10: "float16", 6: "int32", 7: "int64", 9: "bool"}


class Note(str):
    """A check result that keeps the layer on the device but is worth telling the user."""


@dataclass(frozen=True)
class SupportEnv:
    """What the target adds to a table: the software versions that gate newer ops."""

    tensorrt: str | None = None
    dla_sw: str | None = None


@dataclass
class NodeView:
    """A node plus what every check needs: graph, precision, table label, helpers."""

    node: Node
    graph: Graph
    precision: str
    label: str
    env: SupportEnv

    def attr(self, name: str, default: Any = None) -> Any:
        return self.node.attrs.get(name, default)

    def shape(self, i: int) -> tuple[Any, ...] | None:
        t = self.node.input(i)
        return t.shape if t is not None else None

    def out_shape(self, i: int = 0) -> tuple[Any, ...] | None:
        outs = self.node.outputs
        return outs[i].shape if i < len(outs) else None

    def const(self, i: int) -> np.ndarray | None:
        return self.node.constant_input(i)

    def weight_shape(self) -> tuple[int, ...] | None:
        w = self.node.input(1)
        return tuple(int(d) for d in w.shape) if w is not None and w.is_static else None  # type: ignore[union-attr, arg-type]

    def spatial_rank(self) -> int:
        ks = self.attr("kernel_shape")
        if ks is not None:
            return len(ks)
        ws = self.weight_shape()
        if ws is not None:
            return len(ws) - 2
        s = self.shape(0)
        return len(s) - 2 if s is not None else 2

    def pair(self, name: str, default: int) -> list[int]:
        v = self.attr(name)
        return [int(x) for x in v] if v is not None else [default] * self.spatial_rank()

    def kernel(self) -> list[int]:
        ks = self.attr("kernel_shape")
        if ks is not None:
            return [int(k) for k in ks]
        ws = self.weight_shape()
        return list(ws[2:]) if ws is not None else []

    def pads(self) -> list[int]:
        return (
            self.pair("pads", 0)
            if self.attr("pads") is not None
            else [0] * (2 * self.spatial_rank())
        )


# ----- check kinds --------------------------------------------------------------------------------

CheckFn = Callable[[NodeView, dict[str, Any]], str | None]
CHECKS: dict[str, CheckFn] = {}


def check(kind: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        CHECKS[kind] = fn
        return fn

    return register


def _dims(values: Sequence[object], sep: str = "x") -> str:
    return sep.join(str(x) for x in values)


def _pads_text(pads: Sequence[int]) -> str:
    half = len(pads) // 2
    begin, end = list(pads[:half]), list(pads[half:])
    return f"({_dims(begin, ',')})" if begin == end else f"[{_dims(pads, ',')}]"


def _range_failure(what: str, values: Sequence[int], p: dict[str, Any], label: str) -> str | None:
    lo, hi = p.get("min"), p.get("max")
    allowed = [list(a) for a in p.get("also_allowed", [])]
    inside = all((lo is None or x >= lo) and (hi is None or x <= hi) for x in values)
    if inside or list(values) in allowed:
        return None
    text = _dims(values)
    if allowed:
        extra = "/".join(_dims(a) for a in allowed)
        return f"{what} {text} not supported on {label} (allowed: [{lo},{hi}] or {extra})"
    if hi is not None and max(values) > hi:
        return f"{what} {text} > {label} max {hi}"
    return f"{what} {text} < {label} min {lo}"


@check("spatial_dims")
def _spatial_dims(v: NodeView, p: dict[str, Any]) -> str | None:
    n = v.spatial_rank()
    if n != p["equals"]:
        return f"{n} spatial dims ({v.label} supports {p['equals']}-D only)"
    return None


@check("kernel")
def _kernel(v: NodeView, p: dict[str, Any]) -> str | None:
    return _range_failure("kernel", v.kernel(), p, v.label)


@check("stride")
def _stride(v: NodeView, p: dict[str, Any]) -> str | None:
    return _range_failure("stride", v.pair("strides", 1), p, v.label)


@check("dilation")
def _dilation(v: NodeView, p: dict[str, Any]) -> str | None:
    return _range_failure("dilation", v.pair("dilations", 1), p, v.label)


@check("padding")
def _padding(v: NodeView, p: dict[str, Any]) -> str | None:
    pads = v.pads()
    lo, hi = p.get("min", 0), p.get("max")
    if any(x < lo for x in pads):
        return f"padding {_pads_text(pads)} < {v.label} min {lo}"
    if hi is not None and any(x > hi for x in pads):
        return f"padding {_pads_text(pads)} > {v.label} max {hi}"
    if p.get("less_than_kernel"):
        kernel = v.kernel()
        rank = len(kernel)
        for i, x in enumerate(pads):
            k = kernel[i % rank] if rank else 0
            if x >= k:
                return (f"padding {_pads_text(pads)} not below kernel {_dims(kernel)} "
                        f"({v.label} needs padding < kernel)")  # fmt: skip
    return None


@check("zero_padding")
def _zero_padding(v: NodeView, p: dict[str, Any]) -> str | None:
    pads = v.pads()
    if any(pads):
        return f"padding {_pads_text(pads)} not supported on {v.label} (must be 0)"
    out_pad = [int(x) for x in v.attr("output_padding", []) or []]
    if any(out_pad):
        return f"output_padding ({_dims(out_pad, ',')}) not supported on {v.label} (must be 0)"
    return None


@check("square_kernel_stride_excluded")
def _square_excluded(v: NodeView, p: dict[str, Any]) -> str | None:
    lo, hi = p["min"], p["max"]
    for what, values in (("kernel", v.kernel()), ("stride", v.pair("strides", 1))):
        if len(set(values)) == 1 and lo <= values[0] <= hi:
            return (f"square {what} {_dims(values)} in [{lo},{hi}] is disabled on {v.label} "
                    "(slow compilation)")  # fmt: skip
    return None


@check("groups")
def _groups(v: NodeView, p: dict[str, Any]) -> str | None:
    g = int(v.attr("group", 1))
    fail = _range_failure("groups", [g], p, v.label)
    if fail and p.get("min") == p.get("max"):
        return f"groups {g} not supported on {v.label} (must be {p['min']})"
    return fail


@dataclass(frozen=True)
class ConvGeometry:
    """A convolution as the DLA sees it (FullyConnected/MatMul become 1x1 convs)."""

    c: int  # input channels
    k: int  # output maps
    r: int  # kernel height
    s: int  # kernel width
    w: int  # input width
    dil_h: int
    groups: int


def conv_geometry(v: NodeView) -> ConvGeometry | None:
    node = v.node
    x = v.shape(0)
    ws = v.weight_shape()
    if x is None or ws is None or not all(isinstance(d, int) for d in x):
        return None
    if node.op in ("Conv", "ConvTranspose"):
        groups = int(v.attr("group", 1))
        kernel = v.kernel() or [1, 1]
        dil = v.pair("dilations", 1)
        r = kernel[0]
        s = kernel[1] if len(kernel) > 1 else 1
        k = ws[0] if node.op == "Conv" else ws[1] * groups
        width = int(x[3]) if len(x) > 3 else 1
        return ConvGeometry(int(x[1]), k, r, s, width, dil[0] if dil else 1, groups)
    # Gemm / MatMul: (N, K) x (K, M) -> 1x1 conv with C = K, maps = M.
    trans_b = node.op == "Gemm" and int(v.attr("transB", 0)) == 1
    in_features = int(x[-1])
    maps = ws[0] if trans_b else ws[-1]
    return ConvGeometry(in_features, int(maps), 1, 1, 1, 1, 1)


@check("output_maps")
def _output_maps(v: NodeView, p: dict[str, Any]) -> str | None:
    geo = conv_geometry(v)
    if geo is None:
        return None
    if not p["min"] <= geo.k <= p["max"]:
        return f"{geo.k} output maps outside {v.label} range [{p['min']},{p['max']}]"
    return None


@check("input_channels")
def _input_channels(v: NodeView, p: dict[str, Any]) -> str | None:
    geo = conv_geometry(v)
    if geo is None:
        return None
    if not p["min"] <= geo.c <= p["max"]:
        return f"{geo.c} input channels outside {v.label} range [{p['min']},{p['max']}]"
    return None


@check("grouped_int8_channels")
def _grouped_int8(v: NodeView, p: dict[str, Any]) -> str | None:
    # Applies to true grouped convs only: depthwise (groups == C) has its own path.
    geo = conv_geometry(v)
    if geo is None or v.precision != "int8" or geo.groups in (1, geo.c):
        return None
    per_group = geo.c // geo.groups
    if per_group % p["multiple"]:
        return (f"INT8 grouped conv with {per_group} channels per group "
                f"(needs a multiple of {p['multiple']})")  # fmt: skip
    return None


@check("cbuf")
def _cbuf(v: NodeView, p: dict[str, Any]) -> str | None:
    geo = conv_geometry(v)
    if geo is None:
        return None
    wt, data = cbuf_banks_needed(
        geo.c, geo.r, geo.s, geo.w, geo.dil_h, v.precision,
        p.get("weight_bank_bytes", 32768), p.get("data_bank_entries", 256),
    )  # fmt: skip
    if wt + data > p["banks"]:
        return (f"convolution buffer needs {wt + data} banks (weights {wt} + data {data}) > "
                f"{p['banks']} on {v.label}; reduce input width, channels or kernel")  # fmt: skip
    return None


@check("fc_as_conv")
def _fc_as_conv(v: NodeView, p: dict[str, Any]) -> str | None:
    node = v.node
    if v.const(1) is None:
        return (
            f"{node.op} with two run-time inputs is not supported on {v.label} "
            "(weights must be constant)"
        )
    if node.op == "Gemm" and int(v.attr("transA", 0)):
        return f"Gemm with transA=1 is not supported on {v.label}"
    if (
        node.op == "Gemm"
        and len(node.inputs) > 2
        and node.input(2) is not None
        and v.const(2) is None
    ):
        return f"Gemm bias must be constant on {v.label}"
    x = v.shape(0)
    w = v.weight_shape()
    if x is None or len(x) != p.get("rank", 2) or w is None or len(w) != 2:
        rank = len(x) if x is not None else "?"
        return (f"{node.op} on a {rank}-D input: {v.label} runs it as a 1x1 convolution only "
                f"for 2-D (N, K) inputs with 2-D constant weights")  # fmt: skip
    return None


@check("window")
def _window(v: NodeView, p: dict[str, Any]) -> str | None:
    return _range_failure("window", v.kernel(), p, v.label)


@check("pool_padding")
def _pool_padding(v: NodeView, p: dict[str, Any]) -> str | None:
    pads = v.pads()
    if any(x < p.get("min", 0) or x > p["max"] for x in pads):
        return f"padding {_pads_text(pads)} outside {v.label} range [{p.get('min', 0)},{p['max']}]"
    return None


@check("pool_stride")
def _pool_stride(v: NodeView, p: dict[str, Any]) -> str | None:
    return _range_failure("stride", v.pair("strides", 1), p, v.label)


@check("inclusive_avg_padding")
def _inclusive_avg_padding(v: NodeView, p: dict[str, Any]) -> str | None:
    # Without padding the two conventions give the same numbers; ``only_when_padded: false``
    # applies TensorRT's flag check literally (every count_include_pad=0 pool fails).
    if int(v.attr("count_include_pad", 0)) == 1:
        return None
    pads = v.pads()
    if not any(pads):
        if p.get("only_when_padded", True):
            return None
        return (
            f"average pool with count_include_pad=0 not supported on {v.label} "
            "(inclusive padding only)"
        )
    return (
        f"average pool excluding padding (count_include_pad=0) with padding "
        f"{_pads_text(pads)} not supported on {v.label} (inclusive padding only)"
    )


def _scalar(values: np.ndarray | None) -> float | None:
    if values is None or np.asarray(values).size != 1:
        return None
    return float(np.asarray(values).reshape(-1)[0])


@check("clip_range")
def _clip_range(v: NodeView, p: dict[str, Any]) -> str | None:
    node = v.node
    lo_t, hi_t = node.input(1), node.input(2)
    lo = _scalar(v.const(1)) if lo_t is not None else None
    hi = _scalar(v.const(2)) if hi_t is not None else None
    if (lo_t is not None and lo is None) or (hi_t is not None and hi is None):
        return f"Clip bounds must be constant scalars on {v.label}"
    if lo is None or lo != p["min"]:
        shown = "none" if lo is None else f"{lo:g}"
        return f"Clip min {shown}: {v.label} runs Clip as clipped ReLU (min must be {p['min']})"
    if hi is None:
        return (f"Clip without max: {v.label} runs Clip as clipped ReLU with max in "
                f"[{p['max_low']},{p['max_high']}]")  # fmt: skip
    if not p["max_low"] <= hi <= p["max_high"]:
        return (f"Clip max {hi:g} outside {v.label} clipped-ReLU range "
                f"[{p['max_low']},{p['max_high']}]")  # fmt: skip
    return None


@check("constant_inputs")
def _constant_inputs(v: NodeView, p: dict[str, Any]) -> str | None:
    for i in p["indices"]:
        t = v.node.input(i)
        if t is not None and not isinstance(t, Constant):
            what = p.get("what", f"input {i}")
            return f"{what} '{t.name}' must be a build-time constant on {v.label}"
    return None


@check("rank")
def _rank(v: NodeView, p: dict[str, Any]) -> str | None:
    s = v.shape(0)
    if s is not None and len(s) != p["equals"]:
        return f"{len(s)}-D input ({v.label} supports {p['equals']}-D only for {v.node.op})"
    return None


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


@check("concat")
def _concat(v: NodeView, p: dict[str, Any]) -> str | None:
    inputs = [t for t in v.node.inputs if t is not None]
    if len(inputs) < p["min_inputs"]:
        return f"{len(inputs)} input(s): {v.label} concatenation needs >= {p['min_inputs']}"
    s = v.shape(0)
    if s is None:
        return None
    rank = len(s)
    axis = _norm_axis(int(v.attr("axis", 1)), rank)
    if rank < 3 or axis != rank - 3:
        return (f"concatenation on axis {axis} of a {rank}-D tensor: {v.label} concatenates "
                "on the channel axis (third from last) only")  # fmt: skip
    return None


@check("lrn_size")
def _lrn_size(v: NodeView, p: dict[str, Any]) -> str | None:
    size = int(v.attr("size", 0))
    if size not in p["allowed"]:
        return f"LRN window {size} not in {v.label} set {{{_dims(p['allowed'], ',')}}}"
    return None


_NEAREST_MODES = {
    "asymmetric/floor",
    "half_pixel/round_prefer_floor",
    "half_pixel/round_prefer_ceil",
}


@check("resize")
def _resize(v: NodeView, p: dict[str, Any]) -> str | None:
    node = v.node
    sizes = node.input(3)
    if sizes is not None and (sizes.shape is None or sizes.shape != (0,)):
        return (f"Resize to output sizes (setOutputDimensions) is not supported on {v.label}; "
                "use integer scales")  # fmt: skip
    scales_t = node.input(2)
    scales = v.const(2)
    if scales_t is None or scales is None:
        return f"Resize scales must be constant on {v.label}"
    scales = np.asarray(scales, dtype=np.float64).reshape(-1)
    if scales.size != p["scales"]:
        return f"{scales.size} resize scales ({v.label} needs exactly {p['scales']})"
    if not np.all(scales[:2] == 1):
        shown = _dims([f"{x:g}" for x in scales[:2]], ",")
        return f"resize scales {shown} on N,C ({v.label} needs 1)"
    mode = str(v.attr("mode", "nearest"))
    coord = str(v.attr("coordinate_transformation_mode", "half_pixel"))
    hw = scales[2:]
    if mode not in p["modes"]:
        return f"Resize mode '{mode}' not supported on {v.label} (nearest or linear only)"
    lo, hi = p["modes"][mode]
    if not np.all(hw == np.round(hw)) or not np.all((hw >= lo) & (hw <= hi)):
        shown = _dims([f"{x:g}" for x in hw])
        return f"{mode} resize scale {shown} not an integer in [{lo},{hi}] on {v.label}"
    if int(v.attr("antialias", 0)):
        return f"antialiased Resize is not supported on {v.label}"
    if mode == "nearest":
        combo = f"{coord}/{v.attr('nearest_mode', 'round_prefer_floor')}"
        if combo not in _NEAREST_MODES:
            return (
                f"nearest Resize with {combo.replace('/', ' + ')} not supported on {v.label} "
                f"(allowed: {', '.join(sorted(m.replace('/', ' + ') for m in _NEAREST_MODES))})"
            )
    elif coord not in p["linear_coordinate_modes"]:
        return (f"linear Resize with coordinate mode '{coord}' not supported on {v.label} "
                f"(allowed: {', '.join(p['linear_coordinate_modes'])})")  # fmt: skip
    return None


@check("slice")
def _slice(v: NodeView, p: dict[str, Any]) -> str | None:
    node = v.node
    s = v.shape(0)
    if s is None:
        return None
    rank = len(s)
    if rank != p["rank"]:
        return f"slicing a {rank}-D tensor ({v.label} slices {p['rank']}-D tensors only)"
    parts = {}
    for i, what in ((1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")):
        t = node.input(i)
        if t is None:
            continue
        values = v.const(i)
        if values is None:
            return f"Slice {what} must be constant on {v.label} (static slicing only)"
        parts[what] = [int(x) for x in np.asarray(values).reshape(-1)]
    starts, ends = parts.get("starts", []), parts.get("ends", [])
    axes = [_norm_axis(a, rank) for a in parts.get("axes", list(range(len(starts))))]
    steps = parts.get("steps", [1] * len(axes))
    if any(st != 1 for st in steps):
        return f"Slice steps {_dims(steps, ',')} not supported on {v.label} (stride must be 1)"
    for a, st, en in zip(axes, starts, ends):
        if a == 0:
            dim = s[0]
            whole = isinstance(dim, int) and (st == 0 or st <= -dim) and en >= dim
            if not whole:
                return f"slicing the first dim is not supported on {v.label}"
    return None


@check("split")
def _split(v: NodeView, p: dict[str, Any]) -> str | None:
    s = v.shape(0)
    if s is None:
        return None
    rank = len(s)
    if rank != p["rank"]:
        return f"splitting a {rank}-D tensor ({v.label} slices {p['rank']}-D tensors only)"
    if _norm_axis(int(v.attr("axis", 0)), rank) == 0:
        return f"splitting the first dim is not supported on {v.label}"
    t = v.node.input(1)
    if t is not None and v.const(1) is None:
        return f"Split sizes must be constant on {v.label}"
    return None


@check("softmax")
def _softmax(v: NodeView, p: dict[str, Any]) -> str | None:
    s = v.shape(0)
    if s is None:
        return None
    rank = len(s)
    axis = _norm_axis(int(v.attr("axis", -1)), rank)
    if axis < rank - 3:
        return f"softmax over axis {axis}, a batch dim ({v.label}: channel or spatial axis only)"
    n = int(s[axis])
    others = [int(d) for i, d in enumerate(s) if i >= rank - 3 and i != axis]
    if all(d == 1 for d in others) and n <= p["accurate_max"]:
        return None
    if n <= p["approximate_max"]:
        return Note(f"approximate softmax (axis length {n} <= {p['approximate_max']})")
    return (f"softmax axis length {n} > {p['approximate_max']} with other dims "
            f"{_dims(others)} not all 1 (accurate softmax needs them 1 and length <= "
            f"{p['accurate_max']})")  # fmt: skip


@check("shuffle")
def _shuffle(v: NodeView, p: dict[str, Any]) -> str | None:
    node = v.node
    s_in, s_out = v.shape(0), v.out_shape(0)
    rank = p["rank"]
    if s_in is not None and len(s_in) != rank:
        return f"{node.op} of a {len(s_in)}-D tensor ({v.label} shuffles {rank}-D tensors only)"
    if s_out is not None and len(s_out) != rank:
        return f"{node.op} to a {len(s_out)}-D tensor ({v.label} shuffles {rank}-D tensors only)"
    if node.op == "Transpose":
        perm = [int(x) for x in v.attr("perm", list(range(rank - 1, -1, -1)))]
        if perm and perm[0] != 0:
            shown = _dims(perm, ",")
            return f"Transpose perm {shown} moves the batch dim (not supported on {v.label})"
    elif s_in is not None and s_out is not None and s_in[0] != s_out[0]:
        change = f"{_dims(s_in)} -> {_dims(s_out)}"
        return f"{node.op} {change} changes the batch dim (not supported on {v.label})"
    neighbours = {t.producer.op for t in node.inputs if t is not None and t.producer}
    neighbours |= {c.op for t in node.outputs for c in t.consumers}
    hit = sorted(neighbours & set(p.get("split_next_to", [])))
    if hit:
        return Note(f"next to {'/'.join(hit)}: splits the {v.label} subgraph "
                    "('reshape layers directly connected to Slice or Concat')")  # fmt: skip
    return None


@check("reduce_axes")
def _reduce_axes(v: NodeView, p: dict[str, Any]) -> str | None:
    s = v.shape(0)
    if s is None:
        return None
    rank = len(s)
    if rank != p["rank"]:
        return f"reducing a {rank}-D tensor ({v.label} reduces {p['rank']}-D tensors only)"
    if v.node.op.startswith("Global"):
        return None
    axes_v = v.const(1) if v.node.input(1) is not None else None
    if v.node.input(1) is not None and axes_v is None:
        return f"reduce axes must be constant on {v.label}"
    axes = [int(a) for a in np.asarray(axes_v).reshape(-1)] if axes_v is not None else []
    if not axes:
        if int(v.attr("noop_with_empty_axes", 0)):
            return None
        axes = list(range(rank))
    axes = sorted(_norm_axis(a, rank) for a in axes)
    if 0 in axes:
        shown = _dims(axes, ",")
        return f"reducing over the batch dim (axes {shown}) is not supported on {v.label}"
    if p.get("hw_keepdims") and (axes != [2, 3] or not int(v.attr("keepdims", 1))):
        # the DLA takes CHW axes (DLASW), but a loadable's max-reduce is a PDP pooling over
        # H,W here (dla_sim/engine_lowering.py): anything else would fail the build after placement
        return f"only a keepdims max over H and W is compiled for {v.label} (axes {axes})"
    return None


@check("output_cast")
def _output_cast(v: NodeView, p: dict[str, Any]) -> str | None:
    allowed = set(p["to"])
    consumers = [c for t in v.node.outputs for c in t.consumers]
    bad = [c for c in consumers if c.op != "Cast" or _cast_to(c) not in allowed]
    if not consumers or bad:
        return (f"{v.node.op} output must feed a Cast to {'/'.join(sorted(allowed))} "
                f"directly on {v.label}")  # fmt: skip
    return None


def _cast_to(node: Node) -> str:
    to = node.attrs.get("to")
    return _ONNX_DTYPE_NAMES.get(to, str(to)) if isinstance(to, int) else str(to)


@check("cast_after")
def _cast_after(v: NodeView, p: dict[str, Any]) -> str | None:
    src = v.node.input(0)
    producer = src.producer if src is not None else None
    if producer is None or producer.op not in p["ops"]:
        return f"Cast is not supported on {v.label} (only right after {'/'.join(p['ops'])})"
    if _cast_to(v.node) not in p["to"]:
        allowed = "/".join(p["to"])
        return f"Cast to {_cast_to(v.node)} is not supported on {v.label} (only to {allowed})"
    return None


@check("note")
def _note(v: NodeView, p: dict[str, Any]) -> str | None:
    return Note(str(p["text"]).format(op=v.node.op, label=v.label))
