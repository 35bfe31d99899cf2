"""What produced a time: every latency Tandem prints or writes carries one of these labels.

- ``measured on <GPU name>``: CUDA kernels (or TensorRT on a board's DLA) timed on real hardware;
- ``emulated on <arch> CPU (<model>)``: the numpy reference or the DLA emulator on this host's CPU,
  which says nothing about a board's speed;
- ``predicted for <board> <power mode>``: the cost models' estimate of the target board.

A run that mixes backends (GPU segments on CUDA, DLA segments on the emulator) is labelled with
both parts, so no total looks measured when part of it was emulated.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Iterable
from pathlib import Path

MEASURED_BACKENDS = frozenset({"cuda", "dla-trt"})
EMULATED_BACKENDS = frozenset({"cpu", "dla-emulator"})


@functools.cache
def cpu_name() -> str:
    """``x86_64 CPU (AMD EPYC 7763 64-Core Processor)``: the architecture, then the model that
    /proc/cpuinfo names (Linux; other systems give the architecture alone)."""
    arch = platform.machine() or "host"
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                model = " ".join(value.split())
                break
    except OSError:
        pass
    return f"{arch} CPU ({model})" if model else f"{arch} CPU"


@functools.cache
def gpu_name() -> str:
    """The name CUDA reports for this machine's first GPU, or "this host's GPU" where CUDA
    cannot say (only asked after a segment ran on CUDA, so a GPU is there)."""
    from devices.hardware import probe_local_gpu

    probed = probe_local_gpu()
    return probed[0].name if probed and probed[0].name else "this host's GPU"


def backend_source(backend: str) -> str:
    """The label of one segment's time, from the backend that ran it (``PlanRunner.backends``)."""
    if backend == "cuda":
        return f"measured on {gpu_name()}"
    if backend == "dla-trt":
        return "measured on the DLA (TensorRT)"
    return f"emulated on {cpu_name()}"


def run_source(backends: Iterable[str]) -> str:
    """The label of a whole inference's time: measured, emulated, or both parts named."""
    kinds = set(backends)
    measured = sorted(kinds & MEASURED_BACKENDS)
    parts = [backend_source(b) for b in measured]
    if kinds - MEASURED_BACKENDS or not kinds:
        parts.append(f"emulated on {cpu_name()}")
    return " + ".join(parts)


def predicted_source(target: str, power_mode: str | None) -> str:
    return f"predicted for {target} {power_mode}" if power_mode else f"predicted for {target}"
