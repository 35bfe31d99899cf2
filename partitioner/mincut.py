"""Cost-model placement: Stone's two-processor min-cut over the layer graph.

Latency objective (serial run): minimise ``sum(layer cost on its device) + sum(transition cost of
every tensor copied between GPU and DLA)``. With two devices this is exactly an s-t min cut
(H. S. Stone, 1977): the source side is the GPU, the sink side the DLA; edge ``s->v`` carries
``v``'s DLA cost (cut when ``v`` is on the DLA), ``v->t`` its GPU cost. A tensor is copied once
per destination device, whatever its consumer count, so each tensor is a hyperedge, modelled with
one auxiliary vertex per direction (``u->a`` with the GPU->DLA cost, ``a->c`` infinite for each
consumer ``c``; mirrored for DLA->GPU). Graph inputs/outputs live on the GPU. Pinned and
ineligible layers get infinite edges to their side. The cut is solved with
``scipy.sparse.csgraph.maximum_flow`` (Dinic) on integer capacities (costs scaled so their sum
fits in 2**29, a relative rounding of ~2e-9). On ties the smaller DLA set wins.

The cut is exact for the problem without the loadable limit and the minimum segment size.
When the exact cut needs more DLA loadables than allowed, cuts with a Lagrangian price on every
GPU->DLA entry are added as candidates (the price bisected, ``PENALTY_ROUNDS`` cuts, for the
smallest one that fits). ``assign.enforce_dla_limits`` then repairs each candidate (dropping the
DLA segments whose move to the GPU costs least), and ``assign.place_cost`` keeps the best, or the
``trt`` placement when that predicts no worse. CPU layers (rare: the GPU cannot run them) are
fixed and priced as GPU in the cut; the final comparison uses the exact formula.

Energy objective: the latency cut with the GPU side (its layers and the boundary reformats it
runs) weighted by the GPU's power while busy and the DLA side by the DLA's (``Analysis.watts``):
joules instead of seconds.

An energy budget (``energy_budget_mj``) adds ``ENERGY_ROUNDS`` cuts of seconds + a price x joules,
the price swept from the fastest placement to the most frugal; ``assign.place_cost`` keeps the
best objective among the placements within the budget.

Throughput objective (GPU and DLA pipelined over successive inferences): minimise
``max(GPU busy + transitions, DLA busy)``, each stretched by the DRAM contention the devices'
capabilities report (``Analysis.slowdown``; the MILP takes both devices as always busy, the exact
:func:`partitioner.segments.pipelined_period` judges every candidate). Up to
``MILP_MAX_LAYERS`` layers this is a
mixed-integer program solved by HiGHS (``scipy.optimize.milp``; ``MILP_NODE_LIMIT`` branch-and-
bound nodes and a 0.1 % gap keep it deterministic, ``MILP_TIME_LIMIT_S`` is a safety net); above, a
weighted cut with GPU weight ``alpha`` and DLA weight ``1 - alpha`` is bisected towards balance
(``CUT_ROUNDS`` cuts, a heuristic: a min-max is not a min-cut). Either result, and the ``trt``
placement, are then balanced greedily by moving runs of layers off the busier device.

Graphs above ``MINCUT_MAX_LAYERS`` layers skip the cut: the ``trt`` placement is refined greedily
by moving each DLA segment to the GPU when that lowers the prediction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from partitioner.facts import Analysis, LayerFacts, move_delta, move_effect
from partitioner.ir import Tensor
from partitioner.segments import (
    Partition,
    TransitionCost,
    form_segments,
    pipelined_period,
    predict,
)

MINCUT_MAX_LAYERS = 200_000
PENDING = "cost model"  # placeholder reason of a free layer until the final placement is known
PENALTY_ROUNDS = 12
BALANCE_ROUNDS = 64
MILP_MAX_LAYERS = 2_000
MILP_TIME_LIMIT_S = 10.0  # a safety net; the node limit is what normally stops it
MILP_NODE_LIMIT = 500  # deterministic, unlike a time limit
CUT_ROUNDS = 12
ENERGY_ROUNDS = 8  # prices of a joule in the cuts offered to an energy budget
_INF = 2**30
_FINITE_BUDGET = 2**29


def improve_placement(
    a: Analysis, tc: TransitionCost | None, trt: Partition
) -> list[tuple[dict[str, str], dict[str, str], list[str]]]:
    """Candidate cost-model placements before limits are enforced: [(devices, reasons, debug)].

    The caller repairs each for the limits and keeps the best by the exact prediction.
    """
    fixed, free = _split(a, trt)
    debug: list[str] = []
    candidates: list[dict[str, str]]
    if a.dla is None or not free:
        candidates = [{n: fixed.get(n, "gpu") for n in a.layers}]
    elif len(a.order) > MINCUT_MAX_LAYERS:
        candidates = [_greedy_from_trt(a, tc, trt)]
        debug.append(
            f"cost: {len(a.order)} layers > {MINCUT_MAX_LAYERS}: greedy refinement of the trt "
            "placement instead of the min cut"
        )
    elif a.policy.objective == "throughput":
        solved = _throughput_milp(a, fixed, tc) if len(a.order) <= MILP_MAX_LAYERS else None
        if solved is None:
            solved = _throughput_cut(a, fixed, tc)
            debug.append(f"cost: throughput by {CUT_ROUNDS} weighted cuts (heuristic)")
        seed = {n: trt.assignments[n].device for n in a.layers}
        candidates = [_balance(a, solved, fixed, tc), _balance(a, seed, fixed, tc)]
        if a.slowdown is not None:
            # the MILP prices every placement as if both devices ran (contention); the
            # placement that leaves the DLA idle pays none, so it is judged exactly too
            candidates.append({n: fixed.get(n, "gpu") for n in a.layers})
    elif a.policy.objective == "energy":
        # joules = watts x seconds: the latency cut with the GPU side (its layers and the
        # boundary reformats it runs) weighted by the GPU's power, the DLA side by the DLA's
        assert a.watts is not None
        w_gpu, w_dla = a.watts("gpu"), a.watts(a.dla)
        if w_gpu is None or w_dla is None:
            candidates = [{n: trt.assignments[n].device for n in a.layers}]
        else:
            candidates = _latency_cuts(a, fixed, tc, debug, w_gpu, w_dla)
    else:
        candidates = _latency_cuts(a, fixed, tc, debug)
    budget = a.policy.energy_budget_mj
    if budget is not None and a.dla is not None and free and a.watts is not None:
        candidates += _budget_cuts(a, fixed, tc)
        debug.append(f"cost: {ENERGY_ROUNDS} cuts trading time for joules (budget {budget:g} mJ)")
    out = []
    for devices in candidates:
        reasons = {}
        for name, device in devices.items():
            if name in fixed:
                reasons[name] = _fixed_reason(a.layers[name], device, trt)
            else:
                reasons[name] = PENDING  # filled in by cost_reason for the placement kept
        out.append((devices, reasons, list(debug)))
    return out


def _budget_cuts(
    a: Analysis, fixed: Mapping[str, str], tc: TransitionCost | None
) -> list[dict[str, str]]:
    """Cuts of seconds + lam x joules for ``ENERGY_ROUNDS`` prices ``lam`` (1e-3 .. 1e4 per W,
    from the fastest placement to the most frugal): candidates for an energy budget."""
    assert a.watts is not None and a.dla is not None
    w_gpu, w_dla = a.watts("gpu"), a.watts(a.dla)
    if w_gpu is None or w_dla is None:
        return []
    model = _CutModel(a, fixed, tc)
    prices = [10.0 ** (-3 + 7 * k / (ENERGY_ROUNDS - 1)) for k in range(ENERGY_ROUNDS)]
    return [model.solve(1.0 + lam * w_gpu, 1.0 + lam * w_dla) for lam in prices]


def _dla_segment_count(a: Analysis, devices: Mapping[str, str]) -> int:
    segments, _ = form_segments(a.graph, devices, None, a.topo)
    return sum(1 for s in segments if s.device == a.dla)


def _latency_cuts(
    a: Analysis,
    fixed: Mapping[str, str],
    tc: TransitionCost | None,
    debug: list[str],
    w_gpu: float = 1.0,
    w_dla: float = 1.0,
) -> list[dict[str, str]]:
    """The exact cut; when it needs more DLA loadables than the limit, also cuts with a
    Lagrangian penalty on every entry into the DLA, bisected (in log space, ``PENALTY_ROUNDS``)
    for the smallest penalty whose cut fits the limit. Fewer, larger DLA segments usually beat
    dropping whole segments afterwards; the caller keeps whichever predicts best."""
    model = _CutModel(a, fixed, tc)
    exact = model.solve(w_gpu, w_dla)
    limit = a.dla_limit
    if limit is None or _dla_segment_count(a, exact) <= limit:
        return [exact]
    total = max(w_gpu, w_dla) * sum(min(f.costs.values()) for f in a.layers.values()) or 1e-3
    lo, hi = total * 1e-6, total
    fits: dict[str, str] | None = None
    over: dict[str, str] | None = None
    for _ in range(PENALTY_ROUNDS):
        penalty = (lo * hi) ** 0.5
        devices = model.solve(w_gpu, w_dla, penalty)
        if _dla_segment_count(a, devices) <= limit:
            fits, hi = devices, penalty
        else:
            over, lo = devices, penalty
    debug.append(
        f"cost: the exact cut needs more than {limit} DLA loadables; penalised cuts bisected to "
        f"{hi * 1e3:.3g} {'mJ' if (w_gpu, w_dla) != (1.0, 1.0) else 'ms'} per DLA entry"
    )
    return [d for d in (exact, fits, over) if d is not None]


def _split(a: Analysis, trt: Partition) -> tuple[dict[str, str], list[str]]:
    """Layers whose device the policy already decides, and the free ones the cut chooses."""
    fixed: dict[str, str] = {}
    free: list[str] = []
    for node in a.order:
        f = a.layers[node.name]
        trt_device = trt.assignments[node.name].device
        if trt_device == "cpu":
            fixed[node.name] = "cpu"
        elif not f.dla_ok or a.dla is None:
            fixed[node.name] = "gpu"
        elif f.gpu_precision is None:
            fixed[node.name] = a.dla
        elif f.pin_device:
            fixed[node.name] = a.dla if f.wanted == "dla" else "gpu"
        elif f.wanted == "dla" and not a.policy.gpu_fallback:
            fixed[node.name] = a.dla  # DLA-only policy: the cost model may not move it
        else:
            free.append(node.name)
    return fixed, free


def _fixed_reason(f: LayerFacts, device: str, trt: Partition) -> str:
    if device.startswith("dla"):
        suffix = f" ({f.pin_device})" if f.pin_device else ""
        return f"DLA: {f.dla_reason}{suffix}"
    return trt.assignments[f.node.name].reason


class _CutModel:
    """The s-t graph of one analysis, built once. Capacities are linear in the weights, so each
    solve only recomputes a vector: ``w_gpu * gpu + w_dla * dla + penalty * price``, where
    ``penalty`` (seconds) is added to every GPU->DLA copy (a Lagrangian price on DLA entries)."""

    def __init__(self, a: Analysis, fixed: Mapping[str, str], tc: TransitionCost | None) -> None:
        assert a.dla is not None
        self.a, self.fixed, self.dla = a, fixed, a.dla
        index = {n.name: i + 2 for i, n in enumerate(a.order)}
        self.index = index
        rows: list[int] = []
        cols: list[int] = []
        coef: list[tuple[float, float, float, bool]] = []  # (gpu, dla, price, infinite)
        size = len(index) + 2

        def edge(u: int, v: int, g: float = 0.0, d: float = 0.0, p: float = 0.0) -> None:
            rows.append(u)
            cols.append(v)
            coef.append((g, d, p, False))

        def infinite(u: int, v: int) -> None:
            rows.append(u)
            cols.append(v)
            coef.append((0.0, 0.0, 0.0, True))

        for node in a.order:
            v, name = index[node.name], node.name
            if name in fixed:
                if fixed[name] == self.dla:
                    infinite(v, 1)
                else:
                    infinite(0, v)
            else:
                costs = a.layers[name].costs
                edge(0, v, d=costs[self.dla])
                edge(v, 1, g=costs["gpu"])
        outputs = {id(t) for t in a.graph.outputs}
        sources: list[tuple[Tensor, int]] = [(t, 0) for t in a.graph.inputs]
        sources += [(t, index[n.name]) for n in a.order for t in n.outputs]
        for t, u in sources:
            consumers = sorted({index[c.name] for c in t.consumers})
            is_output = id(t) in outputs
            if not consumers and not is_output:
                continue
            gd = tc(t, "gpu", "dla") if tc else 0.0
            dg = tc(t, "dla", "gpu") if tc else 0.0
            if len(consumers) == 1:
                edge(u, consumers[0], g=gd, p=1.0)
            elif consumers:
                aux, size = size, size + 1
                edge(u, aux, g=gd, p=1.0)
                for c in consumers:
                    infinite(aux, c)
            if u == 0 or not dg:
                continue  # a graph input sits on the GPU: no DLA->GPU copy of it
            if is_output:
                edge(0, u, g=dg)  # a DLA producer of a graph output always pays the copy back
            elif len(consumers) == 1:
                edge(consumers[0], u, g=dg)
            else:
                aux, size = size, size + 1
                edge(aux, u, g=dg)
                for c in consumers:
                    infinite(c, aux)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cols = np.asarray(cols, dtype=np.int64)
        table = np.asarray([c[:3] for c in coef], dtype=np.float64).reshape(-1, 3)
        self.gpu, self.dla_coef, self.price = table[:, 0], table[:, 1], table[:, 2]
        self.infinite = np.asarray([c[3] for c in coef], dtype=bool)
        self.size = size

    def solve(self, w_gpu: float, w_dla: float, penalty: float = 0.0) -> dict[str, str]:
        values = w_gpu * self.gpu + w_dla * self.dla_coef + penalty * self.price
        on_dla = _sink_side(self.rows, self.cols, values, self.infinite, self.size)
        fixed, dla = self.fixed, self.dla
        return {
            n.name: fixed.get(n.name, dla if on_dla[self.index[n.name]] else "gpu")
            for n in self.a.order
        }


def _sink_side(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, infinite: np.ndarray, size: int
) -> np.ndarray:
    """Mask of the vertices that can still reach the sink in the residual graph of a max flow."""
    total = float(values[~infinite].sum())
    unit = total / _FINITE_BUDGET if total > 0 else 1.0
    scaled = np.where(infinite, _INF, np.rint(values / unit)).astype(np.int64)
    matrix = sp.coo_matrix((scaled, (rows, cols)), shape=(size, size)).tocsr()
    matrix.sum_duplicates()
    matrix.data = np.minimum(matrix.data, _INF)
    matrix.eliminate_zeros()
    capacity = matrix.astype(np.int32)
    flow = maximum_flow(capacity, 0, 1, method="dinic").flow
    residual = (capacity - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    # reverse reachability: BFS from the sink over reversed residual edges
    reverse = residual.T.tocsr()
    reached = breadth_first_order(reverse, 1, directed=True, return_predecessors=False)
    mask = np.zeros(size, dtype=bool)
    mask[reached] = True
    return mask


def _throughput_cut(
    a: Analysis, fixed: Mapping[str, str], tc: TransitionCost | None
) -> dict[str, str]:
    """Bisect the GPU weight towards balanced device loads; keep the best exact period."""
    assert a.dla is not None
    model = _CutModel(a, fixed, tc)
    lo, hi = 0.0, 1.0
    best: dict[str, str] | None = None
    best_period = float("inf")
    for _ in range(CUT_ROUNDS):
        alpha = (lo + hi) / 2
        devices = model.solve(alpha, 1.0 - alpha)
        p = predict(a.graph, devices, a.cost, tc, a.io_device, slowdown=a.slowdown)
        if p.period < best_period:
            best, best_period = devices, p.period
        gpu_load = p.per_device.get("gpu", 0.0) + p.transfer
        if gpu_load > p.per_device.get(a.dla, 0.0):
            lo = alpha  # the GPU is the bottleneck: make it dearer
        else:
            hi = alpha
    assert best is not None
    return best


def _throughput_milp(
    a: Analysis, fixed: Mapping[str, str], tc: TransitionCost | None
) -> dict[str, str] | None:
    """min z s.t. z >= GPU busy + transitions, z >= DLA busy, z >= CPU busy; x_v = 1 on the DLA.

    A tensor's copy is an indicator ``y >= x_c - x_u`` (GPU->DLA) or ``y >= x_u - x_c``
    (DLA->GPU) per consumer ``c``; a small weight on the serial total breaks ties towards lower
    latency. Returns None when HiGHS finds no solution within ``MILP_TIME_LIMIT_S``.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    assert a.dla is not None
    dla = a.dla
    n = len(a.order)
    index = {node.name: i for i, node in enumerate(a.order)}
    gpu_row = np.zeros(n)  # GPU busy = const_gpu - gpu_row @ x  (+ transitions)
    dla_row = np.zeros(n)
    const_gpu = const_cpu = 0.0
    lower, upper = np.zeros(n), np.ones(n)
    for node in a.order:
        i, name = index[node.name], node.name
        costs = a.layers[name].costs
        device = fixed.get(name)
        if device == "cpu":
            const_cpu += costs["cpu"]
            upper[i] = 0
            continue
        if device == dla:
            lower[i] = 1
        elif device == "gpu":
            upper[i] = 0
        if device != dla:
            const_gpu += costs["gpu"]
            gpu_row[i] = costs["gpu"]
        if device != "gpu":
            dla_row[i] = costs[dla]
    # transition indicators: (weight, producer index or None for a graph input, consumers, dir)
    ys: list[tuple[float, int | None, list[int], bool]] = []
    if tc is not None:
        outputs = {id(t) for t in a.graph.outputs}
        sources: list[tuple[Tensor, int | None]] = [(t, None) for t in a.graph.inputs]
        sources += [(t, index[node.name]) for node in a.order for t in node.outputs]
        for t, u in sources:
            consumers = sorted({index[c.name] for c in t.consumers})
            if consumers:
                ys.append((tc(t, "gpu", "dla"), u, consumers, True))
            if u is not None and (consumers or id(t) in outputs):
                ys.append(
                    (tc(t, "dla", "gpu"), u, consumers if id(t) not in outputs else [], False)
                )
    m = len(ys)
    size = n + m + 1  # x..., y..., z
    entries: list[tuple[int, int, float]] = []  # (row, column, value)
    lo: list[float] = []

    def constraint(terms: list[tuple[int, float]], lower_bound: float) -> None:
        r = len(lo)
        entries.extend((r, col, val) for col, val in terms)
        lo.append(lower_bound)

    y_weights = np.array([w for w, *_ in ys])
    for k, (_, u, consumers, to_dla) in enumerate(ys):
        if to_dla:  # y >= x_c - x_u
            for c in consumers:
                constraint([(n + k, 1.0), (c, -1.0)] + ([(u, 1.0)] if u is not None else []), 0.0)
        else:  # y >= x_u - x_c, or y >= x_u for a graph output
            assert u is not None
            if not consumers:
                constraint([(n + k, 1.0), (u, -1.0)], 0.0)
            for c in consumers:
                constraint([(n + k, 1.0), (u, -1.0), (c, 1.0)], 0.0)
    # Contention: both devices busy all the time (what a balanced pipeline approaches) slows
    # each by its factor; the exact prediction judges the result afterwards.
    s_gpu = s_dla = 1.0
    if a.slowdown is not None:
        s_gpu, s_dla = a.slowdown("gpu", {dla: 1.0}), a.slowdown(dla, {"gpu": 1.0})
    # z >= s_gpu (GPU busy + copies):  z + s_gpu (gpu_row @ x - y_weights @ y) >= s_gpu const_gpu
    constraint(
        [(size - 1, 1.0)]
        + [(i, s_gpu * v) for i, v in enumerate(gpu_row) if v]
        + [(n + k, -s_gpu * w) for k, w in enumerate(y_weights) if w],
        s_gpu * const_gpu,
    )
    # z >= s_dla DLA busy:  z - s_dla dla_row @ x >= 0
    constraint([(size - 1, 1.0)] + [(i, -s_dla * v) for i, v in enumerate(dla_row) if v], 0.0)
    scale = max(const_gpu, float(dla_row.sum()), 1e-12)
    objective = np.zeros(size)
    objective[-1] = 1.0
    # tie-break: 1e-3 of the serial total (GPU part enters as -gpu_row@x + y, DLA as dla_row@x)
    objective[:n] += 1e-3 * (dla_row - gpu_row)
    objective[n : n + m] += 1e-3 * y_weights
    objective /= scale
    integrality = np.zeros(size)
    integrality[:n] = 1
    bounds = Bounds(
        np.concatenate([lower, np.zeros(m), [const_cpu]]),
        np.concatenate([upper, np.ones(m), [np.inf]]),
    )
    r_idx, c_idx, vals = zip(*entries)
    matrix = sp.csr_matrix((np.array(vals) / scale, (r_idx, c_idx)), shape=(len(lo), size))
    result = milp(
        objective,
        constraints=LinearConstraint(matrix, np.array(lo) / scale, np.inf),
        integrality=integrality,
        bounds=bounds,
        options={
            "time_limit": MILP_TIME_LIMIT_S,
            "node_limit": MILP_NODE_LIMIT,
            "mip_rel_gap": 1e-3,
        },
    )
    if result.x is None:
        return None
    return {
        node.name: dla if result.x[index[node.name]] > 0.5 else fixed.get(node.name, "gpu")
        for node in a.order
    }


