"""The plan header as typed records, decoded and validated once on read and checked on write.

:func:`decode_header` turns the header's JSON into a :class:`PlanHeader` (segments, layers, I/O
bindings, profiles, plugins, the blob table) or raises :class:`HeaderFieldError` naming the
field by its path, e.g. ``segments[2].device: 'dla7' is not one of gpu, dla0, dla1, cpu``.
The records are derived from the fields' annotations by one small decoder, so a field's
declaration is its check. Keys the records do not name are allowed (a newer minor version may
add some) and left where they are: the header dict stays what is encoded, so a valid plan's
bytes do not depend on this module.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from partitioner.dtypes import ONNX_TO_NUMPY
from partitioner.profiles import OptimizationProfile
from partitioner.serialize import FORMAT as GRAPH_FORMAT

#: element types a tensor or binding may have (the IR's numpy names of ONNX's types).
TENSOR_DTYPES = tuple(sorted(set(ONNX_TO_NUMPY.values())))
#: dtypes a weight blob may carry (numpy names, as in the IR).
BLOB_DTYPES = (
    "float32",
    "float16",
    "float64",
    "int8",
    "uint8",
    "int16",
    "int32",
    "int64",
    "bool",
)
_MAX_DIM = 1 << 40
_MAX_RANK = 32

Device = Literal["gpu", "dla0", "dla1", "cpu"]
Precision = Literal["fp32", "fp16", "int8"]
#: a tensor dimension: a size, a symbolic name, or unknown
Dim = int | str | None


class HeaderFieldError(ValueError):
    """A header field is missing or invalid; ``path`` names it (``segments[2].device``)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path or 'header'}: {problem}")
        self.path, self.problem = path, problem

    def within(self, step: str) -> HeaderFieldError:
        """This error as seen from one level up (``step``: a key, or ``[i]`` in a list); paths
        are built only on the way out of an error, never for the values that are fine."""
        if self.path and not self.path.startswith("["):
            return HeaderFieldError(f"{step}.{self.path}", self.problem)
        return HeaderFieldError(step + self.path, self.problem)


# ----- the records -----------------------------------------------------------------------
@dataclass(frozen=True)
class BlobEntry:
    offset: int
    size: int
    kind: str
    dtype: str | None = None
    shape: list[int] | None = None

    def check(self) -> None:
        for name in ("offset", "size"):
            if getattr(self, name) < 0:
                raise HeaderFieldError(name, f"{getattr(self, name)} is negative")
        if (self.dtype is None) != (self.shape is None):
            raise HeaderFieldError("", "an array blob needs both 'dtype' and 'shape'")
        if self.dtype is not None and self.dtype not in BLOB_DTYPES:
            raise HeaderFieldError("dtype", _not_one_of(self.dtype, BLOB_DTYPES))
        if self.shape is not None:
            _check_dims(self.shape, "shape", symbolic=False)


@dataclass(frozen=True)
class Binding:
    """A plan input or output."""

    name: str
    shape: list[Dim] | None = None
    dtype: str | None = None

    def check(self) -> None:
        if self.shape is not None:
            _check_dims(self.shape, "shape")
        _check_dtype(self.dtype)


@dataclass(frozen=True)
class LayerRecord:
    """One row of the placement table: where a layer runs, at what precision, and why."""

    name: str
    op: str
    device: Device
    precision: Precision | None = None
    reason: str = ""
    predicted_ms: float | None = None


@dataclass(frozen=True)
class TensorRecord(Binding):
    """A tensor of a segment's graph: a binding's fields (and checks), and the blob holding
    its values where it is a constant."""

    array: str | None = None


@dataclass(frozen=True)
class AttrRecord:
    """A layer attribute: a JSON value, or the name of the blob holding an array."""

    value: Any = None
    array: str | None = None

    def check(self) -> None:
        if self.array is None:
            _check_plain(self.value, "value")


@dataclass(frozen=True)
class NodeRecord:
    name: str
    op: str
    attrs: dict[str, AttrRecord]
    inputs: list[str | None]
    outputs: list[str]
    domain: str = ""


@dataclass(frozen=True)
class GraphRecord:
    """A segment's subgraph (``partitioner.serialize``'s data), checked to hang together."""

    format: str
    name: str
    opset: int
    tensors: list[TensorRecord]
    nodes: list[NodeRecord]
    inputs: list[str]
    outputs: list[str]

    def check(self) -> None:
        if self.format != GRAPH_FORMAT:
            raise HeaderFieldError("format", f"{self.format!r}, expected {GRAPH_FORMAT!r}")
        known = {t.name for t in self.tensors}
        uses = [(f"inputs[{i}]", n) for i, n in enumerate(self.inputs)]
        uses += [(f"outputs[{i}]", n) for i, n in enumerate(self.outputs)]
        for j, node in enumerate(self.nodes):
            uses += [(f"nodes[{j}].inputs[{i}]", n) for i, n in enumerate(node.inputs) if n]
            uses += [(f"nodes[{j}].outputs[{i}]", n) for i, n in enumerate(node.outputs)]
        for where, name in uses:
            if name not in known:
                raise HeaderFieldError(where, f"tensor {name!r} is not among the graph's tensors")


