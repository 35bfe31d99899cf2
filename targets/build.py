"""Cross-build a plan for one target: place layers, compile each segment, store everything.

:func:`build` is the one build path: every front end (the CLI's commands, ``tandem exec``, the
Python ``Builder``) hands it a ``BuildRequest``.

Runs on an x86 host without a GPU: DLA segments compile to emulator loadables (the board's
TensorRT rebuilds them for the real DLA from the stored segment graph), GPU segments store their
graph, weights, tactic choices and cubins cross-compiled with the NVRTC of the target's CUDA
major (``targets.gpu_code``). A build that cannot make a segment's code fails; it never writes a
plan whose segment would not run where its placement says.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from devices.calibration import calibrate
from devices.capability import GpuCapability, capabilities_for
from devices.cost import gpu_segment_seconds, transition_cost_for
from devices.cpu import evaluate_node
from devices.hardware import TargetSpec, host_target
from devices.plan import Plan, new_header
from dla_sim.compiler import compile_loadable
from dla_sim.latency import predict_loadable
from partitioner.assign import io_device_of, partition, slowdown_of, watts_of
from partitioner.bindings import describe_dynamic, resolve_bindings, unbound_hint
from partitioner.capability import DeviceCapability
from partitioner.errors import ConfigError, ShapeError, TandemError
from partitioner.ir import Graph, Tensor
from partitioner.onnx_import import import_onnx
from partitioner.passes import HOST_SHAPE, has_qdq, simplify, strip_qdq
from partitioner.plugins import PLUGINS
from partitioner.policy import Policy, default_policy, load_policy
from partitioner.profiles import (
    OptimizationProfile,
    fixed_dims,
    opt_dims,
    profiles_to_data,
    validate_profiles,
)
from partitioner.report import capability_rows, layer_rows
from partitioner.segments import Partition, Segment, device_kind, prediction_of
from partitioner.serialize import graph_to_data
from partitioner.shape_inference import infer_shapes
from partitioner.subgraph import extract_subgraph
from targets.catalog import load_target
from targets.gpu_code import NO_CUBINS_NOTE, BuildError, check_nvrtc, cross_compile
from targets.request import BuildRequest

Progress = Callable[[str], None]


@dataclass
class Placement:
    """A model placed on a target: the graph after passes and its partition."""

    model: str
    graph: Graph
    target: TargetSpec
    policy: Policy
    partition: Partition
    #: the device capabilities the partition was made with, as ``capabilities_for`` gives them
    #: (no CPU stand-in for a missing GPU, no pricing at profile shapes): the plan's per-layer
    #: costs reuse them
    capabilities: dict[str, DeviceCapability]
    policy_warnings: list[str] = field(default_factory=list)
    #: optimisation profiles (dynamic shapes); recorded in the plan header
    profiles: list[OptimizationProfile] = field(default_factory=list)
    #: per-tensor INT8 scales taken from the model's own Q/DQ layers (a QAT model)
    qdq_scales: dict[str, float] = field(default_factory=dict)
    #: a dynamic-shape graph at profile 0's opt shapes (None for a static graph): what costs
    #: are priced at, calibration runs at, and GPU segments are lowered at
    opt_graph: Graph | None = None


class Built(NamedTuple):
    """A build's result: the plan, and the placement it was compiled from (what front ends
    report: segments, warnings, reasons)."""

    placement: Placement
    plan: Plan


def build(request: BuildRequest, progress: Progress | None = None) -> Built:
    """The one build path: place -> calibrate (INT8) -> compile every segment into a plan."""
    say = progress or (lambda _m: None)
    say(f"importing {request.model}")
    placement = place_for(request)
    part = placement.partition
    say(
        f"placed {len(part.assignments)} layers into {len(part.segments)} segments "
        f"({part.strategy} strategy)"
    )
    scales = None
    if any(a.precision == "int8" for a in part.assignments.values()):
        say("calibrating INT8 scales")
        scales = _int8_scales(placement, request, say)
    plan = build_plan(placement, scales, say, request.timing_cache, request.cubins)
    return Built(placement, plan)


def build_notes(built: Built, limit: int = 20) -> list[str]:
    """What a build's summary must say besides its segments: every layer that runs on the
    target's CPU (the numpy reference) with its reason, and a plan without GPU code."""
    part, target = built.placement.partition, built.placement.target
    notes: list[str] = []
    cpu = [(name, a.reason) for name, a in part.assignments.items() if a.device == "cpu"]
    if cpu and target.gpu is None:
        notes.append(f"the target has no GPU: all {len(cpu)} layers run on its CPU "
                     "(numpy reference, FP32)")
    elif cpu:
        notes.append(f"{len(cpu)} layer(s) will run on the board's CPU (numpy reference):")
        for name, reason in cpu[:limit]:
            notes.append(f"  {name}: {reason.removeprefix('CPU: ')}")
        if len(cpu) > limit:
            notes.append(f"  ... and {len(cpu) - limit} more (tandem inspect PLAN lists them)")
    if not built.plan.record.cubins:
        notes.append(NO_CUBINS_NOTE)
    policy = built.placement.policy
    on_dla = [a for a in part.assignments.values() if a.device.startswith("dla")]
    if target.dla is not None and policy.default_device == "dla" and not on_dla:
        # a silent all-GPU plan for a DLA build: say why without --verbose (issue 18)
        by_reason: dict[str, int] = {}
        for row in capability_rows(built.placement.graph, part):
            by_reason[row.reason] = by_reason.get(row.reason, 0) + row.count
        ranked = sorted(by_reason.items(), key=lambda kv: -kv[1])
        notes.append("no layer runs on the DLA; why, most layers first:")
        notes += [f"  {n} layer(s): {reason}" for reason, n in ranked[:3]]
        if len(ranked) > 3:
            notes.append(f"  ... {len(ranked) - 3} more (tandem inspect MODEL --target lists them)")
    return notes


