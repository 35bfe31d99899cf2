"""Run concurrent plans: every engine busy at once, one worker per device.

A concurrent plan (``targets.concurrency``) lists **lanes**: each a run order of segments that
carries a whole frame, with the frames/s the planner gave it. :class:`ConcurrentRunner` starts
one worker thread per device the plans use (``gpu``, ``dla0``, ``dla1``, ``cpu``); a worker owns
its device's segment runners (built in that thread, so a GPU worker's CUDA context is current
there and its kernels run on that runner's own non-blocking stream) and takes tasks from its own
queue. A frame enters its lane's first stage; when a stage finishes, its outputs (the boundary
tensors) go with the frame to the next stage's worker. Lanes run side by side (data
parallelism) and the stages of one lane work on consecutive frames (a pipeline); each lane
holds at most two frames per stage (double-buffered boundaries), so a slow stage holds the
dispatcher back instead of queueing without bound. Frames are dealt to lanes in proportion to
their planned rates.

Several plans (a plan group: one per model) run in one runner, sharing the workers.

The trace shows one track per device with the spans that really overlapped here, and
:func:`predicted_schedule` the same dispatch on the board's predicted segment times, stretched
by the contention the planner predicted: the timeline a Jetson would show.
"""

from __future__ import annotations

import heapq
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.plan import Plan
from devices.plan_header import SegmentRecord
from devices.runtime import PlanRunner, SegmentRunner, TraceEvent
from devices.timesource import backend_source, predicted_source
from partitioner.errors import InputError, TandemError

#: frames a lane may hold per stage: one in work, one waiting at the boundary (double buffer)
BUFFERS_PER_STAGE = 2


@dataclass(frozen=True)
class LaneSpec:
    """A lane of one plan: its segment records in run order and its planned rate."""

    model: str
    name: str
    segments: tuple[SegmentRecord, ...]
    rate_fps: float

    @property
    def label(self) -> str:
        return f"{self.model}/{self.name}"


def plan_lanes(plan: Plan) -> list[LaneSpec]:
    """The lanes of ``plan``; a single-engine plan is one lane of all its segments in order."""
    head = plan.record
    model = head.model or "model"
    if not head.lanes:
        return [LaneSpec(model, "serial", tuple(head.segments), 1.0)]
    return [
        LaneSpec(model, lane.name, tuple(map(head.segment, lane.segments)), float(lane.rate_fps))
        for lane in head.lanes
    ]


@dataclass
class _Frame:
    index: int
    lane: int
    env: dict[str, np.ndarray]
    stage: int = 0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


_STOP = object()


