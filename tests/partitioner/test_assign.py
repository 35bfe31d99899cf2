"""Assignment: TensorRT rules (trt) and the cost model (cost), on tiny graphs with fake devices."""

from __future__ import annotations

import itertools

import pytest

from partitioner.assign import PartitionError, partition
from partitioner.ir import Tensor
from partitioner.policy import Policy
from partitioner.segments import predict
from tests.partitioner.partition_fakes import FakeCap, chain, dag, dla, gpu

RESIZE_NO = {"Resize": "mode cubic not supported"}


def _devices(part) -> str:  # type: ignore[no-untyped-def]
    return " ".join(f"{n}:{a.device}" for n, a in part.assignments.items())


def _segments(part) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"{s.name}={','.join(s.nodes)}" for s in part.segments]


# ----- trt -------------------------------------------------------------------------------------


def test_trt_unsupported_layer_splits_the_dla_loadable() -> None:
    g = chain("a", "b", "up", "c", ops={"up": "Resize"})
    part = partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)})
    assert _segments(part) == ["dla0_0=a,b", "gpu_1=up", "dla0_2=c"]
    reasons = {n: a.reason for n, a in part.assignments.items()}
    assert reasons["a"] == "DLA: all DLA restrictions met"
    assert reasons["up"] == "GPU: Resize 'up': mode cubic not supported"
    assert part.warnings == [] and part.strategy == "trt"


TRT_TABLE = [
    # (policy, caps-variant, expected devices, expected reason of layer b)
    ({"default_device": "gpu"}, "dla", "a:gpu b:gpu c:gpu", "GPU: default_device is gpu in <dict>"),
    (
        {"precision": "fp32"},
        "dla",
        "a:gpu b:gpu c:gpu",
        "GPU: DLA runs FP16/INT8 only; layer precision is fp32",
    ),
    ({}, "none", "a:gpu b:gpu c:gpu", "GPU: target has no DLA"),
    ({"dla_core": 1}, "dla", "a:dla1 b:dla1 c:dla1", "DLA: all DLA restrictions met"),
    (
        {"rules": [{"name": "b", "device": "gpu"}]},
        "dla",
        "a:dla0 b:gpu c:dla0",
        "GPU: pinned by rule 1 (name: b) in <dict>",
    ),
    (
        {"default_device": "gpu", "rules": [{"range": [1, 1], "device": "dla"}]},
        "dla",
        "a:gpu b:dla0 c:gpu",
        "DLA: all DLA restrictions met (pinned by rule 1 (range: [1, 1]) in <dict>)",
    ),
]


@pytest.mark.parametrize("policy, variant, devices, reason", TRT_TABLE)
def test_trt_table(policy: dict[str, object], variant: str, devices: str, reason: str) -> None:
    g = chain("a", "b", "c")
    caps = {"gpu": gpu(), "dla": dla()} if variant == "dla" else {"gpu": gpu()}
    part = partition(g, caps, Policy.from_dict(policy))
    assert _devices(part) == devices
    assert part.assignments["b"].reason == reason


def test_trt_pin_to_dla_that_the_dla_refuses_falls_back_with_warning() -> None:
    g = chain("a", "up", "c", ops={"up": "Resize"})
    policy = Policy.from_dict({"rules": [{"op": "Resize", "device": "dla"}]}, source="p.yaml")
    part = partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)}, policy)
    assert part.assignments["up"].device == "gpu"
    assert part.assignments["up"].reason == (
        "GPU: Resize 'up': mode cubic not supported "
        "(ignores dla pinned by rule 1 (op: Resize) in p.yaml)"
    )
    assert part.warnings == [
        "layer 'up' pinned by rule 1 (op: Resize) in p.yaml runs on GPU: "
        "Resize 'up': mode cubic not supported"
    ]


def test_trt_without_gpu_fallback_lists_every_offending_layer() -> None:
    g = chain("a", "up1", "b", "up2", ops={"up1": "Resize", "up2": "Resize"})
    policy = Policy.from_dict({"gpu_fallback": False}, source="p.yaml")
    with pytest.raises(PartitionError) as err:
        partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)}, policy)
    assert str(err.value) == (
        "2 layer(s) cannot run on the DLA and gpu_fallback is false in p.yaml: "
        "'up1' (Resize 'up1': mode cubic not supported); "
        "'up2' (Resize 'up2': mode cubic not supported) "
        "— set gpu_fallback: true or pin these layers to gpu with a rule"
    )
    # layers pinned to the GPU are not offending: that is what the rule asks for
    pinned = Policy.from_dict({"gpu_fallback": False, "rules": [{"op": "Resize", "device": "gpu"}]})
    assert (
        partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)}, pinned).assignments["up2"].device
        == "gpu"
    )


