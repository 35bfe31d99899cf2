"""Model files for tests: zoo models and real ONNX exports by torch / Paddle, built per session.

Every test that needs a model gets it from here, never from a download:

- ``zoo_model_path(name, batch=1, resolution=None)`` writes a zoo model (small default
  resolutions, see ``TEST_RESOLUTION``) into a cache folder and returns its path; the same
  request returns the same file.
- ``exported_model_path(name)`` returns a model exported by ``torch.onnx.export``
  (``tests/fixtures/export_torch_models.py``) or by paddle2onnx
  (``tests/fixtures/export_paddle_models.py``, in its own venv), each script run once per
  session in a subprocess so neither framework loads into the test process. Without the
  exporter it calls ``pytest.skip`` with the reason.
- ``conformance_model_path(source, name, names)`` returns a conformance model
  (``tests/conformance/export_<source>.py``, run under its exporter's venv by
  ``bench/conformance.py``): the first request exports every model in ``names`` in one
  subprocess, later ones find the files. Without the script or its venv it skips with the
  reason; a model its exporter failed on fails the test with the exporter's message.
- ``MODEL_CASES`` / ``model_params()`` list every zoo and exported model as one table, so a
  backend-vs-ONNX-Runtime comparison is a single parametrized test::

      @pytest.mark.parametrize("case", model_params())
      def test_matches_ort(case, model_file):
          path = model_file(case)
          feeds = random_inputs(path)
          expected = ort_run(path, feeds)

The cache folder is pytest's session temp dir when the ``model_file`` / ``zoo_model`` fixtures
(tests/conftest.py) are used, else ``$TANDEM_TEST_MODEL_CACHE``, else a temp dir per process.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from tandem.commands.zoo import write_model_atomic
from tandem.zoo import ZOO_MODELS, build_model

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).resolve().parent.parent

# Small resolutions that keep every zoo model fast in tests, each valid for its model.
TEST_RESOLUTION: dict[str, int] = {name: spec.test_resolution for name, spec in ZOO_MODELS.items()}


@dataclass(frozen=True)
class Exporter:
    """Another tool's ONNX exporter: the script that drives it, the interpreter that runs it,
    and the models it writes (names only, so collecting tests never imports torch or paddle;
    tests check that each script's ``--list`` agrees)."""

    source: str
    script: Path
    python: str | None  # None: not available here
    missing: str  # why it is not available (the skip reason)
    models: tuple[str, ...]

    @property
    def reason(self) -> str | None:
        return None if self.python else self.missing


def _paddle_python() -> str | None:
    env = os.environ.get("TANDEM_PADDLE_PYTHON")
    if env:
        return env
    venv = ROOT / ".venv-paddle" / "bin" / "python"
    return str(venv) if venv.exists() else None


EXPORTERS: dict[str, Exporter] = {
    "torch": Exporter(
        "torch",
        FIXTURES / "export_torch_models.py",
        sys.executable if importlib.util.find_spec("torch") is not None else None,
        "torch is not installed (pip install -e '.[real-models]' to export real models)",
        (
            "torch-resnet18",
            "torch-mobilenetv3-small",
            "torch-dbnet-lite",
            "torch-yolo-lite",
            "torch-yolo-lite-dynamic",  # batch is the symbolic dim "batch"; Shape/Gather remain
        ),
    ),
    # paddle2onnx pins onnx<=1.17, so Paddle lives in its own venv (see the script's docstring)
    "paddle": Exporter(
        "paddle",
        FIXTURES / "export_paddle_models.py",
        _paddle_python(),
        "no PaddlePaddle exporter: create .venv-paddle (make paddle-env) or set "
        "TANDEM_PADDLE_PYTHON",
        ("paddle-ocr-det-lite", "paddle-ocr-rec-lite", "paddle-ocr-rec-crnn"),
    ),
}
EXPORT_SCRIPT = EXPORTERS["torch"].script
EXPORTED_MODELS: tuple[str, ...] = EXPORTERS["torch"].models
TORCH_MISSING = EXPORTERS["torch"].reason
PADDLE_MISSING = EXPORTERS["paddle"].reason
_SOURCE_OF = {name: e.source for e in EXPORTERS.values() for name in e.models}

_lock = threading.Lock()
_default_root: Path | None = None


# ----- cache folder ----------------------------------------------------------------------------
def default_cache_root() -> Path:
    """``$TANDEM_TEST_MODEL_CACHE`` if set, else one temp folder per process (removed at exit)."""
    global _default_root
    env = os.environ.get("TANDEM_TEST_MODEL_CACHE")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    if _default_root is None:
        _default_root = Path(tempfile.mkdtemp(prefix="tandem-models-"))
        atexit.register(shutil.rmtree, _default_root, True)
    return _default_root


# ----- zoo models ------------------------------------------------------------------------------
def zoo_model_path(
    name: str,
    batch: int = 1,
    resolution: int | None = None,
    opset: int = 17,
    seed: int = 0,
    cache_dir: Path | None = None,
    **options: Any,
) -> Path:
    """A zoo model file (small test resolution by default), built once per cache folder."""
    resolution = TEST_RESOLUTION.get(name) if resolution is None else resolution
    tag = "".join(f"_{k}{v}" for k, v in sorted(options.items()))
    root = cache_dir or default_cache_root()
    path = root / f"{name}_b{batch}_r{resolution}_op{opset}_s{seed}{tag}.onnx"
    with _lock:
        if not path.exists():
            model = build_model(name, batch, resolution, seed=seed, opset=opset, **options)
            write_model_atomic(model, path)
    return path


# ----- models exported by other tools ---------------------------------------------------------
def exported_model_path(name: str, cache_dir: Path | None = None) -> Path:
    """A model written by torch's or Paddle's exporter; skips the calling test when that
    exporter is not installed. Next to it, ``NAME.npz`` holds a seeded input and the
    framework's own outputs, keyed by the ONNX input / output names."""
    if name not in _SOURCE_OF:
        raise KeyError(f"unknown exported model '{name}'; known: {', '.join(_SOURCE_OF)}")
    exporter = EXPORTERS[_SOURCE_OF[name]]
    if exporter.python is None:
        pytest.skip(exporter.missing)
    folder = (cache_dir or default_cache_root()) / exporter.source
    path = folder / f"{name}.onnx"
    with _lock:
        if not path.exists():
            export_all(exporter, folder)
    return path


def export_all(exporter: Exporter, folder: Path) -> None:
    """Run an export script once for all its models (torch: about 9 s for five models)."""
    assert exporter.python is not None
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [exporter.python, str(exporter.script), "--out", str(folder)],
        capture_output=True,
        encoding="utf-8",  # whatever the locale: the exporters' libraries print non-ASCII
        errors="replace",
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{exporter.script.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )


# ----- the conformance models (tests/conformance/) -------------------------------------------
# Exported a few at a time and deleted by their test once checked, so the suite's temp folder
# holds one chunk of models: torchvision's 33 exports alone are 2.36 GB (FP32 weights: ViT-B/16
# 346 MB, Wide ResNet-50 275 MB), and a CI box with little free disk ran out at the 29th; a chunk
# of 4 is at most 0.70 GB (measured 2026-12-01). A chunk is one exporter process: a larger one
# saves a torch import (about 5 s), a smaller one saves disk.
CONFORMANCE_CHUNK = 4
_conformance_failed: dict[Path, dict[str, str]] = {}
_conformance_tried: set[tuple[Path, str]] = set()


def _chunk_of(name: str, names: tuple[str, ...]) -> list[str]:
    start = names.index(name) // CONFORMANCE_CHUNK * CONFORMANCE_CHUNK
    return list(names[start : start + CONFORMANCE_CHUNK])


def conformance_group(source: str, name: str, names: tuple[str, ...]) -> str:
    """The pytest-xdist group of a conformance model's tests (tests/conftest.py): its chunk.
    A chunk's tests then run on one worker, in order, so its models are exported once (by the
    first test) and deleted by their last check there; with N workers the temp folder holds at
    most N chunks (2 x 0.70 GB under ``make test``)."""
    return f"conformance-{source}-{names.index(name) // CONFORMANCE_CHUNK}"


def conformance_model_path(
    source: str, name: str, names: tuple[str, ...], cache_dir: Path | None = None
) -> Path:
    """A conformance model exported by ``source``'s script (with the other models of its chunk of
    ``names``, once per cache folder); ``NAME.npz`` and ``NAME.json`` lie beside it."""
    from bench.conformance import SOURCES, export

    exporter = SOURCES[source]
    missing = exporter.missing()
    if missing:
        pytest.skip(missing)
    folder = (cache_dir or default_cache_root()) / "conformance" / source
    with _lock:
        if (folder, name) not in _conformance_tried:
            chunk = _chunk_of(name, names)
            _conformance_tried.update((folder, n) for n in chunk)
            _conformance_failed.setdefault(folder, {}).update(export(exporter, folder, chunk))
        elif name not in _conformance_failed[folder] and not (folder / f"{name}.onnx").exists():
            # released after its conformance checks (release_conformance_model) and asked for
            # again by another test (e.g. the GPU lowering's exported-model tests): export it alone
            _conformance_failed[folder].update(export(exporter, folder, [name]))
    failed = _conformance_failed[folder].get(name)
    if failed:
        pytest.fail(f"{name}: {failed}", pytrace=False)
    return folder / f"{name}.onnx"


def release_conformance_model(path: Path) -> None:
    """Delete an exported model's files (NAME.onnx and the .npz/.json/external data beside it)."""
    for file in path.parent.glob(f"{path.stem}.*"):
        file.unlink(missing_ok=True)


# ----- one table of every model ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelCase:
    """One model a test can ask for: a zoo model (with its options) or another tool's export."""

    name: str
    source: str = "zoo"  # "zoo" | "torch" | "paddle"
    batch: int = 1
    resolution: int | None = None
    opset: int = 17
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        if self.source != "zoo":
            return self.name
        extra = "".join(f"-{k}{v}" for k, v in sorted(self.options.items()))
        opset = "" if self.opset == 17 else f"-op{self.opset}"
        batch = "" if self.batch == 1 else f"-b{self.batch}"
        return f"{self.name}{batch}{opset}{extra}"

    def path(self, cache_dir: Path | None = None) -> Path:
        if self.source != "zoo":
            return exported_model_path(self.name, cache_dir)
        return zoo_model_path(
            self.name, self.batch, self.resolution, self.opset, cache_dir=cache_dir, **self.options
        )

    def __hash__(self) -> int:  # options is a dict; the id is the identity
        return hash(self.id)


ZOO_CASES: list[ModelCase] = [
    ModelCase(name, options={"depth": 4} if name == "vit-tiny" else {}) for name in ZOO_MODELS
]
EXPORTED_CASES: list[ModelCase] = [
    ModelCase(name, source=e.source) for e in EXPORTERS.values() for name in e.models
]
MODEL_CASES: list[ModelCase] = ZOO_CASES + EXPORTED_CASES


def model_params(cases: list[ModelCase] | None = None) -> list[Any]:
    """``pytest.param`` per case with a readable id; exports skip without their exporter."""
    params = []
    for case in MODEL_CASES if cases is None else cases:
        marks = []
        reason = EXPORTERS[case.source].reason if case.source in EXPORTERS else None
        if reason:
            marks.append(pytest.mark.skip(reason=reason))
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


# ----- inputs and the ONNX Runtime oracle ------------------------------------------------------
_NP_TYPES = {
    onnx.TensorProto.FLOAT: np.float32,
    onnx.TensorProto.FLOAT16: np.float16,
    onnx.TensorProto.INT64: np.int64,
    onnx.TensorProto.INT32: np.int32,
}


def input_specs(path: Path, symbolic: int = 1) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Input name -> (shape, numpy dtype); symbolic dimensions become ``symbolic``."""
    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}
    specs = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else symbolic for d in tt.shape.dim)
        specs[vi.name] = (shape, _NP_TYPES[tt.elem_type])
    return specs


def random_inputs(path: Path, seed: int = 0, symbolic: int = 1) -> dict[str, np.ndarray]:
    """Seeded standard-normal feeds for every graph input (symbolic dims set to ``symbolic``)."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.standard_normal(shape).astype(dtype)
        for name, (shape, dtype) in input_specs(path, symbolic).items()
    }


def ort_reference(
    model: onnx.ModelProto, tmp_path: Path
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random feeds for ``model`` and ONNX Runtime's outputs for them. The model is saved as
    ``tmp_path``/model.onnx at IR version 8: onnx writes newer IR versions than the GPU
    machine's onnxruntime reads (13 at most)."""
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    feeds = random_inputs(path)
    return feeds, ort_run(path, feeds)


def ort_run(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of ONNX Runtime (CPU, all graph optimisations off: the plainest reference)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def max_rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|a - b| / max|b|``, the acceptance metric of issue 2 (0 when both are all zero)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    return diff / scale if scale > 0 else diff