class ConcurrentRunner(PlanRunner):
    """Runs one or more plans' lanes concurrently (see the module docstring).

    ``infer(feeds)`` pushes ``frames_per_run`` copies of ``feeds`` through the lanes (default:
    enough for every lane's pipeline to fill) and returns the first frame's outputs;
    :meth:`run_frames` serves explicit frames of each model and returns every output.
    """

    def __init__(
        self,
        plans: Plan | Sequence[Plan],
        backend: str = "auto",
        frames_per_run: int | None = None,
        timing_cache: str | None = None,
    ) -> None:
        group = [plans] if isinstance(plans, Plan) else list(plans)
        if not group:
            raise InputError("a concurrent run needs at least one plan")
        super().__init__(group[0], backend, timing_cache=timing_cache)
        self.plans = group
        self.runners = [PlanRunner(p, backend, timing_cache=timing_cache) for p in group]
        self.lanes: list[LaneSpec] = []
        self._lane_plan: list[int] = []
        for i, plan in enumerate(group):
            for lane in plan_lanes(plan):
                self.lanes.append(lane)
                self._lane_plan.append(i)
        models = [p.record.model or "model" for p in group]
        if len(set(models)) != len(models):
            raise InputError(f"a plan group runs each model once; got {', '.join(models)}")
        self.models = models
        stages = max(len(lane.segments) for lane in self.lanes)
        self.frames_per_run = frames_per_run or max(2, len(self.lanes) * (stages + 1))
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._seg: dict[tuple[int, str], SegmentRunner] = {}
        self._slots: list[threading.Semaphore] = []
        self._t0 = 0.0
        self._lock = threading.Lock()
        #: the note about ``infer``'s frames per run (not said of ``run_frames``' explicit frames)
        self.run_note = ""
        #: every frame's outputs of the last ``infer`` / ``run_frames``, in frame order
        self.last_outputs: list[dict[str, np.ndarray]] = []

    # ----- activation: one worker thread per device, building its own runners --------------
    def activate_impl(self) -> None:
        gpu_backend = {i: r._choose_gpu_backend() for i, r in enumerate(self.runners)}
        by_device: dict[str, list[tuple[int, SegmentRecord]]] = {}
        for i, lane in enumerate(self.lanes):
            for rec in lane.segments:
                by_device.setdefault(rec.device, []).append((self._lane_plan[i], rec))
        ready: dict[str, threading.Event] = {}
        failures: dict[str, BaseException] = {}
        for device, recs in sorted(by_device.items()):
            self._queues[device] = queue.Queue()
            ready[device] = threading.Event()
            worker = threading.Thread(
                target=self._worker,
                name=f"tandem-{device}",
                daemon=True,
                args=(device, recs, gpu_backend, ready[device], failures),
            )
            worker.start()
            self._threads.append(worker)
        for event in ready.values():
            event.wait()
        self._slots = [
            threading.Semaphore(BUFFERS_PER_STAGE * len(lane.segments)) for lane in self.lanes
        ]
        if failures:
            self.deactivate_impl()
            device, err = sorted(failures.items())[0]
            raise (
                err
                if isinstance(err, TandemError)
                else TandemError(f"the {device} worker could not load its segments: {err}")
            )
        # the workers' segment runners said where they ran (emulator, CPU reference)
        self.notes = list(dict.fromkeys(n for r in self.runners for n in r.notes))
        self.run_note = (
            f"concurrent plan: each run serves {self.frames_per_run} frames on "
            f"{len(self.lanes)} lanes at once (latency is per run, not per frame)"
        )
        self.notes.append(self.run_note)

    def deactivate_impl(self) -> None:
        for q in self._queues.values():
            q.put(_STOP)
        for t in self._threads:
            t.join()
        self._queues, self._threads, self._seg = {}, [], {}

    def backends(self) -> dict[str, str]:
        return {seg.name: seg.backend for seg in self._seg.values()}

    def _worker(
        self,
        device: str,
        recs: Sequence[tuple[int, SegmentRecord]],
        gpu_backend: Mapping[int, str],
        ready: threading.Event,
        failures: dict[str, BaseException],
    ) -> None:
        mine: list[SegmentRunner] = []
        try:
            for plan_index, rec in recs:
                runner = self.runners[plan_index]._segment_runner(rec, gpu_backend[plan_index])
                self._seg[(plan_index, rec.name)] = runner
                mine.append(runner)
        except BaseException as err:  # reported by activate_impl, in the caller's thread
            failures[device] = err
        finally:
            ready.set()
        q = self._queues[device]
        while True:
            item = q.get()
            if item is _STOP:
                break
            self._run_stage(item)
        for runner in mine:
            runner.close()

    # ----- running ---------------------------------------------------------------------------
    def infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if len(self.plans) > 1:
            raise InputError("a plan group serves several models: use run_frames({model: [feeds]})")
        outputs = self.run_frames({self.models[0]: [feeds] * self.frames_per_run})
        return outputs[self.models[0]][0]

    def run_frames(
        self, frames: Mapping[str, Sequence[Mapping[str, np.ndarray]]]
    ) -> dict[str, list[dict[str, np.ndarray]]]:
        """Serve ``frames`` (model name -> its frames' feeds) on every lane at once; returns
        each model's outputs in its frames' order. ``trace`` holds the spans."""
        unknown = sorted(set(frames) - set(self.models))
        if unknown:
            raise InputError(
                f"no plan in this group serves model(s) {', '.join(unknown)}; "
                f"the group has {', '.join(self.models)}"
            )
        order = self._deal(frames)
        self.trace = []
        self.segment_ms = {}
        jobs: list[_Frame] = []
        self._t0 = time.perf_counter()
        for model, k, index in order:
            self._slots[index].acquire()
            job = _Frame(k, index, dict(frames[model][k]))
            jobs.append(job)
            self._dispatch(job)
        for job in jobs:
            job.done.wait()
        errors = [j.error for j in jobs if j.error is not None]
        if errors:
            err = errors[0]
            raise err if isinstance(err, TandemError) else TandemError(str(err))
        out: dict[str, list[dict[str, np.ndarray]]] = {m: [] for m in frames}
        for job in sorted(jobs, key=lambda j: (self.lanes[j.lane].model, j.index)):
            lane = self.lanes[job.lane]
            names = self.plans[self._lane_plan[job.lane]].record.output_names
            missing = [n for n in names if n not in job.env]
            if missing:
                raise TandemError(f"lane {lane.label} produced no value for {', '.join(missing)}")
            out[lane.model].append({n: job.env[n] for n in names})
        self.last_outputs = [o for m in frames for o in out[m]]
        return out

    def _deal(
        self, frames: Mapping[str, Sequence[Mapping[str, np.ndarray]]]
    ) -> list[tuple[str, int, int]]:
        """(model, frame index, lane) in dispatch order: each frame to the lane of its model
        furthest behind its planned share (lanes with no rate get frames only if all lack one)."""
        counts = [0] * len(self.lanes)
        order = []
        longest = max((len(v) for v in frames.values()), default=0)
        for k in range(longest):
            for model, feeds in frames.items():
                if k >= len(feeds):
                    continue
                mine = [i for i, lane in enumerate(self.lanes) if lane.model == model]
                rated = [i for i in mine if self.lanes[i].rate_fps > 0] or mine
                lane = min(
                    rated, key=lambda i: ((counts[i] + 1) / max(self.lanes[i].rate_fps, 1e-9), i)
                )
                counts[lane] += 1
                order.append((model, k, lane))
        return order

    def _dispatch(self, job: _Frame) -> None:
        rec = self.lanes[job.lane].segments[job.stage]
        self._queues[rec.device].put(job)

    def _run_stage(self, job: _Frame) -> None:
        lane = self.lanes[job.lane]
        rec = lane.segments[job.stage]
        seg = self._seg[(self._lane_plan[job.lane], rec.name)]
        start = time.perf_counter()
        try:
            produced = seg.run({name: job.env[name] for name in seg.inputs})
            job.env.update({name: produced[name] for name in seg.outputs})
        except KeyError as err:
            job.error = TandemError(
                f"segment '{seg.name}' of lane {lane.label} needs tensor "
                f"{err} which no earlier stage produced; rebuild the plan"
            )
        except BaseException as err:
            job.error = err
        end = time.perf_counter()
        with self._lock:
            self.trace.append(
                TraceEvent(
                    f"{rec.name} #{job.index}",
                    _track(rec.device, seg.backend),
                    (start - self._t0) * 1e6,
                    (end - start) * 1e6,
                    {
                        "lane": lane.label,
                        "model": lane.model,
                        "frame": job.index,
                        "segment": rec.name,
                        "device": rec.device,
                        "backend": seg.backend,
                        "source": backend_source(seg.backend),
                        "predicted_ms": rec.predicted_ms,
                    },
                )
            )
            self.segment_ms[rec.name] = (end - start) * 1e3
        job.stage += 1
        if job.error is None and job.stage < len(lane.segments):
            self._dispatch(job)
            return
        self._slots[job.lane].release()
        job.done.set()


