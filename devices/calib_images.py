"""Calibration batches from a folder of JPEG/PNG images and a preprocessing spec.

The spec is what an image classifier's data loader does before the network, written once:

- ``resize``: ``N`` scales the shorter side to N (torchvision's ``Resize(int)``, aspect kept);
  ``HxW`` resizes to exactly H x W. Bilinear, as torchvision and OpenCV default to.
- ``crop``: ``N`` or ``HxW`` centre crop after the resize.
  With neither, each image is resized to the model input's H x W.
- ``range``: ``1`` (pixels scaled to [0, 1], torchvision's ``ToTensor``) or ``255`` (kept in
  [0, 255], as Caffe / OpenCV-style models take them). Default 1.
- ``mean`` / ``std``: per channel, in ``range``'s units, in the model's channel order;
  ``x = (pixel - mean) / std``. Defaults 0 and 1 (no normalisation).
- ``order``: ``rgb`` or ``bgr``; ``layout``: ``nchw`` or ``nhwc``. Defaults rgb, nchw.

Given on the command line as ``--calib-preprocess 'resize=256,crop=224,mean=0.485,0.456,0.406,
std=0.229,0.224,0.225'`` (a list runs on until the next ``key=``) or as a YAML file with the same
keys (read by the project's one YAML reader, so errors carry the line). Images are grouped into
batches of the model input's batch size, in file-name order; an incomplete last batch is left out
(TensorRT's calibrators also feed whole batches only).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from partitioner.errors import ConfigError, InputError
from partitioner.ir import Graph
from partitioner.yaml_reader import YamlDoc, read_yaml

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_KEYS = ("resize", "crop", "mean", "std", "order", "layout", "range")
# one ``key=value`` item of the command-line form; a value may hold commas (a mean list)
_ITEM = re.compile(r"\s*([A-Za-z_]+)\s*=\s*([^=]*?)\s*(?:,(?=\s*[A-Za-z_]+\s*=)|$)")


@dataclass(frozen=True)
class Preprocess:
    resize: tuple[int, ...] | None = None  # (short side,) or (H, W)
    crop: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    order: str = "rgb"
    layout: str = "nchw"
    range: float = 1.0  # the largest pixel value after scaling: 1 or 255


@dataclass(frozen=True)
class ImageFolder:
    """``--calib DIR`` holding images; ``preprocess`` says how they become input tensors."""

    path: Path
    preprocess: Preprocess = Preprocess()


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def parse_preprocess(spec: str | Path | None) -> Preprocess:
    """A spec from ``--calib-preprocess``: a YAML file's path, or ``key=value,...`` text."""
    if spec is None or str(spec).strip() == "":
        return Preprocess()
    text = str(spec)
    if Path(text).suffix.lower() in (".yaml", ".yml") or Path(text).is_file():
        doc = read_yaml(text, "preprocessing spec")
        if not isinstance(doc.data, dict):
            raise doc.error((), "a mapping of preprocessing keys", doc.data)
        return _validate(doc)
    data: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        m = _ITEM.match(text, pos)
        if m is None or m.end() == pos:
            raise ConfigError(
                f"--calib-preprocess: cannot read {text[pos:]!r}; expected key=value items "
                f"separated by commas (keys: {', '.join(_KEYS)})"
            )
        if m.group(1) in data:
            raise ConfigError(f"--calib-preprocess: {m.group(1)} given twice")
        data[m.group(1)] = m.group(2)
        pos = m.end()
    return _validate(YamlDoc("--calib-preprocess", data))


def _validate(doc: YamlDoc) -> Preprocess:
    data: dict[str, Any] = doc.data
    unknown = [k for k in data if k not in _KEYS]
    if unknown:
        raise doc.fail((unknown[0],), f"unknown key; expected one of {', '.join(_KEYS)}")

    def size(key: str, allow_short: bool) -> tuple[int, ...] | None:
        value = data.get(key)
        if value is None:
            return None
        parts = re.split(r"\s*[x,]\s*", str(value).strip().lower())
        if all(p.isdigit() and int(p) > 0 for p in parts) and len(parts) in ((1, 2)):
            dims = tuple(int(p) for p in parts)
            return dims if len(dims) == 2 or allow_short else (dims[0], dims[0])
        raise doc.error((key,), "a positive size N or HxW", value)

    def floats(key: str, default: tuple[float, ...]) -> tuple[float, ...]:
        value = data.get(key)
        if value is None:
            return default
        items = value if isinstance(value, list) else str(value).split(",")
        try:
            out = tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise doc.error(
                (key,), "a number or a list of numbers (one per channel)", value
            ) from None
        if not out or (key == "std" and any(v == 0 for v in out)):
            raise doc.error((key,), "non-zero numbers" if out else "one number per channel", value)
        return out

    def choice(key: str, options: tuple[str, ...], default: str) -> str:
        value = str(data.get(key, default)).strip().lower()
        if value not in options:
            raise doc.error((key,), " or ".join(options), data.get(key))
        return value

    scale = choice("range", ("1", "255", "1.0", "255.0"), "1")
    crop = size("crop", allow_short=False)
    return Preprocess(
        resize=size("resize", allow_short=True),
        crop=(crop[0], crop[1]) if crop else None,
        mean=floats("mean", (0.0,)),
        std=floats("std", (1.0,)),
        order=choice("order", ("rgb", "bgr"), "rgb"),
        layout=choice("layout", ("nchw", "nhwc"), "nchw"),
        range=float(scale),
    )


