"""Input data for runs and comparisons: seeded random feeds, ``.npz`` files, ONNX Runtime.

Kept apart from the commands so the CLI, the Python API and the tests share one definition of
"the inputs a model gets".
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

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
    symbolic = [d for d in t.shape if not isinstance(d, int)]
    if symbolic:
        names = ", ".join(f"{d}=N" for d in symbolic if isinstance(d, str)) or "NAME=N"
        raise InputError(
            f"input '{t.name}' has symbolic dims {list(t.shape)}; fix them with --dim {names}"
        )
    return tuple(int(d) for d in t.shape)  # type: ignore[arg-type]


def load_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read an ``.npz`` without pickle; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such input file")
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise InputError(f"{p}: not a readable .npz file ({err})") from None


def load_feeds(graph: Graph, path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The graph's inputs from an ``.npz`` file, checked (names, dtypes, shapes) and in input
    order; extra arrays in the file are ignored."""
    feeds = load_npz(path)
    check_feeds(graph, feeds, str(path))
    return {t.name: feeds[t.name] for t in graph.inputs}


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
    """Write ``data`` through a temporary file beside ``path``, then rename it over ``path``:
    an interrupted write never leaves a file under the final name. ``durable`` also fsyncs the
    file and its folder (plans). A failure raises ``error("cannot write PATH: why")``."""
    final = Path(path)
    folder = final.parent if str(final.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=folder)
    except OSError as err:
        raise error(f"cannot write {final}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise error(f"cannot write {final}: {err.strerror or err}") from None
        raise
    if durable:  # the rename is durable only once the directory entry is on disk
        with contextlib.suppress(OSError):
            dir_fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    return final


def check_feeds(graph: Graph, feeds: Mapping[str, np.ndarray], source: str) -> None:
    """Every input present with the right dtype and shape (symbolic dims match anything)."""
    for t in graph.inputs:
        if t.name not in feeds:
            have = ", ".join(sorted(feeds)) or "nothing"
            raise InputError(f"{source}: missing input '{t.name}' (it has: {have})")
        arr = feeds[t.name]
        if t.dtype and arr.dtype != np.dtype(t.dtype):
            raise InputError(
                f"{source}: input '{t.name}' has dtype {arr.dtype}, expected {t.dtype}"
            )
        if t.shape is not None and (
            arr.ndim != len(t.shape)
            or any(isinstance(d, int) and d != s for d, s in zip(t.shape, arr.shape))
        ):
            expected = "x".join(str(d) for d in t.shape)
            got = "x".join(str(s) for s in arr.shape)
            raise InputError(f"{source}: input '{t.name}' has shape {got}, expected {expected}")


def run_onnxruntime(
    model_path: str | os.PathLike[str], feeds: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """The oracle: ONNX Runtime on the CPU."""
    return _run_ort(str(model_path), feeds, str(model_path))


def run_onnxruntime_model(
    model: Any, feeds: Mapping[str, np.ndarray], source: str
) -> dict[str, np.ndarray]:
    """ONNX Runtime on an in-memory ``onnx.ModelProto`` (e.g. with extra outputs marked)."""
    return _run_ort(model.SerializeToString(), feeds, source)


def _run_ort(
    model: str | bytes, feeds: Mapping[str, np.ndarray], model_path: str
) -> dict[str, np.ndarray]:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("compare needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        results = session.run(names, dict(feeds))
    except Exception as err:  # ORT raises its own exception types
        raise ModelError(f"{model_path}: ONNX Runtime could not run the model: {err}") from None
    return dict(zip(names, (np.asarray(r) for r in results)))