def _track(device: str, backend: str) -> str:
    if device.startswith("dla"):
        return device.upper()
    if device == "gpu":
        return "GPU" if backend == "cuda" else "GPU (cpu reference)"
    return device.upper()


@dataclass
class PredictedSchedule:
    events: list[TraceEvent]
    makespan_s: float
    frames: int

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.makespan_s if self.makespan_s > 0 else 0.0


def predicted_schedule(
    plans: Plan | Sequence[Plan], frames: int | None = None
) -> PredictedSchedule:
    """The board timeline of serving ``frames`` frames per model (default: 50 per lane) with
    the same dealing as :class:`ConcurrentRunner`: each device serves its queue in order of
    arrival; segment times are the plans' predicted board times, stretched by the contention
    slowdown the planner predicted (the plan's ``concurrency.slowdown``)."""
    group = [plans] if isinstance(plans, Plan) else list(plans)
    lanes: list[LaneSpec] = []
    slow: dict[str, float] = {}
    target = group[0].target
    for plan in group:
        lanes += plan_lanes(plan)
        slow.update(plan.record.concurrency.slowdown if plan.record.concurrency else {})
    per_model = frames or 50 * max(
        sum(1 for lane in lanes if lane.model == m) for m in {lane.model for lane in lanes}
    )
    counts = [0] * len(lanes)
    ready: list[tuple[float, int, int, int, int]] = []  # (ready at, seq, lane, frame, stage)
    seq = 0
    for k in range(per_model):
        for model in dict.fromkeys(lane.model for lane in lanes):
            mine = [i for i, lane in enumerate(lanes) if lane.model == model]
            rated = [i for i in mine if lanes[i].rate_fps > 0] or mine
            lane = min(rated, key=lambda i: ((counts[i] + 1) / max(lanes[i].rate_fps, 1e-9), i))
            counts[lane] += 1
            heapq.heappush(ready, (0.0, seq, lane, k, 0))
            seq += 1
    free: dict[str, float] = {}
    events: list[TraceEvent] = []
    foretold = predicted_source(target, group[0].record.power_mode)
    end_all = 0.0
    while ready:
        at, _, lane, k, stage = heapq.heappop(ready)
        rec = lanes[lane].segments[stage]
        device = rec.device
        ms = float(rec.predicted_ms or 0.0) * slow.get(device, 1.0)
        start = max(at, free.get(device, 0.0))
        end = start + ms * 1e-3
        free[device] = end
        end_all = max(end_all, end)
        events.append(
            TraceEvent(
                f"{rec.name} #{k}",
                f"{device.upper()} predicted on {target}",
                start * 1e6,
                ms * 1e3,
                {"lane": lanes[lane].label, "frame": k, "predicted": True, "source": foretold},
            )
        )
        if stage + 1 < len(lanes[lane].segments):
            heapq.heappush(ready, (end, seq, lane, k, stage + 1))
            seq += 1
    n_models = len({lane.model for lane in lanes})
    return PredictedSchedule(events, end_all, per_model * n_models)


def overlapping(events: Sequence[TraceEvent]) -> set[frozenset[str]]:
    """Pairs of tracks with spans that overlap in time (what the trace should show)."""
    spans = sorted(
        (e.start_us, e.start_us + e.duration_us, e.track) for e in events if e.duration_us > 0
    )
    pairs: set[frozenset[str]] = set()
    for i, (_s1, e1, t1) in enumerate(spans):
        for s2, _e2, t2 in spans[i + 1 :]:
            if s2 >= e1:
                break
            if t1 != t2:
                pairs.add(frozenset((t1, t2)))
    return pairs


def runner_for(plan: Plan, backend: str = "auto", timing_cache: str | None = None) -> PlanRunner:
    """The runner a plan needs: concurrent when it has lanes, else the serial PlanRunner."""
    if plan.record.lanes:
        return ConcurrentRunner(plan, backend, timing_cache=timing_cache)
    return PlanRunner(plan, backend, timing_cache=timing_cache)
