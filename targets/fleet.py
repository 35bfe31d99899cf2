"""One fleet report from many boards' deploy, benchmark and facts results.

The tandem.jetson Ansible collection (``ansible_collections/tandem/jetson``) hands each board's
task results here; the report is one JSON document and one text table: board, target, power
mode, measured against predicted latency, and every failure with the step and its reason.

Every latency carries where it came from: ``measured`` (timed on the board with its GPU / DLA:
backends ``cuda`` and ``dla-trt``), ``emulated`` (timed on the board, but some segment ran on
Tandem's numpy reference or DLA emulator, so the figure is not the hardware's) or ``predicted``
(Tandem's latency model at build time, from the plan's header).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.io import write_atomic
from partitioner.errors import ConfigError

#: Segment backends of ``tandem run`` that time the board's own hardware (devices/runtime.py).
HARDWARE_BACKENDS = frozenset({"cuda", "dla-trt"})


def bench_figures(report: Mapping[str, Any], board: str) -> dict[str, Any]:
    """The measured and predicted figures of one ``tandem run --json`` report, labelled."""
    latency = report.get("latency_ms") or {}
    backends = dict(report.get("backends") or {})
    hardware = bool(backends) and all(b in HARDWARE_BACKENDS for b in backends.values())
    emulated = sorted({b for b in backends.values() if b not in HARDWARE_BACKENDS})
    measured: dict[str, Any] = {
        "median_ms": latency.get("median"),
        "min_ms": latency.get("min"),
        "max_ms": latency.get("max"),
        "iterations": latency.get("iterations"),
        "source": "measured" if hardware else "emulated",
        "where": f"`tandem run` on board {board}"
        + ("" if hardware else f" with {', '.join(emulated) or 'no'} backend(s), not its hardware"),
        "backends": backends,
    }
    predicted_ms = report.get("predicted_ms") or {}
    predicted: dict[str, Any] = {
        "total_ms": predicted_ms.get("total"),
        "source": "predicted",
        "where": "Tandem's latency model when the plan was built (plan header predicted_ms), "
        f"power mode {report.get('power_mode') or '?'}",
        "power_mode": report.get("power_mode"),
    }
    if report.get("kind") == "plan-group-bench":  # ``tandem run-group``: rates, not latency
        _group_figures(report, measured, predicted)
    return {"measured": measured, "predicted": predicted}


def _group_figures(
    report: Mapping[str, Any], measured: dict[str, Any], predicted: dict[str, Any]
) -> None:
    """A plan group's figures: each model's frames/s and each device's busy fraction, measured
    (or emulated) on the board beside the planner's prediction."""
    models = report.get("models") or {}
    devices = report.get("devices") or {}
    measured["where"] = f"`tandem run-group` on the board: {report.get('measured_source')}"
    measured["models_fps"] = {m: f.get("measured_fps") for m, f in models.items()}
    measured["devices_busy"] = {d: f.get("measured_busy") for d, f in devices.items()}
    predicted["where"] = f"the plan group's planner: {report.get('predicted_source')}"
    predicted["models_fps"] = {m: f.get("predicted_fps") for m, f in models.items()}
    predicted["devices_busy"] = {d: f.get("predicted_busy") for d, f in devices.items()}


@dataclass
class FleetRow:
    board: str
    target: str = ""
    power_mode: str | None = None  # what the board's nvpmodel says
    plan_power_mode: str | None = None  # the mode the plan's prediction is for
    deployed: str = ""  # uploaded | unchanged | "" (not reached)
    measured: dict[str, Any] | None = None
    predicted: dict[str, Any] | None = None
    failed_step: str | None = None
    reason: str | None = None
    facts_ok: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.reason is None


def _step_failure(result: Any) -> str | None:
    """Why an Ansible task result failed (its ``msg``), or None when it did not."""
    if not isinstance(result, Mapping):
        return None
    if result.get("unreachable"):
        return f"unreachable: {result.get('msg') or 'no message'}"
    if result.get("failed"):
        return str(result.get("msg") or "failed without a message")
    return None


