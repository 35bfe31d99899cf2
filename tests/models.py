"""Model files for tests: zoo models and real ONNX files exported by torch, built once per session.

Every test that needs a model gets it from here, never from a download:

- ``zoo_model_path(name, batch=1, resolution=None)`` writes a zoo model (small default
  resolutions, see ``TEST_RESOLUTION``) into a cache folder and returns its path; the same
  request returns the same file.
- ``exported_model_path(name)`` returns a model exported by ``torch.onnx.export`` (script
  ``tests/fixtures/export_torch_models.py``, run once per session in a subprocess so torch never
  loads into the test process). Without torch it calls ``pytest.skip`` with the reason.
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
EXPORT_SCRIPT = FIXTURES / "export_torch_models.py"

# Small resolutions that keep every zoo model fast in tests, each valid for its model.
TEST_RESOLUTION: dict[str, int] = {name: spec.test_resolution for name, spec in ZOO_MODELS.items()}
# Models exported from plain torch.nn by tests/fixtures/export_torch_models.py (names only, so
# collecting tests never imports torch). The script checks that this list matches its own.
EXPORTED_MODELS: tuple[str, ...] = (
    "torch-resnet18",
    "torch-mobilenetv3-small",
    "torch-dbnet-lite",
    "torch-yolo-lite",
    "torch-yolo-lite-dynamic",  # batch is the symbolic dim "batch"; Shape/Gather chains remain
)
TORCH_MISSING = (
    None
    if importlib.util.find_spec("torch") is not None
    else "torch is not installed (pip install -e '.[real-models]' to export real models)"
)

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


# ----- models exported by torch ----------------------------------------------------------------
def exported_model_path(name: str, cache_dir: Path | None = None) -> Path:
    """A model exported by ``torch.onnx.export``; skips the calling test when torch is missing."""
    if name not in EXPORTED_MODELS:
        raise KeyError(f"unknown exported model '{name}'; known: {', '.join(EXPORTED_MODELS)}")
    if TORCH_MISSING:
        pytest.skip(TORCH_MISSING)
    folder = (cache_dir or default_cache_root()) / "torch"
    path = folder / f"{name}.onnx"
    with _lock:
        if not path.exists():
            export_all(folder)
    return path


def export_all(folder: Path) -> None:
    """Run the export script once for every model (about 9 s for all five on 2 cores)."""
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, str(EXPORT_SCRIPT), "--out", str(folder)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{EXPORT_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )


# ----- one table of every model ----------------------------------------------------------------
@dataclass(frozen=True)
class ModelCase:
    """One model a test can ask for: a zoo model (with its options) or a torch export."""

    name: str
    source: str = "zoo"  # "zoo" | "torch"
    batch: int = 1
    resolution: int | None = None
    opset: int = 17
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        if self.source == "torch":
            return self.name
        extra = "".join(f"-{k}{v}" for k, v in sorted(self.options.items()))
        opset = "" if self.opset == 17 else f"-op{self.opset}"
        batch = "" if self.batch == 1 else f"-b{self.batch}"
        return f"{self.name}{batch}{opset}{extra}"

    def path(self, cache_dir: Path | None = None) -> Path:
        if self.source == "torch":
            return exported_model_path(self.name, cache_dir)
        return zoo_model_path(
            self.name, self.batch, self.resolution, self.opset, cache_dir=cache_dir, **self.options
        )

    def __hash__(self) -> int:  # options is a dict; the id is the identity
        return hash(self.id)


ZOO_CASES: list[ModelCase] = [
    ModelCase(name, options={"depth": 4} if name == "vit-tiny" else {}) for name in ZOO_MODELS
]
EXPORTED_CASES: list[ModelCase] = [ModelCase(name, source="torch") for name in EXPORTED_MODELS]
MODEL_CASES: list[ModelCase] = ZOO_CASES + EXPORTED_CASES


def model_params(cases: list[ModelCase] | None = None) -> list[Any]:
    """``pytest.param`` per case with a readable id; torch exports skip without torch."""
    params = []
    for case in MODEL_CASES if cases is None else cases:
        marks = []
        if case.source == "torch" and TORCH_MISSING:
            marks.append(pytest.mark.skip(reason=TORCH_MISSING))
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
