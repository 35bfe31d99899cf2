"""Several engines at once: how fast GPU, DLA0 and DLA1 serve one model or a group of models.

A **lane** is one way to run a whole frame of one model: a placement of its layers on devices
(GPU only; a DLA core with its GPU fallback; a GPU+DLA pipeline) with the seconds each device
spends on one frame (GPU time includes the boundary reformats it runs). Lanes of the same or of
different models run at the same time; a lane whose stages sit on several devices is a pipeline
(its stages work on consecutive frames, boundary tensors double-buffered), several lanes of one
model are data parallelism (whole copies on different devices). Both are the same steady state:
lane ``l`` carries ``x_l`` frames per second and costs device ``d`` ``x_l * load_l(d) * s_d``
of every second, where ``s_d`` is ``d``'s DRAM-contention slowdown given what the others do.

:func:`schedule` solves that exactly as a linear program over the lane rates (HiGHS through
``scipy.optimize.linprog``): maximise a common scale ``lam`` of every model's demand (its weight:
equal frame counts minimise the makespan; or its rate target in frames/s), subject to no device
being busy more than all the time; priorities are solved level by level. The slowdowns are a
fixed point around the LP (``CONTENTION_ROUNDS``). Every lane gets a reason: its share of the
model's frames, or why it stays unused -- read from the LP's device prices (duals), the
per-frame cost of a lane on the saturated devices against what the model's used lanes pay.

:func:`best_whole_assignment` is the exact baseline with no frame splitting: each model on one
lane of an allowed kind (e.g. its best single device), enumerated exhaustively.

No hardware knowledge here: loads and the slowdown come from ``devices/`` through the caller.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from partitioner.errors import ConfigError
from partitioner.segments import CONTENTION_ROUNDS, Slowdown

#: above this many whole assignments the exhaustive baseline refuses (3 lanes ** 8 models)
MAX_ASSIGNMENTS = 6561
_EPS = 1e-9
MAX_LONE_COMBINATIONS = 32  # one-lane-per-model trials :func:`schedule` also solves
SECOND_TERM = 1e-3  # weight of the rated models' own rates beside the common scale
TIE = 5e-3  # relative: lanes within 0.5 % of the used lanes' cost are reported as a tie


@dataclass(frozen=True)
class Lane:
    """One way to run a frame of ``model``: seconds per frame on each device it uses."""

    model: str
    name: str  # e.g. "gpu", "dla0", "gpu+dla1 pipeline"
    loads: Mapping[str, float]
    latency: float  # one frame alone, serially (seconds)
    kind: str = "single"  # "single": one device (+ its GPU fallback); "pipeline": stages
    note: str = ""  # how its placement was found, shown in its reason when used

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(sorted(d for d, t in self.loads.items() if t > 0))

    def describe(self) -> str:
        parts = ", ".join(f"{d} {t * 1e3:.3f} ms" for d, t in sorted(self.loads.items()) if t > 0)
        return f"{self.model}/{self.name} ({parts} per frame)"


@dataclass(frozen=True)
class Demand:
    """What a model asks for: ``rate`` frames/s (a target), else a ``weight`` (relative frame
    count: equal weights minimise the makespan of equal batches); higher ``priority`` first."""

    model: str
    weight: float = 1.0
    rate: float | None = None
    priority: int = 0


@dataclass(frozen=True)
class LaneUse:
    lane: Lane
    rate: float  # frames/s this lane carries
    reason: str


@dataclass
class Schedule:
    """The solved steady state: per-lane rates with reasons, per-model rates, utilisation."""

    uses: list[LaneUse]
    rates: dict[str, float]  # frames/s per model
    utilisation: dict[str, float]  # busy fraction per device, contention included
    slowdown: dict[str, float]  # the contention factor each device runs under
    goal: str  # "makespan" | "rates"
    met: dict[str, bool] = field(default_factory=dict)  # rate targets met (goal "rates")
    notes: list[str] = field(default_factory=list)

    def lanes_of(self, model: str) -> list[LaneUse]:
        return [u for u in self.uses if u.lane.model == model and u.rate > _EPS]

    def makespan(self, counts: Mapping[str, float]) -> float:
        """Seconds to serve ``counts`` frames of each model at these rates (steady state)."""
        return max(counts[m] / self.rates[m] if self.rates[m] > 0 else math.inf for m in counts)


def schedule(
    lanes: Sequence[Lane],
    demands: Sequence[Demand],
    slowdown: Slowdown | None = None,
) -> Schedule:
    """Rates for ``lanes`` serving ``demands`` (see the module docstring); exact for the lanes
    given. A model without a lane, or a lane of an unknown model, is a ConfigError.

    With contention, a lightly used device still slows the others down, so every subset of
    the devices is solved on its own (at most 7 for GPU + 2 DLAs) and the best kept: adding a
    lane or a device never makes the answer worse, and a device the best schedule leaves idle
    says why in its lanes' reasons."""
    models = [d.model for d in demands]
    if len(set(models)) != len(models):
        raise ConfigError(f"a model is named twice in the group: {', '.join(models)}")
    for d in demands:
        if not any(lane.model == d.model for lane in lanes):
            raise ConfigError(f"model '{d.model}' has no lane to run on")
        if (d.rate is not None and not d.rate > 0) or not d.weight > 0:
            raise ConfigError(f"model '{d.model}': rate and weight must be positive")
    lanes = [lane for lane in lanes if lane.model in set(models)]
    full = _schedule_on(lanes, demands, slowdown)
    devices = sorted({d for lane in lanes for d in lane.devices})
    if slowdown is None or len(devices) < 2:
        return full
    best, best_key = full, _key(full, demands)
    trials: list[list[Lane]] = []
    for size in range(1, len(devices)):
        for subset in itertools.combinations(devices, size):
            inside = [lane for lane in lanes if set(lane.devices) <= set(subset)]
            if all(any(lane.model == m for lane in inside) for m in models):
                trials.append(inside)
    # one lane per model too, where that is few combinations: the contention fixed point
    # around the LP is not itself an optimisation, and a lone pipeline can beat a mix
    per_model = [[lane for lane in lanes if lane.model == m] for m in models]
    if math.prod(len(p) for p in per_model) <= MAX_LONE_COMBINATIONS:
        trials += [list(combo) for combo in itertools.product(*per_model)]
    for inside in trials:
        trial = _schedule_on(inside, demands, slowdown)
        key = _key(trial, demands)
        if key[0] > best_key[0] or (key[0] == best_key[0] and key[1] > best_key[1] * (1 + 1e-9)):
            best, best_key = trial, key
    if best is full:
        return full
    kept = {id(u.lane) for u in best.uses}
    busy = {d for u in best.uses if u.rate > _EPS for d in u.lane.devices}
    idle = sorted(set(devices) - busy)
    if idle:
        why = (
            f"unused: the best schedule leaves {', '.join(idle)} idle -- running it too would "
            "slow the other devices down (DRAM contention) by more than it adds"
        )
        best.notes.append(f"{', '.join(idle)} left idle: contention outweighs what it would add")
    else:
        why = (
            "unused: adding it to the used lanes raises the DRAM contention on their devices "
            "by more than it adds"
        )
    uses = list(best.uses) + [LaneUse(lane, 0.0, why) for lane in lanes if id(lane) not in kept]
    best.uses = sorted(uses, key=lambda u: lanes.index(u.lane))
    return best


