"""Cross-build a plan for one target: place layers, compile each segment, store everything.

:func:`build` is the one build path: every front end (the CLI's commands, ``tandem exec``, the
Python ``Builder``) hands it a ``BuildRequest``.

Runs on an x86 host without a GPU: DLA segments compile to emulator loadables (the board's
TensorRT rebuilds them for the real DLA from the stored segment graph), GPU segments store their
graph, weights and tactic choices; cubins are cross-compiled where NVRTC is available.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from devices.calibration import calibrate
from devices.capability import capabilities_for
from devices.cost import transition_cost_for
from devices.cpu import evaluate_node
from devices.hardware import TargetSpec, host_target
from devices.plan import Plan, new_header
from dla_sim.compiler import compile_loadable
from dla_sim.latency import predict_loadable
from partitioner.assign import partition
from partitioner.bindings import describe_dynamic, resolve_bindings, unbound_hint
from partitioner.capability import DeviceCapability
from partitioner.errors import ShapeError, TandemError
from partitioner.ir import Graph, Tensor
from partitioner.onnx_import import import_onnx
from partitioner.passes import has_qdq, simplify, strip_qdq
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
from partitioner.segments import Partition, Segment, device_kind
from partitioner.serialize import graph_to_data
from partitioner.shape_inference import infer_shapes
from partitioner.subgraph import extract_subgraph
from targets.catalog import load_target
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
    return Built(placement, build_plan(placement, scales, say, request.timing_cache))


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
    )


def _int8_scales(placement: Placement, request: BuildRequest, say: Progress) -> dict[str, float]:
    """A QAT model's own Q/DQ scales when nothing else is given; otherwise calibrated (at the
    first profile's opt shapes, as TensorRT does), with trained scales outranking measured."""
    if placement.qdq_scales and not request.calibration.given:
        say(f"using the {len(placement.qdq_scales)} scales of the model's Q/DQ layers")
        return dict(placement.qdq_scales)
    graph = placement.graph
    if placement.profiles and not all(t.is_static for t in graph.inputs):
        graph = fix_dims(graph, opt_dims(placement.profiles[0], graph.inputs))
    scales = calibrate(graph, request.calibration)
    scales.update(placement.qdq_scales)
    return scales


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
    capabilities = capabilities_for(target, policy.dla_core)
    caps: dict[str, Any] = dict(capabilities)
    cpu_only = "gpu" not in caps
    if cpu_only:  # a host without a GPU: the CPU reference stands where the GPU would
        caps["gpu"] = caps["cpu"]
    transition = transition_cost_for(target, policy.precision)
    if profiles and not all(t.is_static for t in graph.inputs):
        # Costs of a dynamic graph are priced at the first profile's opt shapes, as TensorRT
        # tunes for opt; support verdicts still see the symbolic dims.
        opt_graph = fix_dims(graph, opt_dims(profiles[0], graph.inputs))
        caps = {kind: _PricedAt(cap, opt_graph) for kind, cap in caps.items()}
        transition = _transition_at(transition, opt_graph)
    part = partition(graph, caps, policy, transition)
    if cpu_only:
        part = _relabel_gpu_as_cpu(part)
    return Placement(
        str(model),
        graph,
        target,
        policy,
        part,
        capabilities,
        profiles=profiles,
        qdq_scales=qdq_scales,
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


def _relabel_gpu_as_cpu(part: Partition) -> Partition:
    def dev(d: str) -> str:
        return "cpu" if d == "gpu" else d

    part.assignments = {
        name: replace(a, device=dev(a.device), reason=a.reason.replace("GPU", "CPU", 1))
        for name, a in part.assignments.items()
    }
    part.segments = [
        replace(s, device=dev(s.device), name=s.name.replace("gpu_", "cpu_", 1))
        if s.device == "gpu"
        else s
        for s in part.segments
    ]
    part.predicted = replace(
        part.predicted, per_device={dev(k): v for k, v in part.predicted.per_device.items()}
    )
    return part


def build_plan(
    placement: Placement,
    scales: dict[str, float] | None = None,
    progress: Progress | None = None,
    timing_cache: Any = None,
) -> Plan:
    """Compile every segment and assemble the plan (not yet written to disk).

    ``timing_cache`` (a ``gpu_kernels.timing_cache.TimingCache``, e.g. measured on the board by
    ``tandem deploy --tune``) picks the GPU tactics it has times for; it is stored in the plan
    so the board's runtime starts from it too."""
    say = progress or (lambda _msg: None)
    graph, part, target = placement.graph, placement.partition, placement.target
    precisions = {a.precision for a in part.assignments.values()}
    if "int8" in precisions and not scales:
        raise TandemError(
            "an INT8 build needs calibration scales and has none (an empty calibration cache?): "
            "pass --calib DIR|FILE (a folder of .npz files or a calibration cache) or "
            "--calib-random N for a smoke run"
        )
    costs = _layer_costs_ms(placement)
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
    plan = Plan(header)
    for i, seg in enumerate(part.segments, 1):
        say(f"[{i}/{len(part.segments)}] {seg.name}: {len(seg.nodes)} layers on {seg.device}")
        plan.header["segments"].append(
            _build_segment(plan, graph, seg, target, scales, timing_cache)
        )
    if timing_cache is not None and len(timing_cache):
        plan.add_bytes("timing_cache", timing_cache.to_json().encode(), "timing-cache")
    plugins = PLUGINS.requirements(graph, [(s.name, s.nodes) for s in part.segments])
    if plugins:  # the runtime refuses the plan unless these are registered
        plan.header["plugins"] = plugins
    return plan


def _layer_costs_ms(placement: Placement) -> dict[str, float]:
    """Each layer's predicted time on its device and precision (cost model, milliseconds)."""
    caps = placement.capabilities
    graph = placement.graph
    if placement.profiles and not all(t.is_static for t in graph.inputs):
        twin = fix_dims(graph, opt_dims(placement.profiles[0], graph.inputs))
        if {n.name for n in twin.nodes} >= {n.name for n in graph.nodes}:
            graph = twin  # priced at the first profile's opt shapes, like the placement
    out: dict[str, float] = {}
    for node in graph.nodes:
        a = placement.partition.assignments.get(node.name)
        cap = caps.get(device_kind(a.device)) if a else None
        if a is None or cap is None:
            continue
        try:
            out[node.name] = float(cap.cost(node, graph, a.precision)) * 1e3
        except TandemError:  # a layer the cost model cannot price (symbolic dims): no number
            continue
    return out


def _build_segment(
    plan: Plan,
    graph: Graph,
    seg: Segment,
    target: TargetSpec,
    scales: dict[str, float] | None,
    timing_cache: Any = None,
) -> dict[str, Any]:
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
            # total_seconds holds the per-loadable fixed cost already (one cuDLA submission)
            record["predicted_ms"] = timing.total_seconds * 1e3
            record["predicted_layer_ms"] = {k: v * 1e3 for k, v in timing.per_layer().items()}
        record["backend"] = "dla"
    else:
        record["backend"] = seg.device
        if seg.device == "gpu" and target.gpu is not None:
            record["cuda"] = _cross_compile(plan, sub, seg, target, timing_cache, scales)
    return record


def _cross_compile(
    plan: Plan,
    sub: Graph,
    seg: Segment,
    target: TargetSpec,
    timing_cache: Any = None,
    scales: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Lower a GPU segment to kernel launches for the target's arch and NVRTC-compile every
    module they use into the plan (the target's CUDA major picks the NVRTC: CUDA 13 dropped
    sm_72). Tactics come from the cost model here; a board may re-tune (``--timing-cache``).
    A segment the kernels cannot lower is recorded with the reason, not hidden: the runtime
    then runs it on the reference."""
    from gpu_kernels.catalog import mma_module, source_of
    from gpu_kernels.compile import arch_number, compile_kernel
    from gpu_kernels.lowering import describe, lower, segment_precision
    from gpu_kernels.tactics import candidates, heuristic

    assert target.gpu is not None
    gpu = target.gpu
    wanted = {row["name"]: row["precision"] for row in plan.header.get("layers", [])}
    precision = segment_precision((wanted.get(n) for n in seg.nodes), bool(scales))
    arch = arch_number(gpu.arch)
    sources: dict[str, str] = {}

    def choose(problem: Any) -> Any:
        # measured on this arch (a board's timing cache) beats the cost model
        names = {t.name: t for t in candidates(problem, arch)}
        best = timing_cache.best(problem.signature(), gpu.arch) if timing_cache else None
        sources[problem.signature()] = "timing-cache" if best in names else "cost-model"
        return names[best] if best in names else heuristic(problem, arch, gpu.sm_count)

    try:
        program = lower(sub, precision, arch, choose, gpu.sm_count, scales)
    except TandemError as err:
        return {"arch": target.gpu.arch, "error": str(err)}
    modules: dict[tuple[str, tuple[str, ...]], None] = {}
    tactics: dict[str, str] = {}
    for launch in program.launches:
        if launch.tactic is not None and launch.kernel.startswith("conv_mma"):
            modules.setdefault(mma_module(launch.tactic))
            tactics[launch.layer] = launch.tactic.name
        elif launch.kernel != "memset":
            modules.setdefault((source_of(launch.kernel), ()))
    compiled = []
    for i, (source, options) in enumerate(modules):
        try:
            module = compile_kernel(source, target.gpu.arch, options, target.nvrtc_major)
        except TandemError as err:  # no NVRTC for this CUDA major here: say so in the plan
            return {"arch": target.gpu.arch, "error": f"cross-compile: {err}"}
        key = f"{seg.name}/cubin/{i}"
        plan.add_bytes(key, module.cubin, "cubin")
        compiled.append(
            {
                "source": source,
                "options": list(options),
                "blob": key,
                "nvrtc": ".".join(map(str, module.nvrtc_version)),
            }
        )
    return {
        "arch": target.gpu.arch,
        "precision": precision,
        "modules": compiled,
        "layer_tactics": tactics,
        "tactic_sources": sorted(set(sources.values())),
        **describe(program),
    }


def _binding(t: Tensor) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape) if t.shape else None, "dtype": t.dtype}
