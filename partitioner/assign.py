"""Assign every layer to a device with a reason: TensorRT's rules (``trt``) or a cost model.

The entry point is :func:`partition`. It runs in three named steps:

1. ``analyse`` — per layer, once: the wanted device (policy default or a rule's pin), the
   precision (policy or pin), whether the DLA can run it (``cap.supports``; FP32 never), which
   precision the GPU runs it at, and (lazily) the costs on each device.
2. ``place_trt`` or ``place_cost`` — the placement (see each function).
3. ``enforce_dla_limits`` — segments shorter than ``min_dla_segment_layers`` and loadables beyond
   ``max_dla_subgraphs`` move to the GPU, each with a reason; then the final segments.

Capabilities come as ``{"gpu": cap, "dla": cap, "cpu": cap}``; ``dla`` and ``cpu`` may be absent.
One model uses one DLA core (``policy.dla_core``), as a TensorRT engine does; with
``policy.dla_stages`` 2 (a concurrent plan's 3-stage lane) ``partitioner.dla_stages`` then cuts
the placement into a GPU, a DLA0 and a DLA1 stage, and the limits hold per core.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence

from partitioner.capability import DeviceCapability, Precision
from partitioner.errors import TandemError
from partitioner.facts import Analysis, LayerFacts, cost_reason, move_delta, ms
from partitioner.ir import Graph, Node
from partitioner.mincut import PENDING, improve_placement
from partitioner.policy import Policy, default_policy, resolve_pins
from partitioner.segments import (
    Assignment,
    Partition,
    Prediction,
    Segment,
    Slowdown,
    Topology,
    TransitionCost,
    Watts,
    device_kind,
    form_segments,
    predict,
)

Capabilities = Mapping[str, DeviceCapability]
#: segments, their formation's debug lines, and each layer's precision
Formed = tuple[list[Segment], list[str], dict[str, Precision]]

# Wider precisions first: a GPU without an INT8 kernel for a layer runs it in FP16, then FP32.
_GPU_PRECISION_ORDER: dict[str, tuple[Precision, ...]] = {
    "int8": ("int8", "fp16", "fp32"),
    "fp16": ("fp16", "fp32"),
    "fp32": ("fp32", "fp16"),
}


class PartitionError(TandemError):
    """The policy cannot be met on this target (e.g. DLA-only without GPU fallback)."""


def partition(
    graph: Graph,
    caps: Capabilities,
    policy: Policy | None = None,
    transition_cost: Callable[..., float] | None = None,
    strategy: str | None = None,
) -> Partition:
    """Place every layer of ``graph``; ``strategy`` overrides ``policy.partition``.

    ``transition_cost(tensor, src, dst) -> seconds`` (device kinds ``gpu``/``dla``/``cpu``; a
    one-argument ``transition_cost(tensor)`` is accepted too) prices each GPU<->DLA boundary.
    Raises :class:`PartitionError` when the policy cannot be met (every offending layer named).
    """
    policy = policy or default_policy()
    strategy = strategy or policy.partition
    if strategy not in ("trt", "cost"):
        raise PartitionError(f"unknown partition strategy '{strategy}': expected trt or cost")
    tc = _adapt_transition_cost(transition_cost)
    facts = analyse(graph, caps, policy)
    trt = place_trt(facts, tc)
    if strategy == "trt":
        return trt
    if policy.objective == "energy" and trt.predicted.energy_j is None:
        raise PartitionError(
            f"objective energy in {policy.source}: the target's power figures are unknown for "
            "its devices (a power mode without a budget, or a DLA without published perf/W) "
            "— choose objective latency or throughput, or a power mode with a budget"
        )
    cost = place_cost(facts, tc, trt)
    if policy.dla_stages == 2 and facts.dla is not None:
        from partitioner.dla_stages import split_cores  # it builds on this module's steps

        return split_cores(facts, tc, trt, cost)
    return cost


def _adapt_transition_cost(fn: Callable[..., float] | None) -> TransitionCost | None:
    if fn is None:
        return None
    try:
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
        ]
    except (TypeError, ValueError):  # builtins without a signature: assume the full form
        return fn
    if len(params) == 1:
        return lambda t, src, dst: fn(t)
    return fn


# ----- step 1: analyse -----------------------------------------------------------------------


def _named(node: Node, reason: str) -> str:
    """Capability reasons should name the layer; add ``Op 'name':`` where one does not."""
    reason = reason or "not supported"
    return reason if f"'{node.name}'" in reason else f"{node.op} '{node.name}': {reason}"


def analyse(graph: Graph, caps: Capabilities, policy: Policy) -> Analysis:
    topo = Topology.of(graph)
    order = topo.order
    pins = resolve_pins(policy, order)
    dla_cap = caps.get("dla")
    dla = policy.dla_device if dla_cap is not None else None
    # the other core of a 3-stage pipeline: the cores are identical, one capability prices both
    second = policy.second_dla_device if dla is not None and policy.dla_stages == 2 else None
    layers: dict[str, LayerFacts] = {}
    for position, node in enumerate(order):
        device_pin = pins.device.get(node.name)
        precision_pin = pins.precision.get(node.name)
        precision: Precision = (
            precision_pin.value if precision_pin else policy.precision  # type: ignore[assignment]
        )
        facts = LayerFacts(
            node=node,
            position=position,
            wanted=device_pin.value if device_pin else policy.default_device,
            pin_device=device_pin.why(policy.source) if device_pin else None,
            precision=precision,
            gpu_precision=None,
            gpu_note="",
            dla_precision=None,
            dla_reason="",
        )
        _gpu_facts(facts, graph, caps, precision)
        _dla_facts(facts, graph, dla_cap, precision, strict=precision_pin is not None)
        for device, kind, p in (
            ("gpu", "gpu", facts.gpu_precision),
            (dla, "dla", facts.dla_precision),
            (second, "dla", facts.dla_precision),
            ("cpu", "cpu", facts.cpu_precision),
        ):
            if device is not None and p is not None:
                facts.costs.add(device, functools.partial(caps[kind].cost, node, graph, p))
        layers[node.name] = facts
    io_device = io_device_of(caps)
    return Analysis(
        graph,
        order,
        policy,
        dla,
        layers,
        list(pins.warnings),
        io_device,
        topo,
        slowdown_of(caps),
        watts_of(caps),
        _dla_limit(policy, dla_cap),
    )


def _dla_limit(policy: Policy, dla_cap: DeviceCapability | None) -> int | None:
    if policy.max_dla_subgraphs is not None:
        return policy.max_dla_subgraphs
    held = getattr(dla_cap, "max_loadables", None)  # partitioner.capability.HoldsLoadables
    return held if isinstance(held, int) else None


def io_device_of(caps: Capabilities) -> str:
    """The device graph inputs arrive on and outputs leave from: the GPU, else the CPU."""
    return "gpu" if "gpu" in caps else "cpu"


def watts_of(caps: Capabilities) -> Watts | None:
    """Each device's power from its capability (:class:`DrawsPower`), or None when none has it."""
    fns = {kind: getattr(cap, "watts", None) for kind, cap in caps.items()}
    if not any(callable(fn) for fn in fns.values()):
        return None

    def watts(device: str) -> float | None:
        fn = fns.get(device_kind(device))
        value = fn(device) if callable(fn) else None
        return None if value is None else float(value)

    return watts