@dataclass(frozen=True)
class CudaModule:
    source: str
    options: list[str]
    blob: str
    nvrtc: str = ""


@dataclass(frozen=True)
class CudaRecord:
    """A GPU segment's lowering for the plan's arch and its cross-compiled kernels (none in a
    plan built without cubins: the runtime compiles them when the plan loads)."""

    arch: str
    precision: Precision | None = None
    modules: list[CudaModule] = field(default_factory=list)
    layer_tactics: dict[str, str] = field(default_factory=dict)
    tactic_sources: list[str] = field(default_factory=list)
    #: set by Tandems that recorded a segment whose lowering failed (none do now)
    error: str = ""


@dataclass(frozen=True)
class SegmentRecord:
    name: str
    device: Device
    layers: list[str]
    inputs: list[str]
    outputs: list[str]
    graph: GraphRecord
    precision: Precision | None = None
    backend: str = ""
    loadable: str | None = None
    cuda: CudaRecord | None = None
    predicted_ms: float | None = None
    predicted_layer_ms: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        if self.device.startswith("dla") and self.loadable is None:
            raise HeaderFieldError("", "a DLA segment lacks 'loadable' (its compiled blob)")


@dataclass(frozen=True)
class ShapeRange:
    min: list[int]
    opt: list[int]
    max: list[int]

    def check(self) -> None:
        for name in ("min", "opt", "max"):
            _check_dims(getattr(self, name), name, symbolic=False)


@dataclass(frozen=True)
class ProfileRecord:
    inputs: dict[str, ShapeRange]


@dataclass(frozen=True)
class PluginRecord:
    key: str
    version: str
    op: str = ""
    domain: str = ""
    segments: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class CapabilityRow:
    operator: str
    count: int
    reason: str
    layers: list[str]


@dataclass(frozen=True)
class LaneRecord:
    """One lane of a concurrent plan (``targets.concurrency``): the segments that carry a whole
    frame, in run order, and the frames/s the planner gave it (lanes run at the same time)."""

    name: str
    segments: list[str]
    rate_fps: float = 0.0
    reason: str = ""
    #: the lane's seconds per frame on each device, in ms (before contention)
    load_ms: dict[str, float] = field(default_factory=dict)

    def check(self) -> None:
        if not self.segments:
            raise HeaderFieldError("segments", "a lane runs at least one segment")
        if not self.rate_fps >= 0:
            raise HeaderFieldError("rate_fps", f"{self.rate_fps} is not a rate (>= 0)")