def test_trt_without_dla_and_without_fallback_is_an_error() -> None:
    with pytest.raises(PartitionError, match=r"2 layer\(s\).*'a' \(target has no DLA\)"):
        partition(chain("a", "b"), {"gpu": gpu()}, Policy.from_dict({"gpu_fallback": False}))


def test_int8_layer_without_dla_int8_runs_fp16_on_dla_unless_pinned() -> None:
    g = chain("a", "sl", "c", ops={"sl": "Slice"})
    caps = {"gpu": gpu(), "dla": FakeCap("dla", precisions=("fp16", "int8"))}
    caps["dla"].supports = _refuse_int8_for("Slice", caps["dla"])  # type: ignore[method-assign]
    part = partition(g, caps, Policy.from_dict({"precision": "int8"}))
    sl = part.assignments["sl"]
    assert (sl.device, sl.precision) == ("dla0", "fp16")
    assert sl.reason == "DLA: runs fp16 on DLA (Slice 'sl': Slice runs FP16 only on DLA)"
    strict = Policy.from_dict(
        {"precision": "int8", "rules": [{"op": "Slice", "precision": "int8"}]}
    )
    sl = partition(g, caps, strict).assignments["sl"]
    assert (sl.device, sl.precision) == ("gpu", "int8")


def _refuse_int8_for(op: str, cap: FakeCap):  # type: ignore[no-untyped-def]
    from partitioner.capability import Verdict

    original = cap.supports

    def supports(node, graph, precision):  # type: ignore[no-untyped-def]
        if node.op == op and precision == "int8":
            return Verdict.no(f"{op} runs FP16 only on DLA")
        return original(node, graph, precision)

    return supports


def test_int8_policy_with_a_fp16_layer_rule() -> None:
    g = chain("stem", "body", "head")
    policy = Policy.from_dict(
        {"precision": "int8", "rules": [{"name": "head", "precision": "fp16"}]}
    )
    part = partition(g, {"gpu": gpu(), "dla": dla()}, policy)
    assert [a.precision for a in part.assignments.values()] == ["int8", "int8", "fp16"]
    assert [s.precision for s in part.segments] == [None]  # one DLA segment, mixed precision


def test_gpu_precision_widens_when_the_gpu_lacks_a_kernel() -> None:
    g = chain("a", "b")
    caps = {"gpu": FakeCap("gpu", precisions=("fp32", "fp16")), "dla": dla({"b": "no"})}
    b = partition(g, caps, Policy.from_dict({"precision": "int8"})).assignments["b"]
    assert (b.device, b.precision) == ("gpu", "fp16")
    assert b.reason == "GPU: Relu 'b': no; runs fp16 on GPU (Relu 'b': no int8 on gpu)"


def test_layers_the_gpu_cannot_run_go_to_the_cpu_or_fail() -> None:
    g = chain("a", "nms", "c", ops={"nms": "NonMaxSuppression"})
    refuse = {"NonMaxSuppression": "no GPU kernel"}
    caps = {"gpu": gpu(refuse=refuse), "dla": dla(refuse), "cpu": FakeCap("cpu")}
    part = partition(g, caps)
    assert _segments(part) == ["dla0_0=a", "cpu_1=nms", "dla0_2=c"]
    assert part.assignments["nms"].reason == (
        "CPU: DLA cannot run it: NonMaxSuppression 'nms': no GPU kernel; "
        "GPU cannot run it: NonMaxSuppression 'nms': no GPU kernel"
    )
    gpu_first = partition(g, {**caps, "dla": dla()}, Policy.from_dict({"default_device": "gpu"}))
    assert gpu_first.assignments["nms"].reason == (
        "CPU: GPU cannot run it: NonMaxSuppression 'nms': no GPU kernel "
        "(the DLA can: pin it with a rule, device: dla)"
    )
    strict = Policy.from_dict({"cpu_fallback": False})
    with pytest.raises(PartitionError, match=r"1 layer.*neither on the GPU nor on the DLA, and "
                       r"cpu_fallback is false.*'nms' \(GPU cannot run it: .*no GPU kernel\)"
                       r".*set cpu_fallback: true"):  # fmt: skip
        partition(g, caps, strict)
    del caps["cpu"]
    with pytest.raises(PartitionError, match="1 layer.*can run on no device.*'nms'"):
        partition(g, caps)