def _balance(
    a: Analysis, start: Mapping[str, str], fixed: Mapping[str, str], tc: TransitionCost | None
) -> dict[str, str]:
    """Pipeline balancing: move the run of layers off the busier device whose move lowers the
    period most, while the loadable limit holds; at most ``BALANCE_ROUNDS`` moves. A run is a
    segment's maximal stretch of layers that no rule or restriction fixes, or a prefix or
    suffix of one (halving lengths)."""
    assert a.dla is not None
    dla, limit = a.dla, a.dla_limit
    devices = dict(start)
    current = predict(a.graph, devices, a.cost, tc, a.io_device, slowdown=a.slowdown)
    tried: set[tuple[tuple[str, ...], str]] = set()
    for _ in range(BALANCE_ROUNDS):
        gpu = current.per_device.get("gpu", 0.0) + current.transfer
        busy = current.per_device.get(dla, 0.0)
        cpu = current.per_device.get("cpu", 0.0)
        src, dst = (dla, "gpu") if busy >= gpu else ("gpu", dla)
        segments, _ = form_segments(a.graph, devices, None, a.topo)
        # at the limit, only a run touching a DLA layer can move there without a new loadable
        full = dst == dla and limit is not None and sum(s.device == dla for s in segments) >= limit
        best: tuple[float, tuple[str, ...]] | None = None
        for s in segments:
            if s.device != src:
                continue
            for run in free_runs(s.nodes, fixed):
                if (run, dst) in tried or (full and not touches(a, devices, run, dst)):
                    continue
                d_gpu, d_dla, d_copy = move_effect(a, devices, run, dst, tc)
                loads = {"gpu": gpu + d_gpu + d_copy, dla: busy + d_dla, "cpu": cpu}
                period = pipelined_period(loads, a.slowdown)
                if period < current.period * (1 - 1e-9) and (best is None or period < best[0]):
                    best = (period, run)
        if best is None:
            break
        nodes = best[1]
        tried.add((nodes, dst))
        for n in nodes:
            devices[n] = dst
        if limit is not None and _dla_segment_count(a, devices) > limit:
            for n in nodes:
                devices[n] = src
            continue
        current = predict(a.graph, devices, a.cost, tc, a.io_device, slowdown=a.slowdown)
    return devices