def _key(sched: Schedule, demands: Sequence[Demand]) -> tuple[int, float]:
    return sum(sched.met.values()), _scale(sched, demands)


def _schedule_on(
    lanes: Sequence[Lane],
    demands: Sequence[Demand],
    slowdown: Slowdown | None,
) -> Schedule:
    """:func:`schedule` on exactly these lanes (the contention fixed point around the LP)."""
    models = [d.model for d in demands]
    devices = sorted({d for lane in lanes for d in lane.devices})
    factors = dict.fromkeys(devices, 1.0)
    x = np.zeros(len(lanes))
    prices: dict[str, float] = {}
    values: dict[str, float] = {}
    for _ in range(CONTENTION_ROUNDS if slowdown else 1):
        x, prices, values = _solve_levels(lanes, demands, devices, factors)
        busy = _busy(lanes, x, devices, factors)
        if slowdown is None:
            break
        new = {
            d: slowdown(d, {o: min(1.0, busy[o]) for o in devices if o != d and busy[o] > 0})
            if busy[d] > 0
            else 1.0
            for d in devices
        }
        if all(abs(new[d] - factors[d]) < 1e-6 for d in devices):
            break
        factors = new
    busy = _busy(lanes, x, devices, factors)
    rates = {m: float(sum(x[i] for i, lane in enumerate(lanes) if lane.model == m)) for m in models}
    goal = "rates" if any(d.rate is not None for d in demands) else "makespan"
    met = {d.model: rates[d.model] >= d.rate * (1 - 1e-6) for d in demands if d.rate is not None}
    uses = [
        LaneUse(lane, float(x[i]), _reason(lane, float(x[i]), rates, prices, values, factors))
        for i, lane in enumerate(lanes)
    ]
    notes = [
        f"model '{m}' misses its rate target: {rates[m]:.1f} frames/s of "
        f"{next(d.rate for d in demands if d.model == m):.1f}"
        for m, ok in met.items()
        if not ok
    ]
    return Schedule(uses, rates, busy, factors, goal, met, notes)


def _busy(
    lanes: Sequence[Lane], x: np.ndarray, devices: Sequence[str], factors: Mapping[str, float]
) -> dict[str, float]:
    return {
        d: float(sum(x[i] * lane.loads.get(d, 0.0) for i, lane in enumerate(lanes)) * factors[d])
        for d in devices
    }