def place_for(request: BuildRequest) -> Placement:
    """The request's model placed on its target (what ``tandem inspect --target`` shows)."""
    return place(
        request.model,
        request.target,
        request.policy,
        dict(request.fixed_dims),
        graph=request.graph,
        profiles=list(request.profiles),
        input_shapes=dict(request.input_shapes),
        native_io=request.native_io,
    )


def _int8_scales(placement: Placement, request: BuildRequest, say: Progress) -> dict[str, float]:
    """A QAT model's own Q/DQ scales when nothing else is given; otherwise calibrated (at the
    first profile's opt shapes, as TensorRT does), with trained scales outranking measured."""
    if placement.qdq_scales and not request.calibration.given:
        say(f"using the {len(placement.qdq_scales)} scales of the model's Q/DQ layers")
        return dict(placement.qdq_scales)
    scales = calibrate(placement.opt_graph or placement.graph, request.calibration,
                       progress=_calibration_progress(say))  # fmt: skip
    scales.update(placement.qdq_scales)
    return scales


def _calibration_progress(say: Progress) -> Callable[[int, int | None], None]:
    """Step messages for calibration batches with an ETA (a TTY's status line shows each; at
    most one a second, and the last, so ``--verbose`` logs stay short)."""
    start = time.perf_counter()
    last = [start]

    def step(done: int, total: int | None) -> None:
        now = time.perf_counter()
        if now - last[0] < 1.0 and done != total:
            return
        last[0] = now
        if total:
            eta = (now - start) / done * (total - done)
            say(f"calibrating INT8 scales: {done}/{total} batches, ETA {eta:.0f} s")
        else:
            say(f"calibrating INT8 scales: {done} batches")

    return step


def resolve_target(name_or_path: str, power_mode: str | None = None) -> TargetSpec:
    """A catalog name, a YAML path, or ``host`` (this machine's GPU, else CPU only)."""
    if name_or_path == "host":
        return host_target().with_power_mode(power_mode)
    return load_target(name_or_path, power_mode)


def resolve_policy(
    path: str | None,
    precision: str | None = None,
    strategy: str | None = None,
    dla_core: int | None = None,
) -> Policy:
    policy = load_policy(path) if path else default_policy()
    changes: dict[str, Any] = {}
    if precision:
        changes["precision"] = precision
    if strategy:
        changes["partition"] = strategy
    if dla_core is not None:
        changes["dla_core"] = dla_core
    return policy.with_overrides(**changes) if changes else policy


