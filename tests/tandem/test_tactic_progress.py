"""Autotuning's per-tactic progress (issue 18): ``GpuRunner.measure_tactics`` reports each timed
tactic (devices/tuning.py) and ``tandem run`` -- what ``deploy --tune`` runs on a board -- draws
a bar per layer's sweep with an ETA, on a TTY only, like its other bars."""

from __future__ import annotations

import pytest
from rich.progress import TimeRemainingColumn

from devices.tuning import observing_tactics, tactic_timed
from tandem.commands._common import progress_bars, tactic_bars


def _bars(progress) -> dict[str, tuple[float, float | None]]:  # type: ignore[no-untyped-def]
    return {t.description: (t.completed, t.total) for t in progress.tasks}


def test_each_sweep_draws_a_bar_with_an_eta_that_goes_when_done(monkeypatch):
    monkeypatch.setenv("TANDEM_PROGRESS", "1")  # as on a TTY
    with progress_bars() as bars, tactic_bars(bars):
        progress = bars._progress
        assert any(isinstance(c, TimeRemainingColumn) for c in progress.columns)  # the ETA
        tactic_timed("conv A", 1, 3)  # as measure_tactics reports its first of 3 tactics
        assert _bars(progress) == {"autotune: layers tuned": (0, None),
                                   "autotune conv A": (1, 3)}  # fmt: skip
        tactic_timed("conv A", 2, 3)
        tactic_timed("conv A", 3, 3)
        assert _bars(progress) == {"autotune: layers tuned": (1, None)}
        tactic_timed("conv B", 1, 2)
        assert _bars(progress)["autotune conv B"] == (1, 2)
        tactic_timed("conv B", 2, 2)
        assert _bars(progress) == {"autotune: layers tuned": (2, None)}
    tactic_timed("conv C", 1, 4)  # after the command: nobody observes, nothing breaks


def test_no_bars_off_a_tty(monkeypatch):
    monkeypatch.setenv("TANDEM_PROGRESS", "0")  # piped
    with progress_bars() as bars, tactic_bars(bars):
        assert bars._progress is None
        tactic_timed("conv A", 1, 1)


def test_observers_nest():
    seen: list[tuple[str, int, int]] = []
    inner: list[tuple[str, int, int]] = []
    with observing_tactics(lambda *a: seen.append(a)):
        tactic_timed("conv A", 1, 2)
        with observing_tactics(lambda *a: inner.append(a)):
            tactic_timed("conv A", 2, 2)
        tactic_timed("conv B", 1, 1)
    assert seen == [("conv A", 1, 2), ("conv B", 1, 1)] and inner == [("conv A", 2, 2)]


@pytest.mark.gpu
def test_autotuning_reports_every_tactic_of_every_sweep():
    from devices.gpu import GpuRunner
    from tests.devices.gpu_cases import graph_of
    from tests.devices.int8_cases import models

    seen: list[tuple[str, int, int]] = []
    with observing_tactics(lambda *a: seen.append(a)):
        with GpuRunner(graph_of(models()["splitk"]), "fp16", autotune=True) as runner:
            tuned = [s for s, how in runner.tactic_source.items() if how == "autotune"]
    assert tuned, "the split-K convolution has several tactics: it is autotuned"
    for signature in tuned:
        reports = [(done, total) for s, done, total in seen if s == signature]
        total = reports[0][1]
        assert total > 1 and reports == [(i, total) for i in range(1, total + 1)]
