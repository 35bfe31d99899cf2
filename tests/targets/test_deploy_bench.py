"""``tandem deploy --bench`` on a fleet of three sshd boards running THIS checkout's tandem.

Each fake board's ``<remote_dir>/venv/bin/tandem`` is a shim that runs this checkout's
``python -m tandem``: the plan is built by ``tandem build`` here, copied over SSH, run there by
``tandem run PLAN --json --profile ... --backend cpu``, and the JSON and Chrome trace come back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.plan import read_plan
from partitioner.errors import TandemError
from targets.deploy import deploy_group, deploy_plan, summary_table
from targets.inventory import load_inventory
from tests.models import zoo_model_path
from tests.sshd import REPO, Fleet, fleet_of_boards
from tests.targets.test_deploy import FAST

TARGET = "orin-agx-64gb"


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


def tandem(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tandem", *argv], cwd=REPO, capture_output=True, text=True
    )


def build_plan(tmp_path: Path) -> Path:
    model = zoo_model_path("mobilenetv3-small", resolution=32)
    plan = tmp_path / "mnv3.plan"
    proc = tandem("build", str(model), "--target", TARGET, "-o", str(plan))
    assert proc.returncode == 0, proc.stderr
    read_plan(plan, expect_target=TARGET)
    return plan


def test_fleet_of_three_benchmarks_and_brings_results_back(fleet: Fleet, tmp_path: Path) -> None:
    plan = build_plan(tmp_path)
    for i in range(3):
        fleet.add(f"jetson{i}").install_tandem_shim()
    boards = load_inventory(fleet.inventory()).group("all_boards")
    results = deploy_group(
        plan,
        boards,
        concurrency=3,
        bench=True,
        iterations=3,
        run_args=["--backend", "cpu"],
        results_dir=tmp_path / "results",
        timeouts=FAST,
    )
    assert all(r.ok for r in results), summary_table(results)
    for r in results:
        assert r.bench is not None and r.bench_json and r.profile
        assert set(r.bench["outputs"]) and r.bench["latency_ms"]["median"] > 0
        assert json.loads(Path(r.bench_json).read_text(encoding="utf-8")) == r.bench
        trace = json.loads(Path(r.profile).read_text(encoding="utf-8"))
        events = trace["traceEvents"] if isinstance(trace, dict) else trace
        assert isinstance(events, list) and events
        assert Path(r.profile).parent == tmp_path / "results" / r.board
    assert summary_table(results).count(" ok ") == 3


def test_tune_on_a_board_without_a_gpu_says_so(fleet: Fleet, tmp_path: Path) -> None:
    plan = build_plan(tmp_path)
    fleet.add("nogpu").install_tandem_shim()
    board = load_inventory(fleet.inventory()).board("nogpu")
    with pytest.raises(TandemError, match="tuning on .* needs the board's GPU"):
        deploy_plan(plan, board, tune=True, results_dir=tmp_path / "results", timeouts=FAST)


def test_fetched_timing_caches_merge_lowest_time_wins(tmp_path: Path) -> None:
    from gpu_kernels.timing_cache import TimingCache
    from tandem.commands.deploy import merge_timing_caches

    a, b = TimingCache(), TimingCache()
    a.record("conv-sig", "sm_87", "mma_128x128", 0.30)
    a.record("conv-sig", "sm_87", "mma_64x64", 0.50)
    b.record("conv-sig", "sm_87", "mma_64x64", 0.20)
    b.record("other-sig", "sm_72", "direct", 1.0)
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    out = tmp_path / "merged.json"
    assert (
        merge_timing_caches(str(out), [str(tmp_path / "a.json"), None, str(tmp_path / "b.json")])
        == 2
    )
    merged = TimingCache.load(out)
    assert merged.best("conv-sig", "sm_87") == "mma_64x64"
    assert merged.times("conv-sig", "sm_87") == {"mma_128x128": 0.30, "mma_64x64": 0.20}