def fleet_row(
    board: str,
    *,
    facts: Mapping[str, Any] | None,
    deploy: Mapping[str, Any] | None,
    bench: Mapping[str, Any] | None,
) -> FleetRow:
    """One board's row from its registered task results (each may be absent: not reached)."""
    row = FleetRow(board)
    steps = (("facts", facts), ("deploy", deploy), ("bench", bench))
    for step, result in steps:
        reason = _step_failure(result)
        if reason is not None:
            row.failed_step, row.reason = step, reason
            break
    board_facts = (facts or {}).get("ansible_facts", {}).get("tandem_board") or {}
    if board_facts:
        row.target = str(board_facts.get("target") or "")
        row.power_mode = board_facts.get("power_mode")
        row.facts_ok = board_facts.get("ok")
    if deploy and not _step_failure(deploy) and not deploy.get("skipped"):
        row.target = str(deploy.get("target") or row.target)
        row.deployed = "uploaded" if deploy.get("uploaded") else "unchanged"
    benched = (bench or {}).get("ansible_facts", {}).get("tandem_bench") or {}
    if benched and not _step_failure(bench):
        row.measured, row.predicted = benched.get("measured"), benched.get("predicted")
        row.plan_power_mode = (row.predicted or {}).get("power_mode")
    if row.reason is None and row.measured is None:
        skipped = [step for step, result in steps if (result or {}).get("skipped")]
        row.failed_step = "bench"
        row.reason = (
            f"not benchmarked: step(s) {', '.join(skipped)} skipped"
            if skipped
            else "not benchmarked: the play never ran its tasks on this board (removed from "
            "the play earlier, or outside the play's hosts)"
        )
    return row


def fleet_document(rows: Sequence[FleetRow]) -> dict[str, Any]:
    return {
        "boards": [
            {
                "board": r.board,
                "target": r.target,
                "power_mode": r.power_mode,
                "plan_power_mode": r.plan_power_mode,
                "deployed": r.deployed or None,
                "measured": r.measured,
                "predicted": r.predicted,
                "facts_ok": r.facts_ok,
                "ok": r.ok,
            }
            for r in rows
        ],
        "benchmarks": sum(1 for r in rows if r.ok),
        "failures": [
            {"board": r.board, "step": r.failed_step, "reason": r.reason} for r in rows if not r.ok
        ],
    }


def _ms(figure: Mapping[str, Any] | None, key: str) -> str:
    value = (figure or {}).get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return f"{value:.3f} ({(figure or {}).get('source')})"


def fleet_table(rows: Sequence[FleetRow]) -> str:
    head = (
        "BOARD", "TARGET", "FACTS", "POWER_MODE", "DEPLOY", "MEASURED_MS", "PREDICTED_MS",
        "DETAIL",
    )  # fmt: skip
    facts = {True: "match", False: "MISMATCH", None: "-"}
    table = [head]
    for r in rows:
        mode = r.power_mode or "-"
        if r.plan_power_mode and r.plan_power_mode != r.power_mode:
            mode += f" (plan: {r.plan_power_mode})"
        detail = "ok" if r.ok else f"FAILED at {r.failed_step}: {r.reason}"
        table.append(
            (
                r.board,
                r.target or "-",
                facts[r.facts_ok],
                mode,
                r.deployed or "-",
                _ms(r.measured, "median_ms"),
                _ms(r.predicted, "total_ms"),
                detail.replace("\n", " "),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:-1], widths)] + [row[-1]]) for row in table]
    failed = sum(1 for r in rows if not r.ok)
    lines.append(f"{len(rows) - failed} benchmarked, {failed} failed, {len(rows)} boards")
    return "\n".join(line.rstrip() for line in lines) + "\n"


def write_fleet_report(
    rows: Sequence[FleetRow], json_path: str | Path, table_path: str | Path | None = None
) -> dict[str, Any]:
    """Write the JSON (and the table) atomically: never a partial report under the final name."""
    doc = fleet_document(rows)
    for path in (json_path, table_path):
        if path is not None and not Path(path).parent.is_dir():
            raise ConfigError(f"fleet report {path}: its folder {Path(path).parent} does not exist")
    write_atomic(Path(json_path), (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    if table_path is not None:
        write_atomic(Path(table_path), fleet_table(rows).encode())
    return doc
