"""Run a plan: its segments in order, each on its device's backend, tensors handed across.

Backends per segment:

- GPU segments run on CUDA when a GPU of the plan's arch is present (``cuda``), else on the numpy
  reference (``cpu``) — chosen by ``backend``: ``auto`` takes CUDA when it can and the reference
  when this machine has no matching GPU (saying so in ``notes``), ``cuda`` refuses to fall back,
  ``cpu`` always validates on the reference.
- DLA segments run on the DLA through TensorRT on a Jetson that has one, else on the bundled
  emulator from the plan's loadable.

Each segment is held as a :class:`~devices.runner.BaseRunner` (``CpuRunner``,
``GpuSegmentRunner``, ``DlaEmulatorRunner``, ``TrtDlaRunner``), activated when the plan runner
is, and run by one loop that hands tensors across and records the trace.

Boundary tensors travel as NCHW numpy arrays; each crossing between devices is recorded as a
``copy`` event in the profile so the trace shows where data moved.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from devices.cpu import CpuRunner
from devices.dla import DlaEmulatorRunner, DlaHardwareBackend, TrtDlaRunner
from devices.gpu_segment import GpuSegmentRunner
from devices.hardware import probe_local_gpu
from devices.plan import Plan
from devices.plan_header import SegmentRecord
from devices.runner import BaseRunner
from devices.timesource import backend_source, predicted_source
from dla_sim.loadable import Loadable
from gpu_kernels.lowering import segment_precision
from partitioner.errors import InputError, TandemError
from partitioner.footprint import Footprint, Step, TensorInfo, bind_symbols, bound, estimate
from partitioner.plugins import PLUGINS
from partitioner.profiles import check_shape
from partitioner.validate import human_bytes

BACKENDS = ("auto", "cuda", "cpu")
BUDGET_ENV = "TANDEM_MEMORY_BUDGET"
#: share of this machine's available memory a run may plan for: the estimate counts the tensors
#: between layers, not the temporaries inside one (im2col, BLAS buffers), nor ONNX Runtime's own
DEFAULT_BUDGET_SHARE = 0.5


class RuntimeError_(TandemError):
    """A plan cannot run here as asked (no matching GPU for ``--backend cuda``, ...)."""


class MemoryBudgetError(TandemError):
    """A run would hold more bytes than the memory budget allows; refused before allocating."""


# ----- memory budget ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MemoryBudget:
    bytes: int
    source: str  # how it was decided, for the message


def memory_budget() -> MemoryBudget:
    """``TANDEM_MEMORY_BUDGET`` (a size, ``8G``, ``512M``, ``1000000``, or a share of the
    available memory, ``60%``), else half of what this machine (or its cgroup) has available."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        available = available_memory()
        share = DEFAULT_BUDGET_SHARE
        return MemoryBudget(
            int(available * share),
            f"{share:.0%} of the {human_bytes(available)} available here; set {BUDGET_ENV} to "
            "change it",
        )
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|[KMGT]?)(?:i?B)?", text, re.IGNORECASE)
    if match is None:
        raise InputError(
            f"{BUDGET_ENV}={text!r}: expected a size (8G, 512M, 1000000 bytes) or a share of the "
            "available memory (60%)"
        )
    number, unit = float(match.group(1)), match.group(2).upper()
    if unit == "%":
        size = int(available_memory() * number / 100)
    else:
        size = int(number * 1024 ** " KMGT".index(unit or " "))
    return MemoryBudget(size, f"{BUDGET_ENV}={text}")


