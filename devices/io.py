"""Input data for runs and comparisons: seeded random feeds, ``.npz`` files, ONNX Runtime.

Kept apart from the commands so the CLI, the Python API and the tests share one definition of
"the inputs a model gets".
"""

from __future__ import annotations

import io
import lzma
import math
import os
import struct
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from partitioner import files
from partitioner.bindings import declared, unbound_hint
from partitioner.errors import InputError, ModelError, TandemError
from partitioner.ir import Graph, Tensor


def parse_dims(items: list[str] | None) -> dict[str, int]:
    """``["batch=1", "height=224"]`` -> ``{"batch": 1, "height": 224}``."""
    dims: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value.isdigit() or int(value) < 1:
            raise InputError(f"--dim '{item}': expected NAME=POSITIVE_INT, e.g. batch=1")
        dims[name] = int(value)
    return dims


def random_inputs(
    graph: Graph, seed: int = 0, low: float = -1.0, high: float = 1.0
) -> dict[str, np.ndarray]:
    """Seeded random data for every graph input; integer inputs get small non-negative values."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for t in graph.inputs:
        shape = _static_input_shape(t)
        dtype = np.dtype(t.dtype or "float32")
        if dtype.kind == "f":
            feeds[t.name] = rng.uniform(low, high, size=shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[t.name] = rng.integers(0, 2, size=shape).astype(dtype)
        else:
            feeds[t.name] = rng.integers(0, 4, size=shape).astype(dtype)
    return feeds


def _static_input_shape(t: Tensor) -> tuple[int, ...]:
    if t.shape is None:
        raise InputError(f"input '{t.name}' has an unknown shape; pass --inputs IN.npz")
    if not all(isinstance(d, int) for d in t.shape):
        raise InputError(
            f"input '{t.name}' has dynamic dims ({declared(t)}), so random data has no shape; "
            f"{unbound_hint([t], profiles=False)}, or pass --inputs IN.npz"
        )
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]


#: the most bytes one input may take from an ``.npz`` when the model leaves its size open
#: (symbolic dims); a static input is bounded by its own shape
NPZ_MEMBER_LIMIT = 1 << 30
#: how the members of an ``.npz`` may be compressed (numpy writes the first two)
_COMPRESSIONS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
    zipfile.ZIP_LZMA: "lzma",
}
_NPY_MAGIC = b"\x93NUMPY"


def load_feeds(
    graph: Graph, path: str | os.PathLike[str], *, max_bytes: int = NPZ_MEMBER_LIMIT
) -> dict[str, np.ndarray]:
    """The graph's inputs from an ``.npz`` file, in input order; other members are never read.

    Each member is read through ``zipfile`` on its own: its ``.npy`` header is parsed first and
    its dtype (numbers only: no pickled objects), shape and size are checked against the model
    input and ``max_bytes`` before anything is allocated. Errors name the file and member."""
    source = str(path)
    with _open_npz(Path(path)) as archive:
        members = {}
        for info in archive.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            members[key] = info  # numpy.load's naming: "x.npy" holds the array "x"
        feeds = {}
        for t in graph.inputs:
            member = members.get(t.name)
            if member is None:
                have = ", ".join(sorted(members)) or "nothing"
                raise InputError(f"{source}: missing input '{t.name}' (it has: {have})")
            feeds[t.name] = _read_member(archive, member, t, source, max_bytes)
    return feeds


def _open_npz(p: Path) -> zipfile.ZipFile:
    try:
        with open(p, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
    except FileNotFoundError:
        raise InputError(f"{p}: no such input file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, expected an .npz file") from None
    except OSError as err:
        raise InputError(f"{p}: cannot read: {err.strerror or err}") from None
    if not head:
        raise InputError(f"{p}: is empty, expected an .npz file (numpy.savez writes one)")
    if head == _NPY_MAGIC:
        raise InputError(
            f"{p}: a single .npy array, not an .npz archive; write the inputs with "
            "numpy.savez(PATH, INPUT_NAME=array)"
        )
    try:
        return zipfile.ZipFile(p)
    except (OSError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
            struct.error, NotImplementedError) as err:  # fmt: skip
        raise InputError(
            f"{p}: not an .npz file ({err}); write the inputs with numpy.savez"
        ) from None


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, t: Tensor, source: str, max_bytes: int
) -> np.ndarray:
    where = f"{source}: member '{info.filename}'"
    if info.flag_bits & 0x1:
        raise InputError(f"{where} is encrypted; write the inputs with numpy.savez (no password)")
    if info.compress_type not in _COMPRESSIONS:
        raise InputError(
            f"{where} uses zip compression method {info.compress_type}; expected one of "
            f"{', '.join(_COMPRESSIONS.values())} (numpy.savez / savez_compressed)"
        )
    try:
        with archive.open(info) as f:
            shape, fortran, dtype = _npy_header(f, where)
            _check_member(t, shape, dtype, source, where, max_bytes)
            array = np.empty(math.prod(shape), dtype=dtype)
            view = array.view(np.uint8)
            got = 0
            while got < view.size:  # in chunks: the bytes are never held twice
                chunk = f.read(min(view.size - got, 1 << 20))
                if not chunk:
                    raise InputError(
                        f"{where} is truncated: {got} of {view.size} bytes of array data"
                    )
                view[got : got + len(chunk)] = np.frombuffer(chunk, np.uint8)
                got += len(chunk)
    except InputError:
        raise
    except (OSError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile, zlib.error,
            lzma.LZMAError, NotImplementedError) as err:  # fmt: skip
        raise InputError(f"{where} is unreadable ({type(err).__name__}: {err})") from None
    return array.reshape(shape, order="F" if fortran else "C")


def _npy_header(f: Any, where: str) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, fortran order, dtype) from an ``.npy`` stream, without reading its data."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f)
        else:
            raise InputError(f"{where}: .npy format version {version} is not supported")
    except (ValueError, EOFError, SyntaxError, TypeError) as err:
        raise InputError(f"{where} is not a .npy array ({err})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(
            f"{where} holds dtype {dtype}; inputs are arrays of numbers (no pickled objects)"
        )
    if any(d < 0 for d in shape):
        raise InputError(f"{where} has a negative dimension in shape {list(shape)}")
    return tuple(shape), bool(fortran), dtype


def _check_member(
    t: Tensor,
    shape: tuple[int, ...],
    dtype: np.dtype[Any],
    source: str,
    where: str,
    max_bytes: int,
) -> None:
    """The member fits input ``t`` (dtype; shape, where symbolic dims match anything) and
    ``max_bytes`` -- checked from its header alone."""
    if t.dtype and dtype != np.dtype(t.dtype):
        raise InputError(f"{source}: input '{t.name}' has dtype {dtype}, expected {t.dtype}")
    if t.shape is not None and (
        len(shape) != len(t.shape)
        or any(isinstance(d, int) and d != s for d, s in zip(t.shape, shape))
    ):
        expected = "x".join(str(d) for d in t.shape)
        got = "x".join(str(s) for s in shape)
        raise InputError(f"{source}: input '{t.name}' has shape {got}, expected {expected}")
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes > max_bytes:
        raise InputError(
            f"{where} claims shape {list(shape)} ({nbytes} bytes), over the {max_bytes}-byte "
            "limit for one input"
        )


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> None:
    """Write atomically: a half-written file never carries the final name."""
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot write {p}: {err.strerror or err}") from None
    buffer = io.BytesIO()
    np.savez(buffer, **dict(arrays))
    write_atomic(p, buffer.getvalue())


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    error: type[TandemError] = InputError,
    durable: bool = False,
) -> Path:
    """:func:`partitioner.files.write_atomic`, raising :class:`InputError` by default."""
    return files.write_atomic(path, data, error=error, durable=durable)


def run_onnxruntime(
    model_path: str | os.PathLike[str], feeds: Mapping[str, np.ndarray], optimize: bool = True
) -> dict[str, np.ndarray]:
    """The oracle: ONNX Runtime on the CPU; ``optimize=False``: with its graph optimisations
    (fusions, constant folding) off, the same maths rounded in another order."""
    return _run_ort(str(model_path), feeds, str(model_path), optimize)


def run_onnxruntime_model(
    model: Any, feeds: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray]:
    """ONNX Runtime on an in-memory ``onnx.ModelProto`` (e.g. with extra outputs marked)."""
    return _run_ort(model.SerializeToString(), feeds, source)


def _run_ort(
    model: str | bytes, feeds: Mapping[str, np.ndarray], model_path: str, optimize: bool = True
) -> dict[str, np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("compare needs onnxruntime: pip install onnxruntime") from None
    # ONNX Runtime's own log lines would add to Tandem's one-line error: its errors reach the
    # caller as exceptions, so log nothing below FATAL (4), at session and at run level.
    ort.set_default_logger_severity(4)
    options = ort.SessionOptions()
    options.log_severity_level = 4
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    run_options = ort.RunOptions()
    run_options.log_severity_level = 4
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, dict(feeds), run_options)
    except Exception as err:  # ORT raises its own exception types
        raise ModelError(f"{model_path}: ONNX Runtime could not run the model: {err}") from None
    return dict(zip(names, (np.asarray(r) for r in results)))