def _alternating(n: int) -> tuple[object, dict[str, FakeCap]]:
    """n DLA runs separated by unsupported layers: a0 u0 a1 u1 ... a{n-1}."""
    names: list[str] = []
    ops: dict[str, str] = {}
    for i in range(n):
        names.append(f"a{i}")
        if i < n - 1:
            names.append(f"u{i}")
            ops[f"u{i}"] = "Resize"
    return chain(*names, ops=ops), {"gpu": gpu(), "dla": dla(RESIZE_NO)}


def test_trt_loadable_limit_drops_the_later_segments() -> None:
    g, caps = _alternating(5)
    part = partition(g, caps, Policy.from_dict({"max_dla_subgraphs": 2}, source="p.yaml"))
    dla_nodes = [n for n, a in part.assignments.items() if a.device == "dla0"]
    assert dla_nodes == ["a0", "a1"]
    assert part.assignments["a3"].reason == (
        "GPU: DLA loadable limit 2 reached on dla0 (segment 4 of 5)"
    )
    assert part.warnings == [
        "DLA loadable limit 2 (max_dla_subgraphs in p.yaml) reached on dla0: 3 of 5 DLA "
        "segments switched to GPU: segment 3 [a2], segment 4 [a3], segment 5 [a4]"
    ]
    assert _segments(part) == ["dla0_0=a0", "gpu_1=u0", "dla0_2=a1", "gpu_3=u1,a2,u2,a3,u3,a4"]


def test_the_loadable_limit_is_the_dlas_unless_the_policy_sets_one() -> None:
    g, caps = _alternating(5)
    caps["dla"].max_loadables = 3  # type: ignore[attr-defined]  # the support table's figure
    part = partition(g, caps, Policy.from_dict({}, source="p.yaml"))
    assert [n for n, a in part.assignments.items() if a.device == "dla0"] == ["a0", "a1", "a2"]
    part = partition(g, caps, Policy.from_dict({"max_dla_subgraphs": 4}, source="p.yaml"))
    assert [n for n, a in part.assignments.items() if a.device == "dla0"] == [
        "a0", "a1", "a2", "a3"
    ]  # fmt: skip
    del caps["dla"].max_loadables  # type: ignore[attr-defined]
    part = partition(g, caps, Policy.from_dict({}, source="p.yaml"))  # neither: no limit
    assert sum(a.device == "dla0" for a in part.assignments.values()) == 5


def test_min_dla_segment_layers_moves_short_segments_but_not_pinned_ones() -> None:
    g = chain("a", "b", "u1", "c", "u2", "d", "e", "f", ops={"u1": "Resize", "u2": "Resize"})
    policy = Policy.from_dict({"min_dla_segment_layers": 2}, source="p.yaml")
    part = partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)}, policy)
    assert _segments(part) == ["dla0_0=a,b", "gpu_1=u1,c,u2", "dla0_2=d,e,f"]
    assert part.assignments["c"].reason == (
        "GPU: DLA segment of 1 layer(s) < min_dla_segment_layers 2 in p.yaml"
    )
    pinned = Policy.from_dict(
        {"min_dla_segment_layers": 2, "rules": [{"name": "c", "device": "dla"}]}
    )
    assert partition(g, {"gpu": gpu(), "dla": dla(RESIZE_NO)}, pinned).device_of("c") == "dla0"


# ----- cost -----------------------------------------------------------------------------------


def _tc(seconds: float):  # type: ignore[no-untyped-def]
    return lambda t, src, dst: seconds


def test_cost_moves_layers_the_dla_runs_slowly_to_the_gpu() -> None:
    g = chain("a", "b", "c", "d")
    # the DLA is 4x faster on a, b but 10x slower on c, d
    caps = {
        "gpu": gpu(default_cost=1e-3),
        "dla": dla(costs={"a": 0.25e-3, "b": 0.25e-3, "c": 10e-3, "d": 10e-3}),
    }
    policy = Policy.from_dict({"partition": "cost"})
    part = partition(g, caps, policy, _tc(0.05e-3))
    trt = partition(g, caps, policy, _tc(0.05e-3), strategy="trt")
    assert _devices(part) == "a:dla0 b:dla0 c:gpu d:gpu"
    assert part.predicted.total == pytest.approx(0.5e-3 + 2e-3 + 0.1e-3)
    assert trt.predicted.total == pytest.approx(20.5e-3 + 0.1e-3)
    assert part.assignments["c"].reason == "GPU: cost model: 1 ms on GPU vs 10 ms on DLA"
    assert part.assignments["b"].reason == ("DLA: cost model: 0.25 ms on DLA vs 1 ms on GPU")
    assert part.assignments["d"].reason == (
        "GPU: cost model: 1 ms on GPU vs 10 ms on DLA + 2 transitions"
    )
    assert part.strategy == "cost" and "cost: predicted latency" in part.debug[-1]


