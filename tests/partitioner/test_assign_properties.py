"""Property tests on random DAGs: the invariants every partition must keep, for both strategies."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from partitioner.assign import PartitionError, partition
from partitioner.ir import Graph, Tensor
from partitioner.policy import Policy
from partitioner.segments import predict
from tests.partitioner.partition_fakes import FakeCap, segment_graph_is_acyclic

OPS = ("Conv", "Relu", "Resize", "Add", "Concat", "Sigmoid")


@dataclass
class Case:
    graph: Graph
    caps: dict[str, FakeCap]
    policy: Policy
    per_tensor: dict[str, float]

    def tc(self, t: Tensor, src: str, dst: str) -> float:
        return self.per_tensor[t.name] * (1.25 if dst == "dla" else 1.0)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    n = draw(st.integers(1, 24))
    g = Graph("random")
    x = g.add_input("x", (1, 8, 8, 8), "float32")
    outs: list[Tensor] = []
    for i in range(n):
        if i and draw(st.booleans()):
            k = draw(st.integers(1, min(3, i)))
            picks = draw(st.lists(st.integers(0, i - 1), min_size=k, max_size=k, unique=True))
            ins = [outs[j] for j in sorted(picks)]
        else:
            ins = [x] if not outs else [outs[-1]]
        op = draw(st.sampled_from(OPS))
        t = g.add_variable(f"t{i}", (1, 8, 8, 8), "float32")
        g.add_node(op, ins, [t], name=f"n{i}")
        outs.append(t)
    for t in outs:
        if not t.consumers:
            g.mark_output(t)
    names = [f"n{i}" for i in range(n)]
    refused = draw(st.sets(st.sampled_from(names), max_size=n // 3))
    cost = st.floats(0.01, 2.0)
    gpu_costs = {m: draw(cost) * 1e-3 for m in names}
    dla_costs = {m: draw(cost) * 1e-3 for m in names}
    caps = {
        "gpu": FakeCap("gpu", costs=gpu_costs),
        "dla": FakeCap(
            "dla",
            {m: "kernel 33x33 > DLA max 32" for m in refused},
            dla_costs,
            precisions=("fp16", "int8"),
        ),
    }
    rules = []
    for _ in range(draw(st.integers(0, 2))):
        rules.append(
            {"name": draw(st.sampled_from(names)), "device": draw(st.sampled_from(["gpu", "dla"]))}
        )
    if draw(st.booleans()):
        rules.append({"op": draw(st.sampled_from(OPS)), "device": "gpu"})
    policy = Policy.from_dict(
        {
            "default_device": draw(st.sampled_from(["dla", "dla", "gpu"])),
            "precision": draw(st.sampled_from(["fp16", "int8", "fp16", "fp32"])),
            "objective": draw(st.sampled_from(["latency", "latency", "throughput"])),
            "max_dla_subgraphs": draw(st.integers(1, 4)),
            "min_dla_segment_layers": draw(st.integers(1, 3)),
            "gpu_fallback": draw(st.sampled_from([True, True, True, False])),
            "rules": rules,
        }
    )
    per_tensor = {name: draw(st.floats(0.0, 0.5)) * 1e-3 for name in g.tensors}
    return Case(g, caps, policy, per_tensor)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_partition_invariants(case: Case) -> None:
    g, policy = case.graph, case.policy
    try:
        trt = partition(g, case.caps, policy, case.tc, strategy="trt")
    except PartitionError as err:
        # only a DLA-only policy can fail, and then the cost strategy fails the same way
        assert not policy.gpu_fallback
        with pytest.raises(PartitionError) as again:
            partition(g, case.caps, policy, case.tc, strategy="cost")
        assert str(again.value) == str(err)
        event("DLA-only policy that cannot be met")
        return
    cost = partition(g, case.caps, policy, case.tc, strategy="cost")
    names = [n.name for n in g.nodes]
    refused = set(case.caps["dla"].refuse)
    for part in (trt, cost):
        # every layer assigned exactly once, and in exactly one segment of its device
        assert sorted(part.assignments) == sorted(names)
        members = [n for s in part.segments for n in s.nodes]
        assert sorted(members) == sorted(names)
        for s in part.segments:
            assert {part.assignments[n].device for n in s.nodes} == {s.device}
        assert segment_graph_is_acyclic(g, part.segments)
        names_seen = [s.name for s in part.segments]
        assert len(set(names_seen)) == len(names_seen)
        for n, a in part.assignments.items():
            assert a.reason.startswith({"gpu": "GPU: ", "dla0": "DLA: "}[a.device])
            if a.device == "dla0":
                assert n not in refused and a.precision in ("fp16", "int8")
        # pins: a GPU pin always holds; a DLA pin holds unless the DLA refuses or the limit binds
        for n in names:
            rule = _first_device_rule(policy, g.node(n))
            if rule == "gpu":
                assert part.assignments[n].device == "gpu"
            elif rule == "dla" and n not in refused and policy.precision != "fp32":
                assert part.assignments[n].device == "dla0" or "loadable limit" in (
                    part.assignments[n].reason
                )
        dla_segments = [s for s in part.segments if s.device == "dla0"]
        assert len(dla_segments) <= policy.max_dla_subgraphs
        for s in dla_segments:
            pinned = any(_first_device_rule(policy, g.node(n)) == "dla" for n in s.nodes)
            dla_only = not policy.gpu_fallback and policy.default_device == "dla"
            assert len(s.nodes) >= policy.min_dla_segment_layers or pinned or dla_only
        if not policy.gpu_fallback:  # layers meant for the DLA that it can run never leave it
            for n in names:
                wanted = _first_device_rule(policy, g.node(n)) or policy.default_device
                if wanted == "dla" and n not in refused and policy.precision != "fp32":
                    assert part.assignments[n].device == "dla0"
        # the prediction is the shared formula applied to this placement
        devices = {n: a.device for n, a in part.assignments.items()}
        again = predict(g, devices, _cost_fn(case), case.tc)
        assert abs(again.total - part.predicted.total) < 1e-12
    mine, theirs = (
        cost.predicted.objective(policy.objective),
        trt.predicted.objective(policy.objective),
    )
    assert mine <= theirs
    event("cost strictly better than trt" if mine < theirs else "cost kept trt's placement")
    if any("loadable limit" in w for w in trt.warnings + cost.warnings):
        event("the loadable limit binds")


def _first_device_rule(policy: Policy, node) -> str | None:  # type: ignore[no-untyped-def]
    position = [r for r in policy.rules if r.device is not None]
    for rule in position:
        if rule.range is None and rule.matches(node, 0, 1):
            return rule.device
    return None


def _cost_fn(case: Case):  # type: ignore[no-untyped-def]
    def layer_cost(node, device):  # type: ignore[no-untyped-def]
        return case.caps["gpu" if device == "gpu" else "dla"].cost(node, case.graph, "fp16")

    return layer_cost
