"""The calibration-cache file shared by concurrent builds: atomic, merged under a lock."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from dla_sim.calibration import CalibrationError, read_cache, write_cache

CTX = mp.get_context("fork")
WRITERS, ROUNDS = 4, 8


def _writer(path: str, who: int, start: mp.synchronize.Barrier) -> None:
    start.wait()
    for k in range(ROUNDS):  # each round a build that calibrated one more tensor
        write_cache(path, {f"act-{who}-{k}": 0.01 * (k + 1)})


def test_concurrent_writers_lose_no_scale(tmp_path: Path) -> None:
    path = str(tmp_path / "calib.cache")
    start = CTX.Barrier(WRITERS)
    procs = [CTX.Process(target=_writer, args=(path, i, start)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    scales = read_cache(path)
    assert len(scales) == WRITERS * ROUNDS
    assert scales["act-2-7"] == pytest.approx(0.08)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.cache", "calib.cache.lock"]


def test_new_scales_win_and_another_calibrator_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "calib.cache"
    write_cache(path, {"a": 1.0, "b": 2.0})
    write_cache(path, {"b": 4.0})
    assert read_cache(path) == {"a": 1.0, "b": 4.0}
    write_cache(path, {"c": 0.5}, method="minmax")  # scales of two calibrators never mix
    assert read_cache(path) == {"c": 0.5}
    assert path.read_text(encoding="utf-8").startswith("TRT-8601-MinMaxCalibration\n")


def test_a_corrupt_cache_is_refused_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "calib.cache"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(CalibrationError, match="calib.cache: not a TensorRT calibration cache"):
        write_cache(path, {"a": 1.0})
    with pytest.raises(CalibrationError, match="not UTF-8"):
        read_cache(path)
    assert path.read_bytes() == b"\xff\xfe garbage"
