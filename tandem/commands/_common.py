"""Pieces several commands share: table printing, JSON output and progress bars (the build's
argument groups are in ``_args``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from partitioner.tables import table


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def print_table(
    headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()
) -> None:
    """Print a table on stdout through the one renderer (``partitioner.tables``); ``right``:
    indexes of right-aligned (numeric) columns."""
    print("\n".join(table(headers, rows, right)))


def shape_text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def progress_shown() -> bool:
    """Progress bars go to stderr, on a TTY only, unless TANDEM_PROGRESS says otherwise (1:
    always, e.g. under CI that keeps stderr; 0: never)."""
    forced = os.environ.get("TANDEM_PROGRESS")
    if forced in ("0", "1"):
        return forced == "1"
    return sys.stderr.isatty()


class Bars:
    """Progress bars on stderr (``rich.progress``, thread-safe); a disabled one draws nothing."""

    def __init__(self, progress: Any = None) -> None:
        self._progress = progress

    def add(
        self, description: str, total: float | None, *, drop_when_done: bool = False
    ) -> Callable[[float], None]:
        """A new bar; returns ``advance(amount)``. ``drop_when_done``: the bar goes once full
        (one of many short ones: a layer's tactic sweep)."""
        if self._progress is None:
            return lambda _amount: None
        progress = self._progress
        task = progress.add_task(description, total=total)

        def advance(amount: float) -> None:
            progress.advance(task, amount)
            if drop_when_done and any(t.id == task and t.finished for t in progress.tasks):
                progress.remove_task(task)

        return advance


@contextmanager
def progress_bars() -> Iterator[Bars]:
    """Bars with ETA for long work (iterations, uploads, boards) where :func:`progress_shown`."""
    if not progress_shown():
        yield Bars()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield Bars(progress)


@contextmanager
def tactic_bars(bars: Bars) -> Iterator[None]:
    """While the block runs, autotuning draws in ``bars``: a bar per layer's tactic sweep (its
    tactics timed, with an ETA; gone when the sweep ends) and a count of the layers tuned."""
    from devices.tuning import observing_tactics

    sweeps: dict[tuple[int, str], Callable[[float], None]] = {}
    layers: list[Callable[[float], None]] = []

    def timed(signature: str, done: int, total: int) -> None:
        key = (threading.get_ident(), signature)  # concurrent lanes tune in their own threads
        if done == 1:
            if not layers:
                layers.append(bars.add("autotune: layers tuned", None))
            sweeps[key] = bars.add(f"autotune {signature}", total, drop_when_done=True)
        sweeps[key](1)
        if done == total:
            layers[0](1)

    with observing_tactics(timed):
        yield


@contextmanager
def progress_bar(description: str, total: float | None) -> Iterator[Callable[[float], None]]:
    """One bar; yields ``advance(amount)``."""
    with progress_bars() as bars:
        yield bars.add(description, total)


@contextmanager
def progress_status() -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr that each step message replaces and that vanishes when the
    work ends (a build's steps); yields ``say(message)``. Nothing where bars are not shown."""
    if not progress_shown():
        yield lambda _message: None
        return
    from rich.console import Console

    with Console(stderr=True).status("") as status:
        yield lambda message: status.update(message)
