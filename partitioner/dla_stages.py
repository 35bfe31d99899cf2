"""A 3-stage pipeline within one model: the GPU, DLA0 and DLA1 each run a stage of it, on
consecutive frames (``dla_stages: 2``, the concurrency planner's ``gpu+dla0+dla1`` lane).

One TensorRT engine runs on one DLA core, so a single-engine placement puts every DLA layer on
one core. A lane of a concurrent plan may hold several engines: :func:`split_cores` cuts the DLA
layers into a stage on ``dla_core`` and one on the other core, the GPU running its own stage
(the layers the DLA cannot run, and any the balance gives it).

The candidates are chains: the stages are runs of the topological order, so two cut positions
and an order of the stages define a placement. The orders are the three that keep DLA0 before
DLA1 (the cores are identical): GPU first (a GPU stem), last (a GPU head) or between them. The
cost model's own GPU + DLA placement (``place_cost``, the 2-stage pipeline) with its DLA layers
cut in two at one position is a candidate too. Layers that cannot move keep their device: the
DLA cannot run them, a rule pins them to the GPU, or they cannot leave the DLA (the GPU cannot
run them, a rule pins them there, ``gpu_fallback: false``): those go to the nearest DLA stage.

Every candidate is judged by :func:`partitioner.segments.predict`'s pipelined period -- layer
costs on their devices, every boundary transition (a DLA0 -> DLA1 handoff included, see
``segments.handoff``) charged to the GPU, and the DRAM contention term -- the same formula the
2-stage throughput placement is judged by. The search: cut positions at ``GRID`` quantiles of
the cumulative DLA time, every ordered pair of them, then the best pair refined by moving each
cut by halving steps while that lowers the period; the best candidate is then balanced
(:func:`_balance`: runs of layers move off the busiest device to a device they border while
that lowers the period, as ``mincut._balance`` does for two devices). Not exhaustive (a chain is
not every placement, the grid is not every pair, the balance is greedy): a heuristic, whose
result the concurrency LP then weighs against whole copies and 2-stage pipelines. Segments are
formed per core and the loadable limit is enforced per core (``assign.enforce_dla_limits``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from partitioner.assign import enforce_dla_limits
from partitioner.facts import Analysis, ms
from partitioner.mincut import BALANCE_ROUNDS, PENDING, free_runs, touches
from partitioner.segments import Partition, TransitionCost, form_segments, predict

_DEBUG, _PERIOD = "3-stage: ", ": predicted period "  # the search's line in ``Partition.debug``
#: cut positions tried at first (quantiles of the cumulative DLA time); pairs: GRID^2 / 2 x 3
GRID = 12


@dataclass(frozen=True)
class _Chain:
    """Stages in run order (device names) and the two cut positions in the topological order."""

    stages: tuple[str, str, str]
    i: int
    j: int

    def describe(self, names: Sequence[str]) -> str:
        cuts = [f"'{names[p]}'" for p in (self.i, self.j) if 0 < p < len(names)]
        where = f" cut before {' and '.join(cuts)}" if cuts else ""
        return f"{' -> '.join(self.stages)}{where}"


def split_cores(
    a: Analysis, tc: TransitionCost | None, trt: Partition, two_stage: Partition
) -> Partition:
    """The best GPU/DLA0/DLA1 placement found (see the module docstring); ``trt`` and
    ``two_stage`` are the placements of ``a`` on one core (TensorRT's rules, the cost model's
    throughput split). The result may use one core only where the model leaves no DLA layers
    to split (the caller drops such a lane)."""
    assert a.dla is not None
    first, second = a.dla, a.policy.second_dla_device
    names = [n.name for n in a.order]
    base = {n: x.device for n, x in trt.assignments.items()}
    kind = {n: _mobility(a, n, base[n]) for n in names}
    known = [a.io_device, first, second]
    cache: dict[object, tuple[float, float]] = {}

    def score(key: object, devices: Mapping[str, str]) -> tuple[float, float]:
        if key not in cache:
            if not {first, second} <= set(devices.values()):
                cache[key] = (float("inf"), float("inf"))
            else:
                p = predict(a.graph, devices, a.cost, tc, a.io_device, known, a.slowdown)
                cache[key] = (p.period, p.total)
        return cache[key]

    def chain(c: _Chain) -> dict[str, str]:
        out = {}
        for p, n in enumerate(names):
            stage = 0 if p < c.i else 1 if p < c.j else 2
            out[n] = _place(kind[n], base[n], c.stages, stage)
        return out

    grid = _quantiles(a, names, kind, first)
    orders = ((a.io_device, first, second), (first, second, a.io_device),
              (first, a.io_device, second))  # fmt: skip
    best: tuple[tuple[float, float], _Chain] | None = None
    for stages in orders:
        for i in grid:
            for j in grid:
                if j < i:
                    continue
                c = _Chain(stages, i, j)
                s = score(c, chain(c))
                if best is None or s < best[0]:
                    best = (s, c)
    assert best is not None
    best = _refine(best, len(names), lambda c: score(c, chain(c)))
    devices, how = chain(best[1]), best[1].describe(names)
    # the cost model's GPU + one-core split, its DLA layers cut in two
    two = {n: x.device for n, x in two_stage.assignments.items()}
    on_first = [p for p, n in enumerate(names) if two[n] == first]
    for j in sorted({on_first[len(on_first) * k // GRID] for k in range(1, GRID) if on_first}):
        trial = {n: second if two[n] == first and p >= j else two[n] for p, n in enumerate(names)}
        s = score(("two", j), trial)
        if s < best[0]:
            best, devices = (s, best[1]), trial
            how = (
                f"the cost model's GPU+{first} split, its DLA layers from '{names[j]}' on {second}"
            )
    devices, moves = _balance(a, devices, kind, (first, second), tc)
    if moves:
        how += f", then {moves} run(s) of layers moved off the busiest device"
    reasons = {
        n: trt.assignments[n].reason if kind[n] != "free" and devices[n] == base[n] else PENDING
        for n in names
    }
    part = enforce_dla_limits(a, dict(devices), reasons, tc, "cost", list(a.warnings), [])
    period, one_core = part.predicted.period, two_stage.predicted.period
    for n, x in part.assignments.items():
        if x.reason == PENDING:
            label = "GPU" if x.device == "gpu" else "DLA"
            why = (
                f"{label}: cost model (3-stage pipeline {how}): {x.device} stage; predicted "
                f"period {ms(period)} ms vs {ms(one_core)} ms with one DLA core"
            )
            part.assignments[n] = dataclasses.replace(x, reason=why)
    part.debug.insert(
        0,
        f"{_DEBUG}{how}{_PERIOD}{ms(period)} ms vs {ms(one_core)} ms for the GPU+{first} cost "
        f"placement ({len(cache)} placements tried)",
    )
    return part


def summary(part: Partition) -> str:
    """How :func:`split_cores` placed ``part`` (its stage order and cuts, as its debug line
    says), or "" for a placement it did not make."""
    for line in part.debug:
        if line.startswith(_DEBUG):
            return line.removeprefix(_DEBUG).split(_PERIOD)[0]
    return ""


def _mobility(a: Analysis, name: str, placed: str) -> str:
    """``free`` (any device), ``dla`` (a DLA core only) or ``fixed`` (where TensorRT's rules
    put it: the DLA cannot run it, or a rule pins it to the GPU)."""
    f = a.layers[name]
    if placed.startswith("dla"):
        stuck = f.gpu_precision is None or not a.policy.gpu_fallback
        return "dla" if stuck or f.pin_device else "free"
    return "fixed" if not f.dla_ok or f.pin_device or placed == "cpu" else "free"


def _place(kind: str, placed: str, stages: tuple[str, str, str], stage: int) -> str:
    if kind == "fixed":
        return placed
    device = stages[stage]
    if kind == "dla" and not device.startswith("dla"):
        # the nearest DLA stage: the one before, else the one after
        before = [d for d in stages[:stage] if d.startswith("dla")]
        return before[-1] if before else next(d for d in stages if d.startswith("dla"))
    return device


def _quantiles(a: Analysis, names: Sequence[str], kind: Mapping[str, str], dla: str) -> list[int]:
    """Cut positions at GRID quantiles of the cumulative DLA time of the layers that may run
    there (and both ends)."""
    times = [a.layers[n].costs[dla] if kind[n] != "fixed" else 0.0 for n in names]
    total = sum(times) or 1.0
    out = {0, len(names)}
    acc, k = 0.0, 1
    for p, t in enumerate(times):
        while k < GRID and acc >= total * k / GRID:
            out.add(p)
            k += 1
        acc += t
    return sorted(out)


def _refine(
    best: tuple[tuple[float, float], _Chain],
    n: int,
    score: Callable[[_Chain], tuple[float, float]],
) -> tuple[tuple[float, float], _Chain]:
    """Move each cut by halving steps while the period drops."""
    step = max(1, n // (2 * GRID))
    while step >= 1:
        improved = True
        while improved:
            improved = False
            c = best[1]
            for i, j in (
                (c.i - step, c.j),
                (c.i + step, c.j),
                (c.i, c.j - step),
                (c.i, c.j + step),
            ):
                if not 0 <= i <= j <= n:
                    continue
                trial = _Chain(c.stages, i, j)
                s = score(trial)
                if s < best[0]:
                    best, improved = (s, trial), True
        step //= 2
    return best


def _balance(
    a: Analysis,
    start: Mapping[str, str],
    kind: Mapping[str, str],
    cores: tuple[str, str],
    tc: TransitionCost | None,
) -> tuple[dict[str, str], int]:
    """Pipeline balancing over three devices (``mincut._balance``'s for two): move the run of
    layers off the busiest device, to a device it borders, whose move lowers the period most;
    at most ``BALANCE_ROUNDS`` moves, each judged by ``predict``. Returns the placement and the
    number of moves."""
    devices = dict(start)
    fixed = {n: k for n, k in kind.items() if k != "free"}

    def judge(trial: Mapping[str, str]) -> float:
        if not set(cores) <= set(trial.values()):
            return float("inf")
        return predict(a.graph, trial, a.cost, tc, a.io_device, slowdown=a.slowdown).period

    current = predict(a.graph, devices, a.cost, tc, a.io_device, slowdown=a.slowdown)
    period, moves = current.period, 0
    for _ in range(BALANCE_ROUNDS):
        loads = dict(current.per_device)
        loads["gpu"] = loads.get("gpu", 0.0) + current.transfer
        src = max(loads, key=lambda d: loads[d])
        best: tuple[float, tuple[str, ...], str] | None = None
        segments, _ = form_segments(a.graph, devices, None, a.topo)
        for seg in segments:
            if seg.device != src:
                continue
            for run in free_runs(seg.nodes, fixed):
                for dst in ("gpu", *cores):
                    if dst == src or not touches(a, devices, run, dst):
                        continue
                    trial = {**devices, **dict.fromkeys(run, dst)}
                    p = judge(trial)
                    if p < period * (1 - 1e-9) and (best is None or p < best[0]):
                        best = (p, run, dst)
        if best is None:
            break
        period, moves = best[0], moves + 1
        devices.update(dict.fromkeys(best[1], best[2]))
        current = predict(a.graph, devices, a.cost, tc, a.io_device, slowdown=a.slowdown)
    return devices, moves
