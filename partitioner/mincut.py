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

The cut is exact for the problem without the loadable limit and the minimum segment size;
``assign.enforce_dla_limits`` then repairs those (dropping the DLA segments whose move to the GPU
costs least), and ``assign.place_cost`` keeps the ``trt`` placement when it predicts better.
CPU layers (rare: the GPU cannot run them) are fixed and priced as GPU in the cut; the final
comparison uses the exact formula.

Throughput objective (GPU and DLA pipelined over successive inferences): minimise
``max(GPU busy + transitions, DLA busy)``. A weighted cut with GPU weight ``alpha`` and DLA weight
``1 - alpha`` is solved for ``alpha`` bisected towards balance (``CUT_ROUNDS`` cuts); the best
exact period among them is kept. This is a heuristic (a min-max is not a min-cut).

Graphs above ``MINCUT_MAX_LAYERS`` layers skip the cut: the ``trt`` placement is refined greedily
by moving each DLA segment to the GPU when that lowers the prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from partitioner.ir import Tensor
from partitioner.segments import Partition, TransitionCost, device_kind, predict

if TYPE_CHECKING:
    from partitioner.assign import Analysis, LayerFacts

MINCUT_MAX_LAYERS = 200_000
CUT_ROUNDS = 12
_INF = 2**30
_FINITE_BUDGET = 2**29


def improve_placement(
    a: Analysis, tc: TransitionCost | None, trt: Partition
) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """The cost-model placement before limits are enforced: (devices, reasons, debug)."""
    fixed, free = _split(a, trt)
    debug: list[str] = []
    if a.dla is None or not free:
        devices = {n: fixed.get(n, "gpu") for n in a.layers}
    elif len(a.order) > MINCUT_MAX_LAYERS:
        devices = _greedy_from_trt(a, tc, trt)
        debug.append(
            f"cost: {len(a.order)} layers > {MINCUT_MAX_LAYERS}: greedy refinement of the trt "
            "placement instead of the min cut"
        )
    elif a.policy.objective == "throughput":
        devices = _throughput_cut(a, fixed, tc)
    else:
        devices = _cut(a, fixed, tc, 1.0, 1.0)
    reasons = {}
    for name, device in devices.items():
        if name in fixed:
            reasons[name] = _fixed_reason(a.layers[name], device, trt)
        else:
            reasons[name] = _cost_reason(a, devices, name, tc)
    return devices, reasons, debug


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


def _cut(
    a: Analysis,
    fixed: Mapping[str, str],
    tc: TransitionCost | None,
    w_gpu: float,
    w_dla: float,
) -> dict[str, str]:
    """Solve one weighted s-t cut; return the device of every layer."""
    assert a.dla is not None
    dla = a.dla
    index = {n.name: i + 2 for i, n in enumerate(a.order)}
    rows: list[int] = []
    cols: list[int] = []
    caps: list[float] = []  # -1.0 marks an infinite edge
    next_aux = len(index) + 2

    def edge(u: int, v: int, c: float) -> None:
        if c != 0.0:
            rows.append(u)
            cols.append(v)
            caps.append(c)

    for node in a.order:
        v, name = index[node.name], node.name
        if name in fixed:
            if fixed[name] == dla:
                edge(v, 1, -1.0)
            else:
                edge(0, v, -1.0)
        else:
            costs = a.layers[name].costs
            edge(0, v, w_dla * costs[dla])
            edge(v, 1, w_gpu * costs["gpu"])
    if tc is not None:
        outputs = {id(t) for t in a.graph.outputs}
        sources: list[tuple[Tensor, int]] = [(t, 0) for t in a.graph.inputs]
        sources += [(t, index[n.name]) for n in a.order for t in n.outputs]
        for t, u in sources:
            consumers = sorted({index[c.name] for c in t.consumers})
            is_output = id(t) in outputs
            if not consumers and not is_output:
                continue
            w_gd = w_gpu * tc(t, "gpu", "dla")
            w_dg = w_gpu * tc(t, "dla", "gpu")
            if len(consumers) == 1:
                edge(u, consumers[0], w_gd)
            elif consumers and w_gd:
                aux, next_aux = next_aux, next_aux + 1
                edge(u, aux, w_gd)
                for c in consumers:
                    edge(aux, c, -1.0)
            if u == 0:
                continue  # a graph input sits on the GPU: no DLA->GPU copy of it
            if is_output:
                edge(0, u, w_dg)  # a DLA producer of a graph output always pays the copy back
            elif len(consumers) == 1:
                edge(consumers[0], u, w_dg)
            elif w_dg:
                aux, next_aux = next_aux, next_aux + 1
                edge(aux, u, w_dg)
                for c in consumers:
                    edge(c, aux, -1.0)
    on_dla = _sink_side(rows, cols, caps, next_aux)
    return {n.name: fixed.get(n.name, dla if index[n.name] in on_dla else "gpu") for n in a.order}