def slowdown_of(caps: Capabilities) -> Slowdown | None:
    """Each device's ``slowdown`` from its capability (:class:`SharesMemory`), or None when no
    capability has one; a device whose capability has none is not slowed (factor 1)."""
    fns = {kind: getattr(cap, "slowdown", None) for kind, cap in caps.items()}
    if not any(callable(fn) for fn in fns.values()):
        return None

    def slowdown(device: str, others: Mapping[str, float]) -> float:
        fn = fns.get(device_kind(device))
        return float(fn(device, others)) if callable(fn) else 1.0

    return slowdown


def _gpu_facts(facts: LayerFacts, graph: Graph, caps: Capabilities, precision: Precision) -> None:
    node = facts.node
    first = None
    gpu = caps.get("gpu")
    for p in _GPU_PRECISION_ORDER[precision]:
        if gpu is None:
            break
        verdict = gpu.supports(node, graph, p)
        if verdict.ok:
            facts.gpu_precision = p
            if p != precision:
                facts.gpu_note = f"runs {p} on GPU ({_named(node, first or '')})"
            return
        first = first or verdict.reason
    facts.gpu_note = (
        f"GPU cannot run it: {_named(node, first or '')}"
        if gpu is not None
        else "target has no GPU"
    )
    cpu = caps.get("cpu")
    if cpu is not None and cpu.supports(node, graph, "fp32").ok:
        facts.cpu_precision = "fp32"


