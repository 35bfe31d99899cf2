"""partitioner.concurrency: lane rates by LP, contention fixed point, reasons, the exact
single-device baseline. Tables of tiny lanes with hand-computed answers."""

from __future__ import annotations

import re

import pytest

from partitioner.concurrency import (
    Demand,
    Lane,
    best_whole_assignment,
    group_throughput,
    schedule,
)
from partitioner.errors import ConfigError
from partitioner.policy import Policy


def lane(model, name, kind="single", **loads_ms):
    loads = {d: ms * 1e-3 for d, ms in loads_ms.items()}
    return Lane(model, name, loads, sum(loads.values()), kind)


def test_data_parallel_rates_add_up_without_contention():
    # GPU 1 ms and DLA0 2 ms per frame, nothing shared: 1000 + 500 frames/s
    lanes = [lane("m", "gpu", gpu=1.0), lane("m", "dla0", dla0=2.0)]
    sched = schedule(lanes, [Demand("m")])
    assert sched.rates["m"] == pytest.approx(1500.0)
    by_name = {u.lane.name: u.rate for u in sched.uses}
    assert by_name == pytest.approx({"gpu": 1000.0, "dla0": 500.0})
    assert sched.utilisation == pytest.approx({"gpu": 1.0, "dla0": 1.0})


def test_contention_slows_every_device_and_is_a_fixed_point():
    # each device 20 % slower whenever another one runs: 1500 / 1.2 = 1250 frames/s
    lanes = [lane("m", "gpu", gpu=1.0), lane("m", "dla0", dla0=2.0)]
    sched = schedule(lanes, [Demand("m")], slowdown=lambda d, others: 1.2 if others else 1.0)
    assert sched.rates["m"] == pytest.approx(1250.0)
    assert sched.slowdown == pytest.approx({"gpu": 1.2, "dla0": 1.2})


def test_a_device_that_slows_the_others_more_than_it_adds_is_left_idle():
    # the GPU runs 3x slower while the DLA is busy: GPU alone 1000 frames/s beats both
    # together (1000 / 3 + 100); more lanes or devices never make the answer worse
    lanes = [lane("m", "gpu", gpu=1.0), lane("m", "dla0", dla0=10.0)]

    def slowdown(device, others):
        return 1.0 + 2.0 * others.get("dla0", 0.0) if device == "gpu" else 1.0

    sched = schedule(lanes, [Demand("m")], slowdown)
    assert sched.rates["m"] == pytest.approx(1000.0)
    reasons = {u.lane.name: u.reason for u in sched.uses}
    assert "leaves dla0 idle" in reasons["dla0"] and "contention" in reasons["dla0"]
    assert sched.notes == ["dla0 left idle: contention outweighs what it would add"]


def test_pipeline_lane_wins_when_it_balances_the_devices_and_unused_lanes_say_why():
    # the pipeline puts 1 ms on each device: 1000 frames/s with both busy; the GPU lane alone
    # would need 1.6 ms of the GPU, the DLA lane 3 ms of the DLA plus 0.4 ms of the GPU
    lanes = [
        lane("m", "gpu", gpu=1.6),
        lane("m", "dla0", gpu=0.4, dla0=3.0),
        lane("m", "gpu+dla0", "pipeline", gpu=1.0, dla0=1.0),
    ]
    sched = schedule(lanes, [Demand("m")])
    rates = {u.lane.name: u.rate for u in sched.uses}
    assert rates["gpu+dla0"] == pytest.approx(1000.0)
    assert rates["gpu"] == pytest.approx(0.0, abs=1e-6)
    reasons = {u.lane.name: u.reason for u in sched.uses}
    assert "pipeline" in reasons["gpu+dla0"] and "100%" in reasons["gpu+dla0"]
    assert reasons["gpu"].startswith("unused: on the saturated device(s) dla0, gpu")
    # at the LP's device prices (not unique here: any p_gpu in [0.625, 0.769] of a frame's
    # value) a frame through the GPU lane costs 1.6 x p_gpu: more than the pipeline, <= 1.6x
    ratio = float(re.search(r"costs ([0-9.]+)x", reasons["gpu"]).group(1))
    assert 1.0 < ratio <= 1.6


def test_rate_targets_run_at_the_target_and_report_misses():
    lanes = [lane("a", "gpu", gpu=1.0), lane("b", "dla0", dla0=2.0)]
    met = schedule(lanes, [Demand("a", rate=400.0), Demand("b", rate=100.0)])
    assert met.rates == pytest.approx({"a": 400.0, "b": 100.0})
    assert met.met == {"a": True, "b": True} and not met.notes
    assert met.utilisation["gpu"] == pytest.approx(0.4)
    missed = schedule(lanes, [Demand("a", rate=400.0), Demand("b", rate=900.0)])
    assert missed.met == {"a": True, "b": False}
    assert missed.notes == ["model 'b' misses its rate target: 500.0 frames/s of 900.0"]


def test_priority_serves_the_higher_level_first():
    # one GPU shared: the high-priority model gets its full 600 frames/s, the other the rest
    lanes = [lane("hi", "gpu", gpu=1.0), lane("lo", "gpu", gpu=1.0)]
    sched = schedule(lanes, [Demand("hi", rate=600.0, priority=1), Demand("lo", rate=900.0)])
    assert sched.rates == pytest.approx({"hi": 600.0, "lo": 400.0})


def test_joint_placement_beats_and_never_loses_to_the_best_single_devices():
    # two models, each 1 ms on the GPU or 1.5 ms on a DLA; the single-device baseline can use
    # two devices at most, the joint placement splits frames over GPU, DLA0 and DLA1
    lanes = []
    for m in ("a", "b"):
        lanes += [lane(m, "gpu", gpu=1.0), lane(m, "dla0", dla0=1.5), lane(m, "dla1", dla1=1.5)]
    demands = [Demand("a"), Demand("b")]
    joint = schedule(lanes, demands)
    base, chosen = best_whole_assignment(lanes, demands)
    assert {lane.name for lane in chosen.values()} == {"gpu", "dla0"} or len(chosen) == 2
    assert group_throughput(base, demands) == pytest.approx(1000 / 1.5)
    # GPU 1000 + 2 DLAs 2 x 666.7 frames/s shared by two models: 1166.7 each
    assert group_throughput(joint, demands) == pytest.approx((1000 + 2 * 1000 / 1.5) / 2)
    assert group_throughput(joint, demands) >= 1.29 * group_throughput(base, demands)


def test_bad_groups_are_one_line_errors():
    with pytest.raises(ConfigError, match="model 'b' has no lane"):
        schedule([lane("a", "gpu", gpu=1.0)], [Demand("a"), Demand("b")])
    with pytest.raises(ConfigError, match="named twice"):
        schedule([lane("a", "gpu", gpu=1.0)], [Demand("a"), Demand("a")])
    with pytest.raises(ConfigError, match="positive"):
        schedule([lane("a", "gpu", gpu=1.0)], [Demand("a", rate=0.0)])


def test_policy_dla_core_any():
    policy = Policy.from_yaml("dla_core: any\nobjective: throughput\n", "p.yaml")
    assert policy.dla_any and policy.dla_core == 0
    assert policy.with_overrides(precision="int8").dla_any  # other overrides keep it
    assert not policy.with_overrides(dla_core=1).dla_any  # naming a core ends it
    with pytest.raises(ConfigError, match=r"p.yaml:1: dla_core: expected one of 0, 1, any"):
        Policy.from_yaml("dla_core: 2\n", "p.yaml")
