"""A built plan's predictions are what its segments will run: a GPU segment pays the per-kernel
cost once per kernel its lowering emitted (not once per layer, as placement prices it), a DLA
segment its loadable's engine ops, and the header's totals are the segments' times plus the
boundary copies placement priced."""

from __future__ import annotations

import numpy as np
import pytest

from devices.capability import GpuCapability
from devices.cost import gpu_kernel_seconds, gpu_priced_kernels
from devices.cpu import evaluate_node
from dla_sim.compiler import compile_loadable
from dla_sim.latency import predict_loadable
from gpu_kernels.compile import arch_number
from gpu_kernels.lowering import kernels_by_layer, lower
from partitioner.ir import Graph
from partitioner.passes import simplify
from partitioner.policy import default_policy
from partitioner.shape_inference import infer_shapes
from partitioner.subgraph import extract_subgraph
from targets.build import Built, build, resolve_policy, resolve_target
from targets.request import BuildRequest
from tests.models import zoo_model_path

GPU_FP16 = default_policy().with_overrides(default_device="gpu", precision="fp16")


def chain() -> Graph:
    """A convolution, then an element-wise chain (x * a + b, SiLU, Tanh, - d) that the fusion
    pass leaves unmarked (placement charges each of its six layers a kernel) and the lowering
    runs as fused element-wise kernels."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    x = g.add_input("x", (1, 16, 16, 16))
    w = g.add_constant("w", rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    attrs = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
             "dilations": [1, 1], "group": 1}  # fmt: skip
    c = g.add_node("Conv", [x, w], 1, attrs, name="conv").outputs[0]
    a = g.add_constant("a", np.full((1, 16, 1, 1), 0.5, np.float32))
    b = g.add_constant("b", np.full((1, 16, 1, 1), 0.1, np.float32))
    y = g.add_node("Mul", [c, a], 1, name="scale").outputs[0]
    y = g.add_node("Add", [y, b], 1, name="shift").outputs[0]
    s = g.add_node("Sigmoid", [y], 1, name="gate").outputs[0]
    y = g.add_node("Mul", [y, s], 1, name="silu").outputs[0]
    y = g.add_node("Tanh", [y], 1, name="tanh").outputs[0]
    d = g.add_constant("d", np.full((1,), 0.25, np.float32))
    g.mark_output(g.add_node("Sub", [y, d], 1, name="sub").outputs[0])
    infer_shapes(g)
    return simplify(g, evaluate_node) or g


def built_chain(target: str = "orin-agx-64gb") -> Built:
    spec = resolve_target(target)
    return build(BuildRequest("chain.onnx", spec, GPU_FP16, graph=chain(), cubins=False))


@pytest.mark.parametrize("target", ["orin-agx-64gb", "xavier-agx"])
def test_gpu_segment_pays_one_kernel_cost_per_lowered_kernel(target: str) -> None:
    built = built_chain(target)
    spec, graph = built.placement.target, built.placement.graph
    assert spec.gpu is not None
    [rec] = built.plan.header["segments"]
    assert rec["device"] == "gpu" and set(rec["layers"]) == {n.name for n in graph.nodes}
    # the segment lowered again here, independently of the build
    sub = extract_subgraph(graph, rec["layers"], rec["name"])
    program = lower(sub, "fp16", arch_number(spec.gpu.arch), None, spec.gpu.sm_count)
    lowered = len(program.launches)
    priced = sum(gpu_priced_kernels(graph.node(name)) for name in rec["layers"])
    assert lowered == rec["cuda"]["kernels"]
    assert lowered < priced, "premise: the lowering fuses the element-wise chain"
    gpu = GpuCapability(spec)
    rooflines = {name: gpu.roofline(graph.node(name), graph, "fp16") for name in rec["layers"]}
    kernel = gpu_kernel_seconds(spec.gpu.arch)
    expected = sum(rooflines.values()) + lowered * kernel
    assert rec["predicted_ms"] == pytest.approx(expected * 1e3, rel=1e-12)
    # per layer: its roofline and its own kernels (the output copy is its producer's)
    per_kernel = kernels_by_layer(program, sub)
    assert sum(per_kernel.values()) == lowered
    for name, roofline in rooflines.items():
        want = (roofline + per_kernel.get(name, 0) * kernel) * 1e3
        assert rec["predicted_layer_ms"][name] == pytest.approx(want, rel=1e-12), name
    # the header says the same, and keeps placement's estimate (one kernel a layer) apart
    head = built.plan.header
    assert head["predicted_ms"]["gpu"] == pytest.approx(rec["predicted_ms"], rel=1e-12)
    assert head["predicted_ms"]["total"] == pytest.approx(rec["predicted_ms"], rel=1e-12)
    placed = built.placement.partition.predicted
    assert head["placement_predicted_ms"] == placed.as_ms()
    assert placed.total * 1e3 - head["predicted_ms"]["total"] == pytest.approx(
        (priced - lowered) * kernel * 1e3, rel=1e-9
    )
    # each layer row reports what its segment predicts for it
    for row in head["layers"]:
        assert row["predicted_ms"] == rec["predicted_layer_ms"][row["name"]]


@pytest.fixture(scope="module")
def hybrid() -> Built:
    """ResNet-18 on AGX Orin with the default (DLA-first) policy: DLA segments, GPU segments
    between them, boundary copies."""
    spec = resolve_target("orin-agx-64gb")
    model = zoo_model_path("resnet18", resolution=32)
    return build(BuildRequest(str(model), spec, resolve_policy(None, precision="fp16"),
                              cubins=False))  # fmt: skip


def test_header_totals_are_the_segments_plus_the_boundaries(hybrid: Built) -> None:
    head = hybrid.plan.header
    segments, pred = head["segments"], head["predicted_ms"]
    devices = {rec["device"] for rec in segments}
    assert {"gpu", "dla0"} <= devices, "premise: a plan with GPU and DLA segments"
    placed = hybrid.placement.partition.predicted
    assert pred["transfer"] == pytest.approx(placed.transfer * 1e3, rel=1e-12)
    assert placed.transfer > 0
    for device in devices:
        mine = sum(rec["predicted_ms"] for rec in segments if rec["device"] == device)
        assert pred[device] == pytest.approx(mine, rel=1e-12), device
    every = sum(rec["predicted_ms"] for rec in segments)
    assert pred["total"] == pytest.approx(every + pred["transfer"], rel=1e-12)
    # placement's own total is not that sum (its GPU layers pay one kernel each): the header
    # is the built plan's, with placement's kept apart
    assert head["placement_predicted_ms"] == placed.as_ms()
    assert pred["total"] != pytest.approx(placed.total * 1e3, rel=1e-6)


def test_segment_times_leave_the_boundaries_to_the_transfer(hybrid: Built) -> None:
    """A DLA segment's prediction is its loadable's engine ops: the loadable's fixed cost is one
    cuDLA submission, which the boundary's switch overhead (``transfer``) already charges."""
    head, spec = hybrid.plan.header, hybrid.placement.target
    assert spec.dla is not None and spec.dla_clock_hz is not None
    graph = hybrid.placement.graph
    for rec in head["segments"]:
        assert rec["predicted_ms"] == pytest.approx(
            sum(rec["predicted_layer_ms"].values()), rel=1e-12
        ), rec["name"]
        if not rec["device"].startswith("dla"):
            continue
        sub = extract_subgraph(graph, rec["layers"], rec["name"])
        loadable = compile_loadable(sub, "fp16", spec.dla.version, None, rec["name"])
        timing = predict_loadable(loadable, spec.dla_clock_hz, spec.dram_bytes_per_s)
        assert timing.fixed_seconds > 0
        assert rec["predicted_ms"] == pytest.approx(
            (timing.total_seconds - timing.fixed_seconds) * 1e3, rel=1e-12
        )
