"""The plan file: one target, a self-describing JSON header, 64-byte-aligned blobs, a checksum.

Layout (all integers little-endian)::

    0   8   magic            b"\\x89TDM\\r\\n\\x1a\\n"  (catches text-mode transfers, like PNG's)
    8   4   format version   u32
    12  4   reserved         u32, 0
    16  8   header length    u64, bytes of UTF-8 JSON at offset 64
    24  8   file length      u64, so truncation is named as such, not as a bad checksum
    32  32  SHA-256          over bytes [0, 32) and [64, file length)
    64  .   header JSON, zero-padded to a multiple of 64
    .   .   blobs, each starting on a 64-byte boundary (offsets in the header are relative to
            the first byte after the padded header, so the header never depends on its own length)

The header's fields are typed records (``devices/plan_header.py``), checked whenever a plan is
encoded or decoded. Loading never executes code: the header is JSON, weights are raw
little-endian arrays whose dtype and shape live in the header, cubins and DLA loadables are
opaque bytes. ``read_plan`` memory-maps the file; blobs are read-only ``memoryview`` slices of
the map.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.hardware import TargetSpec
from devices.io import write_atomic
from devices.plan_header import (
    BLOB_DTYPES,
    HeaderFieldError,
    PlanHeader,
    SegmentRecord,
    decode_header,
)
from partitioner.errors import TandemError
from partitioner.ir import Graph
from partitioner.serialize import graph_from_data

MAGIC = b"\x89TDM\r\n\x1a\n"
FORMAT_VERSION = 1
ALIGN = 64
_PRELUDE = struct.Struct("<8sIIQQ32s")  # magic, version, reserved, header len, file len, sha256
PRELUDE_SIZE = 64
_HEADER_LIMIT = 64 << 20  # a header is metadata; 64 MiB of JSON means a corrupt length field


class PlanError(TandemError):
    """A plan file is unreadable, corrupt, or made for another target / version."""


@dataclass
class Blob:
    """One named blob: raw bytes plus what they are.

    ``kind`` is free text the consumers agree on (``"weights"``, ``"cubin"``, ``"dla-loadable"``,
    ``"onnx"``, ``"timing-cache"``); ``dtype``/``shape`` are set for arrays only.
    """

    data: bytes | memoryview
    kind: str = "bytes"
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    @classmethod
    def from_array(cls, array: np.ndarray, kind: str = "weights") -> Blob:
        dtype = np.dtype(array.dtype)
        if dtype.name not in BLOB_DTYPES:
            raise PlanError(
                f"cannot store a {dtype.name} array in a plan; use one of {BLOB_DTYPES}"
            )
        little = np.ascontiguousarray(array, dtype=dtype.newbyteorder("<"))
        return cls(little.tobytes(), kind, dtype.name, tuple(int(d) for d in array.shape))

    def array(self) -> np.ndarray:
        """The blob as a read-only numpy array (no copy when the plan is memory-mapped)."""
        if self.dtype is None or self.shape is None:
            raise PlanError(f"blob of kind {self.kind!r} is not an array (no dtype/shape)")
        dtype = np.dtype(self.dtype).newbyteorder("<")
        count = math.prod(self.shape)
        if count * dtype.itemsize != len(self.data):
            raise PlanError(
                f"blob holds {len(self.data)} bytes but dtype {self.dtype} shape "
                f"{list(self.shape)} needs {count * dtype.itemsize}; the plan is corrupt"
            )
        out = np.frombuffer(self.data, dtype=dtype, count=count).reshape(self.shape)
        out.flags.writeable = False
        return out


@dataclass
class Plan:
    """A plan in memory: the header (JSON-able dict) and its named blobs.

    ``header["blobs"]`` is the blob table and is (re)written by :func:`write_plan` from
    ``blobs``; everything else in the header belongs to the builder and the runtime.
    """

    header: dict[str, Any]
    blobs: dict[str, Blob] = field(default_factory=dict)
    path: Path | None = None
    #: the typed header, set when the plan was read or last encoded (see :attr:`record`)
    _record: PlanHeader | None = field(default=None, repr=False, compare=False)

    @property
    def record(self) -> PlanHeader:
        """The header as typed records: what every consumer reads. Decoded when the plan was
        read or last encoded, else on first use (a plan built in memory); code that edits
        ``header`` after that encodes the plan (or calls :meth:`edited`) before reading it."""
        if self._record is None:
            where = str(self.path or "<plan in memory>")
            self._record = checked_header(_full_header(self), where, "rebuild the plan")
        return self._record

    def edited(self) -> None:
        """``header`` changed: decode it again on the next read of :attr:`record`."""
        self._record = None

    @property
    def target(self) -> str:
        return self.record.target

    def add_array(self, name: str, array: np.ndarray, kind: str = "weights") -> None:
        self.blobs[name] = Blob.from_array(array, kind)

    def add_bytes(self, name: str, data: bytes, kind: str) -> None:
        self.blobs[name] = Blob(bytes(data), kind)

    def array(self, name: str) -> np.ndarray:
        return self.blob(name).array()

    def blob(self, name: str) -> Blob:
        try:
            return self.blobs[name]
        except KeyError:
            where = f" in {self.path}" if self.path else ""
            raise PlanError(f"plan{where} has no blob named {name!r}") from None

    def segment_graph(self, rec: SegmentRecord) -> Graph:
        """The graph of segment ``rec`` (one of ``record.segments``), its weights read from
        this plan's blobs."""
        arrays = {t.array: self.array(t.array) for t in rec.graph.tensors if t.array}
        for node in rec.graph.nodes:
            for attr in node.attrs.values():
                if attr.array is not None:
                    arrays[attr.array] = self.array(attr.array)
        # the IR is built from the stored JSON (``partitioner.serialize``'s format), which the
        # typed record mirrors field for field
        index = [s.name for s in self.record.segments].index(rec.name)
        return graph_from_data(self.header["segments"][index]["graph"], arrays)


