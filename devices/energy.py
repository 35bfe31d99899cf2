"""Energy per inference: each device's power while busy, at the target's power mode.

A device's joules per inference = its power while busy x its busy time (the cost model's
seconds; the GPU also pays for the reformats at GPU<->DLA boundaries). Power comes from three
sourced figures and two stated assumptions, nothing fitted to energy measurements:

- ``B``: the power mode's budget (``budget_w`` of the board YAML's mode, or the number in its
  nvpmodel name: ``15W`` is a 15 W budget);
- ``r``: the DLA's perf/W over the GPU's at that mode: NVIDIA's DLA-SW README table (images/s
  per W, accelerator power only, dense INT8, AGX Orin 64GB), the geometric mean of the ``fit``
  rows of ``dla_sim/data/published.yaml`` (``energy``); another Orin board takes the published
  mode with the nearest budget;
- ``Tg``, ``Td``: the peak dense INT8 ops/s of the GPU and of one DLA core at the mode
  (``devices.hardware``: SMs x clock, MACs x clock; they reproduce the README's TOPS table).

Assumed: (1) both devices reach the same fraction of their peak on a network, so perf/W is peak
ops per watt: ``Td / Pd = r * Tg / Pg``; (2) the budget is what the GPU and every DLA core draw at
full load (CPU, DRAM and I/O power ignored: an upper bound on accelerator power):
``Pg + cores * Pd = B``. Hence ``Pg = B / (1 + cores * Td / (r * Tg))`` and
``Pd = Pg * Td / (r * Tg)``.
Xavier's DLA 1 has no published perf/W figure: its targets have no energy model (None). A board
without a DLA: the GPU draws the budget.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

from devices.hardware import TargetSpec
from partitioner.yaml_reader import read_yaml

PUBLISHED = Path(__file__).resolve().parents[1] / "dla_sim" / "data" / "published.yaml"
BOARD = "orin-agx-64gb"  # the board the perf/W table was measured on
DLA_VERSION = 2  # its DLA: the table says nothing about Xavier's DLA 1


@functools.cache
def perf_per_watt_ratios(use: str = "fit") -> dict[str, tuple[float, float]]:
    """Power mode -> (its budget in W, the geometric mean of the published DLA-over-GPU perf/W
    rows marked ``use`` at that mode)."""
    rows: list[dict[str, Any]] = read_yaml(PUBLISHED, "published figures").data["energy"]
    by_mode: dict[str, list[float]] = {}
    budgets: dict[str, float] = {}
    for row in rows:
        if row["use"] == use and row["board"] == BOARD:
            mode = str(row["power_mode"])
            by_mode.setdefault(mode, []).append(float(row["dla_over_gpu"]))
            budgets[mode] = float(row["budget_w"])
    return {
        m: (budgets[m], math.exp(sum(map(math.log, v)) / len(v))) for m, v in by_mode.items()
    }


def perf_per_watt_ratio(target: TargetSpec) -> float | None:
    """The DLA-over-GPU perf/W ratio used for ``target`` at its power mode (see the module
    docstring), or None without a budget."""
    ratios = perf_per_watt_ratios()
    if target.name == BOARD and target.power_mode in ratios:
        return ratios[target.power_mode][1]
    budget = target.mode.budget_w
    if budget is None:
        return None
    nearest = min(ratios.values(), key=lambda br: (abs(br[0] - budget), -br[0]))
    return nearest[1]


def device_watts(target: TargetSpec) -> dict[str, float] | None:
    """Power while busy per device (``gpu``, ``dla0``, ``dla1``...) at ``target``'s power mode,
    or None where a figure is missing (no budget, no DLA 2, no GPU)."""
    gpu, dla = target.gpu, target.dla
    budget = target.mode.budget_w
    clock = target.dla_clock_hz
    if gpu is None or budget is None:
        return None
    if dla is None:
        return {"gpu": budget}  # assumption (2) with no DLA: the GPU draws the budget
    if dla.version != DLA_VERSION or not clock:
        return None
    ratio = perf_per_watt_ratio(target)
    if ratio is None:
        return None
    t_gpu = gpu.peak_ops_per_s("int8", target.power_mode, tensor=True)
    t_dla = 2.0 * dla.macs_per_cycle("int8") * clock
    share = t_dla / (ratio * t_gpu)  # Pd / Pg
    p_gpu = budget / (1.0 + dla.cores * share)
    watts = {"gpu": p_gpu}
    watts.update({f"dla{i}": p_gpu * share for i in range(dla.cores)})
    return watts
