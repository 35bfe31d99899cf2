"""Real-model conformance: models exported by torchvision, Ultralytics, transformers and
paddle2onnx, each imported, run and built the way the ``tandem`` CLI would, one row per model.

    .venv/bin/python bench/conformance.py                 # docs/conformance.md + .json
    .venv/bin/python bench/conformance.py --models tv-resnet18,tv-swin_t --print
    .venv/bin/python bench/conformance.py --placement-times 10   # the slowest placements
    # a GPU machine whose python3 has torch, torchvision, ... (one device call is 10 minutes:
    # a few models per call, the exports kept in --cache between calls while the machine is held)
    TANDEM_EXPORT_PYTHON=python3 python3 bench/conformance.py --gpu --sources torchvision \
        --models tv-resnet18,tv-mobilenet_v3_large --cache /tmp/conformance --budget-s 480 \
        --out-json $OUT/conformance-gpu.json

The models come from ``tests/conformance/export_<source>.py``, each run under its exporter's
venv (``.venv-export``: torchvision, ultralytics, transformers; ``.venv-paddle``: paddle), first
with ``--list``, then once into the cache folder (models already there are not re-exported).
A source whose script or venv is missing is skipped with the reason.

Per model (the CPU side; ``tests/conformance/test_conformance.py`` runs the same checks):

- **import**: ``tandem inspect MODEL`` (import + the standard passes), or its one-line error;
- **CPU parity**: the numpy reference against ONNX Runtime on the saved inputs, FP32, max
  |a - b| / max |b| <= 1e-4; also against the framework's own outputs saved beside the model;
- **GPU-only FP16 cross-builds** for ``orin-agx-64gb`` and ``xavier-agx`` (``tandem build
  --policy`` with ``default_device: gpu``, ``--fp16``): every GPU segment must be lowered to
  kernels (a build that cannot lower or compile one fails; every GPU segment must carry its
  cubins), no layer may fall off the GPU;
- **DLA placement** on ``orin-agx-64gb --fp16`` with the default policy: layers per device, the
  top reasons layers left the DLA, the predicted latency;
- **placement time**: import + placement, what ``tandem inspect --target orin-agx-64gb`` does,
  under 10 s.

``--gpu`` (a CUDA machine, with torch in the same interpreter): Tandem's GPU backend in FP32
(max rel err vs ONNX Runtime <= 1e-4) and FP16 (cosine >= 0.999, or both outputs below the FP16
range), and latency against PyTorch eager and ``torch.compile(mode="reduce-overhead")`` on the
module the export script's ``build(name)`` gives; timing and parity from bench/gpu_vs_torch.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devices.cpu import CpuRunner  # noqa: E402
from devices.io import run_onnxruntime  # noqa: E402
from partitioner.report import capability_rows, table  # noqa: E402
from targets.build import build, load_model, place, resolve_policy, resolve_target  # noqa: E402
from targets.request import BuildRequest  # noqa: E402

CONFORMANCE = ROOT / "tests" / "conformance"
DEFAULT_CACHE = ROOT / "build" / "conformance"
FP32_RTOL = 1e-4  # max |a - b| / max |b| of an FP32 output against its oracle
# ... or this many times the model's FP32 noise floor where that is higher: how far ONNX Runtime
# with its graph optimisations and without them (the same maths rounded in another order) are
# apart on the same inputs (:func:`fp32_bound`). Deep networks whose calibrated BN keeps
# activations large sit above 1e-4 there. fit: on timm's cspdarknet53 / inception_v4 /
# res2net50_14w_8s (seeded, 64-80 px) the floor was 1.14e-4 / 5.2e-5 / 1.18e-4 and Tandem's CPU
# reference vs ONNX Runtime 1.05x / 2.3x / 1.3x that (ONNX Runtime vs PyTorch: 1.0x / 1.4x /
# 1.2x); 4 leaves room above the worst.
FP32_NOISE_FACTOR = 4.0
FP16_COSINE = 0.999

GPU_ONLY_TARGETS = ("orin-agx-64gb", "xavier-agx")
DLA_TARGET = "orin-agx-64gb"
PLACEMENT_LIMIT_S = 10.0
HOST_MATH = "integer-only math"  # devices.capability.host_values's reason


# ----- sources: the export scripts and the venvs that run them ------------------------------
@dataclass(frozen=True)
class Source:
    name: str
    venv: str  # relative to the repository root
    env: str  # an environment variable naming another interpreter for it

    @property
    def script(self) -> Path:
        return CONFORMANCE / f"export_{self.name}.py"

    def python(self) -> str | None:
        """The interpreter that runs the script, or None (``missing`` says why)."""
        if os.environ.get(self.env):
            return os.environ[self.env]
        venv = ROOT / self.venv / "bin" / "python"
        return str(venv) if venv.exists() else None

    def missing(self) -> str | None:
        if not self.script.exists():
            return f"{self.script.relative_to(ROOT)} is not on this branch"
        if self.python() is None:
            make = "paddle-env" if "paddle" in self.venv else "export-env"
            return f"no {self.venv} (run `make {make}`, or set {self.env})"
        return None


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("torchvision", ".venv-export", "TANDEM_EXPORT_PYTHON"),
        Source("timm", ".venv-export", "TANDEM_EXPORT_PYTHON"),
        Source("ultralytics", ".venv-export", "TANDEM_EXPORT_PYTHON"),
        Source("transformers", ".venv-export", "TANDEM_EXPORT_PYTHON"),
        Source("paddle", ".venv-paddle", "TANDEM_PADDLE_PYTHON"),
    )
}


class ExportError(Exception):
    """An export script could not run at all (not one model's failure: that is a row)."""


def exporter_env(cache: Path | None = None) -> dict[str, str]:
    """The exporters' environment: no network, no writes to the home folder (Ultralytics keeps
    a settings file in ~/.config unless YOLO_CONFIG_DIR points elsewhere; ``--list`` imports
    it too, before there is a cache folder, hence the temp-dir default)."""
    config = (cache or Path(tempfile.gettempdir()) / "tandem-conformance") / "yolo-config"
    config.mkdir(parents=True, exist_ok=True)
    # PYTHONIOENCODING: the scripts' libraries print non-ASCII (Ultralytics' check marks), which
    # a child in an ASCII locale could not write; the parent decodes it as UTF-8 (TEXT below)
    return {**os.environ, "YOLO_CONFIG_DIR": str(config), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}  # fmt: skip


# A child's output is decoded as UTF-8 whatever this process's locale (CI may run under an ASCII
# one, where text=True raised UnicodeDecodeError on the first non-ASCII byte and lost the export)
TEXT: dict[str, Any] = {"encoding": "utf-8", "errors": "replace"}


def list_models(source: Source) -> list[str]:
    python = source.python()
    assert python is not None, source.missing()
    proc = subprocess.run([python, str(source.script), "--list"], capture_output=True,
                          timeout=300, env=exporter_env(), **TEXT)  # fmt: skip
    if proc.returncode != 0:
        raise ExportError(f"{source.script.name} --list failed (exit {proc.returncode}): "
                          f"{_last_line(proc.stderr)}")  # fmt: skip
    return proc.stdout.split()


def export(source: Source, folder: Path, names: list[str], timeout: float = 3600,
           options: tuple[str, ...] = ()) -> dict[str, str]:  # fmt: skip
    """Run the source's script once for ``names`` into ``folder`` (models already there are
    kept), with ``options`` (``--batch N --size S``); ``{name: why}`` for each model it did not
    write."""
    python = source.python()
    assert python is not None, source.missing()
    folder.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not (folder / f"{n}.onnx").exists()]
    if not todo:
        return {}
    try:
        proc = subprocess.run([python, str(source.script), "--out", str(folder), *options, *todo],
                              capture_output=True, timeout=timeout,
                              env=exporter_env(folder.parent), **TEXT)  # fmt: skip
        stderr = proc.stderr
    except subprocess.TimeoutExpired as err:
        stderr = f"timed out after {timeout:.0f} s; {err.stderr or ''}"
    (folder / f"export-{time.strftime('%Y%m%d-%H%M%S')}.log").write_text(
        stderr if isinstance(stderr, str) else "", encoding="utf-8")
    failed = {}
    for name in todo:
        if not (folder / f"{name}.onnx").exists():
            match = re.search(rf"^{re.escape(name)}: export failed: (.*)$", str(stderr), re.M)
            failed[name] = "export: " + (match.group(1)[:300] if match else _last_line(stderr))
    return failed


