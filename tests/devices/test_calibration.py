"""The one calibration path (devices/calibration.py): every source to per-tensor INT8 scales."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from devices.calibration import (
    CacheFile,
    Calibration,
    NpzFolder,
    RandomInputs,
    calibrate,
    source_from_path,
)
from dla_sim.calibration import CalibrationError, format_cache, read_cache, write_cache
from partitioner.errors import InputError
from partitioner.ir import Graph
from tests.dla_sim.graphs import Builder


def _conv_relu() -> Graph:
    b = Builder("calib")
    x = b.input("x", (1, 3, 8, 8))
    rng = np.random.default_rng(2)
    y = b.conv(x, rng.standard_normal((4, 3, 3, 3)) * 0.3, pads=(1, 1, 1, 1))
    return b.output(b.op("Relu", [y], (1, 4, 8, 8)))


def _npz_folder(folder: Path, count: int = 3) -> Path:
    rng = np.random.default_rng(5)
    for i in range(count):
        np.savez(folder / f"{i:03d}.npz", x=rng.standard_normal((1, 3, 8, 8)).astype(np.float32))
    return folder


class ListCalibrator:
    """A TensorRT-style calibrator over a fixed list of batches, recording its cache."""

    def __init__(self, batches: list[dict[str, np.ndarray]], cache: bytes | None = None) -> None:
        self.batches = list(batches)
        self.cache = cache
        self.written: bytes | None = None

    def get_batch(self, names: object) -> dict[str, np.ndarray] | None:
        return self.batches.pop(0) if self.batches else None

    def read_calibration_cache(self) -> bytes | None:
        return self.cache

    def write_calibration_cache(self, cache: bytes) -> None:
        self.written = cache


def test_calib_path_is_told_apart_by_what_it_is(tmp_path: Path) -> None:
    cache = tmp_path / "calib.cache"
    cache.write_text("TRT-8601-EntropyCalibration2\n", encoding="utf-8")
    assert source_from_path(tmp_path) == NpzFolder(tmp_path)
    assert source_from_path(str(cache)) == CacheFile(cache)
    with pytest.raises(InputError, match=r"^--calib .*nope: no such file or folder; expected a "
                       r"folder of \.npz files, a folder of \.jpg/\.png images or a TensorRT "
                       r"calibration cache file$"):
        source_from_path(tmp_path / "nope")
    single = tmp_path / "one.npz"
    np.savez(single, x=np.zeros(3))
    with pytest.raises(InputError, match=r"^--calib=one\.npz: a single \.npz file"):
        source_from_path(single, "--calib=one.npz")


def test_every_source_reaches_the_same_tensors(tmp_path: Path) -> None:
    g = _conv_relu()
    (tmp_path / "set").mkdir()
    folder = _npz_folder(tmp_path / "set")
    from_folder = calibrate(g, Calibration(NpzFolder(folder)))
    tensors = {"x", g.nodes[0].outputs[0].name, g.outputs[0].name}
    assert set(from_folder) == tensors and all(s > 0 for s in from_folder.values())
    assert set(calibrate(g, Calibration(RandomInputs(2)))) == tensors
    feeds = [dict(np.load(f)) for f in sorted(folder.glob("*.npz"))]
    calibrator = ListCalibrator(feeds)
    # the same batches through a calibrator object give the same scales as through the folder
    assert calibrate(g, Calibration(calibrator)) == from_folder
    assert calibrator.written is not None and calibrator.written.startswith(b"TRT-")


def test_a_cache_is_written_after_calibrating_and_read_without_a_source(tmp_path: Path) -> None:
    g = _conv_relu()
    cache = tmp_path / "out.cache"
    scales = calibrate(g, Calibration(RandomInputs(3, seed=7), cache=cache))
    assert read_cache(cache) == scales
    assert calibrate(g, Calibration(cache=cache)) == scales  # no batches run
    assert calibrate(g, Calibration(CacheFile(cache))) == scales
    # a calibrator's own cache wins over its batches, as in TensorRT
    cached = ListCalibrator([], cache=format_cache({"x": 0.5}).encode())
    assert calibrate(g, Calibration(cached)) == {"x": 0.5} and cached.written is None


def test_random_inputs_are_seeded(tmp_path: Path) -> None:
    g = _conv_relu()
    one = calibrate(g, Calibration(RandomInputs(2, seed=1)), method="minmax")
    assert calibrate(g, Calibration(RandomInputs(2, seed=1)), method="minmax") == one
    assert calibrate(g, Calibration(RandomInputs(2, seed=2)), method="minmax") != one


def test_bad_sources_fail_in_one_line_naming_what(tmp_path: Path) -> None:
    g = _conv_relu()
    with pytest.raises(CalibrationError, match=r"needs calibration data: pass --calib$"):
        calibrate(g, Calibration(hint="pass --calib"))
    with pytest.raises(CalibrationError, match="needs calibration data"):
        calibrate(g, Calibration(cache=tmp_path / "not-yet.cache"))  # nothing to read
    with pytest.raises(InputError, match="expected a folder of .npz calibration files; found"):
        calibrate(g, Calibration(NpzFolder(tmp_path)))
    with pytest.raises(InputError, match="expected N >= 1"):
        calibrate(g, Calibration(RandomInputs(0)))
    np.savez(tmp_path / "a.npz", y=np.zeros(3, np.float32))
    with pytest.raises(InputError, match="a.npz"):
        calibrate(g, Calibration(NpzFolder(tmp_path)))
    with pytest.raises(CalibrationError, match=r"lacks input\(s\) x"):
        calibrate(g, Calibration(ListCalibrator([{"y": np.zeros(3)}])))
    with pytest.raises(CalibrationError, match="gave no batches"):
        calibrate(g, Calibration(ListCalibrator([])))
    bad = tmp_path / "bad.cache"
    bad.write_text("not a cache\n", encoding="utf-8")
    with pytest.raises(CalibrationError, match="not a TensorRT calibration cache"):
        calibrate(g, Calibration(CacheFile(bad)))
    write_cache(tmp_path / "ok.cache", {"x": 0.25})
    assert calibrate(g, Calibration(CacheFile(tmp_path / "ok.cache"))) == {"x": 0.25}


def test_progress_counts_every_batch_with_its_total_when_known(tmp_path: Path) -> None:
    g = _conv_relu()
    seen: list[tuple[int, int | None]] = []
    calibrate(g, Calibration(RandomInputs(3)), progress=lambda *step: seen.append(step))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    seen.clear()
    calibrate(g, Calibration(NpzFolder(_npz_folder(tmp_path, 2))),
              progress=lambda *step: seen.append(step))  # fmt: skip
    assert seen == [(1, 2), (2, 2)]
    seen.clear()  # a calibrator says only when it is out of batches: no total
    feeds = [{"x": np.ones((1, 3, 8, 8), np.float32)}] * 2
    calibrate(g, Calibration(ListCalibrator(feeds)), progress=lambda *step: seen.append(step))
    assert seen == [(1, None), (2, None)]