def load_model(
    model: str | os.PathLike[str],
    fixed_dims: Mapping[str, int] | None = None,
    optimize: bool = True,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> Graph:
    """Import an ONNX file and (unless ``optimize`` is off) run the standard passes: constant
    folding with the numpy reference as evaluator, BN folding, cleanup, fusion marks.

    ``fixed_dims`` (``--dim``) and ``input_shapes`` (``--shapes``) bind dynamic input dims
    (``partitioner.bindings``); shape computations on bound dims fold away."""
    graph = import_onnx(model, fixed_dims=fixed_dims, input_shapes=input_shapes)
    return simplify(graph, evaluate_node) if optimize else graph


def bind_inputs(graph: Graph, shapes: Mapping[str, Sequence[int]], source: str) -> Graph:
    """``graph`` with its dynamic input dims bound from concrete input shapes (the arrays of
    ``--inputs``: ``source`` names them in errors), re-inferred and re-simplified; ``graph``
    itself when it has no dynamic dims. A dim name met twice must get one value."""
    values = resolve_bindings(graph.inputs, shapes=shapes, shapes_source=source)
    return fix_dims(graph, values) if values else graph


def check_bound(graph: Graph, model: str | os.PathLike[str]) -> None:
    """Refuse a build whose inputs still have dynamic dims that no profile covers: GPU kernels
    and DLA loadables are made for static shapes (TensorRT refuses such a network too)."""
    if all(t.is_static or t.shape is None for t in graph.inputs):
        return
    raise ShapeError(
        f"{model}: dynamic input dims {describe_dynamic(graph.inputs)} are not bound; "
        f"{unbound_hint(graph.inputs)}"
    )


def place(
    model: str | os.PathLike[str],
    target: TargetSpec,
    policy: Policy,
    fixed_dims: Mapping[str, int] | None = None,
    graph: Graph | None = None,
    profiles: list[OptimizationProfile] | None = None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    native_io: frozenset[str] = frozenset(),
) -> Placement:
    """Import (unless ``graph`` is given), then partition for ``target`` under ``policy``.

    Every dynamic input dim must be bound (``fixed_dims``, ``input_shapes``) or covered by
    ``profiles``: symbolic dims that every profile pins (``min == max``) are fixed first so
    their layers stay DLA-eligible; the rest stay symbolic and their layers go to the GPU.
    """
    if graph is None:
        graph = load_model(model, fixed_dims, input_shapes=input_shapes)
    qdq_scales: dict[str, float] = {}
    if policy.precision == "int8" and has_qdq(graph):
        # A QAT model: the DLA takes implicit per-tensor scales, not Q/DQ layers (TensorRT's
        # qdq-translator does the same), so the layers go and their scales stay.
        graph, qdq_scales = strip_qdq(graph)
    profiles = list(profiles or [])
    if not profiles:
        check_bound(graph, model)
    if profiles:
        validate_profiles(profiles, graph.inputs)
        pinned = _fixed_by_profiles(profiles, graph)
        if pinned:
            graph = fix_dims(graph, pinned)
    if target.dla is None and policy.default_device == "dla":
        # No DLA on this board: everything runs on the GPU, and the reasons say so.
        policy = policy.with_overrides(default_device="gpu")
    cores = target.dla.cores if target.dla else 0
    if policy.dla_stages == 2 and cores < 2:
        raise ConfigError(
            f"target '{target.name}' has {cores} DLA core(s): a pipeline with a stage on each "
            "of two DLA cores (dla_stages 2) cannot run there; plan it for a target with two"
        )
    opt_graph = opt_shapes(graph, profiles)
    capabilities = capabilities_for(target, policy.dla_core, shapes=opt_graph)
    # a host without a GPU has no "gpu" capability: the partitioner places on its CPU then
    caps: dict[str, Any] = dict(capabilities)
    transition = transition_cost_for(target, policy.precision, native_io)
    if opt_graph is not None:
        # Costs of a dynamic graph are priced at the first profile's opt shapes, as TensorRT
        # tunes for opt; support verdicts still see the symbolic dims (the GPU lowering's
        # judges them at the opt shapes, where the build lowers them).
        caps = {kind: _PricedAt(cap, opt_graph) for kind, cap in caps.items()}
        transition = _transition_at(transition, opt_graph)
    part = partition(graph, caps, policy, transition)
    return Placement(
        str(model),
        graph,
        target,
        policy,
        part,
        capabilities,
        profiles=profiles,
        qdq_scales=qdq_scales,
        opt_graph=opt_graph,
    )


class _PricedAt:
    """A device capability whose costs come from a twin graph with concrete shapes."""

    def __init__(self, cap: Any, twin: Graph) -> None:
        self.cap = cap
        self.twin = twin
        self.nodes = {n.name: n for n in twin.nodes}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cap, name)

    def supports(self, node: Any, graph: Graph, precision: Any) -> Any:
        return self.cap.supports(node, graph, precision)

    def cost(self, node: Any, graph: Graph, precision: Any) -> float:
        twin = self.nodes.get(node.name)
        if twin is None:  # folded away in the twin (a shape computation): price it as is
            return float(self.cap.cost(node, graph, precision))
        return float(self.cap.cost(twin, self.twin, precision))


