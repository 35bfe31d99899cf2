"""The 3-stage GPU/DLA0/DLA1 placement (``dla_stages: 2``, partitioner/dla_stages.py) on zoo
models with the real capabilities and cost models of AGX Orin: both cores used, segments
formed per core and acyclic, the loadable limit per core, the DLA0 -> DLA1 handoff priced,
every moved layer's reason, and single-core placements unchanged."""

from __future__ import annotations

import functools

import pytest

from devices.capability import capabilities_for
from devices.cost import SWITCH_OVERHEAD_SECONDS, transition_cost_for, transition_seconds
from devices.cpu import evaluate_node
from partitioner.assign import partition
from partitioner.errors import ConfigError
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify
from partitioner.policy import Policy
from partitioner.segments import Partition, predict, transfers
from tandem.zoo import build_model
from targets.catalog import load_target
from tests.partitioner.partition_fakes import segment_graph_is_acyclic

ORIN = "orin-agx-64gb"


@functools.cache
def _graph(name: str, resolution: int) -> Graph:
    return simplify(import_onnx(build_model(name, resolution=resolution)), evaluate_node)


def _split(model: str, resolution: int, target: str = ORIN, **fields: object) -> Partition:
    spec = load_target(target)
    policy = Policy.from_dict(
        {"precision": "int8", "partition": "cost", "objective": "throughput", **fields}
    ).with_overrides(dla_stages=2)
    caps = capabilities_for(spec, policy.dla_core)
    return partition(_graph(model, resolution), caps, policy, transition_cost_for(spec, "int8"))


@pytest.mark.parametrize("model", ["resnet50", "yolov5s"])
def test_the_split_uses_both_cores_with_per_core_segments(model: str) -> None:
    g = _graph(model, 64)
    part = _split(model, 64)
    devices = {s.device for s in part.segments}
    assert {"gpu", "dla0", "dla1"} <= devices
    assert segment_graph_is_acyclic(g, part.segments)
    assert sorted(n for s in part.segments for n in s.nodes) == sorted(n.name for n in g.nodes)
    for s in part.segments:  # a segment is one device, and its name says which
        assert s.name.startswith(f"{s.device}_")
        assert {part.assignments[n].device for n in s.nodes} == {s.device}
    # the prediction names each core's load apart
    assert part.predicted.per_device["dla0"] > 0 and part.predicted.per_device["dla1"] > 0
    assert any("3-stage" in line for line in part.debug)


def test_the_split_beats_one_core_on_resnet50_and_says_why() -> None:
    part = _split("resnet50", 224)
    spec = load_target(ORIN)
    one = partition(
        _graph("resnet50", 224),
        capabilities_for(spec, 0),
        Policy.from_dict({"precision": "int8", "partition": "cost", "objective": "throughput"}),
        transition_cost_for(spec, "int8"),
    )
    # the search's own figure, contention included: the GPU+DLA0 split's period is the bar
    assert part.predicted.period < one.predicted.period
    assert "dla1" not in one.predicted.per_device
    moved = [a for a in part.assignments.values() if "3-stage pipeline" in a.reason]
    assert {a.device for a in moved} >= {"dla0", "dla1"}
    for a in moved:
        label = "GPU" if a.device == "gpu" else "DLA"
        assert a.reason.startswith(f"{label}: cost model (3-stage pipeline ")
        assert f"{a.device} stage; predicted period" in a.reason
        assert "with one DLA core" in a.reason


def test_a_core_to_core_handoff_costs_the_switch_and_no_reformat() -> None:
    spec = load_target(ORIN)
    assert transition_seconds(1e6, spec, "dla0", "dla1") == SWITCH_OVERHEAD_SECONDS
    assert transition_seconds(1e6, spec, "dla", "dla") == 0.0
    assert transition_seconds(1e6, spec, "dla1", "dla1") == 0.0
    assert transition_seconds(1e6, spec, "dla0", "dla") == 0.0  # a kind: the same core
    assert transition_seconds(1e6, spec, "gpu", "dla1") > SWITCH_OVERHEAD_SECONDS
    part = _split("resnet50", 64)
    devices = {n: a.device for n, a in part.assignments.items()}
    part_graph = _graph("resnet50", 64)
    handoffs = [x for x in transfers(part_graph, devices) if {x[1], x[2]} == {"dla0", "dla1"}]
    assert handoffs, "the split has no DLA0 -> DLA1 boundary"
    free = predict(part_graph, devices, lambda n, d: 0.0, lambda t, s, d: 0.0)
    priced = predict(part_graph, devices, lambda n, d: 0.0, transition_cost_for(spec, "int8"))
    assert free.transfer == 0.0
    assert priced.transfer >= len(handoffs) * SWITCH_OVERHEAD_SECONDS


def test_the_loadable_limit_holds_per_core() -> None:
    part = _split("yolov5s", 64, max_dla_subgraphs=1)
    per_core = {c: sum(s.device == c for s in part.segments) for c in ("dla0", "dla1")}
    assert per_core == {"dla0": 1, "dla1": 1}


def test_pins_are_kept_by_the_split() -> None:
    part = _split("resnet50", 64, rules=[{"op": "Gemm", "device": "gpu"}])
    gemms = [n.name for n in _graph("resnet50", 64).nodes if n.op == "Gemm"]
    assert gemms and all(part.assignments[n].device == "gpu" for n in gemms)
    assert all("pinned by rule 1" in part.assignments[n].reason for n in gemms)


def test_single_core_placements_are_unchanged_by_the_field() -> None:
    spec = load_target(ORIN)
    policy = Policy.from_dict({"precision": "int8", "partition": "cost", "objective": "throughput"})
    caps = capabilities_for(spec, 0)
    tc = transition_cost_for(spec, "int8")
    once = partition(_graph("resnet50", 64), caps, policy, tc)
    again = partition(_graph("resnet50", 64), caps, policy.with_overrides(dla_stages=1), tc)
    assert once.assignments == again.assignments
    assert "dla1" not in {a.device for a in once.assignments.values()}


def test_dla_stages_takes_one_or_two() -> None:
    with pytest.raises(ConfigError, match="dla_stages must be 1 or 2, got 3"):
        Policy().with_overrides(dla_stages=3)
    assert Policy().with_overrides(dla_stages=2).with_overrides(precision="int8").dla_stages == 2
    with pytest.raises(ConfigError, match="unknown"):
        Policy.from_yaml("dla_stages: 2\n", "p.yaml")  # not a policy-file key
