"""Autotuning's progress: each convolution tactic ``GpuRunner.measure_tactics`` times is reported
to the observer set here, so that a command can draw a bar per layer's tactic sweep with an ETA
(``tandem run --backend cuda --timing-cache``, which ``tandem deploy --tune`` runs on a board).
A sweep compiles each tactic's kernel (NVRTC) before timing it, so a layer takes seconds.

One observer for the process, not a context variable: a concurrent plan's GPU lanes build their
runners in worker threads, which a context variable would not reach.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: (layer signature, tactics timed so far, tactics in its sweep)
TacticObserver = Callable[[str, int, int], None]

_observer: TacticObserver | None = None
_lock = threading.Lock()


@contextmanager
def observing_tactics(observer: TacticObserver) -> Iterator[None]:
    """Report every timed tactic to ``observer`` while the block runs."""
    global _observer
    with _lock:
        previous, _observer = _observer, observer
    try:
        yield
    finally:
        with _lock:
            _observer = previous


def tactic_timed(signature: str, done: int, total: int) -> None:
    """Called by the autotuner after each tactic of a layer's sweep (nothing when unobserved)."""
    observer = _observer
    if observer is not None:
        observer(signature, done, total)