def _dla_facts(
    facts: LayerFacts,
    graph: Graph,
    cap: DeviceCapability | None,
    precision: Precision,
    strict: bool,
) -> None:
    node = facts.node
    if cap is None:
        facts.dla_reason = "target has no DLA"
        return
    if precision == "fp32":
        facts.dla_reason = "DLA runs FP16/INT8 only; layer precision is fp32"
        return
    verdict = cap.supports(node, graph, precision)
    if verdict.ok:
        facts.dla_precision = precision
        facts.dla_reason = verdict.reason or "all DLA restrictions met"
        return
    # TensorRT builds DLA INT8 engines with FP16 enabled too: a layer without an INT8 form runs in
    # FP16 on the DLA, unless a rule demanded INT8 for it.
    if precision == "int8" and not strict:
        fp16 = cap.supports(node, graph, "fp16")
        if fp16.ok:
            facts.dla_precision = "fp16"
            facts.dla_reason = f"runs fp16 on DLA ({_named(node, verdict.reason)})"
            return
    facts.dla_reason = _named(node, verdict.reason)


# ----- step 2a: TensorRT's rules ---------------------------------------------------------------


def place_trt(a: Analysis, tc: TransitionCost | None) -> Partition:
    """TensorRT semantics: a layer meant for the DLA (default device or pin) runs there when the
    DLA supports it at its precision; otherwise it falls back to the GPU (``gpu_fallback``) or the
    build fails naming every such layer. Then ``enforce_dla_limits`` drops the *later* loadables
    in topological order beyond the per-core limit, as TensorRT's builder does."""
    policy = a.policy
    devices: dict[str, str] = {}
    reasons: dict[str, str] = {}
    offending: list[str] = []
    unrunnable: list[str] = []
    cpu_refused: list[str] = []
    for node in a.order:
        f = a.layers[node.name]
        name = node.name
        if f.gpu_precision is None and not (f.wanted == "dla" and f.dla_ok):
            if f.cpu_precision is None:
                unrunnable.append(f"'{name}' ({f.gpu_note})")
                continue
            if not policy.cpu_fallback and a.io_device != "cpu":
                cpu_refused.append(f"'{name}' ({f.gpu_note})")
                continue
            dla_note = f"DLA cannot run it: {f.dla_reason}; " if f.wanted == "dla" and a.dla else ""
            hint = " (the DLA can: pin it with a rule, device: dla)" if f.dla_ok else ""
            devices[name], reasons[name] = "cpu", f"CPU: {dla_note}{f.gpu_note}{hint}"
            continue
        if f.wanted == "gpu":
            why = f.pin_device or f"default_device is gpu in {policy.source}"
            devices[name], reasons[name] = "gpu", _gpu_reason(f, why)
        elif f.dla_ok:
            assert a.dla is not None
            suffix = f" ({f.pin_device})" if f.pin_device else ""
            devices[name], reasons[name] = a.dla, f"DLA: {f.dla_reason}{suffix}"
        elif not policy.gpu_fallback:
            offending.append(f"'{name}' ({f.dla_reason})")
        else:
            suffix = f" (ignores dla {f.pin_device})" if f.pin_device else ""
            devices[name], reasons[name] = "gpu", _gpu_reason(f, f.dla_reason + suffix)
    if unrunnable:
        raise PartitionError(
            f"{len(unrunnable)} layer(s) can run on no device of this target: "
            + "; ".join(unrunnable)
        )
    if cpu_refused:
        raise PartitionError(
            f"{len(cpu_refused)} layer(s) can run neither on the GPU nor on the DLA, and "
            f"cpu_fallback is false in {policy.source}: "
            + "; ".join(cpu_refused)
            + " — set cpu_fallback: true to run them on the board's CPU (numpy reference), or "
            "change these layers to a form the GPU runs"
        )
    if offending:
        raise PartitionError(
            f"{len(offending)} layer(s) cannot run on the DLA and gpu_fallback is false in "
            f"{policy.source}: "
            + "; ".join(offending)
            + " — set gpu_fallback: true or pin these layers to gpu with a rule"
        )
    warnings = list(a.warnings)
    for name in devices:
        f = a.layers[name]
        if f.pin_device and f.wanted == "dla" and devices[name] == "gpu":
            warnings.append(f"layer '{name}' {f.pin_device} runs on GPU: {f.dla_reason}")
    return enforce_dla_limits(a, devices, reasons, tc, "trt", warnings, [])


def _gpu_reason(f: LayerFacts, why: str) -> str:
    note = f"; {f.gpu_note}" if f.gpu_note else ""
    return f"GPU: {why}{note}"