def _transition_at(fn: Callable[[Tensor, str, str], float], twin: Graph) -> Any:
    def cost(tensor: Tensor, src: str, dst: str) -> float:
        return fn(twin.tensors.get(tensor.name, tensor), src, dst)

    return cost


def opt_shapes(graph: Graph, profiles: list[OptimizationProfile]) -> Graph | None:
    """``graph`` at the first profile's opt shapes when it has symbolic inputs, else None."""
    if not profiles or all(t.is_static for t in graph.inputs):
        return None
    return fix_dims(graph, opt_dims(profiles[0], graph.inputs))


def _fixed_by_profiles(profiles: list[OptimizationProfile], graph: Graph) -> dict[str, int]:
    return fixed_dims(profiles, graph.inputs)


def fix_dims(graph: Graph, dims: dict[str, int]) -> Graph:
    """A copy of ``graph`` with symbolic input dims replaced by values, shapes re-inferred and
    the simplification passes re-run (shape computations on fixed dims fold away)."""
    g = graph.clone()
    for t in g.inputs:
        if t.shape is not None:
            t.shape = tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape)
    for t in g.tensors.values():
        if t.producer is not None and t.shape is not None:
            # stale symbolic hints would otherwise survive the merge in infer_shapes
            t.shape = tuple(dims.get(d, d) if isinstance(d, str) else d for d in t.shape)
    infer_shapes(g)
    return simplify(g, evaluate_node) or g


def build_plan(
    placement: Placement,
    scales: dict[str, float] | None = None,
    progress: Progress | None = None,
    timing_cache: Any = None,
    cubins: bool = True,
) -> Plan:
    """Compile every segment and assemble the plan (not yet written to disk).

    ``timing_cache`` (a ``gpu_kernels.timing_cache.TimingCache``, e.g. measured on the board by
    ``tandem deploy --tune``) picks the GPU tactics it has times for; it is stored in the plan
    so the board's runtime starts from it too. ``cubins`` off: GPU segments are lowered but
    not compiled (see ``targets.gpu_code``).

    Raises :class:`BuildError` -- and assembles no plan -- when GPU code cannot be built: no
    NVRTC for the target's CUDA major (with ``cubins``), or segments that do not lower or
    compile (every one named)."""
    say = progress or (lambda _msg: None)
    graph, part, target = placement.graph, placement.partition, placement.target
    precisions = {a.precision for a in part.assignments.values()}
    if "int8" in precisions and not scales:
        raise TandemError(
            "an INT8 build needs calibration scales and has none (an empty calibration cache?): "
            "pass --calib DIR|FILE (a folder of .npz files or a calibration cache) or "
            "--calib-random N for a smoke run"
        )
    prices = _layer_prices(placement)
    costs = prices.cost_ms
    header = new_header(
        target.name,
        placement.policy.precision,
        power_mode=target.power_mode,
        model=Path(placement.model).name,
        strategy=part.strategy,
        objective=part.objective,
        policy=placement.policy.source,
        inputs=[_binding(t) for t in graph.inputs],
        outputs=[_binding(t) for t in graph.outputs],
        capability=[
            {"operator": r.operator, "count": r.count, "reason": r.reason, "layers": list(r.layers)}
            for r in capability_rows(graph, part)
        ],
        layers=[
            {
                "name": r.name,
                "op": r.op,
                "device": r.device,
                "precision": r.precision,
                "reason": r.reason,
                "predicted_ms": costs.get(r.name),
            }
            for r in layer_rows(graph, part)
        ],
        predicted_ms=part.predicted.as_ms(),
        warnings=list(part.warnings),
        arch=target.gpu.arch if target.gpu else None,
        dla_version=target.dla.version if target.dla else None,
    )
    header["profiles"] = profiles_to_data(placement.profiles)
    if placement.profiles and not all(t.is_static for t in graph.inputs):
        header["predicted_at"] = "the opt shapes of profile 0"
    if scales:
        header["calibration"] = {name: float(s) for name, s in sorted(scales.items())}
    has_gpu_code = target.gpu is not None and any(s.device == "gpu" for s in part.segments)
    if has_gpu_code and cubins:
        check_nvrtc(target)
    if has_gpu_code and not cubins:
        header["cubins"] = False
    plan = Plan(header)
    problems = []
    for i, seg in enumerate(part.segments, 1):
        say(f"[{i}/{len(part.segments)}] {seg.name}: {len(seg.nodes)} layers on {seg.device}")
        record = _build_segment(
            plan, graph, seg, target, scales, timing_cache, cubins, placement.opt_graph,
            prices.roofline_s,
        )  # fmt: skip
        if isinstance(record, str):
            problems.append(record)
        else:
            plan.header["segments"].append(record)
    if problems:
        raise BuildError(
            f"{len(problems)} GPU segment(s) cannot be built for {target.name}; no plan "
            "written:\n" + "\n".join(f"  {p}" for p in problems)
        )
    _restate_predictions(plan.header, placement, costs)
    if timing_cache is not None and len(timing_cache):
        plan.add_bytes("timing_cache", timing_cache.to_json().encode(), "timing-cache")
    plugins = PLUGINS.requirements(graph, [(s.name, s.nodes) for s in part.segments])
    if plugins:  # the runtime refuses the plan unless these are registered
        plan.header["plugins"] = plugins
    return plan


