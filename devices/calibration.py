"""The one calibration path: per-tensor INT8 scales for a graph from what the user gave.

A calibration source is one of

- :class:`NpzFolder` -- a folder of ``.npz`` feeds (one batch per file, sorted by name);
- :class:`~devices.calib_images.ImageFolder` -- a folder of JPEG/PNG images and the
  preprocessing that turns them into the model's input (``devices/calib_images.py``);
- :class:`CacheFile` -- a TensorRT-format calibration cache to read the scales from;
- :class:`RandomInputs` -- N seeded random feeds (a smoke run: valid timings, not accuracy);
- a :class:`Calibrator` -- an object with TensorRT's calibrator methods (``get_batch`` and the
  two cache methods), as ``tandem.IInt8EntropyCalibrator2`` subclasses have.

Batches run through the FP32 CPU reference with every tensor captured, and ``dla_sim``'s
EntropyCalibrator2 turns the activations into scales (``dla_sim`` may not import ``devices``,
so the reference is wired in here). ``source_from_path`` is the one decoder of ``--calib PATH``
for every front end (``build``, ``run``, ``compare``, ``inspect``, ``exec``, the Python API).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from devices.calib_images import ImageFolder, Preprocess, image_batches, image_files
from devices.cpu import CpuRunner
from devices.io import load_feeds, random_inputs
from dla_sim.calibration import (
    CalibrationError,
    format_cache,
    parse_cache,
    read_cache,
    write_cache,
)
from dla_sim.calibration import calibrate as scales_from_activations
from partitioner.errors import InputError
from partitioner.ir import Graph


@dataclass(frozen=True)
class NpzFolder:
    path: Path


@dataclass(frozen=True)
class CacheFile:
    path: Path


@dataclass(frozen=True)
class RandomInputs:
    count: int
    seed: int = 0


class Calibrator(Protocol):
    """TensorRT's calibrator interface: batches until ``None``, and a cache it may hold."""

    def get_batch(self, names: Sequence[str]) -> Mapping[str, Any] | None: ...

    def read_calibration_cache(self) -> bytes | None: ...

    def write_calibration_cache(self, cache: bytes) -> None: ...


#: the sources that are data, not a calibrator object (``isinstance`` takes the union)
DataSource = NpzFolder | ImageFolder | CacheFile | RandomInputs
Source = DataSource | Calibrator


@dataclass(frozen=True)
class Calibration:
    """Where an INT8 build's scales come from."""

    source: Source | None = None
    #: ``--calib-cache``: read when no source is given and it exists; written after
    #: calibrating from batches, so the next build can skip the calibration run
    cache: Path | None = None
    #: how to give calibration in the terms of the front end that made this (its flags or
    #: attributes), for the error an INT8 build without any raises
    hint: str = "give a calibration source or cache"

    @property
    def given(self) -> bool:
        return self.source is not None or self.cache is not None


def source_from_path(
    path: str | Path, given_as: str | None = None, preprocess: Preprocess | None = None
) -> NpzFolder | ImageFolder | CacheFile:
    """``--calib PATH`` in every command: a folder of ``.npz`` feeds, a folder of JPEG/PNG
    images (made into inputs by ``preprocess``), or a calibration cache file; told apart by
    what the path is and holds, not by its name. ``given_as`` is how the user wrote it
    (``--calib=cal.cache`` in ``tandem exec``), for the error."""
    p = Path(path)
    flag = given_as or f"--calib {p}"
    expected = (
        "expected a folder of .npz files, a folder of .jpg/.png images or a TensorRT "
        "calibration cache file"
    )
    if p.is_dir():
        images = image_files(p)
        if images and any(p.glob("*.npz")):
            raise InputError(f"{flag}: holds both .npz files and images; {expected}, not both")
        if images:
            return ImageFolder(p, preprocess or Preprocess())
        if preprocess is not None:
            raise InputError(f"{flag}: holds no .jpg/.png images; --calib-preprocess applies "
                             "to a folder of images")
        return NpzFolder(p)  # an empty folder is refused when its batches are read
    if p.is_file():
        if p.suffix == ".npz" or p.suffix.lower() in (".jpg", ".jpeg", ".png"):
            raise InputError(f"{flag}: a single {p.suffix} file; {expected}")
        return CacheFile(p)
    raise InputError(f"{flag}: no such file or folder; {expected}")