@dataclass(frozen=True)
class ConcurrencyRecord:
    """What the concurrency planner predicted for a concurrent plan's lanes together."""

    frames_per_s: float = 0.0
    #: each device's busy share, and the contention slowdown of its segments' times
    utilisation: dict[str, float] = field(default_factory=dict)
    slowdown: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanHeader:
    """Every field the runtime, refit and the commands read; other keys may be present."""

    format_version: int
    tandem_version: str
    target: str
    precision: str
    segments: list[SegmentRecord]
    inputs: list[Binding]
    outputs: list[Binding]
    profiles: list[ProfileRecord]
    capability: list[CapabilityRow] | dict[str, Any]
    metadata: dict[str, Any]
    blobs: dict[str, BlobEntry]
    layers: list[LayerRecord] = field(default_factory=list)
    plugins: list[PluginRecord] = field(default_factory=list)
    calibration: dict[str, float] = field(default_factory=dict)
    predicted_ms: dict[str, float] = field(default_factory=dict)
    arch: str | None = None
    dla_version: int | None = None
    power_mode: str | None = None
    model: str | None = None
    warnings: list[str] = field(default_factory=list)
    #: false: built without cubins (``--no-cubins``); GPU kernels compile when the plan loads
    cubins: bool = True
    #: a concurrent plan's lanes (empty: one engine, the segments run in order)
    lanes: list[LaneRecord] = field(default_factory=list)
    concurrency: ConcurrencyRecord | None = None
    #: how the partitioner searched, and where a dynamic plan's predictions were priced
    strategy: str | None = None
    predicted_at: str | None = None
    #: how much per-layer detail the Python Builder's config asked profiles to show
    profiling_verbosity: str | None = None

    @property
    def lanes_fps(self) -> float:
        """A concurrent plan's board rate: its lanes run at once, so their rates add up."""
        return sum(lane.rate_fps for lane in self.lanes)

    @property
    def dla_cores(self) -> list[str]:
        """The DLA cores the segments run on (``dla0``, ``dla1``; both for a 3-stage lane)."""
        return sorted({seg.device for seg in self.segments if seg.device.startswith("dla")})

    @property
    def input_names(self) -> list[str]:
        return [b.name for b in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [b.name for b in self.outputs]

    def segment(self, name: str) -> SegmentRecord:
        """The segment called ``name`` (KeyError when there is none)."""
        for seg in self.segments:
            if seg.name == name:
                return seg
        raise KeyError(name)

    def feed_shape(self, binding: Binding) -> list[Dim] | None:
        """The shape to draw random feeds of ``binding`` at: its declared shape, or for a
        dynamic input of a plan with profiles, the first profile's opt shape."""
        shape: list[Dim] | None = binding.shape
        if shape and self.profiles and not all(isinstance(d, int) for d in shape):
            opt = self.profiles[0].inputs.get(binding.name)
            return list(opt.opt) if opt is not None else shape
        return shape

    def layer_rows(self) -> dict[str, LayerRecord]:
        """The placement table by layer name."""
        return {row.name: row for row in self.layers}

    def optimization_profiles(self) -> list[OptimizationProfile]:
        """The shape profiles the runtime checks feeds against (``min <= opt <= max`` is
        checked here, as when a build sets them)."""
        out = []
        for p in self.profiles:
            profile = OptimizationProfile()
            for name, r in p.inputs.items():
                profile.set_shape(name, r.min, r.opt, r.max)
            out.append(profile)
        return out

    def check(self) -> None:
        names: set[str] = set()
        for i, seg in enumerate(self.segments):
            where = f"segments[{i}]"
            if seg.name in names:
                raise HeaderFieldError(f"{where}.name", f"{seg.name!r} names two segments")
            names.add(seg.name)
            if seg.loadable is not None:
                self._blob(seg.loadable, f"{where}.loadable", "dla-loadable")
            for j, module in enumerate(seg.cuda.modules if seg.cuda else []):
                self._blob(module.blob, f"{where}.cuda.modules[{j}].blob", "cubin")
            for j, t in enumerate(seg.graph.tensors):
                if t.array is not None:
                    self._blob(t.array, f"{where}.graph.tensors[{j}].array", None)
            for j, node in enumerate(seg.graph.nodes):
                for key, attr in node.attrs.items():
                    if attr.array is not None:
                        self._blob(attr.array, f"{where}.graph.nodes[{j}].attrs.{key}", None)
        owner: dict[str, str] = {}
        for i, lane in enumerate(self.lanes):
            for seg_name in lane.segments:
                if seg_name not in names:
                    raise HeaderFieldError(f"lanes[{i}].segments", f"no segment {seg_name!r}")
                if seg_name in owner:
                    raise HeaderFieldError(
                        f"lanes[{i}].segments", f"{seg_name!r} is in lane {owner[seg_name]!r} too"
                    )
                owner[seg_name] = lane.name
        for key, scale in self.calibration.items():
            if not scale > 0:
                raise HeaderFieldError(f"calibration.{key}", f"scale {scale} is not positive")

    def _blob(self, name: str, path: str, kind: str | None) -> None:
        """Blob ``name`` exists and is of ``kind`` (None: an array)."""
        entry = self.blobs.get(name)
        if entry is None:
            raise HeaderFieldError(path, f"blob {name!r} is not in the plan's blob table")
        if kind is None and entry.dtype is None:
            raise HeaderFieldError(path, f"blob {name!r} is not an array (no dtype/shape)")
        if kind is not None and entry.kind != kind:
            raise HeaderFieldError(path, f"blob {name!r} is a {entry.kind}, not a {kind}")


def decode_header(data: Any) -> PlanHeader:
    """The typed header; :class:`HeaderFieldError` names the first field that is wrong."""
    try:
        header: PlanHeader = _decoder(PlanHeader)(data)
    except RecursionError:
        raise HeaderFieldError("", "nested too deeply") from None
    return header


def required_keys() -> list[str]:
    """The keys every header has."""
    return [f.name for f in dataclasses.fields(PlanHeader) if _required(f)]


# ----- one decoder for every record, derived once per type from the annotations ------------
Decoder = Callable[[Any], Any]


@functools.cache
def _decoder(tp: Any) -> Decoder:
    if tp is Any:
        return lambda value: value
    if dataclasses.is_dataclass(tp):
        return _record_decoder(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return functools.partial(_literal, args)
    if origin in (Union, types.UnionType):
        options = [(t, _decoder(t)) for t in args if t is not type(None)]
        return functools.partial(_union, tp, type(None) in args, options)
    if origin is list:
        return functools.partial(_list, tp, _decoder(args[0]))
    if origin is dict:
        return functools.partial(_dict, tp, _decoder(args[1]))
    return functools.partial(_scalar, tp)


def _literal(choices: tuple[str, ...], value: Any) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise HeaderFieldError("", _not_one_of(value, choices))
    return value


def _union(tp: Any, nullable: bool, options: list[tuple[Any, Decoder]], value: Any) -> Any:
    if value is None and nullable:
        return None
    for option, decode in options:
        if _kind_fits(option, value):
            return decode(value)
    raise HeaderFieldError("", _expected(tp, value))


def _list(tp: Any, item: Decoder, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise HeaderFieldError("", _expected(tp, value))
    out = []
    for i, v in enumerate(value):
        try:
            out.append(item(v))
        except HeaderFieldError as err:
            raise err.within(f"[{i}]") from None
    return out


def _dict(tp: Any, item: Decoder, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise HeaderFieldError("", _expected(tp, value))
    out = {}
    for k, v in value.items():
        try:
            out[k] = item(v)
        except HeaderFieldError as err:
            raise err.within(k) from None
    return out


def _scalar(tp: Any, value: Any) -> Any:
    if not _kind_fits(tp, value):
        raise HeaderFieldError("", _expected(tp, value))
    if tp is float and not math.isfinite(value):
        raise HeaderFieldError("", f"{value} is not a finite number")
    return value


def _record_decoder(cls: Any) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = [(f.name, _decoder(hints[f.name]), _required(f)) for f in dataclasses.fields(cls)]

    def decode(value: Any) -> Any:
        if not isinstance(value, dict):
            raise HeaderFieldError("", _expected(cls, value))
        kwargs = {}
        for name, decode_field, required in fields:
            if name in value:
                try:
                    kwargs[name] = decode_field(value[name])
                except HeaderFieldError as err:
                    raise err.within(name) from None
            elif required:
                raise HeaderFieldError("", f"lacks {name!r}")
        record = cls(**kwargs)
        if hasattr(record, "check"):
            record.check()
        return record

    return decode


def _required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _kind_fits(tp: Any, value: Any) -> bool:
    """Whether ``value``'s JSON kind is the one ``tp`` decodes (without checking inside)."""
    origin = typing.get_origin(tp) or tp
    if tp is Any:
        return True
    if dataclasses.is_dataclass(tp) or origin is dict:
        return isinstance(value, dict)
    if origin is list:
        return isinstance(value, list)
    if origin is Literal or tp is str:
        return isinstance(value, str)
    if isinstance(value, bool):
        return tp is bool
    if tp is float:
        return isinstance(value, int | float)
    return tp is int and isinstance(value, int)


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(
            "null" if t is type(None) else _describe(t) for t in typing.get_args(tp)
        )
    if origin is Literal:
        return "one of " + ", ".join(typing.get_args(tp))
    if origin is list:
        return "a list"
    if origin is dict or dataclasses.is_dataclass(tp):
        return "an object"
    return _KIND_NAMES.get(tp, str(tp))


def _expected(tp: Any, value: Any) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"expected {_describe(tp)}, got {type(value).__name__} {shown}"


def _check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in TENSOR_DTYPES:
        raise HeaderFieldError("dtype", f"{dtype!r} is not an element type the IR knows")


def _not_one_of(value: Any, choices: tuple[str, ...]) -> str:
    return f"{value!r} is not one of {', '.join(choices)}"


def _check_dims(dims: list[Any], path: str, symbolic: bool = True) -> None:
    if len(dims) > _MAX_RANK:
        raise HeaderFieldError(path, f"rank {len(dims)} is over {_MAX_RANK}")
    for i, d in enumerate(dims):
        if isinstance(d, int) and not isinstance(d, bool):
            if not 0 <= d < _MAX_DIM:
                raise HeaderFieldError(f"{path}[{i}]", f"dimension {d} is out of range")
        elif not symbolic or not (d is None or isinstance(d, str)):
            kind = "a size" if not symbolic else "a size, a name or null"
            raise HeaderFieldError(f"{path}[{i}]", f"expected {kind}, got {d!r}")


def _check_plain(value: Any, path: str) -> None:
    """An attribute value as ``partitioner.serialize`` writes it: a scalar, a list of them,
    or ``{"bytes": hex}``."""
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HeaderFieldError(path, f"{value} is not a finite number")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
        return
    if isinstance(value, dict) and set(value) == {"bytes"} and isinstance(value["bytes"], str):
        try:
            bytes.fromhex(value["bytes"])
        except ValueError:
            raise HeaderFieldError(f"{path}.bytes", "is not hexadecimal") from None
        return
    raise HeaderFieldError(path, f"expected a number, string, list or bytes, got {value!r:.40}")