@dataclass(frozen=True)
class LayerPrices:
    """Each priced layer's cost on its device and precision (placement's figure, ms) and, for
    GPU layers, its roofline part without any per-kernel cost (seconds)."""

    cost_ms: dict[str, float]
    roofline_s: dict[str, float]


def _layer_prices(placement: Placement) -> LayerPrices:
    """The cost model's prices of every layer where it runs (a layer it cannot price, with
    symbolic dims, has none)."""
    caps = placement.capabilities
    graph = placement.graph
    twin = placement.opt_graph
    if twin is not None and {n.name for n in twin.nodes} >= {n.name for n in graph.nodes}:
        graph = twin  # priced at the first profile's opt shapes, like the placement
    costs: dict[str, float] = {}
    rooflines: dict[str, float] = {}
    for node in graph.nodes:
        a = placement.partition.assignments.get(node.name)
        cap = caps.get(device_kind(a.device)) if a else None
        if a is None or cap is None:
            continue
        try:
            costs[node.name] = float(cap.cost(node, graph, a.precision)) * 1e3
            if isinstance(cap, GpuCapability):
                rooflines[node.name] = cap.roofline(node, graph, a.precision)
        except TandemError:  # a layer the cost model cannot price (symbolic dims): no number
            continue
    return LayerPrices(costs, rooflines)


def _restate_predictions(
    header: dict[str, Any], placement: Placement, costs: Mapping[str, float]
) -> None:
    """The plan's predictions as built: each layer row and the ``predicted_ms`` totals from
    the segments' own predictions (GPU: the lowered kernels; DLA: the compiled loadable), plus
    the boundary copies placement priced (``transfer``); a segment without a prediction (the
    CPU's) counts its layers' ``costs`` (ms). Placement's estimate, which chose the devices,
    stays in ``placement_predicted_ms``."""
    part = placement.partition
    busy = dict.fromkeys(part.predicted.per_device, 0.0)
    built: dict[str, float] = {}
    for rec in header["segments"]:
        ms = rec.get("predicted_ms")
        if ms is None:
            ms = sum(costs.get(layer, 0.0) for layer in rec["layers"])
        busy[rec["device"]] = busy.get(rec["device"], 0.0) + ms * 1e-3
        built.update(rec.get("predicted_layer_ms", {}))
    for row in header["layers"]:
        if row["name"] in built:
            row["predicted_ms"] = built[row["name"]]
    caps = placement.capabilities
    restated = prediction_of(
        busy,
        part.predicted.transfer,
        part.predicted.boundaries,
        io_device_of(caps),
        slowdown_of(caps),
        watts_of(caps),
    )
    header["predicted_ms"] = restated.as_ms()
    header["placement_predicted_ms"] = part.predicted.as_ms()


