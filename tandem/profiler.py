"""``IProfiler``: per-segment times of each run handed to the user's profiler, as TensorRT's
``context.profiler`` gets per-layer times, each with where the number came from.

Tandem times what it runs, a segment at a time (one CUDA segment, one DLA loadable, one CPU
stretch): ``report_layer_time(name, ms)`` is called once per segment, named after it, and
``profiler.sources[name]`` says what produced that time before the call.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Mapping
from typing import Any

from tandem.trt_names import TrtApi


class IProfiler(TrtApi):
    """Subclass and implement ``report_layer_time(layer_name, ms)``; set it as
    ``context.profiler``. ``sources`` maps each reported name to its time's source."""

    _trt_api = "IProfiler"

    def __init__(self) -> None:
        self.sources: dict[str, str] = {}

    def report_layer_time(self, layer_name: str, ms: float) -> None:
        raise NotImplementedError("an IProfiler subclass implements report_layer_time")


@functools.lru_cache(maxsize=1)
def _gpu_name() -> str:
    from devices.hardware import probe_local_gpu

    found = probe_local_gpu()
    return (found[0].name or found[0].arch) if found else "this machine's GPU"


def time_source(backend: str) -> str:
    """What produced a segment's time, from where it ran (``PlanRunner.backends``)."""
    cpu = platform.machine() or "host"
    return {
        "cuda": f"measured on {_gpu_name()} (CUDA)",
        "cpu": f"emulated on {cpu} CPU (numpy reference for the board's GPU/CPU)",
        "dla-emulator": f"emulated on {cpu} CPU (DLA emulator)",
        "dla-trt": "measured on the DLA (TensorRT)",
    }.get(backend, f"measured on backend {backend}")


def report(profiler: Any, segment_ms: Mapping[str, float], backends: Mapping[str, str]) -> None:
    """Hand one run's segment times to ``profiler`` (with their sources in ``sources``)."""
    sources = getattr(profiler, "sources", None)
    if not isinstance(sources, dict):  # a subclass that did not call IProfiler.__init__
        sources = {}
        profiler.sources = sources
    for name, ms in segment_ms.items():
        sources[name] = time_source(backends.get(name, "?"))
        profiler.report_layer_time(name, float(ms))