def _solve_levels(
    lanes: Sequence[Lane],
    demands: Sequence[Demand],
    devices: Sequence[str],
    factors: Mapping[str, float],
) -> tuple[np.ndarray, dict[str, float], dict[str, float]]:
    """Priority levels, highest first: each maximises its common scale with the levels above
    fixed at what they got. Returns lane rates, device prices and per-model values (duals of
    the last level: what a frame of each model is worth in device-seconds)."""
    fixed: dict[str, float] = {}
    x = np.zeros(len(lanes))
    prices: dict[str, float] = {}
    values: dict[str, float] = {}
    for level in sorted({d.priority for d in demands}, reverse=True):
        group = [d for d in demands if d.priority == level]
        x, lam, prices, values_l = _lp(lanes, group, fixed, devices, factors)
        values.update(values_l)
        for d in group:
            got = sum(x[i] for i, lane in enumerate(lanes) if lane.model == d.model)
            fixed[d.model] = float(got) if d.rate is not None else lam * d.weight
    # met rates leave headroom: serve exactly the rates with the least busy bottleneck
    return _lp_fixed(lanes, fixed, devices, factors, x), prices, values


def _lp(
    lanes: Sequence[Lane],
    group: Sequence[Demand],
    fixed: Mapping[str, float],
    devices: Sequence[str],
    factors: Mapping[str, float],
) -> tuple[np.ndarray, float, dict[str, float], dict[str, float]]:
    """max lam s.t. each device busy <= 1; ``fixed`` models at their rates; models of lower
    levels free (they may get 0). A model of ``group`` with a weight runs at exactly lam x
    weight; one with a rate target at >= lam x target and <= the target, and a small second
    term lets each rated model take what it can up to its target once lam is as high as it
    goes (a model whose devices are free is not held down to the common scale).
    Variables: lane rates, then lam."""
    n = len(lanes)
    c = np.zeros(n + 1)
    c[n] = -1.0
    ub_rows: list[np.ndarray] = []
    ub_rhs: list[float] = []
    for dev in devices:
        row = np.zeros(n + 1)
        for i, lane in enumerate(lanes):
            row[i] = lane.loads.get(dev, 0.0) * factors[dev]
        ub_rows.append(row)
        ub_rhs.append(1.0)
    eq_rows: list[np.ndarray] = []
    eq_rhs: list[float] = []
    eq_owner: list[str] = []
    ub_owner: dict[int, str] = {}
    second = SECOND_TERM / max(1, len(group))
    for d in group:
        mine = np.array([1.0 if lane.model == d.model else 0.0 for lane in lanes] + [0.0])
        if d.rate is None:
            eq_rows.append(mine - np.eye(n + 1)[n] * d.weight)
            eq_rhs.append(0.0)
            eq_owner.append(d.model)
            continue
        ub_owner[len(ub_rows)] = d.model
        ub_rows.append(np.eye(n + 1)[n] * d.rate - mine)  # rate >= lam x target
        ub_rhs.append(0.0)
        ub_rows.append(mine)  # rate <= target
        ub_rhs.append(d.rate)
        c -= mine * second / d.rate
    for model, rate in fixed.items():
        eq_rows.append(np.array([1.0 if lane.model == model else 0.0 for lane in lanes] + [0.0]))
        eq_rhs.append(rate)
        eq_owner.append(model)
    res = linprog(
        c,
        A_ub=np.array(ub_rows),
        b_ub=np.array(ub_rhs),
        A_eq=np.array(eq_rows) if eq_rows else None,
        b_eq=np.array(eq_rhs) if eq_rows else None,
        bounds=[(0, None)] * (n + 1),
        method="highs",
    )
    if res.status != 0:
        raise ConfigError(f"the group cannot be scheduled: {res.message}")
    marg = res.ineqlin.marginals
    prices = {d: -float(m) for d, m in zip(devices, marg[: len(devices)])}
    values = {m: float(v) for m, v in zip(eq_owner, res.eqlin.marginals if eq_rows else [])}
    values.update({m: float(marg[row]) for row, m in ub_owner.items() if m not in values})
    return np.asarray(res.x[:n]), float(res.x[n]), prices, values