def available_memory() -> int:
    """Bytes this process can still get: MemAvailable, capped by a cgroup's memory limit."""
    found: list[int] = []
    meminfo = _read(Path("/proc/meminfo"))
    if meminfo is not None:
        match = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE)
        if match:
            found.append(int(match.group(1)) * 1024)
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),  # cgroup v2
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),  # cgroup v1
    ):  # fmt: skip
        cap, used = _read(Path(limit)), _read(Path(usage))
        if cap and used and cap.strip().isdigit() and used.strip().isdigit():
            found.append(max(int(cap) - int(used), 0))
    if not found:
        found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return min(found)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def check_memory(footprint: Footprint, what: str, held: int = 0) -> None:
    """Refuse a run whose peak (plus ``held`` bytes kept beside it) exceeds the budget, naming
    the largest tensor; cheap enough to call before every run (shapes only, no allocation)."""
    budget = memory_budget()
    need = footprint.peak_bytes + held
    if need <= budget.bytes:
        return
    where = f" (after layer '{footprint.at_layer}')" if footprint.at_layer else ""
    shape = "x".join(str(d) for d in footprint.largest_shape or ()) or "scalar"
    raise MemoryBudgetError(
        f"{what}: running it needs about {human_bytes(need)} for its tensors at the peak{where}; "
        f"the largest is '{footprint.largest}' ({shape} {footprint.largest_dtype or 'float32'}, "
        f"{human_bytes(footprint.largest_bytes)}); the memory budget is "
        f"{human_bytes(budget.bytes)} ({budget.source}); use smaller inputs or raise the budget"
    )


def plan_footprint(plan: Plan, input_shapes: Mapping[str, Sequence[int]]) -> Footprint:
    """The peak bytes a PlanRunner holds: every segment's tensors as the CPU reference would
    hold them, and every tensor crossing a segment boundary until the end of the run (GPU
    segments on CUDA hold theirs on the GPU: counting them here errs on the safe side)."""
    header = plan.record
    declared = {b.name: tuple(b.shape) if b.shape is not None else None for b in header.inputs}
    binding = bind_symbols(declared, input_shapes)
    tensors: dict[str, TensorInfo] = {}
    for b in header.inputs:
        fed = input_shapes.get(b.name)
        tensors[b.name] = (tuple(fed) if fed is not None else declared[b.name], b.dtype)
    steps: list[Step] = []
    keep = set(header.output_names)
    for rec in header.segments:
        constants = {t.name for t in rec.graph.tensors if t.array is not None}
        for t in rec.graph.tensors:
            if t.name not in constants and t.name not in tensors:
                shape = bound(tuple(t.shape) if t.shape is not None else None, binding)
                tensors[t.name] = (shape, t.dtype)
        steps += [
            Step(
                n.name,
                tuple(i for i in n.inputs if i is not None and i not in constants),
                tuple(n.outputs),
            )
            for n in rec.graph.nodes
        ]
        keep.update(rec.outputs)
    return estimate(steps, tensors, declared, keep)


@dataclass
class TraceEvent:
    """One span on a device track, in microseconds from the start of the run."""

    name: str
    track: str  # "GPU", "CPU", "DLA0", "DLA1", "copy"
    start_us: float
    duration_us: float
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class SegmentRunner:
    """A plan segment and the runner executing it, activated: the numpy reference
    (:class:`CpuRunner`), CUDA (:class:`GpuSegmentRunner`), the DLA emulator
    (:class:`DlaEmulatorRunner`) or a real DLA through TensorRT (:class:`TrtDlaRunner`)."""

    record: SegmentRecord
    backend: str  # "cuda" | "cpu" | "dla-emulator" | "dla-trt": traces' and timings' label
    runner: BaseRunner

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def device(self) -> str:
        return self.record.device

    @property
    def inputs(self) -> list[str]:
        return self.record.inputs

    @property
    def outputs(self) -> list[str]:
        return self.record.outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.runner.infer(feeds)

    def close(self) -> None:
        self.runner.deactivate()


def cuda_arch_here() -> str | None:
    """``sm_90`` etc. when a CUDA GPU is usable on this machine, else None."""
    found = probe_local_gpu()
    return found[0].arch if found else None