def _last_line(text: Any) -> str:
    lines = [ln for ln in str(text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def one_line(err: BaseException) -> str:
    """An exception as one line: Tandem's own errors by their message, others with the type."""
    from partitioner.errors import TandemError

    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return (text if isinstance(err, TandemError) else f"{type(err).__name__}: {text}")[:300]


# ----- one model: the CPU side ---------------------------------------------------------------
@dataclass
class Row:
    model: str
    source: str
    exporter: str = ""
    notes: str = ""
    layers: int | None = None
    import_s: float | None = None
    cpu_s: float | None = None  # one inference of the CPU reference
    ort_s: float | None = None  # ONNX Runtime: session creation + one inference
    cpu_vs_ort: float | None = None
    cpu_vs_framework: float | None = None
    ort_vs_framework: float | None = None
    fp32_noise: float | None = None  # ONNX Runtime optimised vs not (fp32_bound), when needed
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    dla: dict[str, Any] = field(default_factory=dict)
    place_s: float | None = None
    gpu: dict[str, Any] = field(default_factory=dict)
    #: check -> why it failed ("import", "cpu-parity", "build <target>", "placement", ...)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def inspect_s(self) -> float | None:
        if self.import_s is None or self.place_s is None:
            return None
        return self.import_s + self.place_s


def max_rel_err(actual: np.ndarray, expected: np.ndarray) -> float:
    """``max|a - b| / max|b|`` (the absolute difference when ``b`` is all zero)."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(expected, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if not b.size:
        return 0.0
    diff, scale = float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


def gpu_only_policy(precision: str = "fp16") -> Any:
    """``tandem build --fp16 --policy`` a file with ``default_device: gpu``: every layer the
    GPU can take goes there (``tandem exec`` without ``--useDLACore`` does the same)."""
    return resolve_policy(None, precision=precision).with_overrides(default_device="gpu")


def check_model(path: Path, source: str, threads: int = 2, import_only: bool = False) -> Row:
    """Every CPU-side check of one exported model (its ``.json`` and ``.npz`` beside it);
    ``import_only``: just the import (the GPU machine's run, whose CPU side is CI's)."""
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    row = Row(path.stem, source, meta.get("exporter", ""), meta.get("notes", ""))
    _check(row, path, dict(meta.get("dims") or {}), threads, import_only)
    # the reasons name the file, not the cache folder it happened to be in
    folder = f"{path.parent}{os.sep}"
    row.failures = {k: v.replace(folder, "") for k, v in row.failures.items()}
    return row


def _check(row: Row, path: Path, dims: dict[str, int], threads: int, import_only: bool
           ) -> None:  # fmt: skip
    start = time.perf_counter()
    try:
        graph = load_model(path, dims)
    except Exception as err:  # the row records it; the other models go on
        row.failures["import"] = one_line(err)
        return
    row.import_s = time.perf_counter() - start
    row.layers = len(graph.nodes)
    if import_only:
        return
    _check_parity(row, path, graph, threads)
    for target in GPU_ONLY_TARGETS:
        row.builds[target] = _gpu_only_build(row, path, graph, target, dims)
    _place_on_dla(row, path, graph, dims)


def _check_parity(row: Row, path: Path, graph: Any, threads: int) -> None:
    with np.load(path.with_suffix(".npz")) as data:
        saved = {k: data[k] for k in data.files}
    names = [t.name for t in graph.outputs]
    try:
        feeds = {t.name: saved[t.name] for t in graph.inputs}
        # ONNX Runtime takes every input the file declares, also one the passes found unused
        ort_feeds = {k: v for k, v in saved.items() if k not in names}
        start = time.perf_counter()
        with CpuRunner(graph, threads=threads) as runner:
            got = runner.infer(feeds)
        row.cpu_s = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        oracle = run_onnxruntime(path, ort_feeds)
        row.ort_s = round(time.perf_counter() - start, 3)
    except Exception as err:
        row.failures["cpu-parity"] = one_line(err)
        return
    row.cpu_vs_ort = max(max_rel_err(got[n], oracle[n]) for n in names)
    framework = [n for n in names if n in saved]
    if framework:
        row.cpu_vs_framework = max(max_rel_err(got[n], saved[n]) for n in framework)
        row.ort_vs_framework = max(max_rel_err(oracle[n], saved[n]) for n in framework)
    bound = fp32_bound(row, path, ort_feeds, names,
                       max(row.cpu_vs_ort, row.cpu_vs_framework or 0.0))
    if row.cpu_vs_ort > bound:
        row.failures["cpu-parity"] = (f"CPU reference vs ONNX Runtime: max rel err "
                                      f"{row.cpu_vs_ort:.2e} > {bound:.2g}")  # fmt: skip
    elif row.cpu_vs_framework is not None and row.cpu_vs_framework > bound:
        # ORT agrees and the framework does not: the exporter (or its opset) changed the maths
        row.failures["framework-parity"] = (
            f"CPU reference vs {row.source}'s own outputs: max rel err "
            f"{row.cpu_vs_framework:.2e} > {bound:.2g} (ONNX Runtime vs {row.source}: "
            f"{row.ort_vs_framework:.2e})")


def fp32_bound(row: Row, path: Path, feeds: dict[str, np.ndarray], names: list[str],
               worst: float) -> float:
    """The largest FP32 max rel err ``path`` passes with: FP32_RTOL, or FP32_NOISE_FACTOR times
    its noise floor (recorded in ``row.fp32_noise``) where that is higher. The floor is ONNX
    Runtime against itself, so it does not loosen with how far the exporter moved the maths;
    it costs two more ONNX Runtime runs, made only when ``worst`` (the error to judge) is
    above FP32_RTOL."""
    if worst <= FP32_RTOL:
        return FP32_RTOL
    if row.fp32_noise is None:
        optimised = run_onnxruntime(path, feeds)
        plain = run_onnxruntime(path, feeds, optimize=False)
        row.fp32_noise = max(max_rel_err(plain[n], optimised[n]) for n in names)
    return max(FP32_RTOL, FP32_NOISE_FACTOR * row.fp32_noise)


def _gpu_only_build(row: Row, path: Path, graph: Any, target: str, dims: dict[str, int]
                    ) -> dict[str, Any]:  # fmt: skip
    check = f"build {target}"
    start = time.perf_counter()
    try:
        request = BuildRequest(model=str(path), target=resolve_target(target),
                               policy=gpu_only_policy(), graph=graph.clone(), fixed_dims=dims)
        built = build(request)
    except Exception as err:
        row.failures[check] = one_line(err)
        return {"ok": False, "error": one_line(err)}
    segments = built.plan.header["segments"]
    # a build that cannot lower or compile a GPU segment fails (caught above); what is left to
    # check is that every GPU segment carries its compiled kernels and no layer left the GPU
    errors = [f"{s['name']}: no compiled kernels" for s in segments
              if s["device"] == "gpu" and "modules" not in s.get("cuda", {})]  # fmt: skip
    placed = built.placement.partition.assignments.values()
    # integer-only math (an attention mask from token ids) is the host's by design: it has no
    # GPU or DLA form anywhere (devices.capability.host_values); counted, not a failure
    host = [a for a in placed if a.device == "cpu" and HOST_MATH in a.reason]
    off_gpu = [a for a in placed if a.device != "gpu" and a not in host]
    result = {
        "ok": not errors and not off_gpu,
        "seconds": round(time.perf_counter() - start, 2),
        "segments": len(segments),
        "gpu_segments": sum(s["device"] == "gpu" for s in segments),
        "lowered": sum(s["device"] == "gpu" and "modules" in s.get("cuda", {})
                       for s in segments),  # fmt: skip
        "layers_off_gpu": len(off_gpu),
        "host_math_layers": len(host),
        "predicted_ms": round(built.plan.header["predicted_ms"]["total"], 4),
        "errors": errors,
    }
    if errors:
        row.failures[check] = f"{len(errors)} GPU segment(s) not lowered; {errors[0]}"[:400]
    elif off_gpu:
        reasons = Counter(a.reason for a in off_gpu).most_common(1)[0][0]
        row.failures[check] = (f"{len(off_gpu)} layer(s) off the GPU in a GPU-only build "
                               f"({off_gpu[0].device}): {reasons}")[:400]  # fmt: skip
    return result


def _place_on_dla(row: Row, path: Path, graph: Any, dims: dict[str, int]) -> None:
    start = time.perf_counter()
    try:
        placement = place(path, resolve_target(DLA_TARGET), resolve_policy(None, "fp16"),
                          dims, graph=graph.clone())  # fmt: skip
    except Exception as err:
        row.failures["placement"] = one_line(err)
        return
    row.place_s = time.perf_counter() - start
    part = placement.partition
    devices = Counter(a.device for a in part.assignments.values())
    row.dla = {
        "layers": dict(sorted(devices.items())),
        "dla_segments": sum(s.device.startswith("dla") for s in part.segments),
        "segments": len(part.segments),
        "predicted_ms": round(part.predicted.total * 1e3, 4),
        "top_reasons": [f"{r.operator} x{r.count}: {r.reason}"
                        for r in capability_rows(placement.graph, part)[:3]],
    }
    inspect_s = row.inspect_s or 0.0
    if inspect_s > PLACEMENT_LIMIT_S:
        row.failures["placement"] = (f"import + placement took {inspect_s:.1f} s "
                                     f"> {PLACEMENT_LIMIT_S:g} s")  # fmt: skip


# ----- the report ----------------------------------------------------------------------------
def _err(value: float | None) -> str:
    return "-" if value is None else f"{value:.1e}"


def _build_cell(b: dict[str, Any] | None) -> str:
    if not b:
        return "-"
    if "error" in b:
        return "FAIL"
    status = "ok" if b["ok"] else "FAIL"
    return f"{status} {b['lowered']}/{b['gpu_segments']}"


def _cells(row: Row) -> list[str]:
    failed = set(row.failures)
    imported = "no export" if "export" in failed else "FAIL" if "import" in failed else "ok"
    parity = _err(row.cpu_vs_ort)
    if "cpu-parity" in failed:
        parity = f"FAIL {parity}"
    framework = _err(row.cpu_vs_framework)
    if "framework-parity" in failed:
        framework = f"FAIL {framework}"
    dla = row.dla.get("layers", {})
    dla_cell = (f"{sum(v for k, v in dla.items() if k.startswith('dla'))}/{sum(dla.values())}"
                if dla else "-")  # fmt: skip
    pred = row.dla.get("predicted_ms")
    return [
        row.model, imported, parity, framework,
        *(_build_cell(row.builds.get(t)) for t in GPU_ONLY_TARGETS),
        dla_cell, "-" if pred is None else f"{pred:.3f}",
        "-" if row.inspect_s is None else f"{row.inspect_s:.2f}",
    ]  # fmt: skip


HEADERS = ["model", "import", "CPU vs ORT", "CPU vs framework",
           *(f"GPU-only {t} (lowered)" for t in GPU_ONLY_TARGETS),
           f"DLA layers {DLA_TARGET}", "predicted ms", "inspect s"]  # fmt: skip


CHECKS = ["export", "import", "cpu-parity", "framework-parity",
          *(f"build {t}" for t in GPU_ONLY_TARGETS), "placement"]  # fmt: skip


def summary_counts(rows: list[Row]) -> dict[str, dict[str, int]]:
    """Pass / fail / not run per check, in CHECKS order (a check is not run when an earlier
    one stopped the model: no export, no import; framework-parity not when CPU parity failed)."""
    stoppers = {"import": ["export"], "framework-parity": ["export", "import", "cpu-parity"]}
    out = {}
    for i, check in enumerate(CHECKS):
        before = stoppers.get(check, CHECKS[:min(i, 2)])
        ran = [r for r in rows if not any(b in r.failures for b in before)]
        failed = sum(check in r.failures for r in ran)
        out[check] = {"pass": len(ran) - failed, "fail": failed, "not run": len(rows) - len(ran)}
    return out


def render_markdown(rows: list[Row], skipped: dict[str, str], command: str) -> str:
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Real-model conformance", "",
        f"Generated by `{command}` on {date} ({platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}); edit bench/conformance.py, not this file.", "",
        f"CPU vs ORT: FP32 max rel err of the numpy reference against ONNX Runtime on the saved "
        f"inputs (must be <= {FP32_RTOL:g}, or {FP32_NOISE_FACTOR:g}x the model's FP32 noise floor "
        f"where that is higher: ONNX Runtime with its graph optimisations vs without); "
        f"CPU vs framework: against the exporting framework's "
        f"own outputs. GPU-only: `tandem build --fp16` with `default_device: gpu`, "
        f"lowered GPU segments / GPU segments. DLA layers: layers on the DLA / all layers on "
        f"`{DLA_TARGET} --fp16` (default policy), whose predicted latency is the next column. "
        f"inspect s: import + placement (`tandem inspect --target {DLA_TARGET}`).", "",
        "## Summary", "",
    ]  # fmt: skip
    counts = summary_counts(rows)
    lines += table(["check", "pass", "fail", "not run"],
                   [[c, str(v["pass"]), str(v["fail"]), str(v["not run"])]
                    for c, v in counts.items()], markdown=True)  # fmt: skip
    clean = sum(not r.failures for r in rows)
    lines += ["", f"{clean} of {len(rows)} models pass every check."]
    if skipped:
        lines += ["", "Not run:"] + [f"- {k}: {v}" for k, v in skipped.items()]
    lines += ["", "## Models", ""]
    lines += table(HEADERS, [_cells(r) for r in rows], markdown=True)
    lines += ["", "## Failures", ""]
    fails = [[r.model, check, why] for r in rows for check, why in r.failures.items()]
    lines += table(["model", "check", "reason"], fails or [["-", "-", "-"]], markdown=True)
    lines += ["", "## Why layers left the DLA (top 3 per model)", ""]
    lines += table(["model", "reasons"], [[r.model, "; ".join(r.dla.get("top_reasons", []))]
                                          for r in rows if r.dla], markdown=True)  # fmt: skip
    lines += ["", "## Slowest placements (and the CPU runs of those models)", ""]
    lines += table(TIME_HEADERS, placement_rows(rows, 10), markdown=True)
    notes = [[r.model, r.exporter, r.notes] for r in rows if r.notes]
    if notes:
        lines += ["", "## Notes", ""] + table(["model", "exporter", "note"], notes, markdown=True)
    return "\n".join(lines) + "\n"


TIME_HEADERS = ["model", "layers", "import s", "placement s", "CPU reference s", "ORT s"]


def placement_rows(rows: list[Row], n: int) -> list[list[str]]:
    timed = sorted((r for r in rows if r.inspect_s is not None), key=lambda r: -(r.inspect_s or 0))
    return [[r.model, str(r.layers), f"{r.import_s:.2f}", f"{r.place_s:.2f}",
             f"{r.cpu_s or 0:.2f}", f"{r.ort_s or 0:.2f}"] for r in timed[:n]]  # fmt: skip


def gpu_side(row: Row, path: Path, source: Source, args: argparse.Namespace,
             started: float) -> None:  # fmt: skip
    """``--gpu``'s checks of one model, within the time budget; an error is the row's."""
    if time.perf_counter() - started > args.budget_s:
        row.gpu["not_run"] = f"--budget-s {args.budget_s:g} spent"
        return
    from conformance_gpu import check_gpu  # bench/: torch and CUDA only here

    try:
        check_gpu(row, path, source, args.iters, with_compile=not args.no_compile)
    except Exception as err:  # one model's failure must not stop the others
        row.failures["gpu"] = one_line(err)


# ----- the command line ----------------------------------------------------------------------
def collect(sources: list[str], wanted: set[str] | None, cache: Path
            ) -> tuple[list[tuple[str, str, Path | None, str]], dict[str, str]]:  # fmt: skip
    """Export what is asked: ``[(source, model, path or None, why not)]`` and the sources
    skipped, with the reason."""
    models: list[tuple[str, str, Path | None, str]] = []
    skipped: dict[str, str] = {}
    for name in sources:
        source = SOURCES[name]
        why = source.missing()
        cached = sorted((cache / name).glob("*.onnx"))
        if why and cached:  # exported elsewhere and carried here (a GPU machine has no paddle)
            models += [(name, p.stem, p, "") for p in cached if wanted is None or p.stem in wanted]
            continue
        if why:
            skipped[name] = why
            continue
        try:
            names = [n for n in list_models(source) if wanted is None or n in wanted]
        except (ExportError, subprocess.TimeoutExpired) as err:
            skipped[name] = str(err)
            continue
        failed = export(source, cache / name, names) if names else {}
        for n in names:
            path = None if n in failed else cache / name / f"{n}.onnx"
            models.append((name, n, path, failed.get(n, "")))
    return models, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sources", default=",".join(SOURCES), help="comma list")
    parser.add_argument("--models", help="comma list of model names (default: all)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="export folder")
    parser.add_argument("--out-md", type=Path, default=ROOT / "docs" / "conformance.md")
    parser.add_argument("--out-json", type=Path,
                        help="default docs/conformance.json (--gpu: docs/conformance-gpu.json)")
    parser.add_argument("--print", action="store_true", help="print the report, write nothing")
    parser.add_argument("--placement-times", type=int, metavar="N",
                        help="print the N slowest placements (import + place) and exit")
    parser.add_argument("--threads", type=int, default=2, help="CPU reference threads")
    parser.add_argument("--gpu", action="store_true", help="also the GPU side (needs CUDA)")
    parser.add_argument("--gpu-only", action="store_true",
                        help="--gpu without the CPU-side checks (CI runs those)")
    parser.add_argument("--iters", type=int, default=50, help="timed iterations (--gpu)")
    parser.add_argument("--no-compile", action="store_true",
                        help="--gpu without torch.compile (it compiles for tens of seconds)")
    parser.add_argument("--budget-s", type=float, default=1e9,
                        help="--gpu: models after this many seconds get no GPU checks")
    parser.add_argument("--gpu-report", nargs="+", type=Path, metavar="JSON",
                        help="print Markdown of device runs' --out-json files and exit")
    args = parser.parse_args(argv)
    if args.gpu_report:
        sys.path.insert(0, str(ROOT / "bench"))
        from conformance_gpu import gpu_report

        try:
            print(gpu_report(args.gpu_report))
        except (OSError, ValueError, KeyError, TypeError) as err:  # a missing or foreign file
            print(f"--gpu-report: {one_line(err)} (expected --out-json files of --gpu runs)",
                  file=sys.stderr)
            return 1
        return 0
    unknown = sorted(set(args.sources.split(",")) - set(SOURCES))
    if unknown:
        parser.error(f"--sources: unknown {', '.join(unknown)}; known: {', '.join(SOURCES)}")
    args.gpu = args.gpu or args.gpu_only
    if args.gpu:
        sys.path.insert(0, str(ROOT / "bench"))
    wanted = set(args.models.split(",")) if args.models else None
    models, skipped = collect(args.sources.split(","), wanted, args.cache)
    if wanted and not models:
        print(f"no model named {', '.join(sorted(wanted))} in the sources "
              f"({', '.join(skipped) or 'none'} skipped)", file=sys.stderr)  # fmt: skip
        return 1
    rows = []
    started = time.perf_counter()
    for source, name, path, why in models:
        if path is None:
            row = Row(name, source)
            row.failures["export"] = why
        else:
            row = check_model(path, source, args.threads, import_only=args.gpu_only)
            if args.gpu and "import" not in row.failures:
                gpu_side(row, path, SOURCES[source], args, started)
        rows.append(row)
        print(f"{name}: " + ("ok" if not row.failures else "; ".join(
            f"{k}: {v}" for k, v in row.failures.items())), file=sys.stderr, flush=True)
    if args.placement_times:
        print("\n".join(table(TIME_HEADERS, placement_rows(rows, args.placement_times))))
        return 0
    command = "python bench/conformance.py" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    report = render_markdown(rows, skipped, command)
    if args.print:
        print(report)
        return 0
    doc = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "skipped": skipped, "summary": summary_counts(rows),
           "rows": [{**asdict(r), "inspect_s": r.inspect_s} for r in rows]}  # fmt: skip
    if args.out_json is None:
        args.out_json = ROOT / "docs" / f"conformance{'-gpu' if args.gpu else ''}.json"
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(doc, indent=1, default=float) + "\n", encoding="utf-8")
    if args.gpu:  # the CPU-side report is the CI machine's; here only the GPU numbers
        from conformance_gpu import gpu_table

        print(gpu_table(rows))
    else:
        args.out_md.write_text(report, encoding="utf-8")
    print(f"{sum(not r.failures for r in rows)}/{len(rows)} models pass every check; wrote "
          f"{args.out_json}" + ("" if args.gpu else f" and {args.out_md}"))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
