"""Ultralytics YOLO (v8 and 11; detect, segment, pose) built from the YAMLs packaged with
``ultralytics`` -- no weights, no downloads -- seeded, and exported by Ultralytics' own exporter
(``model.export(format="onnx")``), the way a Jetson user makes the ONNX file for TensorRT.

Runs in ``.venv-export``: ``python tests/conformance/export_ultralytics.py --list`` /
``--out DIR [NAME ...]``. ``build(name)`` gives the module the exporter traced (fused, head in
export mode) and the seeded input, for the GPU-side PyTorch eager / torch.compile timings.

Export settings (in each NAME.json): opset 17 (what TensorRT 8.5+ on JetPack 5/6 reads),
``dynamic=False`` (TensorRT on the DLA wants static shapes), ``simplify=False`` (onnxslim is not
installed and the exporter would pip-install it), batch 1, FP32. imgsz 160 keeps CI cheap
(525 anchors); ``yolov8n-640`` is the default 640 whose 8400 anchors exceed the DLA's 8192 limit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_common import Meta, main, no_network, randomise_torch, write_export  # noqa: E402

OPSET = 17
# name -> (packaged model YAML, imgsz)
MODELS: dict[str, tuple[str, int]] = {
    "yolov8n": ("yolov8n.yaml", 160),
    "yolov8s": ("yolov8s.yaml", 160),
    "yolov8n-seg": ("yolov8n-seg.yaml", 160),
    "yolov8n-pose": ("yolov8n-pose.yaml", 160),
    "yolov8s-seg": ("yolov8s-seg.yaml", 160),
    "yolov8s-pose": ("yolov8s-pose.yaml", 160),
    "yolo11n": ("yolo11n.yaml", 160),
    "yolo11s": ("yolo11s.yaml", 160),
    "yolo11n-seg": ("yolo11n-seg.yaml", 160),
    "yolo11n-pose": ("yolo11n-pose.yaml", 160),
    "yolo11s-seg": ("yolo11s-seg.yaml", 160),
    "yolo11s-pose": ("yolo11s-pose.yaml", 160),
    "yolov8n-640": ("yolov8n.yaml", 640),
}


def setup() -> None:
    """Offline before ultralytics is imported: its settings go to a temp dir, its online
    checks and pip auto-installs are off (``_export`` also refuses sockets: ``no_network``)."""
    if "YOLO_CONFIG_DIR" not in os.environ:
        config = tempfile.mkdtemp(prefix="yolo-config-")
        atexit.register(shutil.rmtree, config, True)
        os.environ["YOLO_CONFIG_DIR"] = config
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ["HF_HUB_OFFLINE"] = "1"


@contextlib.contextmanager
def _cwd(path: Path) -> Iterator[None]:
    # the exporter writes "<yaml stem>.onnx" into the current directory
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _seed(model: Any, seed: int) -> None:
    """randomise_torch, except the DFL integral conv: its fixed arange weights compute the
    expected box distance from the Softmax over bins; they are not learned. (With He-normal
    weights the head's logits come out with std ~0.5: Sigmoids and the DFL Softmax are not
    saturated, so a comparison still tests something.)"""
    import torch
    from ultralytics.nn.modules.block import DFL

    dfl = [(m.conv, m.conv.weight.detach().clone()) for m in model.modules() if isinstance(m, DFL)]
    randomise_torch(model, seed)
    with torch.no_grad():
        for conv, weight in dfl:
            conv.weight.copy_(weight)


def _input(imgsz: int, seed: int, batch: int = 1) -> np.ndarray:
    # an image as the exporter's users feed it: RGB in [0, 1]
    return np.random.default_rng(seed).random((batch, 3, imgsz, imgsz), dtype=np.float32)


def _export(name: str, folder: Path, seed: int, batch: int = 1, imgsz: int | None = None
            ) -> tuple[Any, Path]:  # fmt: skip
    """Build NAME from its YAML, seed it, export it into ``folder`` (at ``batch`` and ``imgsz``,
    default the table's); return the Exporter (its ``.model`` is the module it traced) and the
    ONNX path."""
    import torch
    from ultralytics import YOLO
    from ultralytics.engine.exporter import Exporter

    yaml, side = MODELS[name]
    torch.manual_seed(seed)
    args = {"format": "onnx", "imgsz": imgsz or side, "opset": OPSET, "dynamic": False,
            "simplify": False, "batch": batch, "device": "cpu",
            "verbose": False, "data": None, "mode": "export"}
    with no_network(f"ultralytics {name}"), _cwd(folder):
        yolo = YOLO(yaml)  # the packaged YAML; the scale letter picks depth/width; no weights
        _seed(yolo.model, seed)
        exporter = Exporter(overrides=args)  # what YOLO.export calls, kept so its model is ours
        path = Path(exporter(model=yolo.model)).resolve()
    return exporter, path


def build(name: str, seed: int = 0, batch: int = 1, size: int | None = None
          ) -> tuple[Any, tuple[Any, ...]]:  # fmt: skip
    """The module the exporter traced (eval, BN fused, head in export mode) and its input."""
    import torch

    setup()
    with tempfile.TemporaryDirectory() as tmp:
        exporter, _ = _export(name, Path(tmp), seed, batch, size)
    x = _input(size or MODELS[name][1], seed, batch)
    return exporter.model.eval(), (torch.from_numpy(x),)


def _flatten(y: Any) -> list[Any]:
    if isinstance(y, list | tuple):
        return [t for item in y for t in _flatten(item)]
    return [y]


def export(name: str, out: Path, seed: int, batch: int = 1, size: int | None = None) -> Path:
    import onnx
    import torch
    import ultralytics

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # a temp dir beside the output, so the final move is a rename on one file system
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
        exporter, path = _export(name, Path(tmp), seed, batch, size)
        imgsz = size or MODELS[name][1]
        x = _input(imgsz, seed, batch)
        with torch.no_grad():
            ys = [t.numpy() for t in _flatten(exporter.model(torch.from_numpy(x)))]
        graph = onnx.load(str(path), load_external_data=False).graph
        outputs = [o.name for o in graph.output]
        if len(outputs) != len(ys):
            raise RuntimeError(f"{name}: {len(ys)} torch outputs for ONNX outputs {outputs}")
        meta = Meta(
            source="ultralytics",
            exporter=f"ultralytics {ultralytics.__version__} Exporter(format='onnx') "
                     f"torch {torch.__version__}",
            opset=OPSET,
            notes=f"{MODELS[name][0]} imgsz={imgsz} dynamic=False simplify=False "
                  f"batch={batch} fp32; export {time.perf_counter() - start:.1f} s",
        )
        return write_export(out, name, None, {graph.input[0].name: x}, dict(zip(outputs, ys)),
                            meta, onnx_file=path)


if __name__ == "__main__":
    sys.exit(main(MODELS, export, __doc__.splitlines()[0], setup=setup, resizable=True))
