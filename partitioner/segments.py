"""Segments: device-uniform, acyclic groups of layers, and the latency a partition predicts.

Formation is two small steps, both deterministic:

1. ``_device_sticky_order`` — a topological order that stays on the current device while that
   device has ready layers. Cutting it into maximal same-device runs gives segments whose quotient
   graph is acyclic by construction (every edge goes from an earlier run to a later one).
2. ``_merge_adjacent`` — two same-device segments joined by an edge are contracted when no other
   path links them; when one does, the merge would form a cycle and is refused (logged in
   ``debug`` with the segment it would loop through).

Segments are named by device and a single counter in topological order: ``gpu_0``, ``dla0_1``...
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from partitioner.capability import Precision
from partitioner.ir import Constant, Graph, Node, Tensor

# ``transition_cost(tensor, src, dst) -> seconds`` for moving ``tensor`` from device kind ``src``
# to ``dst`` (``"gpu"``, ``"dla"``, ``"cpu"``): reformat + transfer + per-switch overhead; between
# two DLA cores it gets the device names (``"dla0"``, ``"dla1"``: see :func:`handoff`).
TransitionCost = Callable[[Tensor, str, str], float]

# ``slowdown(device, others) -> factor``: how much longer ``device``'s work takes while each device
# in ``others`` runs for the given fraction of the time (they share the DRAM). Hardware knowledge:
# ``devices/`` supplies it through the capabilities' ``slowdown`` method; None: no contention.
Slowdown = Callable[[str, Mapping[str, float]], float]
# ``watts(device) -> W`` while busy, None where unknown (``devices/`` through the capabilities).
Watts = Callable[[str], float | None]
CONTENTION_ROUNDS = 8  # fixed-point rounds of :func:`pipelined_period` (converges in 3-4)

# Graph inputs and outputs are bound in GPU memory (TensorRT also reformats DLA I/O on the GPU),
# so a DLA segment that reads a graph input or writes a graph output pays a transition.
IO_DEVICE = "gpu"


@dataclass(frozen=True)
class Assignment:
    """Where one layer runs, at which precision, and why (a sentence a user reads)."""

    device: str  # "gpu" | "dla0" | "dla1" | "cpu"
    precision: Precision
    reason: str


@dataclass(frozen=True)
class Segment:
    """A device-uniform group of layers; ``inputs``/``outputs`` are its boundary tensors."""

    name: str
    device: str
    nodes: tuple[str, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    precision: Precision | None  # None when the layers mix precisions


@dataclass(frozen=True)
class Prediction:
    """Predicted time in seconds. ``total`` is one inference run serially (latency objective);
    ``period`` is the pipelined steady-state time per inference (throughput objective)."""

    total: float
    per_device: dict[str, float]
    transfer: float
    boundaries: int
    period: float
    # the period if the devices did not slow each other down (``period`` counts DRAM contention)
    ideal_period: float | None = None
    # predicted joules per inference per device and in all (None: no energy model)
    energy_j: dict[str, float] | None = None

    def as_ms(self) -> dict[str, float]:
        out = {"total": self.total * 1e3}
        out.update({d: t * 1e3 for d, t in sorted(self.per_device.items())})
        out["transfer"] = self.transfer * 1e3
        out["period"] = self.period * 1e3
        if self.ideal_period is not None:
            out["period_ideal"] = self.ideal_period * 1e3
        return out

    def objective(self, objective: str) -> float:
        if objective == "energy":
            return self.energy_j["total"] if self.energy_j else float("inf")
        return self.period if objective == "throughput" else self.total

    def as_mj(self) -> dict[str, float] | None:
        """Millijoules per inference per device and ``total`` (None without an energy model)."""
        if self.energy_j is None:
            return None
        return {d: j * 1e3 for d, j in self.energy_j.items()}


@dataclass
class Partition:
    """The result of partitioning: one assignment per layer (topological order) and segments."""

    assignments: dict[str, Assignment]
    segments: list[Segment]
    warnings: list[str]
    predicted: Prediction
    strategy: str = "trt"
    objective: str = "latency"
    debug: list[str] = field(default_factory=list)

    @property
    def boundary_count(self) -> int:
        return self.predicted.boundaries

    def device_of(self, layer: str) -> str:
        return self.assignments[layer].device


def device_kind(device: str) -> str:
    """``dla1`` -> ``dla``; the capability key of a device string."""
    return "dla" if device.startswith("dla") else device


# ----- formation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """A graph's topological order and adjacency by position, computed once per partitioning
    (segment formation runs several times on the same graph)."""

    order: list[Node]
    position: dict[str, int]
    succ: list[list[int]]  # distinct successors, by position
    npred: list[int]  # number of distinct predecessors

    @staticmethod
    def of(graph: Graph) -> Topology:
        order = graph.topological_order()
        position = {n.name: i for i, n in enumerate(order)}
        succ = [sorted({position[c.name] for t in n.outputs for c in t.consumers}) for n in order]
        npred = [0] * len(order)
        for targets in succ:
            for j in targets:
                npred[j] += 1
        return Topology(order, position, succ, npred)


def form_segments(
    graph: Graph,
    devices: Mapping[str, str],
    precisions: Mapping[str, Precision] | None = None,
    topo: Topology | None = None,
) -> tuple[list[Segment], list[str]]:
    """Group layers into device-uniform acyclic segments; returns (segments, debug log)."""
    topo = topo or Topology.of(graph)
    dev = [devices[n.name] for n in topo.order]
    groups = _runs(_device_sticky_order(topo, dev), dev)
    debug: list[str] = []
    groups = _merge_adjacent(topo, groups, dev, debug)
    for g in groups:
        g.sort()
    groups = _in_dependency_order(topo, groups)
    segments = [
        _make_segment(graph, f"{dev[g[0]]}_{i}", [topo.order[j] for j in g], devices, precisions)
        for i, g in enumerate(groups)
    ]
    return segments, debug


def _in_dependency_order(topo: Topology, groups: list[list[int]]) -> list[list[int]]:
    """The segments in an order that runs every producer before its consumers, earliest first
    layer first among the ready ones. Not simply by first layer: a segment may start early (an
    embedding lookup of one input) yet read a later one (a mask computed from another input on
    the host)."""
    seg_of = {i: k for k, g in enumerate(groups) for i in g}
    succ: list[set[int]] = [set() for _ in groups]
    for i, k in seg_of.items():
        succ[k].update(seg_of[j] for j in topo.succ[i] if seg_of[j] != k)
    indegree = [0] * len(groups)
    for targets in succ:
        for k in targets:
            indegree[k] += 1
    ready = [(groups[k][0], k) for k, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    out: list[list[int]] = []
    while ready:
        _, k = heapq.heappop(ready)
        out.append(groups[k])
        for m in succ[k]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(ready, (groups[m][0], m))
    assert len(out) == len(groups), "segment graph has a cycle"  # _merge_adjacent prevents it
    return out


def _device_sticky_order(topo: Topology, dev: Sequence[str]) -> list[int]:
    """A topological order that switches device only when the current one has nothing ready."""
    indegree = list(topo.npred)
    ready: dict[str, list[int]] = {}
    for i, d in enumerate(indegree):
        if d == 0:
            heapq.heappush(ready.setdefault(dev[i], []), i)
    out: list[int] = []
    current: str | None = None
    while len(out) < len(dev):
        if current is None or not ready.get(current):
            # switch to the device whose earliest ready layer comes first in the original order
            current = min((h[0], d) for d, h in ready.items() if h)[1]
        i = heapq.heappop(ready[current])
        out.append(i)
        for j in topo.succ[i]:
            indegree[j] -= 1
            if indegree[j] == 0:
                heapq.heappush(ready.setdefault(dev[j], []), j)
    return out


def _runs(order: Sequence[int], dev: Sequence[str]) -> list[list[int]]:
    groups: list[list[int]] = []
    for i in order:
        if groups and dev[groups[-1][-1]] == dev[i]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _merge_adjacent(
    topo: Topology, groups: list[list[int]], dev: Sequence[str], debug: list[str]
) -> list[list[int]]:
    """Contract same-device segments linked by an edge unless another path links them."""
    seg_of = [0] * len(dev)
    for k, g in enumerate(groups):
        for i in g:
            seg_of[i] = k
    candidates = sorted(
        {
            (seg_of[i], seg_of[j])
            for i in range(len(dev))
            for j in topo.succ[i]
            if dev[i] == dev[j] and seg_of[i] != seg_of[j]
        }
    )
    if not candidates:
        return groups
    parent = list(range(len(groups)))

    def find(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    succ: dict[int, set[int]] = {k: set() for k in range(len(groups))}
    for i in range(len(dev)):
        for j in topo.succ[i]:
            if seg_of[i] != seg_of[j]:
                succ[seg_of[i]].add(seg_of[j])
    name = [topo.order[g[0]].name for g in groups]
    for a0, b0 in candidates:
        a, b = find(a0), find(b0)
        if a == b:
            continue
        via = _other_path(succ, a, b)
        if via is not None:
            debug.append(
                f"merge of {dev[groups[a][0]]} layers '{name[a]}' and '{name[b]}' refused: it "
                f"would form a cycle through layer '{name[via]}' ({dev[groups[via][0]]})"
            )
            continue
        parent[b] = a
        succ[a] = {find(x) for x in succ[a] | succ.pop(b)} - {a}
        for k, v in succ.items():
            if b in v:
                v.discard(b)
                if k != a:
                    v.add(a)
    merged: dict[int, list[int]] = {}
    for k, g in enumerate(groups):
        merged.setdefault(find(k), []).extend(g)
    return list(merged.values())


def _other_path(succ: Mapping[int, set[int]], a: int, b: int) -> int | None:
    """The first segment on a path a -> x -> ... -> b (x != b), or None when only a -> b exists."""
    seen: set[int] = (
        set()
    )  # shared: a vertex that cannot reach b from one start cannot from another
    for first in sorted(succ[a]):
        if first == b or first in seen:
            continue
        stack = [first]
        seen.add(first)
        while stack:
            x = stack.pop()
            if x == b:
                return first
            for y in succ.get(x, ()):
                if y not in seen:
                    seen.add(y)
                    stack.append(y)
    return None


def _make_segment(
    graph: Graph,
    name: str,
    nodes: Sequence[Node],
    devices: Mapping[str, str],
    precisions: Mapping[str, Precision] | None,
) -> Segment:
    members = {n.name for n in nodes}
    graph_outputs = {t.name for t in graph.outputs}
    inputs: list[str] = []
    outputs: list[str] = []
    for n in nodes:
        for t in n.inputs:
            if t is None or isinstance(t, Constant) or t.name in inputs:
                continue
            if t.producer is None or t.producer.name not in members:
                inputs.append(t.name)
        for t in n.outputs:
            leaves = any(c.name not in members for c in t.consumers)
            if (leaves or t.name in graph_outputs) and t.name not in outputs:
                outputs.append(t.name)
    seg_precisions = {precisions[n.name] for n in nodes} if precisions else set()
    precision = seg_precisions.pop() if len(seg_precisions) == 1 else None
    return Segment(
        name,
        devices[nodes[0].name],
        tuple(n.name for n in nodes),
        tuple(inputs),
        tuple(outputs),
        precision,
    )


# ----- prediction --------------------------------------------------------------------------


def copy_cost(
    t: Tensor, device: Callable[[str], str], outputs: set[str], tc: TransitionCost
) -> float:
    """What moving ``t`` costs when layers sit where ``device(layer name)`` says: one copy from
    its producer's device (graph inputs: the I/O device) to each other device that reads it
    (graph outputs also go back to the I/O device)."""
    src = device(t.producer.name) if t.producer is not None else IO_DEVICE
    dsts = {device(c.name) for c in t.consumers}
    if t.name in outputs:
        dsts.add(IO_DEVICE)
    return sum(handoff(tc, t, src, d) for d in dsts - {src})


def handoff(tc: TransitionCost, t: Tensor, src: str, dst: str) -> float:
    """``tc`` for moving ``t`` from device ``src`` to ``dst`` (``src != dst``): called with the
    device kinds, except between two DLA cores (``dla0`` -> ``dla1``, a 3-stage pipeline), where
    the kinds are equal and the device names tell the cost model it is a core-to-core handoff."""
    a, b = device_kind(src), device_kind(dst)
    return tc(t, src, dst) if a == b == "dla" else tc(t, a, b)


def transfers(
    graph: Graph, devices: Mapping[str, str], io_device: str = IO_DEVICE
) -> list[tuple[Tensor, str, str]]:
    """Every (tensor, src device, dst device) copy a placement needs, once per destination."""
    out: list[tuple[Tensor, str, str]] = []
    for t in list[Tensor](graph.inputs):
        for dst in sorted({devices[c.name] for c in t.consumers} - {io_device}):
            out.append((t, io_device, dst))
    graph_outputs = {id(t) for t in graph.outputs}
    for n in graph.nodes:
        src = devices[n.name]
        for t in n.outputs:
            dsts = {devices[c.name] for c in t.consumers}
            if id(t) in graph_outputs:
                dsts.add(io_device)
            for dst in sorted(dsts - {src}):
                out.append((t, src, dst))
    return out


def predict(
    graph: Graph,
    devices: Mapping[str, str],
    layer_cost: Callable[[Node, str], float],
    transition_cost: TransitionCost | None,
    io_device: str = IO_DEVICE,
    known: Sequence[str] = (),
    slowdown: Slowdown | None = None,
    watts: Watts | None = None,
) -> Prediction:
    """The one formula both strategies are judged by.

    ``total`` = sum of layer costs on their devices + sum of transition costs (serial run).
    ``period`` models a pipeline over successive inferences: each device works on a different
    frame, so the steady-state time per inference is the busiest device's time; transitions are
    charged to the GPU (``io_device``), which runs the reformat kernels around DLA segments.
    With ``slowdown``, devices running at once share the DRAM and ``period`` grows accordingly
    (:func:`pipelined_period`); ``ideal_period`` keeps the figure without contention. With
    ``watts``, ``energy_j`` is each device's power x busy time (the GPU's includes the boundary
    reformats it runs) and their ``total``; None when a busy device's power is unknown.
    """
    busy: dict[str, float] = dict.fromkeys(known, 0.0)  # devices reported even when idle
    for n in graph.nodes:
        d = devices[n.name]
        busy[d] = busy.get(d, 0.0) + layer_cost(n, d)
    moves = transfers(graph, devices, io_device)
    transfer = 0.0
    if transition_cost is not None:
        transfer = sum(handoff(transition_cost, t, s, d) for t, s, d in moves)
    return prediction_of(busy, transfer, len(moves), io_device, slowdown, watts)


def prediction_of(
    busy: Mapping[str, float],
    transfer: float,
    boundaries: int,
    io_device: str = IO_DEVICE,
    slowdown: Slowdown | None = None,
    watts: Watts | None = None,
) -> Prediction:
    """The :class:`Prediction` of devices busy ``busy`` seconds each and ``transfer`` seconds
    of boundary copies (``boundaries`` of them), by :func:`predict`'s formula; a built plan
    re-states its placement's prediction with this from its segments' own times."""
    busy = dict(busy)
    total = sum(busy.values()) + transfer
    loads = dict(busy)
    loads[io_device] = loads.get(io_device, 0.0) + transfer
    ideal = max(loads.values(), default=0.0)
    period = pipelined_period(loads, slowdown)
    energy = _energy(loads, watts) if watts is not None else None
    return Prediction(
        total, busy, transfer, boundaries, period, ideal if slowdown else None, energy
    )


def _energy(loads: Mapping[str, float], watts: Watts) -> dict[str, float] | None:
    out: dict[str, float] = {}
    for device, seconds in loads.items():
        w = watts(device)
        if w is None:
            if seconds > 0:
                return None
            continue
        out[device] = w * seconds
    out["total"] = sum(out.values())
    return out


def pipelined_period(loads: Mapping[str, float], slowdown: Slowdown | None = None) -> float:
    """Steady-state time per inference when every device works on a different frame at once.

    Without ``slowdown``: the busiest device's load. With it, each device's load stretches by
    its slowdown while the others run, each for the fraction of the period it is busy (the
    bottleneck all of it); the period is the fixed point, found in ``CONTENTION_ROUNDS`` rounds.
    """
    active = {d: t for d, t in loads.items() if t > 0}
    if slowdown is None or len(active) < 2:
        return max(loads.values(), default=0.0)
    stretched = dict(active)
    for _ in range(CONTENTION_ROUNDS):
        period = max(stretched.values())
        busy = {d: min(1.0, t / period) for d, t in stretched.items()}
        stretched = {
            d: t * slowdown(d, {o: f for o, f in busy.items() if o != d})
            for d, t in active.items()
        }
    return max(stretched.values())