def image_batches(graph: Graph, source: ImageFolder) -> Iterator[dict[str, np.ndarray]]:
    """Feeds for ``graph``'s one image input, ``batch`` images at a time."""
    spec = source.preprocess
    where = f"--calib {source.path}"
    if len(graph.inputs) != 1:
        names = ", ".join(t.name for t in graph.inputs)
        raise InputError(
            f"{where}: images calibrate a model with one image input; this model "
            f"has {len(graph.inputs)} ({names}): give a folder of .npz feeds"
        )
    t = graph.inputs[0]
    shape = t.shape or ()
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        raise InputError(
            f"{where}: input '{t.name}' has shape {shape}; images need a fixed "
            "4-D input (fix its dims with --dims or an optimization profile)"
        )
    n, h, w, c = _nhwc(tuple(int(d) for d in shape), spec.layout)  # type: ignore[arg-type]
    if c not in (1, 3):
        raise InputError(
            f"{where}: input '{t.name}' {spec.layout.upper()} shape {shape} has "
            f"{c} channels; images give 1 or 3 (is layout={spec.layout} right?)"
        )
    for key, values in (("mean", spec.mean), ("std", spec.std)):
        if len(values) not in (1, c):
            raise InputError(
                f"--calib-preprocess: {key}: {len(values)} values for an input with {c} channels"
            )
    files = image_files(source.path)
    if len(files) < n:
        raise InputError(
            f"{where}: {len(files)} image(s) for a batch of {n}; expected at "
            "least one full batch of .jpg/.jpeg/.png files"
        )
    dtype = np.dtype(t.dtype or "float32")
    for start in range(0, len(files) - n + 1, n):
        images = [_load(f, spec, h, w, c) for f in files[start : start + n]]
        batch = np.stack(images)  # N, H, W, C
        if spec.layout == "nchw":
            batch = batch.transpose(0, 3, 1, 2)
        yield {t.name: np.ascontiguousarray(batch, dtype=dtype)}


def _nhwc(shape: tuple[int, int, int, int], layout: str) -> tuple[int, int, int, int]:
    n, a, b, d = shape
    return (n, b, d, a) if layout == "nchw" else (n, a, b, d)


def _load(path: Path, spec: Preprocess, h: int, w: int, c: int) -> np.ndarray:
    """One image as float32 H x W x C, preprocessed."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise InputError(
            f"--calib {path.parent}: reading images needs Pillow, a dependency of Tandem "
            "(pip install pillow)"
        ) from None
    try:
        with Image.open(path) as img:
            img = img.convert("L" if c == 1 else "RGB")
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable JPEG/PNG image ({err})") from None
    try:
        img = _resize_crop(img, spec, h, w, Image.Resampling.BILINEAR)
    except ValueError as err:
        raise InputError(f"{path}: {err} (--calib-preprocess)") from None
    if img.size != (w, h):
        raise InputError(
            f"{path}: preprocessed to {img.height}x{img.width}; the model input "
            f"takes {h}x{w} (set resize/crop in --calib-preprocess)"
        )
    x = np.asarray(img, dtype=np.float32).reshape(h, w, c)
    if c == 3 and spec.order == "bgr":
        x = x[..., ::-1]
    x = x * np.float32(spec.range / 255.0)
    return (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)


def _resize_crop(img: Any, spec: Preprocess, h: int, w: int, bilinear: Any) -> Any:
    if spec.resize is None and spec.crop is None:
        return img.resize((w, h), bilinear)
    if spec.resize is not None:
        if len(spec.resize) == 1:
            short = spec.resize[0]
            scale = short / min(img.width, img.height)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            if img.width <= img.height:
                size = (short, size[1])
            else:
                size = (size[0], short)
        else:
            size = (spec.resize[1], spec.resize[0])
        img = img.resize(size, bilinear)
    if spec.crop is not None:
        ch, cw = spec.crop
        if ch > img.height or cw > img.width:
            raise ValueError(f"crop {ch}x{cw} is larger than the resized {img.height}x{img.width}")
        top, left = (img.height - ch) // 2, (img.width - cw) // 2
        img = img.crop((left, top, left + cw, top + ch))
    return img