def touches(a: Analysis, devices: Mapping[str, str], run: Sequence[str], device: str) -> bool:
    graph = a.graph
    for name in (run[0], run[-1]):
        node = a.layers[name].node
        if any(devices[m.name] == device for m in graph.predecessors(node)):
            return True
        if any(devices[m.name] == device for m in graph.successors(node)):
            return True
    return False


def free_runs(nodes: Sequence[str], fixed: Mapping[str, str]) -> list[tuple[str, ...]]:
    """Maximal stretches of movable layers, with their halving prefixes and suffixes (so a long
    segment can give part of its work to the other device)."""
    runs: list[list[str]] = [[]]
    for n in nodes:
        if n in fixed:
            runs.append([])
        else:
            runs[-1].append(n)
    out: dict[tuple[str, ...], None] = {}
    for r in runs:
        k = len(r)
        while k >= 1:
            out[tuple(r[:k])] = None
            out[tuple(r[len(r) - k :])] = None
            k //= 2
    return list(out)


def _greedy_from_trt(a: Analysis, tc: TransitionCost | None, trt: Partition) -> dict[str, str]:
    devices = {n: trt.assignments[n].device for n in a.layers}
    for seg in trt.segments:
        if seg.device == a.dla and not any(a.layers[n].pin_device for n in seg.nodes):
            if move_delta(a, devices, seg.nodes, "gpu", tc) < 0:
                for n in seg.nodes:
                    devices[n] = "gpu"
    return devices
