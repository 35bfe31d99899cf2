"""What the partitioner knows about each layer, and what moving layers would change.

``analyse`` (partitioner/assign.py) fills an :class:`Analysis` of :class:`LayerFacts`; both
strategies read it: ``trt`` rules in assign.py, the cost model's cuts in mincut.py.
:func:`move_delta` / :func:`move_effect` price a move of layers to another device, in one place
for both; :func:`cost_reason` says why the cost model left a layer where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from partitioner.capability import Precision
from partitioner.errors import InternalError
from partitioner.ir import Graph, Node, Tensor
from partitioner.policy import Policy
from partitioner.segments import (
    Slowdown,
    Topology,
    TransitionCost,
    Watts,
    copy_cost,
    device_kind,
)


class LazyCosts(Mapping[str, float]):
    """Seconds per device, asked of the cost model only when first read: ``trt`` needs just the
    placed device's cost, and a DLA latency model can be the slowest part of partitioning."""

    def __init__(self) -> None:
        self._fns: dict[str, Callable[[], float]] = {}
        self._cache: dict[str, float] = {}

    def add(self, device: str, fn: Callable[[], float]) -> None:
        self._fns[device] = fn

    def __getitem__(self, device: str) -> float:
        if device not in self._cache:
            self._cache[device] = float(self._fns[device]())
        return self._cache[device]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fns)

    def __len__(self) -> int:
        return len(self._fns)


@dataclass
class LayerFacts:
    """What ``analyse`` learns about one layer; read by both strategies."""

    node: Node
    position: int
    wanted: str  # "gpu" | "dla" (policy default or pin)
    pin_device: str | None  # description of the pin, e.g. "pinned by rule 2 (op: Resize) in p.yaml"
    precision: Precision  # requested
    gpu_precision: Precision | None  # None: the GPU cannot run it
    gpu_note: str  # why the GPU precision differs from the requested one, or why it cannot run
    dla_precision: Precision | None  # None: not DLA-eligible
    dla_reason: str  # verdict reason (ok or not)
    cpu_precision: Precision | None = None
    costs: LazyCosts = field(default_factory=lambda: LazyCosts())  # device string -> seconds

    @property
    def dla_ok(self) -> bool:
        return self.dla_precision is not None


@dataclass
class Analysis:
    graph: Graph
    order: list[Node]
    policy: Policy
    dla: str | None  # "dla0"/"dla1", None without a DLA capability
    layers: dict[str, LayerFacts]
    warnings: list[str]
    io_device: str = "gpu"  # where graph inputs/outputs live: the GPU, or the CPU without one
    topo: Topology | None = None
    slowdown: Slowdown | None = None  # DRAM contention between devices running at once
    watts: Watts | None = None  # power while busy per device (energy predictions)
    # DLA loadables one core holds: the policy's max_dla_subgraphs, else the DLA's own figure
    # (its support table); None where neither says (no limit is enforced)
    dla_limit: int | None = None

    def cost(self, node: Node, device: str) -> float:
        return self.layers[node.name].costs.get(device, float("inf"))

    def precision_on(self, name: str, device: str) -> Precision:
        f = self.layers[name]
        p = {"gpu": f.gpu_precision, "cpu": f.cpu_precision}.get(device, f.dla_precision)
        if p is None:
            raise InternalError(f"layer '{name}' was placed on {device}, which cannot run it")
        return p


def _copy_changes(
    a: Analysis,
    devices: Mapping[str, str],
    touched: Mapping[str, Tensor],
    moved: set[str],
    target: str,
    tc: TransitionCost,
) -> Iterator[float]:
    """Per touched tensor, the change in copy time when ``moved`` go to ``target``."""
    outputs = {t.name for t in a.graph.outputs}
    inputs = {t.name for t in a.graph.inputs}

    def after(name: str) -> str:
        return target if name in moved else devices[name]

    for t in touched.values():
        if t.producer is None and t.name not in inputs:
            continue  # constants and weights never move
        before = copy_cost(t, devices.__getitem__, outputs, tc)
        yield copy_cost(t, after, outputs, tc) - before


def _touched(a: Analysis, names: Sequence[str]) -> dict[str, Tensor]:
    touched: dict[str, Tensor] = {}
    for n in names:
        node = a.layers[n].node
        for tensor in (*node.outputs, *node.inputs):
            if tensor is not None:
                touched[tensor.name] = tensor
    return touched


def move_delta(
    a: Analysis,
    devices: Mapping[str, str],
    names: Sequence[str],
    target: str,
    tc: TransitionCost | None,
) -> float:
    """Change in predicted total latency (seconds) if ``names`` all moved to ``target``."""
    delta = 0.0
    for n in names:
        f = a.layers[n]
        delta += f.costs.get(target, float("inf")) - f.costs[devices[n]]
    if tc is None:
        return delta
    for change in _copy_changes(a, devices, _touched(a, names), set(names), target, tc):
        delta += change
    return delta


def move_effect(
    a: Analysis,
    devices: Mapping[str, str],
    names: Sequence[str],
    target: str,
    tc: TransitionCost | None,
) -> tuple[float, float, float]:
    """(change in GPU busy, in DLA busy, in copy time) if ``names`` all moved to ``target``:
    :func:`move_delta` split by device, for the throughput objective's balancing."""
    d_gpu = d_dla = 0.0
    for n in names:
        f = a.layers[n]
        for device, sign in ((devices[n], -1.0), (target, 1.0)):
            if device == "gpu":
                d_gpu += sign * f.costs["gpu"]
            else:
                d_dla += sign * f.costs[device]
    if tc is None:
        return d_gpu, d_dla, 0.0
    d_copy = 0.0
    for change in _copy_changes(a, devices, _touched(a, names), set(names), target, tc):
        d_copy += change
    return d_gpu, d_dla, d_copy


def cost_reason(
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
    # under the throughput objective a layer may sit on its slower device to balance the load
    model = "cost model (pipelined)" if a.policy.objective == "throughput" else "cost model"
    w_here = a.watts(here) if a.watts is not None else None
    w_there = a.watts(there) if a.watts is not None else None
    if a.policy.objective == "energy" and w_here is not None and w_there is not None:
        return (
            f"{label}: cost model (energy): {ms(costs[here] * w_here)} mJ on {label} vs "
            f"{ms(costs[there] * w_there)} mJ on {other}{extra}"
        )
    return (
        f"{label}: {model}: {ms(costs[here])} ms on {label} vs "
        f"{ms(costs[there])} ms on {other}{extra}"
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


def ms(seconds: float) -> str:
    """Seconds as milliseconds for reasons and debug lines (3 significant digits)."""
    return f"{seconds * 1e3:.3g}"
