"""``tandem deploy --bench`` of a plan group on real sshd boards on loopback (tests/sshd.py).

The group is what ``tandem plan-group -o DIR`` writes for two zoo models; each fake board's
``tandem`` is a shim running THIS checkout, so the board really serves both models at once
with ``tandem run-group`` (GPU segments on the CPU reference, DLA segments on the emulator:
its times are labelled ``emulated``), and the report, the JSON and the trace come back.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.plan import file_sha256, read_plan
from partitioner.errors import TandemError
from tandem.cli import main
from targets.deploy import (
    TargetMismatchError,
    board_holds,
    deploy_group,
    deploy_plan,
    summary_table,
)
from targets.fleet import bench_figures
from targets.inventory import load_inventory
from targets.ssh import TransientError
from tests.sshd import Fleet, SshdBoard, _descendants, fleet_of_boards
from tests.targets.test_deploy import FAST, make_plan

TARGET = "orin-agx-64gb"
CPU = ["--backend", "cpu"]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


def copy_group(group_dir: Path, where: Path) -> Path:
    dest = where / group_dir.name
    shutil.copytree(group_dir, dest)
    return dest


def test_group_uploads_every_plan_and_benches_them_at_once(
    fleet: Fleet, tmp_path: Path, group_dir: Path, capsys
) -> None:
    board = fleet.add("orin")
    board.install_tandem_shim()
    argv = ["deploy", str(group_dir), "--board", "orin", "--inventory", str(fleet.inventory()),
            "--bench", "--iterations", "4", "--backend", "cpu", "--results",
            str(tmp_path / "results"), "--connect-timeout", "10"]  # fmt: skip
    capsys.readouterr()
    assert main([*argv, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)["boards"]
    plans = sorted(group_dir.glob("*.plan"))
    remote = board.board_dir / "plans" / "mix"
    assert result["ok"] and result["uploaded"] and result["remote_path"] == str(remote)
    assert [p["plan"] for p in result["plans"]] == [str(p) for p in plans]
    for plan in plans:
        assert file_sha256(remote / plan.name) == file_sha256(plan)
    assert not [p.name for p in remote.iterdir() if p.name.endswith(".part")]
    assert result["bytes"] == sum(p.stat().st_size for p in plans)

    report = result["bench"]
    assert report["kind"] == "plan-group-bench" and report["target"] == TARGET
    headers = [read_plan(p).header for p in plans]
    for header in headers:
        model = report["models"][header["model"]]
        assert model["measured_fps"] > 0
        assert model["measured_source"].startswith("emulated on ")
        assert model["predicted_fps"] == pytest.approx(sum(x["rate_fps"] for x in header["lanes"]))
        assert model["predicted_source"] == "predicted for orin-agx-64gb MAXN"
        assert sum(model["frames_per_lane"].values()) == model["frames"]
    planned = headers[0]["concurrency"]["utilisation"]
    for device, figures in report["devices"].items():
        assert figures["predicted_busy"] == pytest.approx(planned.get(device, 0.0))
        assert 0.0 <= figures["measured_busy"] <= 1.0 + 1e-6
        if figures["measured_busy"] > 0:
            assert figures["measured_source"].startswith("emulated on ")
    assert {"gpu", "dla0", "dla1"} <= set(report["devices"])
    # the Ansible plan_bench facts carry the same figures (one implementation: deploy_plan)
    figures = bench_figures(report, "orin")
    assert figures["measured"]["source"] == "emulated" and figures["measured"]["median_ms"] is None
    for side, key in (("measured", "measured_fps"), ("predicted", "predicted_fps")):
        assert figures[side]["models_fps"] == {m: f[key] for m, f in report["models"].items()}
    # the fastest planned model served the --iterations frames
    assert max(m["frames"] for m in report["models"].values()) == 4

    saved = Path(result["bench_json"])
    assert saved == tmp_path / "results" / "orin" / "mix.json"
    assert json.loads(saved.read_text(encoding="utf-8")) == report
    trace = json.loads(Path(result["profile"]).read_text(encoding="utf-8"))["traceEvents"]
    processes = {e["args"]["name"] for e in trace if e.get("name") == "process_name"}
    assert any(p.startswith("ran here: emulated on") for p in processes), processes
    assert "predicted for orin-agx-64gb MAXN" in processes

    # again, as text: the plans are already there; the tables put measured beside predicted
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and "emulated on" in out and "orin: plan group" in out
    assert "Predicted frames/s" in out and "Predicted busy" in out
    for device in ("gpu", "dla0", "dla1"):
        assert any(line.startswith(device) for line in out.splitlines()), out
    # Ansible's check mode: the board holds the whole group, and not once a plan is gone
    entry = load_inventory(fleet.inventory()).board("orin")
    assert board_holds(group_dir, entry, timeouts=FAST) == (str(remote), True)
    (remote / plans[0].name).unlink()
    assert board_holds(group_dir, entry, timeouts=FAST) == (str(remote), False)


def test_wrong_target_in_the_group_is_refused_before_upload(
    fleet: Fleet, tmp_path: Path, group_dir: Path
) -> None:
    board = fleet.add("nx", target="xavier-nx")
    inv = load_inventory(fleet.inventory())
    board.kill()  # nobody listens: the refusal must come before any connection
    with pytest.raises(TargetMismatchError, match="built for target 'orin-agx-64gb'.*'xavier-nx'"):
        deploy_plan(group_dir, inv.board("nx"), timeouts=FAST)
    assert not (board.board_dir / "plans").exists()

    # one foreign plan among the group's: that file is named and no plan goes up
    mixed = copy_group(group_dir, tmp_path)
    make_plan(mixed / "zz-other.plan", target="xavier-nx")
    orin = fleet.add("orin")
    inv = load_inventory(fleet.inventory())
    with pytest.raises(
        TargetMismatchError, match=r"zz-other\.plan is built for target 'xavier-nx'"
    ):
        deploy_plan(mixed, inv.board("orin"), timeouts=FAST)
    assert not (orin.board_dir / "plans").exists()


def test_tune_of_a_group_is_refused_before_connecting(fleet: Fleet, group_dir: Path) -> None:
    board = fleet.add("orin")
    inv = load_inventory(fleet.inventory())
    board.kill()
    with pytest.raises(TandemError, match="--tune takes one plan, not the plan group"):
        deploy_plan(group_dir, inv.board("orin"), tune=True, timeouts=FAST)


def test_a_model_twice_in_a_group_is_refused(fleet: Fleet, tmp_path: Path, group_dir: Path):
    fleet.add("orin")
    inv = load_inventory(fleet.inventory())
    twice = copy_group(group_dir, tmp_path)
    first = sorted(twice.glob("*.plan"))[0]
    shutil.copy(first, twice / f"copy-of-{first.name}")
    with pytest.raises(TandemError, match="both serve model .*a group runs each model once"):
        deploy_plan(twice, inv.board("orin"), timeouts=FAST)


def kill_once_benching(board: SshdBoard, within: float = 60.0) -> threading.Thread:
    """A thread that SIGKILLs ``board`` (its sshd and every session) as soon as one of its
    sessions runs ``tandem run-group``: the board dies in the middle of the benchmark."""

    def watch() -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and board.proc is not None:
            for pid in _descendants(board.proc.pid):
                try:
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"run-group" in argv:
                    board.kill()
                    return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_board_dying_mid_bench_fails_it_alone(
    fleet: Fleet, tmp_path: Path, group_dir: Path
) -> None:
    boards = {name: fleet.add(name) for name in ("steady", "doomed")}
    for board in boards.values():
        board.install_tandem_shim()
    inv = load_inventory(fleet.inventory())
    killed: list[threading.Thread] = []

    def kill_during_bench(name: str, event: str, details: dict) -> None:
        if name == "doomed" and event == "bench" and not killed:
            killed.append(kill_once_benching(boards["doomed"]))

    results = deploy_group(
        group_dir,
        inv.group("all_boards"),
        concurrency=2,
        bench=True,
        iterations=2,
        run_args=CPU,
        results_dir=tmp_path / "results",
        retries=1,
        backoff=0.05,
        timeouts=FAST,
        progress=kill_during_bench,
    )
    killed[0].join()
    assert boards["doomed"].proc is None  # it was killed, mid-bench
    by_name = {r.board: r for r in results}
    assert by_name["steady"].ok and (by_name["steady"].bench or {})["models"]
    doomed = by_name["doomed"]
    assert not doomed.ok and doomed.bench is None
    assert "gave up after 2 attempts" in (doomed.error or ""), doomed.error
    assert not (tmp_path / "results" / "doomed" / "mix.json").exists()
    # the plans went up before the bench: they are whole, never partial
    for plan in group_dir.glob("*.plan"):
        held = boards["doomed"].board_dir / "plans" / "mix" / plan.name
        assert file_sha256(held) == file_sha256(plan)
    assert "FAILED" in summary_table(results)

    # a board that dies mid-bench with no retries left is one error, the transient kind
    board = boards["steady"]
    timers: list[threading.Thread] = []

    def kill_steady(name: str, event: str, details: dict) -> None:
        if event == "bench":
            timers.append(kill_once_benching(board))

    with pytest.raises(TransientError, match="gave up after 1 attempts"):
        deploy_plan(
            group_dir, inv.board("steady"), bench=True, iterations=2, run_args=CPU,
            results_dir=tmp_path / "again", retries=0, timeouts=FAST, progress=kill_steady,
        )  # fmt: skip
    timers[0].join()


def test_a_concurrent_plan_alone_is_benchmarked_by_run_group(
    fleet: Fleet, tmp_path: Path, group_dir: Path
) -> None:
    fleet.add("orin").install_tandem_shim()
    plan = sorted(group_dir.glob("*.plan"))[0]
    assert read_plan(plan).header["lanes"]
    result = deploy_plan(
        plan,
        load_inventory(fleet.inventory()).board("orin"),
        bench=True,
        iterations=2,
        run_args=CPU,
        results_dir=tmp_path / "results",
        timeouts=FAST,
    )
    assert result.plans == [] and result.sha256 == file_sha256(plan)
    report = result.bench or {}
    assert report["kind"] == "plan-group-bench"
    assert list(report["models"]) == [read_plan(plan).header["model"]]
    assert Path(result.bench_json or "").name == f"{plan.stem}.json"