def tandem_version() -> str:
    """This installation's version, read without importing the ``tandem`` package (layering)."""
    try:
        return importlib.metadata.version("tandem-rt")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def compat_key(version: str) -> tuple[int, ...]:
    """Versions with equal keys read each other's plans: the major, or (0, minor) before 1.0."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece else ""
        if not digits or digits != piece[: len(digits)]:
            break
        parts.append(int(digits))
    if not parts:
        raise PlanError(
            f"plan header has an unreadable tandem_version {version!r}; rebuild the plan"
        )
    return (parts[0],) if parts[0] > 0 else tuple(parts[:2])


def new_header(target: str, precision: str, **extra: Any) -> dict[str, Any]:
    """A header with every required key present (empty where the caller fills it later)."""
    header: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "tandem_version": tandem_version(),
        "target": target,
        "precision": precision,
        "segments": [],
        "inputs": [],
        "outputs": [],
        "profiles": [],
        "capability": [],
        "metadata": {},
        "blobs": {},
    }
    header.update(extra)
    return header


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _checksum(prelude_head: bytes, body: Any) -> bytes:
    digest = hashlib.sha256(prelude_head)
    digest.update(body)
    return digest.digest()


def _full_header(plan: Plan) -> dict[str, Any]:
    """The header as encoded: ``plan.header`` with the versions defaulted and the blob table
    written from ``plan.blobs``."""
    header = dict(plan.header)
    header.setdefault("format_version", FORMAT_VERSION)
    header.setdefault("tandem_version", tandem_version())
    table: dict[str, dict[str, Any]] = {}
    offset = 0
    for name, blob in plan.blobs.items():
        entry: dict[str, Any] = {"offset": offset, "size": len(blob.data), "kind": blob.kind}
        if blob.dtype is not None:
            entry["dtype"] = blob.dtype
            entry["shape"] = list(blob.shape or ())
        table[name] = entry
        offset = _align(offset + len(blob.data))
    header["blobs"] = table
    return header


def encode_plan(plan: Plan) -> bytes:
    """The plan's bytes as :func:`write_plan` stores them."""
    header = _full_header(plan)
    plan._record = checked_header(header, "<plan being written>", "the plan was not written")
    try:
        text = json.dumps(header, sort_keys=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as err:
        raise PlanError(f"plan header is not JSON-serialisable: {err}") from None
    head = text.encode("utf-8")
    parts = [head, b"\0" * (_align(PRELUDE_SIZE + len(head)) - PRELUDE_SIZE - len(head))]
    for blob in plan.blobs.values():
        parts.append(bytes(blob.data))
        parts.append(b"\0" * (_align(len(blob.data)) - len(blob.data)))
    body = b"".join(parts)
    total = PRELUDE_SIZE + len(body)
    head32 = _PRELUDE.pack(MAGIC, FORMAT_VERSION, 0, len(head), total, b"\0" * 32)[:32]
    digest = _checksum(head32, body)
    return head32 + digest + body


def write_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write atomically and durably: a temp file beside ``path``, fsync, rename, fsync the
    folder. An interrupted write leaves at most a ``.<name>.*.tmp`` file, never ``path``."""
    final = write_atomic(path, encode_plan(plan), error=PlanError, durable=True)
    plan.path = final
    return final


def read_plan(
    path: str | os.PathLike[str],
    *,
    expect_target: str | None = None,
    verify: bool = True,
) -> Plan:
    """Read and check a plan; refuse anything this Tandem must not run, saying why and what to do.

    ``expect_target``: the target this machine/board is; a plan for another one is refused.
    ``verify=False`` skips the SHA-256 (a quick ``inspect`` of a huge plan); sizes are still
    checked.
    """
    where = str(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise PlanError(f"{where} is empty (0 bytes), not a Tandem plan; rebuild it")
            data: Any = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise PlanError(f"plan file {where} does not exist") from None
    except IsADirectoryError:
        raise PlanError(f"{where} is a directory, not a plan file") from None
    except OSError as err:
        raise PlanError(f"cannot read plan {where}: {err.strerror or err}") from None
    plan = decode_plan(memoryview(data), where=where, expect_target=expect_target, verify=verify)
    plan.path = Path(path)
    return plan


def decode_plan(
    data: bytes | memoryview,
    *,
    where: str = "<plan>",
    expect_target: str | None = None,
    verify: bool = True,
) -> Plan:
    """Parse plan bytes (see :func:`read_plan`)."""
    view = memoryview(data)
    if len(view) < PRELUDE_SIZE:
        if bytes(view[: len(MAGIC)]) != MAGIC[: len(view)]:
            raise PlanError(f"{where} is not a Tandem plan (wrong magic bytes)")
        raise PlanError(
            f"{where} is truncated ({len(view)} bytes, less than the 64-byte prelude); "
            "the copy or build was interrupted: rebuild or copy it again"
        )
    magic, version, _reserved, head_len, file_len, digest = _PRELUDE.unpack_from(view, 0)
    if magic != MAGIC:
        raise PlanError(
            f"{where} is not a Tandem plan (wrong magic bytes {bytes(magic)!r}); "
            "build one with `tandem build MODEL.onnx --target T -o OUT.plan`"
        )
    if version != FORMAT_VERSION:
        raise PlanError(
            f"{where} has plan format version {version}, this Tandem reads version "
            f"{FORMAT_VERSION}; rebuild the plan with this Tandem (`tandem build`) "
            "or run it with the Tandem that built it"
        )
    if len(view) < file_len:
        raise PlanError(
            f"{where} is truncated: {len(view)} of {file_len} bytes; the copy or build was "
            "interrupted: copy or build it again"
        )
    if len(view) > file_len:
        raise PlanError(
            f"{where} has {len(view) - file_len} bytes after the end of the plan "
            f"({file_len} bytes); the file is corrupt: copy or build it again"
        )
    body_start = _align(PRELUDE_SIZE + head_len)
    if head_len > _HEADER_LIMIT or body_start > file_len:
        raise PlanError(f"{where} has a corrupt header length ({head_len}); rebuild the plan")
    if verify and _checksum(bytes(view[:32]), view[PRELUDE_SIZE:file_len]) != digest:
        raise PlanError(
            f"{where} fails its SHA-256 checksum (the file was modified or damaged in transit); "
            "copy or build it again"
        )
    try:
        header = json.loads(bytes(view[PRELUDE_SIZE : PRELUDE_SIZE + head_len]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise PlanError(
            f"{where} has an unreadable header ({type(err).__name__}); rebuild it"
        ) from None
    record = checked_header(header, where, "rebuild the plan")
    if record.format_version != version:
        raise PlanError(
            f"{where}: header format_version {record.format_version} disagrees with the "
            f"prelude's {version}; the file is corrupt: rebuild it"
        )
    ours = tandem_version()
    if compat_key(record.tandem_version) != compat_key(ours):
        raise PlanError(
            f"{where} was built by Tandem {record.tandem_version}, this is Tandem {ours} "
            "(another major version); rebuild the plan with this Tandem"
        )
    if expect_target is not None and record.target != expect_target:
        raise PlanError(
            f"{where} was built for target {record.target!r}, not {expect_target!r}; "
            f"rebuild it with `tandem build MODEL.onnx --target {expect_target}`"
        )
    blobs = {}
    body = view[body_start:file_len]
    for name, entry in record.blobs.items():
        offset, size = entry.offset, entry.size
        if offset % ALIGN or offset + size > len(body):
            raise PlanError(
                f"{where}: blob {name!r} (offset {offset}, {size} bytes) lies outside the "
                f"{len(body)}-byte blob area or is misaligned; the plan is corrupt: rebuild it"
            )
        shape = tuple(entry.shape) if entry.shape is not None else None
        blob = Blob(body[offset : offset + size], entry.kind, entry.dtype, shape)
        if blob.dtype is not None:
            try:
                blob.array()  # checks that the size matches dtype x shape
            except PlanError as err:
                raise PlanError(f"{where}: blob {name!r}: {err}; rebuild it") from None
        blobs[name] = blob
    return Plan(header=header, blobs=blobs, _record=record)


def check_devices(plan: Plan, target: TargetSpec, where: str | None = None) -> None:
    """Refuse (one line) a plan with a segment on a DLA core ``target`` lacks: a 3-stage
    pipeline's ``dla1`` stage on a board with one DLA core (or a DLA segment without a DLA)."""
    cores = target.dla_devices
    missing = [core for core in plan.record.dla_cores if core not in cores]
    if missing:
        seg = next(s for s in plan.record.segments if s.device == missing[0])
        has = f"{len(cores)} DLA core(s) ({', '.join(cores)})" if cores else "no DLA"
        raise PlanError(
            f"{where or plan.path or 'the plan'}: segment {seg.name!r} runs on {seg.device} "
            f"but target {target.name!r} has {has}; plan it for this target "
            f"(`tandem build` / `tandem plan-group` --target {target.name})"
        )


def checked_header(header: Any, where: str, advice: str) -> PlanHeader:
    """The header as typed records, or a one-line PlanError naming the file and the field."""
    if not isinstance(header, dict):
        raise PlanError(f"{where}: the plan header is not a JSON object; {advice}")
    try:
        return decode_header(header)
    except HeaderFieldError as err:
        raise PlanError(f"{where}: {err}; {advice}") from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a whole file (what ``sha256sum`` prints), used to compare deployed copies."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as err:
        raise PlanError(f"cannot read {path}: {err.strerror or err}") from None
    return digest.hexdigest()