def _lp_fixed(
    lanes: Sequence[Lane],
    fixed: Mapping[str, float],
    devices: Sequence[str],
    factors: Mapping[str, float],
    start: np.ndarray,
) -> np.ndarray:
    """The lane rates that serve exactly ``fixed`` frames/s per model with the least busy
    bottleneck (min the largest device utilisation): headroom spread, not piled on one device."""
    n = len(lanes)
    c = np.zeros(n + 1)
    c[n] = 1.0  # minimise u, the largest utilisation
    a_ub = np.zeros((len(devices), n + 1))
    for j, d in enumerate(devices):
        for i, lane in enumerate(lanes):
            a_ub[j, i] = lane.loads.get(d, 0.0) * factors[d]
        a_ub[j, n] = -1.0
    a_eq = np.zeros((len(fixed), n + 1))
    for k, model in enumerate(fixed):
        for i, lane in enumerate(lanes):
            if lane.model == model:
                a_eq[k, i] = 1.0
    res = linprog(
        c,
        A_ub=a_ub,
        b_ub=np.zeros(len(devices)),
        A_eq=a_eq,
        b_eq=np.array(list(fixed.values())),
        bounds=[(0, None)] * (n + 1),
        method="highs",
    )
    return np.asarray(res.x[:n]) if res.status == 0 else start


def _reason(
    lane: Lane,
    rate: float,
    rates: Mapping[str, float],
    prices: Mapping[str, float],
    values: Mapping[str, float],
    factors: Mapping[str, float],
) -> str:
    total = rates.get(lane.model, 0.0)
    if rate > _EPS:
        share = rate / total if total > 0 else 0.0
        shape = (
            "pipeline: its stages work on consecutive frames"
            if lane.kind == "pipeline"
            else "a whole copy"
        )
        if lane.kind == "pipeline" and len(lane.devices) > 2:
            shape = (
                f"{len(lane.devices)}-stage pipeline over {', '.join(lane.devices)}"
                + (f" ({lane.note})" if lane.note else "")
                + ": its stages work on consecutive frames"
            )
        return (
            f"{rate:.1f} frames/s ({share:.0%} of {lane.model}'s frames), {shape}; "
            f"{_per_frame(lane, factors)}"
        )
    saturated = sorted(d for d, p in prices.items() if p > _EPS)
    cost = sum(
        prices.get(d, 0.0) * lane.loads.get(d, 0.0) * factors.get(d, 1.0) for d in lane.devices
    )
    worth = abs(values.get(lane.model, 0.0))
    if saturated and worth > _EPS and cost / worth < 1 + TIE:
        return (
            f"unused: a tie -- at the prices of the saturated device(s) {', '.join(saturated)} "
            f"it costs what {lane.model}'s used lanes pay; the solver kept those "
            f"({_per_frame(lane, factors)})"
        )
    if saturated and worth > _EPS:
        return (
            f"unused: on the saturated device(s) {', '.join(saturated)} a frame through it "
            f"costs {cost / worth:.2f}x what {lane.model}'s used lanes pay "
            f"({_per_frame(lane, factors)})"
        )
    return f"unused: the used lanes serve {lane.model} without it ({_per_frame(lane, factors)})"


def _per_frame(lane: Lane, factors: Mapping[str, float]) -> str:
    return (
        "per frame "
        + ", ".join(f"{d} {lane.loads[d] * factors.get(d, 1.0) * 1e3:.3f} ms" for d in lane.devices)
        + (" with contention" if any(factors.get(d, 1.0) > 1.0 for d in lane.devices) else "")
    )


def best_whole_assignment(
    lanes: Sequence[Lane],
    demands: Sequence[Demand],
    slowdown: Slowdown | None = None,
    allowed: Callable[[Lane], bool] = lambda lane: lane.kind == "single",
) -> tuple[Schedule, dict[str, Lane]]:
    """Exact baseline without frame splitting: every model on exactly one allowed lane, all
    combinations tried (at most ``MAX_ASSIGNMENTS``); the schedule with the largest common
    scale of the demands (rate targets: the most met, then the largest scale) wins."""
    options = [[lane for lane in lanes if lane.model == d.model and allowed(lane)] for d in demands]
    for d, opts in zip(demands, options):
        if not opts:
            raise ConfigError(f"model '{d.model}' has no lane of the allowed kind")
    if math.prod(len(o) for o in options) > MAX_ASSIGNMENTS:
        raise ConfigError(f"more than {MAX_ASSIGNMENTS} whole assignments; group fewer models")
    best: tuple[tuple[int, float], Schedule, dict[str, Lane]] | None = None
    for combo in itertools.product(*options):
        sched = schedule(combo, demands, slowdown)
        key = (sum(sched.met.values()), _scale(sched, demands))
        if best is None or key > best[0]:
            best = (key, sched, {lane.model: lane for lane in combo})
    assert best is not None
    return best[1], best[2]


def _scale(sched: Schedule, demands: Sequence[Demand]) -> float:
    return min(sched.rates[d.model] / (d.rate if d.rate is not None else d.weight) for d in demands)


def group_throughput(sched: Schedule, demands: Sequence[Demand]) -> float:
    """The common scale the schedule reaches: frames/s of each unit-weight model (makespan
    goal), the fraction of the rate targets (rates goal)."""
    return _scale(sched, demands)
