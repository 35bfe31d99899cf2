"""Mutations of an ``.npz`` of model inputs, at the zip level and the ``.npy`` header level.

The seed holds one member, ``input.npy`` (float32 ``[1, 3, 32, 32]``). Mutants: other files
named ``.npz``, zip members with hostile flags or methods, ``.npy`` headers declaring huge or
pickled arrays (whose payload would create ``CANARY``), wrong dtypes, shapes and names, and an
unused member that inflates to gigabytes.
"""

from __future__ import annotations

import functools
import io
import os
import pickle
import random
import struct
import warnings
import zipfile
from pathlib import Path

import numpy as np

SHAPE = (1, 3, 32, 32)


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npy_header(header: str, payload: bytes = b"", version: tuple[int, int] = (1, 0)) -> bytes:
    """An ``.npy`` with a header written by hand (numpy's writer refuses hostile ones)."""
    text = header.encode("latin-1")
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack("<H", len(text)) + text + payload


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", method) as zf:
        warnings.simplefilter("ignore")  # duplicate names are the point of one mutation
        for name, data in members:
            zf.writestr(name, data)
    return buf.getvalue()


def _patch_headers(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    """Set a field in every local (PK\\3\\4) and central (PK\\1\\2) header: ``offset`` is its
    position in the local header; the central one sits 2 bytes later."""
    buf = bytearray(data)
    for sig, extra in ((b"PK\x03\x04", 0), (b"PK\x01\x02", 2)):
        pos = buf.find(sig)
        while pos >= 0:
            struct.pack_into(fmt, buf, pos + offset + extra, value)
            pos = buf.find(sig, pos + 4)
    return bytes(buf)


class _RunsCode:
    """Pickles to ``os.system('touch CANARY')``: loading it must never happen."""

    def __reduce__(self) -> tuple:
        return (os.system, ("touch CANARY",))


@functools.cache
def _inflating_zip(good: bytes, gib: int = 2) -> bytes:
    """A valid input beside an unused deflated member of ``gib`` GiB of zeros (a few MB on
    disk); built once per process, as compressing it takes seconds."""
    count = (gib << 30) // 8
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("input.npy", good)
        with zf.open("unused.npy", "w", force_zip64=True) as member:
            shape = f"{{'descr': '<f8', 'fortran_order': False, 'shape': ({count},), }}"
            member.write(_npy_header(shape))
            chunk = b"\0" * (16 << 20)
            for _ in range(count * 8 // len(chunk)):
                member.write(chunk)
    return buf.getvalue()


def not_a_zip(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    which = rng.choice(["empty", "raw", "npy", "text"])
    data = {
        "empty": b"",
        "raw": bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096))),
        "npy": _npy(seed),
        "text": b"input: [1, 2, 3]\n",
    }[which]
    return f"file-{which}", data


def zip_flags(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    data = _zip([("input.npy", _npy(seed))], zipfile.ZIP_DEFLATED)
    which = rng.choice(["encrypted", "method-99", "method-lzma", "method-zstd", "bad-crc"])
    if which == "encrypted":
        return "zip-encrypted", _patch_headers(data, 6, "<H", 1)
    if which == "bad-crc":
        return "zip-bad-crc", _patch_headers(data, 14, "<I", 0xDEADBEEF)
    method = {"method-99": 99, "method-lzma": 14, "method-zstd": 93}[which]
    return f"zip-{which}", _patch_headers(data, 8, "<H", method)


def zip_structure(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    good = _npy(seed)
    which = rng.choice(["truncated", "duplicate", "directory", "no-members", "traversal"])
    if which == "truncated":
        data = _zip([("input.npy", good)])
        return "zip-truncated", data[: rng.randrange(len(data))]
    members = {
        "duplicate": [("input.npy", good), ("input.npy", _npy(seed[..., :2]))],
        "directory": [("input.npy/", b"")],
        "no-members": [],
        "traversal": [("../../input.npy", good), ("/abs/input.npy", good)],
    }[which]
    return f"zip-{which}", _zip(members)


NPY_HEADERS = ["huge-shape", "negative-shape", "object", "bad-magic", "version-3", "header-len",
               "not-a-dict", "fortran", "big-endian", "short-data"]  # fmt: skip


def npy_header(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    which = rng.choice(NPY_HEADERS)
    descr, shape, payload = "<f4", SHAPE, seed.tobytes()
    if which == "huge-shape":
        shape = rng.choice([(10**12,), (1, 3, 10**6, 10**6), (2**62, 2)])
    elif which == "negative-shape":
        shape = (1, 3, -32, 32)
    elif which == "object":
        descr, shape, payload = "|O", (1,), pickle.dumps(np.array([_RunsCode()], dtype=object))
    elif which == "short-data":
        payload = payload[:100]
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    if which == "fortran":
        header = header.replace("False", "True")
    elif which == "big-endian":
        header, payload = header.replace("<f4", ">f4"), seed.astype(">f4").tobytes()
    elif which == "not-a-dict":
        header = "__import__('os').system('touch CANARY')"
    member = _npy_header(header, payload, (3, 0) if which == "version-3" else (1, 0))
    if which == "bad-magic":
        member = b"\x93NUMPZ" + member[6:]
    elif which == "header-len":
        member = member[:8] + struct.pack("<H", 65535) + member[10:]
    return f"npy-{which}", _zip([("input.npy", member)])


CONTENTS = ["nan-inf", "int8", "float64", "rank", "scalar", "missing", "extra-keys",
            "unicode-name", "bool", "complex", "strings"]  # fmt: skip


def array_content(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    which = rng.choice(CONTENTS)
    arrays = {
        "nan-inf": {"input": np.resize(np.array([np.nan, np.inf, -np.inf], np.float32), SHAPE)},
        "int8": {"input": seed.astype(np.int8)},
        "float64": {"input": seed.astype(np.float64)},
        "rank": {"input": seed.reshape(3, 32, 32)},
        "scalar": {"input": np.float32(1)},
        "missing": {"other": seed},
        "extra-keys": {"input": seed, **{f"x{i}": seed[:, :1, :1, :1] for i in range(2000)}},
        "unicode-name": {"input": seed, "\ud800x": seed},
        "bool": {"input": seed > 0},
        "complex": {"input": seed.astype(np.complex64)},
        "strings": {"input": np.array(["a", "b"])},
    }[which]
    members = [(f"{k}.npy", _npy(np.asarray(v))) for k, v in arrays.items()]
    members = [(n.encode("utf-8", "surrogatepass").decode("latin-1"), d) for n, d in members]
    return f"array-{which}", _zip(members)


def inflating(rng: random.Random, seed: np.ndarray) -> tuple[str, bytes]:
    """An unused 2 GiB member beside a valid input: only what is used may be inflated."""
    return "zip-inflating-unused", _inflating_zip(_npy(seed))


MUTATIONS = [not_a_zip, npy_header, zip_flags, inflating, array_content, zip_structure, npy_header]


def mutate(rng: random.Random, seed: bytes, case_dir: Path, index: int) -> tuple[str, bytes]:
    with np.load(io.BytesIO(seed)) as data:
        array = data["input"]
    return MUTATIONS[index % len(MUTATIONS)](rng, array)