class PlanRunner(BaseRunner):
    """Executes a plan's segments in order; ``trace`` holds the last run's events."""

    def __init__(
        self,
        plan: Plan,
        backend: str = "auto",
        capture: bool = False,
        timing_cache: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise RuntimeError_(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
        # Like TensorRT's deserialisation: a plan using plugins loads only when they are registered.
        head = plan.record
        PLUGINS.check_available(
            [dataclasses.asdict(p) for p in head.plugins] or None, str(plan.path or "the plan")
        )
        super().__init__(None, f"plan:{head.model or '?'}")
        self.plan = plan
        self.backend = backend
        self.segments: list[SegmentRunner] = []
        self.notes: list[str] = []
        self.trace: list[TraceEvent] = []
        self.segment_ms: dict[str, float] = {}
        #: with ``capture``: every tensor a backend exposed in the last run (for bisection)
        self.capture = capture
        self.captured: dict[str, np.ndarray] = {}
        #: tactic timing cache file for CUDA GPU segments (read, then updated by autotuning)
        self.timing_cache = timing_cache
        self._outputs = head.output_names
        self._inputs = head.inputs
        #: optimisation profiles of a dynamic-shape plan; a feed outside all of them is refused
        self.profiles = head.optimization_profiles()
        #: the profile the last run's shapes fell in (None for a static plan)
        self.active_profile: int | None = None

    # ----- BaseRunner ----------------------------------------------------------------------
    def input_metadata(self) -> dict[str, tuple[str | None, Any]]:
        return {b.name: (b.dtype, tuple(b.shape) if b.shape else None) for b in self._inputs}

    def activate_impl(self) -> None:
        gpu_backend = self._choose_gpu_backend()
        head = self.plan.record
        self.segments = [self._segment_runner(rec, gpu_backend) for rec in head.segments]
        # the numpy reference computes in FP32 whatever precision a segment was planned at
        lowered = [
            f"{seg.name} ({seg.record.precision})"
            for seg in self.segments
            if seg.backend == "cpu" and seg.record.precision in ("fp16", "int8")
        ]
        asked = head.precision
        planned = {rec.precision for rec in head.segments}
        if not lowered and asked in ("fp16", "int8") and asked not in planned:
            # built --fp16/--int8 for a host without a GPU: every layer was placed at FP32
            lowered = [f"this {asked} plan (its target has no GPU: every layer is FP32)"]
        if lowered:
            more = f" and {len(lowered) - 3} more" if lowered[3:] else ""
            which = ", ".join(lowered[:3]) + more
            fp32 = f"in FP32: the FP16/INT8 numerics of {which} are not emulated here"
            gpu_note = [i for i, n in enumerate(self.notes) if n.startswith(_GPU_ON_CPU)]
            if gpu_note:
                self.notes[gpu_note[-1]] += f"; {fp32}"
            else:
                self.notes.append(f"segments ran on the CPU reference {fp32}")

    def deactivate_impl(self) -> None:
        for seg in self.segments:
            seg.close()
        self.segments = []

    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.active_profile = check_shape(self.profiles, feeds)
        env: dict[str, np.ndarray] = dict(feeds)
        where: dict[str, str] = {name: "host" for name in feeds}
        self.trace = []
        self.segment_ms = {}
        self.captured = {}
        t0 = time.perf_counter()
        for seg in self.segments:
            track = _track(seg)
            for name in seg.inputs:
                if where.get(name) not in (track, None):
                    self._copy_event(name, env[name], where[name], track, t0)
            start = time.perf_counter()
            try:
                produced = seg.run({name: env[name] for name in seg.inputs})
            except KeyError as err:
                raise TandemError(
                    f"segment '{seg.name}' needs tensor {err} which no earlier segment produced; "
                    "the plan is inconsistent — rebuild it"
                ) from None
            end = time.perf_counter()
            self.segment_ms[seg.name] = (end - start) * 1e3
            self.trace.append(
                TraceEvent(
                    seg.name,
                    track,
                    (start - t0) * 1e6,
                    (end - start) * 1e6,
                    {
                        "backend": seg.backend,
                        "device": seg.device,
                        "source": backend_source(seg.backend),
                    },
                )
            )
            for name in seg.outputs:
                env[name] = produced[name]
                where[name] = track
            if self.capture:
                self.captured.update(seg.runner.captured)
                self.captured.update({name: produced[name] for name in seg.outputs})
        missing = [n for n in self._outputs if n not in env]
        if missing:
            raise TandemError(f"the plan produced no value for output(s) {', '.join(missing)}")
        return {name: env[name] for name in self._outputs}

    # ----- helpers -------------------------------------------------------------------------
    def backends(self) -> dict[str, str]:
        return {seg.name: seg.backend for seg in self.segments}

    def _copy_event(self, name: str, array: np.ndarray, src: str, dst: str, t0: float) -> None:
        now = (time.perf_counter() - t0) * 1e6
        self.trace.append(
            TraceEvent(
                f"{name}: {src} -> {dst}",
                "copy",
                now,
                0.0,
                {"bytes": int(array.nbytes), "shape": list(array.shape)},
            )
        )

    def _choose_gpu_backend(self) -> str:
        arch = self.plan.record.arch
        has_gpu_segments = any(rec.device == "gpu" for rec in self.plan.record.segments)
        if self.backend == "cpu" or not has_gpu_segments:
            return "cpu"
        here = cuda_arch_here()
        if here is not None and arch is not None and here == arch:
            return "cuda"
        if self.backend == "cuda":
            why = "no CUDA GPU on this machine" if here is None else f"this GPU is {here}"
            raise RuntimeError_(
                f"the plan's GPU segments are built for {arch} ({self.plan.target}) but {why}; "
                "run with --backend cpu to validate it on the reference backend, or build for "
                "--target host"
            )
        why = "no CUDA GPU here" if here is None else f"this GPU is {here}, the plan is for {arch}"
        self.notes.append(f"{_GPU_ON_CPU}: {why}")
        return "cpu"

    def _segment_runner(self, rec: SegmentRecord, gpu_backend: str) -> SegmentRunner:
        """The segment's runner, activated."""
        head = self.plan.record
        runner: BaseRunner
        if rec.device.startswith("dla") and rec.loadable is not None:  # decoding checked it
            loadable = Loadable.from_bytes(
                bytes(self.plan.blob(rec.loadable).data),
                f"{self.plan.path or 'plan'}: segment {rec.name!r} loadable",
            )
            if self._real_dla():
                backend = "dla-trt"
                runner = TrtDlaRunner(
                    self.plan.segment_graph(rec),
                    rec.precision or "fp16",
                    int(rec.device[3:] or 0),
                    head.calibration,
                    loadable=loadable,
                )
            else:
                backend, runner = "dla-emulator", DlaEmulatorRunner(loadable=loadable)
        elif gpu_backend == "cuda" and rec.device == "gpu":  # "cpu" segments: no GPU kernel
            backend = "cuda"
            runner = GpuSegmentRunner(
                self.plan.segment_graph(rec),
                self._gpu_precision(rec),
                self.timing_cache or self._plan_cache(),
                self._prebuilt(rec),
                head.calibration,
            )
        else:
            backend = "cpu"
            runner = CpuRunner(self.plan.segment_graph(rec), capture=self.capture)
        runner.activate()
        return SegmentRunner(rec, backend, runner)

    def _plan_cache(self) -> Any:
        """The timing cache the builder stored in the plan (``BuilderConfig.set_timing_cache``)."""
        if "timing_cache" not in self.plan.blobs:
            return None
        from gpu_kernels.timing_cache import TimingCache

        text = bytes(self.plan.blob("timing_cache").data).decode("utf-8")
        return TimingCache.from_json(text, "the plan's timing cache")

    def _prebuilt(self, rec: SegmentRecord) -> dict[tuple[str, tuple[str, ...]], bytes]:
        """The segment's cross-built cubins (the plan's arch is this GPU's: checked before)."""
        return {
            (m.source, tuple(m.options)): bytes(self.plan.blob(m.blob).data)
            for m in (rec.cuda.modules if rec.cuda else [])
        }

    def _gpu_precision(self, rec: SegmentRecord) -> str:
        """The precision the builder lowered this GPU segment at (``segment_precision``)."""
        if rec.cuda is not None and rec.cuda.precision is not None:
            return rec.cuda.precision
        rows = self.plan.record.layer_rows()
        wanted = (rows[n].precision if n in rows else None for n in rec.layers)
        return segment_precision(wanted, bool(self.plan.record.calibration))

    def _real_dla(self) -> bool:
        """A real DLA through TensorRT on a Jetson; the emulator everywhere else (and always
        with ``--backend cpu``, which validates a plan on the reference paths)."""
        if self.backend == "cpu":
            return False
        if not hasattr(self, "_dla_probe"):
            ok, why = DlaHardwareBackend().available()
            self._dla_probe = ok
            if not ok and any(r.device.startswith("dla") for r in self.plan.record.segments):
                self.notes.append(f"DLA segments ran on the emulator: {why}")
        return self._dla_probe


_GPU_ON_CPU = "GPU segments ran on the CPU reference"


def _track(seg: SegmentRunner) -> str:
    if seg.device.startswith("dla"):
        return seg.device.upper()
    return "GPU" if seg.backend == "cuda" else "GPU (cpu reference)"


def chrome_trace(events: list[TraceEvent], iteration: int = 0) -> list[dict[str, Any]]:
    """Chrome trace events (open in Perfetto / chrome://tracing): one track per device, and one
    process per kind of time, named by its source (``devices.timesource``): what ran on this
    host (measured or emulated) is process 1, the cost model's board prediction process 2, so
    milliseconds of prediction are not drawn as slivers inside seconds of emulation."""
    procs = {False: 1, True: 2}
    sources: dict[bool, list[str]] = {False: [], True: []}
    for e in events:
        source = e.args.get("source")
        kind = bool(e.args.get("predicted"))
        if source and source not in sources[kind]:
            sources[kind].append(source)
    names = {
        False: "ran here: " + (" + ".join(sources[False]) or "host"),
        True: " + ".join(sources[True]) or "predicted",
    }
    tracks = sorted(
        {(bool(e.args.get("predicted")), e.track) for e in events},
        key=lambda kt: (kt[0], kt[1] == "copy", kt[1]),
    )
    tid = {kt: i + 1 for i, kt in enumerate(tracks)}
    out: list[dict[str, Any]] = [
        {"ph": "M", "pid": procs[kind], "name": "process_name", "args": {"name": names[kind]}}
        for kind in sorted({kind for kind, _ in tracks})
    ]
    out += [
        {"ph": "M", "pid": procs[kind], "tid": tid[(kind, t)], "name": "thread_name",
         "args": {"name": t}}
        for kind, t in tracks
    ]
    for e in events:
        kind = bool(e.args.get("predicted"))
        out.append(
            {
                "ph": "X" if e.duration_us > 0 else "i",
                "pid": procs[kind],
                "tid": tid[(kind, e.track)],
                "name": e.name,
                "ts": e.start_us,
                "dur": e.duration_us,
                "s": "t",
                "args": {**e.args, "iteration": iteration},
            }
        )
    return out


def predicted_trace(plan: Plan) -> list[TraceEvent]:
    """The board timeline the cost models predict: each segment's layers back to back on its
    device's "predicted" track, segments in run order (what a Jetson would show, not this host).
    A concurrent plan's lanes overlap: ``devices.concurrent.predicted_schedule`` lays them out."""
    head = plan.record
    if head.lanes:
        from devices.concurrent import predicted_schedule  # it builds on this module

        return predicted_schedule(plan).events
    layer_ms = {row.name: row.predicted_ms for row in head.layers}
    events: list[TraceEvent] = []
    clock_us = 0.0
    source = predicted_source(plan.target, head.power_mode)
    for rec in head.segments:
        per_layer = rec.predicted_layer_ms
        track = f"{rec.device.upper()} predicted on {plan.target}"
        for layer in rec.layers:
            ms = per_layer.get(layer, layer_ms.get(layer))
            if not ms:
                continue
            events.append(
                TraceEvent(
                    layer,
                    track,
                    clock_us,
                    ms * 1e3,
                    {"segment": rec.name, "predicted": True, "source": source},
                )
            )
            clock_us += ms * 1e3
    return events