def _build_segment(
    plan: Plan,
    graph: Graph,
    seg: Segment,
    target: TargetSpec,
    scales: dict[str, float] | None,
    timing_cache: Any = None,
    cubins: bool = True,
    shapes: Graph | None = None,
    rooflines: Mapping[str, float] | None = None,
) -> dict[str, Any] | str:
    """The segment's plan record, its blobs added to ``plan``; or the problem (one line) that
    keeps its GPU code from being built.

    Its ``predicted_ms`` (and per layer, ``predicted_layer_ms``) is the segment's own time,
    boundaries excluded (the plan's ``transfer`` holds them): a DLA segment's engine ops, a
    GPU segment's ``rooflines`` (seconds by layer) plus the per-kernel cost of each kernel its
    lowering emitted (``devices.cost.gpu_segment_seconds``)."""
    sub = extract_subgraph(graph, list(seg.nodes), seg.name)
    structure, arrays = graph_to_data(sub, array_key=lambda name: f"{seg.name}/{name}")
    for key, array in arrays.items():
        plan.add_array(key, array)
    record: dict[str, Any] = {
        "name": seg.name,
        "device": seg.device,
        "precision": seg.precision,
        "layers": list(seg.nodes),
        "inputs": list(seg.inputs),
        "outputs": list(seg.outputs),
        "graph": structure,
    }
    if device_kind(seg.device) == "dla":
        assert target.dla is not None
        precision = seg.precision or "fp16"
        seg_scales = None
        if precision == "int8" and scales:
            seg_scales = {t.name: scales[t.name] for t in sub.tensors.values() if t.name in scales}
        loadable = compile_loadable(sub, precision, target.dla.version, seg_scales, seg.name)
        key = f"{seg.name}/loadable"
        plan.add_bytes(key, loadable.to_bytes(), "dla-loadable")
        record["loadable"] = key
        if target.dla_clock_hz:
            timing = predict_loadable(loadable, target.dla_clock_hz, target.dram_bytes_per_s)
            # without the loadable's fixed cost, one cuDLA submission: the switch overhead of
            # the boundary that starts the segment (devices.cost.transition_seconds) is it
            record["predicted_ms"] = timing.ops_seconds * 1e3
            record["predicted_layer_ms"] = {k: v * 1e3 for k, v in timing.per_layer().items()}
        record["backend"] = "dla"
    else:
        record["backend"] = seg.device
        if seg.device == "gpu" and target.gpu is not None:
            shaped = sub if shapes is None else _at_shapes(shapes, seg, sub)
            if isinstance(shaped, str):
                return shaped
            cuda = cross_compile(plan, shaped, seg, target, timing_cache, scales, cubins)
            if isinstance(cuda, str):
                return cuda
            record["cuda"] = cuda.record
            if rooflines is not None and all(layer in rooflines for layer in seg.nodes):
                priced = gpu_segment_seconds(
                    {layer: rooflines[layer] for layer in seg.nodes}, cuda.kernels, target.gpu.arch
                )
                record["predicted_ms"] = priced.total * 1e3
                record["predicted_layer_ms"] = {k: v * 1e3 for k, v in priced.per_layer.items()}
    return record


def _at_shapes(shapes: Graph, seg: Segment, sub: Graph) -> Graph | str:
    """A dynamic-shape GPU segment at profile 0's opt shapes, where the build lowers it (the
    runtime lowers it again per input shape it meets); the problem when it is not there. Its
    shape computations (``HOST_SHAPE``) fold to constants at concrete shapes, as they should."""
    known = {n.name for n in shapes.nodes}
    host = {n.name for n in sub.nodes if n.meta.get(HOST_SHAPE)}
    missing = [n for n in seg.nodes if n not in known and n not in host]
    if missing:
        return (
            f"segment {seg.name}: layer(s) {', '.join(missing[:5])} fold away at the opt "
            "shapes of profile 0, so the segment cannot be lowered at them — fix the dims with "
            "--dim, or give profiles that keep these layers"
        )
    return extract_subgraph(shapes, [n for n in seg.nodes if n in known], seg.name)


def _binding(t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape) if t.shape else None, "dtype": t.dtype}