# ----- step 3: limits and final segments -------------------------------------------------------


def enforce_dla_limits(
    a: Analysis,
    devices: dict[str, str],
    reasons: dict[str, str],
    tc: TransitionCost | None,
    strategy: str,
    warnings: list[str],
    debug: list[str],
    drop_order: Callable[[list[Segment]], list[Segment]] | None = None,
) -> Partition:
    """Move too-short DLA segments and loadables beyond the limit to the GPU; build the result.

    Short segments holding a layer pinned to the DLA stay (a pin outranks a preference). The
    loadable limit is hardware: it outranks pins. ``drop_order`` ranks the DLA segments to drop
    first; by default the later ones in topological order (TensorRT's behaviour). A segment
    holding a layer that may not leave the DLA (``gpu_fallback: false`` and meant for the DLA,
    or the GPU cannot run it) is never moved; when such segments alone exceed the limit, the
    build fails as TensorRT's does.
    """
    policy = a.policy

    def stuck(s: Segment) -> bool:
        for n in s.nodes:
            f = a.layers[n]
            if f.gpu_precision is None or (not policy.gpu_fallback and f.wanted == "dla"):
                return True
        return False

    def segment() -> Formed:
        precisions = {n: a.precision_on(n, d) for n, d in devices.items()}
        return (*form_segments(a.graph, devices, precisions, a.topo), precisions)

    segments, seg_debug, precisions = segment()
    minimum = policy.min_dla_segment_layers
    if a.dla is not None and minimum > 1:
        short = [
            s
            for s in segments
            if s.device.startswith("dla")
            and len(s.nodes) < minimum
            and not any(a.layers[n].pin_device for n in s.nodes)
            and not stuck(s)
        ]
        for s in short:
            for n in s.nodes:
                devices[n] = "gpu"
                reasons[n] = _gpu_reason(
                    a.layers[n],
                    f"DLA segment of {len(s.nodes)} layer(s) < min_dla_segment_layers "
                    f"{minimum} in {policy.source}",
                )
        if short:
            segments, seg_debug, precisions = segment()
    for core in sorted({s.device for s in segments if s.device.startswith("dla")}):
        segments, seg_debug, precisions = _limit_core(
            a,
            core,
            (segments, seg_debug, precisions),
            devices,
            reasons,
            warnings,
            stuck,
            segment,
            drop_order,
        )
    assignments = {
        n.name: Assignment(devices[n.name], precisions[n.name], reasons[n.name]) for n in a.order
    }
    cores = sorted({d for d in devices.values() if d.startswith("dla") and d != a.dla})
    known = [a.io_device] + ([a.dla] if a.dla else []) + cores
    prediction = predict(a.graph, devices, a.cost, tc, a.io_device, known, a.slowdown, a.watts)
    return Partition(
        assignments,
        segments,
        warnings,
        prediction,
        strategy,
        policy.objective,
        debug + seg_debug,
    )


def _limit_core(
    a: Analysis,
    core: str,
    formed: Formed,
    devices: dict[str, str],
    reasons: dict[str, str],
    warnings: list[str],
    stuck: Callable[[Segment], bool],
    segment: Callable[[], Formed],
    drop_order: Callable[[list[Segment]], list[Segment]] | None,
) -> Formed:
    """The loadable limit of one DLA core (each core holds its own loadables)."""
    policy = a.policy
    segments = formed[0]
    dla_segments = [s for s in segments if s.device == core]
    limit = a.dla_limit
    if limit is not None and len(dla_segments) > limit:
        ranked = drop_order(dla_segments) if drop_order else dla_segments[::-1]
        movable = [s for s in ranked if not stuck(s)]
        excess = len(dla_segments) - limit
        if len(movable) < excess:
            kept = [s for s in dla_segments if stuck(s)]
            raise PartitionError(
                f"the DLA loadable limit {limit} (max_dla_subgraphs in {policy.source}) is "
                f"exceeded on {core}: {len(kept)} DLA segments hold layers that cannot fall "
                "back to the GPU: "
                + ", ".join(f"{s.name} [{_short_list(s.nodes)}]" for s in kept)
                + " — set gpu_fallback: true, raise max_dla_subgraphs, or pin layers to gpu"
            )
        dropped = movable[:excess]
        index = {s.name: i for i, s in enumerate(dla_segments, start=1)}
        dropped.sort(key=lambda s: index[s.name])
        for s in dropped:
            for n in s.nodes:
                devices[n] = "gpu"
                reasons[n] = _gpu_reason(
                    a.layers[n],
                    f"DLA loadable limit {limit} reached on {core} "
                    f"(segment {index[s.name]} of {len(dla_segments)})",
                )
        shown = ", ".join(f"segment {index[s.name]} [{_short_list(s.nodes)}]" for s in dropped)
        warnings.append(
            f"DLA loadable limit {limit} (max_dla_subgraphs in {policy.source}) reached on "
            f"{core}: {len(dropped)} of {len(dla_segments)} DLA segments switched to GPU: {shown}"
        )
        return segment()
    return formed


