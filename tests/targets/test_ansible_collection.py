"""The tandem.jetson collection without boards: its documentation against its argument specs
(through the real ``ansible-doc``), and the report and facts code it shares with Tandem."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from partitioner.errors import ConfigError
from targets.board import BoardFacts, compare_facts, expected_facts, parse_cuda_version
from targets.fleet import bench_figures, fleet_row, fleet_table, write_fleet_report
from targets.inventory import ansible_board
from tests.sshd import REPO

BIN = Path(sys.executable).parent
COLLECTION = REPO / "ansible_collections" / "tandem" / "jetson"
MODULES = ("plan_deploy", "plan_bench", "board_facts", "fleet_report")


def specs() -> dict[str, dict[str, dict[str, Any]]]:
    sys.path.insert(0, str(REPO))  # ansible_collections.* is a namespace package there
    from ansible_collections.tandem.jetson.plugins.module_utils import specs as s

    return {
        "plan_deploy": s.PLAN_DEPLOY,
        "plan_bench": s.PLAN_BENCH,
        "board_facts": s.BOARD_FACTS,
        "fleet_report": s.FLEET_REPORT,
    }


def ansible_doc(*argv: str) -> subprocess.CompletedProcess[str]:
    if not (BIN / "ansible-doc").exists():
        pytest.skip(f"ansible-core is not installed in {BIN} (it is in requirements/test.txt)")
    env = {"ANSIBLE_COLLECTIONS_PATH": str(REPO), "PYTHONPATH": str(REPO), "PATH": str(BIN)}
    return subprocess.run(
        [str(BIN / "ansible-doc"), *argv], env=env, capture_output=True, text=True, timeout=120
    )


def test_ansible_doc_documents_every_option_as_the_spec_has_it() -> None:
    doc = ansible_doc("--json", *(f"tandem.jetson.{m}" for m in MODULES))
    assert doc.returncode == 0, doc.stderr
    found = json.loads(doc.stdout)
    for module, spec in specs().items():
        documented = found[f"tandem.jetson.{module}"]["doc"]["options"]
        assert set(documented) == set(spec), module
        for name, arg in spec.items():
            option = documented[name]
            assert option["description"], f"{module}.{name} has no description"
            assert option["type"] == arg["type"], f"{module}.{name}"
            assert option.get("default") == arg.get("default"), f"{module}.{name}"
            assert bool(option.get("required")) == bool(arg.get("required")), f"{module}.{name}"
            assert option.get("choices") == arg.get("choices"), f"{module}.{name}"
            assert option.get("elements") == arg.get("elements"), f"{module}.{name}"


def test_ansible_doc_plan_deploy_text_names_every_option() -> None:
    text = ansible_doc("tandem.jetson.plan_deploy")
    assert text.returncode == 0, text.stderr
    assert "This module has a corresponding action plugin" in text.stdout
    for name in specs()["plan_deploy"]:
        assert f"{name} " in text.stdout, name


def test_a_module_run_without_its_action_plugin_says_where_it_runs() -> None:
    """What the board would see if the module were shipped there: one line, no traceback."""
    path = COLLECTION / "plugins" / "modules" / "plan_deploy.py"
    args = json.dumps({"ANSIBLE_MODULE_ARGS": {"plan": "/x.plan"}})
    proc = subprocess.run(
        [sys.executable, str(path)],
        input=args,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO)},
        timeout=60,
    )
    result = json.loads(proc.stdout)
    assert result["failed"] and "runs on the controller" in result["msg"]


def test_cuda_version_json() -> None:
    text = '{"cuda": {"name": "CUDA SDK", "version": "12.6.68"}, "cuda_cudart": {}}'
    assert parse_cuda_version(text) == "12.6.68"
    assert parse_cuda_version("not json") is None
    assert parse_cuda_version('{"cuda": "12"}') is None


def test_facts_check_cuda_tensorrt_and_dla_cores_against_the_catalog() -> None:
    expected = expected_facts("orin-agx-64gb")
    assert expected["dla_cores"] == 2 and expected["cuda"] and expected["tensorrt"]
    facts = BoardFacts("b", "orin-agx-64gb", arch="aarch64")
    facts.cuda = f"{expected['cuda']}.68"
    facts.tensorrt = f"{expected['tensorrt']}.0.30-1+cuda12.5"
    facts.dla_cores = 2
    by_fact = {c.fact: c for c in compare_facts(facts, expected)}
    assert by_fact["cuda"].ok and by_fact["tensorrt"].ok and by_fact["dla_cores"].ok
    facts.dla_cores, facts.tensorrt = None, "8.6.2.3-1+cuda12.2"
    facts.checks = compare_facts(facts, expected)
    by_fact = {c.fact: c for c in facts.checks}
    assert not by_fact["tensorrt"].ok and by_fact["dla_cores"].actual == "absent"
    assert "TensorRT's Python bindings" in by_fact["dla_cores"].note
    assert expected_facts("orin-nano-8gb")["dla_cores"] == 0  # the Orin Nano has no DLA
    message = facts.mismatch()
    assert message and "tensorrt 8.6.2.3-1+cuda12.2 (target says" in message


def test_measured_only_when_every_segment_ran_on_the_boards_hardware() -> None:
    report = {
        "latency_ms": {"median": 2.5, "min": 2.0, "max": 3.0, "iterations": 10},
        "predicted_ms": {"total": 2.1},
        "power_mode": "MAXN",
        "backends": {"dla0_0": "dla-trt", "gpu_1": "cuda"},
    }
    figures = bench_figures(report, "orin1")
    assert figures["measured"]["source"] == "measured" and figures["measured"]["median_ms"] == 2.5
    assert figures["predicted"] == {
        "total_ms": 2.1,
        "source": "predicted",
        "where": "Tandem's latency model when the plan was built (plan header predicted_ms), "
        "power mode MAXN",
        "power_mode": "MAXN",
    }
    report["backends"]["dla0_0"] = "dla-emulator"
    emulated = bench_figures(report, "orin1")["measured"]
    assert emulated["source"] == "emulated" and "dla-emulator backend(s)" in emulated["where"]


def test_fleet_rows_name_the_failing_step_and_boards_never_reached() -> None:
    facts = {"ansible_facts": {"tandem_board": {"target": "t1", "power_mode": "15W", "ok": True}}}
    refused = {"failed": True, "msg": "plan p is built for target 't2' but board b is 't1'"}
    rows = [
        fleet_row("b", facts=facts, deploy=refused, bench={"skipped": True}),
        fleet_row("c", facts=None, deploy=None, bench=None),
        fleet_row("d", facts={"unreachable": True, "msg": "refused"}, deploy=None, bench=None),
    ]
    assert (rows[0].failed_step, rows[0].reason) == ("deploy", refused["msg"])
    assert rows[0].power_mode == "15W" and rows[0].target == "t1"
    assert rows[1].failed_step == "bench" and "never ran its tasks" in (rows[1].reason or "")
    assert (rows[2].failed_step, rows[2].reason) == ("facts", "unreachable: refused")
    table = fleet_table(rows)
    assert table.splitlines()[-1] == "0 benchmarked, 3 failed, 3 boards"
    assert "FAILED at deploy: plan p is built for target 't2'" in table


def test_fleet_report_into_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "report.json"
    with pytest.raises(ConfigError, match=r"fleet report .*report.json: its folder .* not exist"):
        write_fleet_report([], path)
    assert not path.parent.exists()


def test_a_bad_ansible_variable_names_the_variable_without_a_line(tmp_path: Path) -> None:
    variables = {"ansible_port": ("ssh", 0), "tandem_target": ("orin-agx-64gb", 0)}
    with pytest.raises(ConfigError) as err:
        ansible_board("orin1", variables, tmp_path / "hosts.yml")
    assert str(err.value) == (
        f"{tmp_path / 'hosts.yml'}: host orin1: ansible_port: expected an integer 1-65535, "
        "got 'ssh'"
    )
