"""Energy per inference (devices/energy.py) and ``objective: energy``.

The power of each device comes from the mode's budget, the DLA-SW README's DLA-over-GPU perf/W
ratios (``fit`` rows of dla_sim/data/published.yaml) and the devices' peak INT8 ops; the
``validate`` networks' ratios are held to the model's within +-15 %.
"""

from __future__ import annotations

import pytest

from devices.capability import capabilities_for
from devices.cost import transition_cost_for
from devices.cpu import evaluate_node
from devices.energy import device_watts, perf_per_watt_ratio, perf_per_watt_ratios
from partitioner.assign import PartitionError, partition
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify
from partitioner.policy import Policy
from partitioner.report import format_text, to_json
from tandem.zoo import ZOO_MODELS, build_model
from targets.catalog import load_target

TOLERANCE = 0.15
MODES = ("MAXN", "50W", "30W", "15W")


@pytest.mark.parametrize("mode", MODES)
def test_powers_meet_the_budget_and_the_published_ratio(mode: str) -> None:
    target = load_target("orin-agx-64gb", mode)
    watts = device_watts(target)
    assert watts is not None and set(watts) == {"gpu", "dla0", "dla1"}
    assert sum(watts.values()) == pytest.approx(target.mode.budget_w)
    assert target.gpu is not None and target.dla is not None and target.dla_clock_hz
    t_gpu = target.gpu.peak_ops_per_s("int8", mode, tensor=True)
    t_dla = 2 * target.dla.macs_per_cycle("int8") * target.dla_clock_hz
    ratio = (t_dla / watts["dla0"]) / (t_gpu / watts["gpu"])
    assert ratio == pytest.approx(perf_per_watt_ratios()[mode][1])
    assert 0 < watts["dla0"] < watts["gpu"]


def test_validation_networks_perf_per_watt_within_tolerance() -> None:
    from devices.energy import PUBLISHED
    from partitioner.yaml_reader import read_yaml

    rows = [r for r in read_yaml(PUBLISHED).data["energy"] if r["use"] == "validate"]
    assert len(rows) == 12
    errors = []
    for r in rows:
        model = perf_per_watt_ratio(load_target(r["board"], r["power_mode"]))
        assert model is not None
        errors.append(model / r["dla_over_gpu"] - 1)
    assert max(abs(e) for e in errors) <= TOLERANCE, errors
    assert any(e > 0 for e in errors) and any(e < 0 for e in errors)


def test_boards_without_figures_have_no_energy_model() -> None:
    assert device_watts(load_target("xavier-agx")) is None  # DLA 1: no published perf/W
    assert device_watts(load_target("orin-nano-8gb", "15W")) == {"gpu": 15.0}  # no DLA


def _graph():
    model = build_model("resnet18", resolution=ZOO_MODELS["resnet18"].test_resolution)
    return simplify(import_onnx(model), evaluate_node)


def _place(target: str, **policy: object):
    spec = load_target(target)
    g = _graph()
    p = Policy.from_dict(policy)
    return g, partition(g, capabilities_for(spec), p, transition_cost_for(spec, p.precision))


def test_energy_objective_spends_no_more_joules_than_the_other_placements() -> None:
    g, energy = _place("orin-agx-64gb", objective="energy", partition="cost", precision="int8")
    _, latency = _place("orin-agx-64gb", objective="latency", partition="cost", precision="int8")
    _, trt = _place("orin-agx-64gb", precision="int8")
    e = energy.predicted.energy_j
    assert e is not None and latency.predicted.energy_j and trt.predicted.energy_j
    assert e["total"] <= latency.predicted.energy_j["total"]
    assert e["total"] <= trt.predicted.energy_j["total"] * (1 + 1e-9)
    assert e["total"] == pytest.approx(sum(v for d, v in e.items() if d != "total"))
    doc = to_json(g, energy)
    assert doc["predicted_mj"]["total"] == pytest.approx(e["total"] * 1e3)
    assert "Energy per inference:" in format_text(g, energy)
    moved = [a for a in energy.assignments.values() if "cost model (energy)" in a.reason]
    assert all(" mJ on " in a.reason for a in moved)


def test_energy_objective_without_power_figures_is_refused() -> None:
    with pytest.raises(PartitionError, match="objective energy"):
        _place("xavier-agx", objective="energy", partition="cost")


def test_policy_accepts_energy_and_names_it_in_errors() -> None:
    assert Policy.from_dict({"objective": "energy"}).objective == "energy"
    with pytest.raises(Exception, match="energy"):
        Policy.from_dict({"objective": "joules"})


def test_latency_under_an_energy_budget() -> None:
    common = {"partition": "cost", "precision": "int8"}
    _, fast = _place("orin-agx-64gb", objective="latency", **common)
    _, frugal = _place("orin-agx-64gb", objective="energy", **common)
    assert fast.predicted.energy_j and frugal.predicted.energy_j
    e_fast, e_min = fast.predicted.energy_j["total"], frugal.predicted.energy_j["total"]
    assert e_min < e_fast  # the budget has something to trade
    # a generous budget changes nothing
    _, loose = _place("orin-agx-64gb", objective="latency", energy_budget_mj=e_fast * 2e3, **common)
    assert loose.predicted.total == pytest.approx(fast.predicted.total)
    # a budget between the two: within it, and no faster than the unconstrained placement
    middle = (e_fast + e_min) / 2
    _, held = _place("orin-agx-64gb", objective="latency", energy_budget_mj=middle * 1e3, **common)
    assert held.predicted.energy_j and held.predicted.energy_j["total"] <= middle
    assert held.predicted.total >= fast.predicted.total
    assert not any("energy_budget_mj" in w for w in held.warnings)
    # below anything reachable: the most frugal placement, with a warning
    _, short = _place("orin-agx-64gb", objective="latency", energy_budget_mj=e_min * 500, **common)
    assert short.predicted.energy_j
    assert short.predicted.energy_j["total"] == pytest.approx(e_min, rel=1e-6)
    assert any("no placement meets energy_budget_mj" in w for w in short.warnings)
