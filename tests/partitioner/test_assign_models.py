"""Partitioning zoo models with the real device capabilities and cost models of real targets.

The placements follow TensorRT's documented DLA rules (devices/tables); these tests check the
partitioner's side: invariants on real graphs, the reasons users read, the loadable limit on a
model that fragments the DLA (MobileNetV3 on Xavier), and cost <= trt.
"""

from __future__ import annotations

import functools

import pytest

from devices.capability import capabilities_for
from devices.cost import transition_cost_for
from devices.cpu import evaluate_node
from partitioner.assign import partition
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify
from partitioner.policy import Policy
from partitioner.report import capability_rows
from partitioner.segments import Partition
from tandem.zoo import ZOO_MODELS, build_model
from targets.catalog import load_target
from tests.partitioner.partition_fakes import segment_graph_is_acyclic

TARGETS = ("orin-agx-64gb", "xavier-agx", "orin-nano-8gb")


@functools.cache
def _graph(name: str) -> Graph:
    # as the build pipeline does: shape subgraphs fold away before placement
    graph = import_onnx(build_model(name, resolution=ZOO_MODELS[name].test_resolution))
    return simplify(graph, evaluate_node)


def _run(model: str, target: str, **policy: object) -> tuple[Graph, Partition]:
    spec = load_target(target)
    p = Policy.from_dict(policy)
    g = _graph(model)
    return g, partition(g, capabilities_for(spec, p.dla_core), p, transition_cost_for(spec))


def _check(g: Graph, part: Partition, limit: int = 16) -> None:
    assert list(part.assignments) == [n.name for n in g.topological_order()]
    assert sorted(n for s in part.segments for n in s.nodes) == sorted(n.name for n in g.nodes)
    assert segment_graph_is_acyclic(g, part.segments)
    assert sum(s.device == "dla0" for s in part.segments) <= limit
    for a in part.assignments.values():
        assert a.reason.split(":")[0] == {"gpu": "GPU", "dla0": "DLA", "cpu": "CPU"}[a.device]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("model", sorted(ZOO_MODELS))
def test_zoo_models_partition_and_cost_never_loses_to_trt(model: str, target: str) -> None:
    g, trt = _run(model, target)
    _, cost = _run(model, target, partition="cost")
    _check(g, trt)
    _check(g, cost)
    assert cost.predicted.total <= trt.predicted.total
    if target == "orin-nano-8gb":
        assert {a.reason for a in trt.assignments.values()} == {"GPU: target has no DLA"}


def test_yolov5s_detect_decode_leaves_the_dla_with_reasons() -> None:
    g, part = _run("yolov5s", "orin-agx-64gb")
    backbone = [n for n in part.assignments if not n.startswith("model.24.")]
    assert all(part.device_of(n) == "dla0" for n in backbone)
    for scale in range(3):
        reason = part.assignments[f"model.24.m.{scale}.reshape"].reason
        assert reason.startswith(f"GPU: Reshape 'model.24.m.{scale}.reshape': ") and "5-D" in reason
        assert part.device_of(f"model.24.m.{scale}") == "dla0"  # the 1x1 conv of the head
    assert part.segments[0].name == "dla0_0" and len(part.segments[0].nodes) >= len(backbone) - 20
    rows = {r.operator: r for r in capability_rows(g, part)}
    assert rows["Transpose"].count == 3 and "5-D" in rows["Transpose"].reason


def test_yolov5s_head_pinned_to_gpu_by_the_docs_rule() -> None:
    rules = [
        {"name": "model.24.m.?.*", "device": "gpu"},
        {"name": "model.24.concat", "device": "gpu"},
    ]
    g, part = _run("yolov5s", "orin-agx-64gb", rules=rules)
    assert [s.device for s in part.segments] == ["dla0", "gpu"]
    assert part.assignments["model.24.m.0.sigmoid"].reason == (
        "GPU: pinned by rule 1 (name: model.24.m.?.*) in <dict>"
    )