def _sink_side(rows: list[int], cols: list[int], caps: list[float], size: int) -> set[int]:
    """Vertices that can still reach the sink in the residual graph of a maximum flow."""
    values = np.asarray(caps, dtype=np.float64)
    finite = values >= 0
    total = float(values[finite].sum())
    unit = total / _FINITE_BUDGET if total > 0 else 1.0
    scaled = np.where(finite, np.rint(values / unit), _INF).astype(np.int64)
    matrix = sp.coo_matrix((scaled, (rows, cols)), shape=(size, size)).tocsr()
    matrix.sum_duplicates()
    matrix.data = np.minimum(matrix.data, _INF)
    capacity = matrix.astype(np.int32)
    flow = maximum_flow(capacity, 0, 1, method="dinic").flow
    residual = (capacity - flow).tocsr()
    residual.data[residual.data < 0] = 0
    residual.eliminate_zeros()
    # reverse reachability: BFS from the sink over reversed residual edges
    reverse = residual.T.tocsr()
    reached = breadth_first_order(reverse, 1, directed=True, return_predecessors=False)
    return {int(i) for i in reached}


def _throughput_cut(
    a: Analysis, fixed: Mapping[str, str], tc: TransitionCost | None
) -> dict[str, str]:
    """Bisect the GPU weight towards balanced device loads; keep the best exact period."""
    assert a.dla is not None
    lo, hi = 0.0, 1.0
    best: dict[str, str] | None = None
    best_period = float("inf")
    for _ in range(CUT_ROUNDS):
        alpha = (lo + hi) / 2
        devices = _cut(a, fixed, tc, alpha, 1.0 - alpha)
        p = predict(a.graph, devices, a.cost, tc)
        if p.period < best_period:
            best, best_period = devices, p.period
        gpu_load = p.per_device.get("gpu", 0.0) + p.transfer
        if gpu_load > p.per_device.get(a.dla, 0.0):
            lo = alpha  # the GPU is the bottleneck: make it dearer
        else:
            hi = alpha
    assert best is not None
    return best


def _greedy_from_trt(a: Analysis, tc: TransitionCost | None, trt: Partition) -> dict[str, str]:
    from partitioner.assign import move_delta

    devices = {n: trt.assignments[n].device for n in a.layers}
    for seg in trt.segments:
        if seg.device == a.dla and not any(a.layers[n].pin_device for n in seg.nodes):
            if move_delta(a, devices, seg.nodes, "gpu", tc) < 0:
                for n in seg.nodes:
                    devices[n] = "gpu"
    return devices


def _cost_reason(
    a: Analysis, devices: Mapping[str, str], name: str, tc: TransitionCost | None
) -> str:
    here = devices[name]
    there = "gpu" if here != "gpu" else a.dla
    assert there is not None
    costs = a.layers[name].costs
    k = _flip_transitions(a, devices, name, there)
    extra = f" + {k} transition{'s' * (k != 1)}" if k > 0 else ""
    if k < 0:
        extra = f" - {-k} transition{'s' * (k != -1)}"
    label = {"gpu": "GPU"}.get(here, "DLA")
    other = {"gpu": "GPU"}.get(there, "DLA")
    return (
        f"{label}: cost model: {_ms(costs[here])} ms on {label} vs "
        f"{_ms(costs[there])} ms on {other}{extra}"
    )


def _flip_transitions(a: Analysis, devices: Mapping[str, str], name: str, target: str) -> int:
    """How many more tensor copies the placement needs if layer ``name`` alone moved."""
    node = a.layers[name].node
    outputs = {id(t) for t in a.graph.outputs}

    def count(dev: Callable[[str], str]) -> int:
        total = 0
        for t in [*node.outputs, *(t for t in node.inputs if t is not None)]:
            if t.producer is None and t not in a.graph.inputs:
                continue
            src = dev(t.producer.name) if t.producer is not None else "gpu"
            dsts = {device_kind(dev(c.name)) for c in t.consumers}
            if id(t) in outputs:
                dsts.add("gpu")
            total += len(dsts - {device_kind(src)})
        return total

    return count(lambda n: target if n == name else devices[n]) - count(devices.__getitem__)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g}"