#: ``progress(batches_done, batches_total)`` after each calibration batch (total None: unknown,
#: as for a TensorRT-style calibrator that says only when it is out of batches)
BatchProgress = Callable[[int, int | None], None]


def calibrate(
    graph: Graph,
    calibration: Calibration,
    method: str = "entropy",
    progress: BatchProgress | None = None,
) -> dict[str, float]:
    """INT8 scales for ``graph`` (at fixed shapes) from ``calibration``'s source or cache."""
    source, cache = calibration.source, calibration.cache
    if isinstance(source, CacheFile):
        return read_cache(source.path)
    if source is None:
        if cache is not None and cache.exists():
            return read_cache(cache)
        raise CalibrationError(f"an INT8 build needs calibration data: {calibration.hint}")
    if isinstance(source, (NpzFolder, ImageFolder, RandomInputs)):
        captured = _counted(activations(graph, batches(graph, source)), _batch_count(source),
                            progress)  # fmt: skip
        scales = scales_from_activations(captured, method)
        if cache is not None:
            write_cache(cache, scales, method)
        return scales
    return _from_calibrator(graph, source, method, progress)


def _batch_count(source: NpzFolder | ImageFolder | RandomInputs) -> int | None:
    if isinstance(source, RandomInputs):
        return source.count
    if isinstance(source, ImageFolder):
        return None  # images are grouped into the input's batch size as they are read
    return len(_npz_files(source))


def _npz_files(source: NpzFolder) -> list[Path]:
    return sorted(source.path.glob("*.npz")) if source.path.is_dir() else []


def _counted(
    captured: Iterator[dict[str, np.ndarray]], total: int | None, progress: BatchProgress | None
) -> Iterator[dict[str, np.ndarray]]:
    for done, batch in enumerate(captured, 1):
        yield batch
        if progress is not None:
            progress(done, total)


def _from_calibrator(
    graph: Graph, calibrator: Calibrator, method: str, progress: BatchProgress | None = None
) -> dict[str, float]:
    """TensorRT's order: the calibrator's own cache when it has one, else its batches (and
    the scales handed back to it to cache)."""
    cached = calibrator.read_calibration_cache()
    if cached:
        return parse_cache(bytes(cached).decode("utf-8"), "<calibrator cache>")[1]
    captured = activations(graph, _calibrator_batches(graph, calibrator))
    scales = scales_from_activations(_counted(captured, None, progress), method)
    if not scales:
        raise CalibrationError("the calibrator gave no batches: get_batch returned None at once")
    calibrator.write_calibration_cache(format_cache(scales, method).encode("utf-8"))
    return scales


def batches(
    graph: Graph, source: NpzFolder | ImageFolder | RandomInputs
) -> Iterator[dict[str, np.ndarray]]:
    """Feed dicts for ``graph``'s inputs, read one at a time."""
    if isinstance(source, ImageFolder):
        yield from image_batches(graph, source)
        return
    if isinstance(source, RandomInputs):
        if source.count < 1:
            raise InputError(f"--calib-random {source.count}: expected N >= 1")
        for i in range(source.count):
            yield random_inputs(graph, seed=source.seed + i)
        return
    files = _npz_files(source)
    if not files:
        raise InputError(f"{source.path}: expected a folder of .npz calibration files; found none")
    for f in files:
        yield load_feeds(graph, f)


def _calibrator_batches(graph: Graph, calibrator: Calibrator) -> Iterator[dict[str, np.ndarray]]:
    names = [t.name for t in graph.inputs]
    while True:
        batch = calibrator.get_batch(names)
        if batch is None:
            return
        missing = [n for n in names if n not in batch]
        if missing:
            raise CalibrationError(f"calibrator batch lacks input(s) {', '.join(missing)}")
        yield {n: np.asarray(batch[n]) for n in names}


def activations(
    graph: Graph, feeds: Iterable[Mapping[str, np.ndarray]]
) -> Iterator[dict[str, np.ndarray]]:
    """Every tensor of ``graph`` for each batch, as the FP32 reference computes it."""
    runner = CpuRunner(graph, capture=True)
    with runner:
        for batch in feeds:
            outputs = runner.infer(dict(batch))
            yield {**batch, **runner.captured, **outputs}
