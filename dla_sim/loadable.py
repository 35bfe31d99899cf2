"""The DLA loadable: a compiled DLA segment in Tandem's own versioned binary format.

Layout (all integers little-endian; see ``LOADABLE.md`` for the full specification):

====== ======= ===========================================================
offset size    field
====== ======= ===========================================================
0      8       magic ``b"TDLALOAD"``
8      2       format major version (a reader refuses another major)
10     2       format minor version (additions only)
12     4       flags (0)
16     8       header length in bytes (UTF-8 JSON)
24     8       offset of the blob section (multiple of 64)
32     8       total file length
40     4       CRC-32 of every byte after the 64-byte preamble
44     20      zero
64     ...     header JSON, then zero padding to the blob section
...    ...     blobs, each starting at a multiple of 64 from the blob section
====== ======= ===========================================================

Loading never executes code: the header is JSON, blobs are raw arrays of a fixed set of dtypes.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from partitioner.errors import TandemError

MAGIC = b"TDLALOAD"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
ALIGN = 64
_PREAMBLE = struct.Struct("<8sHHIQQQI20x")
BLOB_DTYPES = ("int8", "uint8", "int32", "int64", "float16", "float32", "float64")
ENGINES = ("conv", "sdp", "pdp", "cdp", "softmax", "rubik", "bdma")
TENSOR_DTYPES = ("int8", "float16")
#: the most elements one tensor may have (the DLA addresses 32-bit; bounds executor memory)
MAX_ELEMENTS = 1 << 31
#: geometry params (also inside a conv's fused ``pool``) and the values each may take: a
#: zero stride would divide by zero, a negative pad would index backwards
_GEOMETRY = {
    "strides": (2, 1),
    "dilations": (2, 1),
    "kernel": (2, 1),
    "pads": (4, 0),
    "pads_declared": (4, 0),
}
_POSITIVE_PARAMS = ("group", "out_channels", "in_channels", "size")


class LoadableError(TandemError):
    """A loadable is malformed, of another format version, or does not fit its inputs."""


@dataclass
class TensorDesc:
    """A tensor as the loadable stores it.

    ``dtype`` is the storage type on the DLA (``int8`` or ``float16``); ``scale`` the INT8 step
    (real = int8 * scale); ``location`` ``dram`` or ``sram``; ``bytes`` from ``formats``.
    """

    name: str
    shape: list[int]
    dtype: str
    format: str
    scale: float | None = None
    location: str = "dram"
    bytes: int = 0


@dataclass
class EngineOp:
    """One hardware operation: an engine, the layers it implements, its tensors and settings.

    ``params`` is JSON-able; ``blobs`` maps a role (``weights``, ``bias``, ...) to a blob name.
    """

    name: str
    engine: str
    layers: list[str]
    inputs: list[str]
    outputs: list[str]
    params: dict[str, Any] = field(default_factory=dict)
    blobs: dict[str, str] = field(default_factory=dict)


@dataclass
class Loadable:
    """A compiled DLA segment. ``to_bytes`` / ``from_bytes`` are exact inverses."""

    name: str
    dla_version: int
    precision: str
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, TensorDesc]
    ops: list[EngineOp]
    blobs: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    #: executor scratch (weights widened for BLAS); never serialised or compared
    cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def weight_bytes(self) -> int:
        return sum(int(b.nbytes) for b in self.blobs.values())

    # ----- serialisation -----------------------------------------------------------------
    def to_bytes(self) -> bytes:
        blob_table = []
        chunks: list[bytes] = []
        offset = 0
        for name in sorted(self.blobs):
            arr = np.ascontiguousarray(self.blobs[name])
            if str(arr.dtype) not in BLOB_DTYPES:
                raise LoadableError(f"blob '{name}' has dtype {arr.dtype}; allowed: {BLOB_DTYPES}")
            raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            pad = (-offset) % ALIGN
            chunks.append(b"\0" * pad)
            offset += pad
            blob_table.append(
                {
                    "name": name,
                    "dtype": str(arr.dtype),
                    "shape": list(arr.shape),
                    "offset": offset,
                    "nbytes": len(raw),
                }
            )
            chunks.append(raw)
            offset += len(raw)
        header = {
            "name": self.name,
            "dla_version": self.dla_version,
            "precision": self.precision,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "tensors": [asdict(t) for t in self.tensors.values()],
            "ops": [asdict(op) for op in self.ops],
            "blobs": blob_table,
            "metadata": self.metadata,
        }
        header_bytes = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        blob_start = _PREAMBLE.size + len(header_bytes)
        blob_start += (-blob_start) % ALIGN
        body = header_bytes + b"\0" * (blob_start - _PREAMBLE.size - len(header_bytes))
        body += b"".join(chunks)
        total = _PREAMBLE.size + len(body)
        crc = zlib.crc32(body) & 0xFFFFFFFF
        preamble = _PREAMBLE.pack(
            MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, len(header_bytes), blob_start, total, crc
        )
        return preamble + body

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "<bytes>") -> Loadable:
        if len(data) < _PREAMBLE.size:
            raise LoadableError(f"{source}: too short to be a DLA loadable ({len(data)} bytes)")
        magic, major, minor, _flags, header_len, blob_start, total, crc = _PREAMBLE.unpack_from(
            data
        )
        if magic != MAGIC:
            raise LoadableError(f"{source}: not a Tandem DLA loadable (magic {magic!r})")
        if major != FORMAT_MAJOR:
            raise LoadableError(
                f"{source}: loadable format {major}.{minor}, this Tandem reads {FORMAT_MAJOR}.x; "
                "recompile the segment with this version"
            )
        if total != len(data):
            raise LoadableError(f"{source}: truncated loadable ({len(data)} of {total} bytes)")
        body = memoryview(data)[_PREAMBLE.size :]
        if zlib.crc32(body) & 0xFFFFFFFF != crc:
            raise LoadableError(f"{source}: loadable checksum mismatch (file corrupted)")
        try:
            header = json.loads(bytes(body[:header_len]).decode("utf-8"))
            blobs: dict[str, np.ndarray] = {}
            for entry in header["blobs"]:
                if entry["dtype"] not in BLOB_DTYPES:
                    raise LoadableError(
                        f"{source}: blob '{entry['name']}' has dtype {entry['dtype']}"
                    )
                begin = blob_start + int(entry["offset"])
                end = begin + int(entry["nbytes"])
                if end > total or begin < blob_start or end < begin:
                    raise LoadableError(f"{source}: blob '{entry['name']}' runs past the end")
                _check_shape(entry["shape"], f"{source}: blob '{entry['name']}' shape")
                arr = np.frombuffer(
                    data,
                    dtype=np.dtype(entry["dtype"]).newbyteorder("<"),
                    count=int(entry["nbytes"]) // np.dtype(entry["dtype"]).itemsize,
                    offset=begin,
                )
                blobs[entry["name"]] = arr.astype(entry["dtype"]).reshape(entry["shape"])
            tensors = {t["name"]: TensorDesc(**t) for t in header["tensors"]}
            ops = [EngineOp(**op) for op in header["ops"]]
            loadable = cls(
                name=header["name"],
                dla_version=int(header["dla_version"]),
                precision=header["precision"],
                inputs=list(header["inputs"]),
                outputs=list(header["outputs"]),
                tensors=tensors,
                ops=ops,
                blobs=blobs,
                metadata=dict(header.get("metadata", {})),
            )
        except (KeyError, TypeError, ValueError, UnicodeDecodeError, RecursionError) as err:
            raise LoadableError(f"{source}: malformed loadable header ({err})") from None
        _validate(loadable, source)
        return loadable

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path: str) -> Loadable:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as err:
            raise LoadableError(f"cannot read DLA loadable '{path}': {err.strerror}") from None
        return cls.from_bytes(data, source=path)


def _validate(loadable: Loadable, source: str) -> None:
    """Every field the executor relies on, checked once here: names that resolve, tensor
    shapes and scales, op geometry. Errors name the loadable field; execution then never
    meets a zero stride or a shape it cannot allocate."""

    def bad(where: str, what: str) -> LoadableError:
        return LoadableError(f"{source}: {where}: {what}; recompile the segment")

    for where, names in (("inputs", loadable.inputs), ("outputs", loadable.outputs)):
        for name in names:
            if name not in loadable.tensors:
                raise bad(where, f"tensor {name!r} is not described")
    for name, t in loadable.tensors.items():
        where = f"tensor {name!r}"
        _check_shape(t.shape, f"{source}: {where} shape")
        if t.dtype not in TENSOR_DTYPES:
            raise bad(f"{where} dtype", f"{t.dtype!r} is not one of {', '.join(TENSOR_DTYPES)}")
        if t.dtype == "int8" or t.scale is not None:
            if not _is_number(t.scale) or not 0 < t.scale < math.inf:  # type: ignore[operator]
                raise bad(f"{where} scale", f"{t.scale!r} is not a positive number")
    for op in loadable.ops:
        where = f"engine op {op.name!r}"
        if op.engine not in ENGINES:
            raise bad(f"{where} engine", f"{op.engine!r} is not one of {', '.join(ENGINES)}")
        for name in [*op.inputs, *op.outputs]:
            if name not in loadable.tensors:
                raise bad(where, f"tensor {name!r} is not described")
        if not isinstance(op.blobs, dict) or not isinstance(op.params, dict):
            raise bad(where, "'blobs' and 'params' must be objects")
        for role, blob in op.blobs.items():
            if blob not in loadable.blobs:
                raise bad(f"{where} blobs.{role}", f"blob {blob!r} is not in the loadable")
        _check_params(op.params, f"{where} params", bad)
        if isinstance(op.params.get("pool"), dict):
            _check_params(op.params["pool"], f"{where} params.pool", bad)


def _check_params(params: dict[str, Any], where: str, bad: Any) -> None:
    for key, (length, least) in _GEOMETRY.items():
        value = params.get(key)
        if value is None:
            continue
        if (
            not isinstance(value, list)
            or len(value) != length
            or not all(_is_int(v) and v >= least for v in value)
        ):
            kind = "positive" if least else "non-negative"
            raise bad(f"{where}.{key}", f"{value!r} is not {length} {kind} integers")
    for key in _POSITIVE_PARAMS:
        if key in params and not (_is_int(params[key]) and params[key] > 0):
            raise bad(f"{where}.{key}", f"{params[key]!r} is not a positive integer")


def _check_shape(shape: Any, where: str) -> None:
    if (
        not isinstance(shape, list)
        or len(shape) > 8
        or not all(_is_int(d) and d >= 0 for d in shape)
    ):
        raise LoadableError(f"{where}: {shape!r} is not a list of sizes; recompile the segment")
    if math.prod(shape) > MAX_ELEMENTS:
        raise LoadableError(
            f"{where}: {shape} has more than {MAX_ELEMENTS} elements; recompile the segment"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