def test_cost_keeps_trt_when_transitions_outweigh_gains() -> None:
    g = chain("a", "b", "c")
    caps = {"gpu": gpu(default_cost=1e-3), "dla": dla(costs={"b": 0.9e-3}, default_cost=1.2e-3)}
    policy = Policy.from_dict({"partition": "cost", "default_device": "gpu"})
    part = partition(g, caps, policy, _tc(0.2e-3))
    assert _devices(part) == "a:gpu b:gpu c:gpu"
    assert part.predicted.total == pytest.approx(3e-3)
    assert part.debug[-1].startswith("cost: kept the trt placement")


def test_cost_accepts_a_one_argument_transition_cost() -> None:
    g = chain("a", "b")
    caps = {"gpu": gpu(default_cost=1e-3), "dla": dla(default_cost=0.5e-3)}
    seen: list[str] = []

    def tc(t: Tensor) -> float:
        seen.append(t.name)
        return 0.1e-3

    part = partition(g, caps, Policy.from_dict({"partition": "cost"}), tc)
    assert part.predicted.total == pytest.approx(1e-3 + 0.2e-3) and "x" in seen


def test_cost_honours_pins() -> None:
    g = chain("a", "b", "c")
    caps = {"gpu": gpu(default_cost=1e-3), "dla": dla(default_cost=0.1e-3)}
    policy = Policy.from_dict({"partition": "cost", "rules": [{"name": "b", "device": "gpu"}]})
    part = partition(g, caps, policy, _tc(0.01e-3))
    assert _devices(part) == "a:dla0 b:gpu c:dla0"
    assert part.assignments["b"].reason == "GPU: pinned by rule 1 (name: b) in <dict>"


def test_cost_loadable_limit_drops_the_segment_with_the_smallest_gain() -> None:
    g, caps = _alternating(3)
    caps["dla"] = dla(RESIZE_NO, costs={"a0": 0.2e-3, "a1": 0.9e-3, "a2": 0.1e-3})
    caps["gpu"] = gpu(default_cost=1e-3)
    policy = Policy.from_dict({"partition": "cost", "max_dla_subgraphs": 2})
    part = partition(g, caps, policy, _tc(0.01e-3))
    # a1 gains least on the DLA (0.1 ms - transitions): it goes back to the GPU, not a2
    assert [n for n, a in part.assignments.items() if a.device == "dla0"] == ["a0", "a2"]
    assert "DLA loadable limit 2 reached on dla0 (segment 2 of 3)" in part.assignments["a1"].reason
    trt = partition(g, caps, policy, _tc(0.01e-3), strategy="trt")
    assert [n for n, a in trt.assignments.items() if a.device == "dla0"] == ["a0", "a1"]
    assert part.predicted.total < trt.predicted.total


def test_throughput_objective_balances_the_devices() -> None:
    # two independent branches of equal work: pipelined, one per device halves the period
    g = dag("s>a1 a1>a2 s>b1 b1>b2 a2>j b2>j")
    caps = {"gpu": gpu(default_cost=1e-3), "dla": dla(default_cost=1e-3)}
    policy = Policy.from_dict({"partition": "cost", "objective": "throughput"})
    part = partition(g, caps, policy, _tc(0.0))
    trt = partition(g, caps, policy, _tc(0.0), strategy="trt")
    assert trt.predicted.period == pytest.approx(6e-3)  # everything on the DLA
    assert part.predicted.period == pytest.approx(3e-3)
    assert part.predicted.period < trt.predicted.period
    assert part.objective == "throughput"


# ----- exactness of the min cut ----------------------------------------------------------------

SMALL_DAGS = [
    "a>b b>c c>d",
    "a>b a>c b>d c>d d>e",
    "a>b b>c a>c c>d b>d",
    "a>b a>c a>d b>e c>e d>e e>f",
]