def test_mobilenetv3_on_xavier_hits_the_loadable_limit() -> None:
    g, part = _run("mobilenetv3-small", "xavier-agx")
    _check(g, part)
    assert sum(s.device == "dla0" for s in part.segments) == 16
    hs = part.assignments["features.0.conv.hardswish"]
    assert hs.device == "gpu" and "HardSwish is not a DLA activation" in hs.reason
    (warning,) = [w for w in part.warnings if "loadable limit" in w]
    assert warning.startswith("DLA loadable limit 16 (max_dla_subgraphs in <dict>) reached on dla0")
    dropped = [a for a in part.assignments.values() if "loadable limit 16" in a.reason]
    assert dropped and all(a.device == "gpu" for a in dropped)
    # TensorRT keeps the first loadables: nothing after the first dropped layer is on the DLA
    names = list(part.assignments)
    first = min(names.index(n) for n, a in part.assignments.items() if "loadable limit" in a.reason)
    assert all(part.device_of(n) == "gpu" for n in names[first:])


def test_fp32_policy_keeps_everything_on_the_gpu() -> None:
    _, part = _run("resnet18", "orin-agx-64gb", precision="fp32")
    assert {a.device for a in part.assignments.values()} == {"gpu"}
    assert {a.precision for a in part.assignments.values()} == {"fp32"}


def test_throughput_objective_uses_both_devices_on_xavier() -> None:
    g, trt = _run("resnet50", "xavier-agx", objective="throughput")
    _, cost = _run("resnet50", "xavier-agx", objective="throughput", partition="cost")
    _check(g, cost)
    assert {s.device for s in cost.segments} == {"gpu", "dla0"}
    assert cost.predicted.period < trt.predicted.period
    busy = cost.predicted.per_device
    # pipelined: neither device idles for most of the period
    assert min(busy["gpu"] + cost.predicted.transfer, busy["dla0"]) > 0.5 * cost.predicted.period


# ----- models exported by other tools (torch.onnx.export); skipped without torch ---------------


def _exported(name: str, target: str) -> tuple[Graph, Partition]:
    from tests.models import exported_model_path

    g = simplify(import_onnx(exported_model_path(name)), evaluate_node)
    spec = load_target(target)
    return g, partition(g, capabilities_for(spec), None, transition_cost_for(spec))


@pytest.mark.parametrize("target", ["orin-agx-64gb", "xavier-agx"])
def test_torch_dbnet_ocr_detector(target: str) -> None:
    g, part = _exported("torch-dbnet-lite", target)
    _check(g, part)
    ops = {n.name: n.op for n in g.nodes}
    for name, a in part.assignments.items():
        if ops[name] == "ConvTranspose":  # stride-2 2x2 deconvolutions, padding 0: DLA
            assert a.device == "dla0", a.reason
        if ops[name] == "Resize" and a.device == "gpu":  # sizes-driven resizes leave the DLA
            assert "setOutputDimensions" in a.reason
    assert any(ops[n] == "Resize" and a.device == "dla0" for n, a in part.assignments.items())
    assert [s.device for s in part.segments] == ["dla0", "gpu", "dla0"]


@pytest.mark.parametrize("target", ["orin-agx-64gb", "xavier-agx"])
def test_torch_yolo_lite_head_leaves_the_dla(target: str) -> None:
    g, part = _exported("torch-yolo-lite", target)
    _check(g, part)
    rows = {(r.operator, r.reason) for r in capability_rows(g, part)}
    assert any(op == "Split" and "5-D" in reason for op, reason in rows)
    convs = [n.name for n in g.nodes if n.op == "Conv"]
    assert all(part.device_of(n) == "dla0" for n in convs)


def test_torch_mobilenetv3_hardswish_and_loadable_limit() -> None:
    g, part = _exported("torch-mobilenetv3-small", "xavier-agx")
    _check(g, part)
    rows = {r.operator: r for r in capability_rows(g, part)}
    assert rows["HardSwish"].count == 19 and rows["HardSigmoid"].count == 9
    assert "not a DLA activation" in rows["HardSwish"].reason
    assert any("14 of 30 DLA segments switched to GPU" in w for w in part.warnings)
