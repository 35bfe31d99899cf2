"""The models bench/gpu_vs_torch.py runs: the six zoo models and conformance models at a
realistic input (ImageNet CNNs at 224, YOLO at 640, BERT at 128 tokens), each resolved to the
way its ONNX file is made.

Zoo models come from ``tandem.zoo.build_model`` at their default resolution. Conformance models
come from their export script (``tests/conformance/export_<source>.py``, run by
``bench/conformance.export`` under its exporter's interpreter): static-shape exports once per
(batch, input side) into ``CACHE/<source>-b<batch>-s<side>/``, and exports whose batch and
sequence are dynamic (BERT) once into ``CACHE/<source>/``, bound per batch with ``--dim``'s
bindings. A file already in the cache is never exported again, so later calls on a warm machine
start timing at once.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT, ROOT / "bench"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

ZOO = ("resnet18", "resnet50", "mobilenetv2", "yolov5s", "unet-small", "vit-tiny")
DEFAULT_CACHE = ROOT / "build" / "gpu-bench"


@dataclass(frozen=True)
class BenchModel:
    """One benchmarked model: ``source`` is "zoo" or a conformance source (bench/conformance.py
    SOURCES); ``size`` the image side it is exported at (None: the exporter's own input);
    ``dims`` the dynamic dims a dynamic export is bound to, ``"batch"`` set per run."""

    name: str
    source: str
    size: int | None = None
    dims: dict[str, int] = field(default_factory=dict, hash=False)

    @property
    def input_note(self) -> str:
        if self.source == "zoo":
            from tandem.zoo import ZOO_MODELS

            return f"{ZOO_MODELS[self.name].resolution}px"
        if self.size:
            return f"{self.size}px"
        return ", ".join(f"{k} {v}" for k, v in self.dims.items() if k != "batch")


def _tv(name: str, size: int = 224) -> BenchModel:
    return BenchModel(name, "torchvision", size)


# Conformance models at the input side their families are evaluated at (torchvision's weights'
# eval transforms: 224, Inception-v3 299, EfficientNetV2-S 384; Ultralytics' default imgsz 640;
# timm's FastViT 256), and BERT (a small config, hidden 64, 2 layers) at 128 tokens.
CONFORMANCE: dict[str, BenchModel] = {
    m.name: m
    for m in (
        _tv("tv-efficientnet_b0"),
        _tv("tv-mobilenet_v3_large"),
        _tv("tv-convnext_tiny"),
        _tv("tv-regnet_y_400mf"),
        _tv("tv-densenet121"),
        _tv("tv-vit_b_16"),
        _tv("tv-swin_t"),
        BenchModel("yolov8n", "ultralytics", 640),
        BenchModel("bert", "transformers", None, {"sequence": 128}),
        _tv("tv-resnext50_32x4d"),
        _tv("tv-inception_v3", 299),
        _tv("tv-shufflenet_v2_x1_0"),
        _tv("tv-mnasnet1_0"),
        _tv("tv-googlenet"),
        _tv("tv-efficientnet_v2_s", 384),
        _tv("tv-regnet_x_400mf"),
        BenchModel("yolo11n", "ultralytics", 640),
        BenchModel("timm-ghostnet-100", "timm", 224),
        BenchModel("timm-fastvit-t8", "timm", 256),
        BenchModel("timm-repvgg-a0", "timm", 224),
    )
}
MODELS: dict[str, BenchModel] = {**{n: BenchModel(n, "zoo") for n in ZOO}, **CONFORMANCE}


class ModelListError(ValueError):
    """A ``--models`` entry names no benchmark model."""


def resolve(names: str) -> list[BenchModel]:
    """``--models``: a comma list of names, ``zoo`` (the six zoo models), ``conformance`` (every
    conformance model above) or ``all``; order kept, duplicates dropped."""
    groups = {"zoo": list(ZOO), "conformance": list(CONFORMANCE), "all": list(MODELS)}
    out: list[BenchModel] = []
    for item in filter(None, (n.strip() for n in names.split(","))):
        picked = groups.get(item, [item])
        unknown = [n for n in picked if n not in MODELS]
        if unknown:
            raise ModelListError(
                f"--models: no benchmark model '{unknown[0]}'; use zoo, conformance, all or "
                f"one of {', '.join(MODELS)}"
            )
        out += [MODELS[n] for n in picked if MODELS[n] not in out]
    if not out:
        raise ModelListError("--models: the list is empty")
    return out


def export_folder(model: BenchModel, batch: int, cache: Path) -> Path:
    """Where ``model``'s export for ``batch`` lies (a dynamic export serves every batch)."""
    if model.size is None:
        return cache / model.source
    return cache / f"{model.source}-b{batch}-s{model.size}"


def export_options(model: BenchModel, batch: int) -> tuple[str, ...]:
    """The export script's options for ``model`` at ``batch`` (none for a dynamic export)."""
    return () if model.size is None else ("--batch", str(batch), "--size", str(model.size))


def prepare(
    models: list[BenchModel], batches: list[int], cache: Path, timeout: float
) -> dict[tuple[str, int], str]:
    """Export every conformance model that is not in ``cache`` yet, one exporter process per
    (source, folder); ``{(name, batch): why}`` for each one that could not be exported."""
    from conformance import SOURCES, export

    groups: dict[tuple[str, Path, tuple[str, ...]], list[tuple[str, int]]] = {}
    for m in models:
        if m.source == "zoo":
            continue
        for b in batches:
            key = (m.source, export_folder(m, b, cache), export_options(m, b))
            if (m.name, b) not in groups.setdefault(key, []):
                groups[key].append((m.name, b))
    failed: dict[tuple[str, int], str] = {}
    deadline = time.time() + timeout
    for (source, folder, options), items in groups.items():
        names = sorted({n for n, _ in items})
        why = SOURCES[source].missing()
        left = deadline - time.time()
        if why is None and left <= 0:
            why = "no time left in --budget-s"
        if why is None:
            try:
                errors = export(SOURCES[source], folder, names, timeout=left, options=options)
            except OSError as err:  # the interpreter named for the source is not there
                why = f"export: {SOURCES[source].python()}: {err.strerror or err}"
        if why is not None:
            errors = {n: why for n in names}
        failed.update({(n, b): errors[n] for n, b in items if n in errors})
    return failed


def model_file(model: BenchModel, batch: int, cache: Path) -> tuple[Path, dict[str, int]]:
    """A conformance model's exported file for ``batch`` and the dims that bind its dynamic
    inputs (the export's own, overridden by ``model.dims``, the batch by ``batch``)."""
    import json

    path = export_folder(model, batch, cache) / f"{model.name}.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not exported (see the export step's message)")
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    dims = {**(meta.get("dims") or {}), **model.dims}
    if "batch" in dims:
        dims["batch"] = batch
    return path, dims


def load_graph(model: BenchModel, batch: int, cache: Path) -> Any:
    """Tandem's graph of ``model`` at ``batch`` (the standard passes run), from its zoo builder
    or its export in ``cache`` (``prepare`` made it)."""
    if model.source == "zoo":
        from tandem.zoo import build_model
        from tests.devices.gpu_cases import graph_of

        return graph_of(build_model(model.name, batch))
    from targets.build import load_model

    return load_model(*model_file(model, batch, cache))