@pytest.mark.parametrize("edges", SMALL_DAGS)
@pytest.mark.parametrize("seed", range(4))
def test_min_cut_matches_exhaustive_search(edges: str, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    g = dag(edges)
    names = [n.name for n in g.nodes]
    caps = {
        "gpu": gpu(costs={n: rnd.uniform(0.1, 2) * 1e-3 for n in names}),
        "dla": dla(costs={n: rnd.uniform(0.1, 2) * 1e-3 for n in names}),
    }
    per_tensor = {t: rnd.uniform(0, 0.5) * 1e-3 for t in g.tensors}

    def tc(t: Tensor, src: str, dst: str) -> float:
        return per_tensor[t.name] * (1.5 if dst == "dla" else 1.0)

    policy = Policy.from_dict({"partition": "cost", "max_dla_subgraphs": 16})
    part = partition(g, caps, policy, tc)

    def layer_cost(node, device):  # type: ignore[no-untyped-def]
        return caps["gpu" if device == "gpu" else "dla"].cost(node, g, "fp16")

    best = min(
        predict(g, dict(zip(names, combo)), layer_cost, tc).total
        for combo in itertools.product(("gpu", "dla0"), repeat=len(names))
    )
    # the cut is exact; the loadable limit (16) never binds on these graphs
    assert part.predicted.total == pytest.approx(best, rel=1e-6)


def test_a_cpu_only_host_runs_everything_on_the_cpu() -> None:
    g = chain("a", "b")
    seen: list[tuple[str, str]] = []

    def tc(t: Tensor, src: str, dst: str) -> float:
        seen.append((src, dst))
        return 1.0

    part = partition(g, {"cpu": FakeCap("cpu", default_cost=1e-3)}, None, tc)
    assert {a.device for a in part.assignments.values()} == {"cpu"}
    assert part.assignments["a"].reason == "CPU: target has no GPU"
    # graph inputs and outputs live on the CPU there: no copies
    assert part.predicted.total == pytest.approx(2e-3) and seen == []


def test_pipeline_balancing_splits_a_long_segment_between_the_devices() -> None:
    # beyond MILP_MAX_LAYERS the throughput path balances by moving runs; exercise it directly
    from partitioner.assign import analyse, place_trt
    from partitioner.mincut import _balance, _split

    names = [f"l{i}" for i in range(8)]
    g = chain(*names)
    caps = {"gpu": gpu(default_cost=1e-3), "dla": dla(default_cost=1e-3)}
    policy = Policy.from_dict({"partition": "cost", "objective": "throughput"})
    a = analyse(g, caps, policy)
    trt = place_trt(a, None)
    fixed, _ = _split(a, trt)
    devices = _balance(a, {n: "dla0" for n in names}, fixed, None)
    p = predict(g, devices, a.cost, None)
    assert p.period == pytest.approx(4e-3)  # from 8 ms: half the chain moved to the GPU
    assert [devices[n] for n in names] == ["gpu"] * 4 + ["dla0"] * 4


def test_loadable_limit_without_gpu_fallback_is_a_build_error() -> None:
    g, caps = _alternating(3)
    policy = Policy.from_dict(
        {
            "max_dla_subgraphs": 2,
            "gpu_fallback": False,
            "rules": [{"op": "Resize", "device": "gpu"}],
        },
        source="p.yaml",
    )
    with pytest.raises(PartitionError) as err:
        partition(g, caps, policy)
    assert str(err.value) == (
        "the DLA loadable limit 2 (max_dla_subgraphs in p.yaml) is exceeded on dla0: 3 DLA "
        "segments hold layers that cannot fall back to the GPU: dla0_0 [a0], dla0_2 [a1], "
        "dla0_4 [a2] — set gpu_fallback: true, raise max_dla_subgraphs, or pin layers to gpu"
    )
    # the cost strategy may not move them either
    with pytest.raises(PartitionError):
        partition(g, caps, policy, strategy="cost")


@pytest.mark.parametrize(
    "knob, objective, note",
    [
        ("MINCUT_MAX_LAYERS", "latency", "greedy refinement of the trt placement"),
        ("MILP_MAX_LAYERS", "throughput", "throughput by 12 weighted cuts (heuristic)"),
    ],
)
def test_fallbacks_for_huge_graphs_stay_no_worse_than_trt(
    monkeypatch: pytest.MonkeyPatch, knob: str, objective: str, note: str
) -> None:
    import partitioner.mincut as mincut

    monkeypatch.setattr(mincut, knob, 0)  # this 7-layer graph counts as huge
    g = chain("a", "b", "up", "c", "d", "e", "f", ops={"up": "Resize"})
    caps = {
        "gpu": gpu(default_cost=1e-3),
        "dla": dla(RESIZE_NO, costs={"a": 3e-3, "b": 3e-3}, default_cost=0.5e-3),
    }
    policy = Policy.from_dict({"partition": "cost", "objective": objective})
    cost = partition(g, caps, policy, _tc(0.1e-3))
    trt = partition(g, caps, policy, _tc(0.1e-3), strategy="trt")
    assert any(note in d for d in cost.debug)
    assert cost.predicted.objective(objective) < trt.predicted.objective(objective)
    if objective == "latency":  # the slow DLA segment [a, b] went back to the GPU
        assert [cost.device_of(n) for n in "ab"] == ["gpu", "gpu"]