def _short_list(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} layers)" if len(names) > limit else "")


# ----- step 2b: the cost model -----------------------------------------------------------------


def place_cost(a: Analysis, tc: TransitionCost | None, trt: Partition) -> Partition:
    """Minimise the predicted objective; never worse than ``trt`` (both are computed with
    :func:`partitioner.segments.predict`, and the better one is kept — ``trt`` on a tie)."""
    objective = a.policy.objective
    key = functools.partial(_score, objective=objective, budget=a.policy.energy_budget_mj)
    best: Partition | None = None
    for devices, reasons, debug in improve_placement(a, tc, trt):
        candidate = enforce_dla_limits(
            a,
            devices,
            reasons,
            tc,
            "cost",
            list(a.warnings),
            debug,
            drop_order=functools.partial(_rank_by_gain, a, devices, tc=tc),
        )
        if best is None or key(candidate.predicted) < key(best.predicted):
            best = candidate
    assert best is not None
    mine, theirs = best.predicted.objective(objective), trt.predicted.objective(objective)
    budget_note = _budget_note(a.policy.energy_budget_mj, best, trt, key)
    if key(best.predicted) < key(trt.predicted):
        devices = {n: x.device for n, x in best.assignments.items()}
        for name, x in best.assignments.items():
            if x.reason == PENDING:
                reason = cost_reason(a, devices, name, tc)
                best.assignments[name] = dataclasses.replace(x, reason=reason)
        best.debug.append(
            f"cost: predicted {objective} {ms(mine)} ms vs {ms(theirs)} ms with trt rules"
        )
        best.warnings.extend(budget_note)
        return best
    return Partition(
        trt.assignments,
        trt.segments,
        trt.warnings + budget_note,
        trt.predicted,
        "cost",
        objective,
        trt.debug
        + [
            f"cost: kept the trt placement: predicted {objective} {ms(theirs)} ms, "
            f"cost-model placement {ms(mine)} ms"
        ],
    )


def _score(p: Prediction, objective: str, budget: float | None) -> tuple[int, float]:
    """Order of placements: within the energy budget (if any) first, by the objective; over it,
    by joules (the nearest to the budget)."""
    if budget is None:
        return 0, p.objective(objective)
    joules = p.energy_j["total"] if p.energy_j else float("inf")
    if joules * 1e3 <= budget * (1 + 1e-9):
        return 0, p.objective(objective)
    return 1, joules


def _budget_note(
    budget: float | None,
    best: Partition,
    trt: Partition,
    key: Callable[[Prediction], tuple[int, float]],
) -> list[str]:
    kept = best if key(best.predicted) < key(trt.predicted) else trt
    if budget is None or key(kept.predicted)[0] == 0:
        return []
    mj = kept.predicted.as_mj()
    spent = f"{mj['total']:.3g} mJ" if mj else "an unknown energy (no power figures)"
    return [
        f"no placement meets energy_budget_mj {budget:g}: the most frugal found spends {spent} "
        "per inference"
    ]


def _rank_by_gain(
    a: Analysis, devices: Mapping[str, str], segs: list[Segment], tc: TransitionCost | None
) -> list[Segment]:
    """DLA segments, cheapest to move to the GPU first; segments with pinned layers last."""

    def key(s: Segment) -> tuple[bool, float, int]:
        pinned = any(a.layers[n].pin_device for n in s.nodes)
        return pinned, move_delta(a, devices, s.nodes, "gpu", tc), -a.layers[s.nodes[0]].position

    return sorted(segs, key=key)


__all__ = [
    "Analysis",
    "Capabilities",
    "LayerFacts",
    "Partition",
    "PartitionError",
    "Prediction",
    "analyse",
    "enforce_dla_limits",
    "move_delta",
    "partition",
    "place_cost",
    "place_trt",
]
