"""``board setup`` / ``board facts`` against real sshd boards, and the deploy/board CLI."""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tandem.cli import main
from tandem.commands import board as board_cmd
from tandem.commands import deploy as deploy_cmd
from targets.board import (
    BoardFacts,
    SetupError,
    board_facts,
    compare_facts,
    expected_facts,
    parse_l4t,
    parse_power_mode,
    setup_board,
)
from targets.inventory import load_inventory, with_overrides
from tests.sshd import REPO, Fleet, fleet_of_boards
from tests.targets.test_deploy import FAST, make_plan


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's wheel, built from a copy so the shared tree gets no build/ folder."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in ("tandem", "partitioner", "devices", "gpu_kernels", "dla_sim", "targets"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheelhouse")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
        + ["-w", str(out), str(src)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot build the project wheel here: {proc.stderr[-500:]}")
    return out


def base_python() -> str:
    """The interpreter under our venv: what a board's system ``python3`` would be."""
    return str(getattr(sys, "_base_executable", sys.executable))


def test_setup_installs_offline_into_a_venv(fleet: Fleet, wheelhouse: Path) -> None:
    sb = fleet.add("fresh")
    board = with_overrides(load_inventory(fleet.inventory()).board("fresh"), python=base_python())
    # Offline, a wheelhouse without the dependencies cannot work: pip says which one is missing.
    with pytest.raises(SetupError, match="installing tandem-rt on fresh .*(numpy|onnx|networkx)"):
        setup_board(board, wheelhouse, system_site_packages=False, timeouts=FAST)
    result = setup_board(board, wheelhouse, no_deps=True, system_site_packages=False, timeouts=FAST)
    assert result.version == "0.1.0"
    assert result.venv == str(sb.board_dir / "venv")
    assert (sb.board_dir / "venv" / "bin" / "tandem").exists()  # the console script is there
    assert result.uploaded == []  # the first attempt sent them; their hashes match
    assert sorted((sb.board_dir / "wheelhouse").iterdir()) == [
        sb.board_dir / "wheelhouse" / w.name for w in sorted(wheelhouse.glob("*.whl"))
    ]


def test_setup_with_an_empty_wheelhouse(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add("b")
    board = load_inventory(fleet.inventory()).board("b")
    with pytest.raises(SetupError, match="no wheels in .*pip wheel --no-deps"):
        setup_board(board, tmp_path, timeouts=FAST)


def test_facts_of_a_non_jetson_board_are_flagged(fleet: Fleet) -> None:
    fleet.add("x86")
    board = load_inventory(fleet.inventory()).board("x86")
    facts = board_facts(board, timeouts=FAST)
    assert facts.arch == platform.machine()
    assert facts.l4t is None and facts.jetpack is None  # no /etc/nv_tegra_release here
    by_fact = {c.fact: c for c in facts.checks}
    assert by_fact["arch"].expected == "aarch64" and by_fact["l4t"].actual == "absent"
    assert by_fact["l4t"].expected == expected_facts("orin-agx-64gb")["l4t"]
    assert not facts.ok
    matching = board_facts(board, expected={"arch": platform.machine()}, timeouts=FAST)
    assert matching.ok and [c.fact for c in matching.checks] == ["arch"]


NV_TEGRA = [
    (
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
        "DATE: Wed Jan  8 01:49:37 UTC 2025",
        "R36.4.3",
    ),
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64", "R35.4.1"),
    ("garbage", None),
]


@pytest.mark.parametrize("text,l4t", NV_TEGRA)
def test_parse_l4t(text: str, l4t: str | None) -> None:
    assert parse_l4t(text) == l4t


@pytest.mark.parametrize(
    "text,mode", [("NV Power Mode: MAXN\n0", "MAXN"), ("NV Power Mode: 15W\n2", "15W"), ("", None)]
)
def test_parse_power_mode(text: str, mode: str | None) -> None:
    assert parse_power_mode(text) == mode


@pytest.mark.parametrize(
    "actual,ok",
    [
        ({"arch": "aarch64", "l4t": "R36.4.3", "jetpack": "6.2+b77", "power_mode": "MAXN"}, True),
        ({"arch": "aarch64", "l4t": "R36.4.3", "jetpack": "6.2.1", "power_mode": "15W"}, True),
        ({"arch": "aarch64", "l4t": "R35.4.1", "jetpack": "5.1.2", "power_mode": "MAXN"}, False),
        ({"arch": "aarch64", "l4t": "R36.4.3", "jetpack": "6.20", "power_mode": "MAXN"}, False),
        ({"arch": "aarch64", "l4t": "R36.4.3", "jetpack": "6.2", "power_mode": "99W"}, False),
    ],
)
def test_compare_facts_against_the_catalog(actual: dict, ok: bool) -> None:
    expected = expected_facts("orin-agx-64gb")
    assert expected["l4t"] and expected["jetpack"]  # the catalog file has them
    # CUDA, TensorRT and the DLA cores as the catalog has them; the rows vary the rest.
    same = {"cuda": f"{expected['cuda']}.68", "tensorrt": f"{expected['tensorrt']}.0.30-1"}
    facts = BoardFacts("b", "orin-agx-64gb", **same, dla_cores=2, **actual)
    expected = {**expected, "l4t": "R36.4.3", "jetpack": "6.2"}
    assert all(c.ok for c in compare_facts(facts, expected)) is ok


def cli(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tandem")
    module.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_deploy_cli_group_table_and_json(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b", "c"):
        fleet.add(name)
    fleet.boards[2].kill()
    inventory = fleet.inventory()
    plan = make_plan(tmp_path / "m.plan")
    argv = ["deploy", str(plan), "--group", "all_boards", "--inventory", str(inventory)]
    rc = cli(deploy_cmd, argv + ["--retries", "0", "--concurrency", "3"])
    out, err = capsys.readouterr()
    assert rc == 1 and "1 of 3 boards failed: c" in err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["Board", "Host", "Target", "Status"]  # the one table style
    assert set(lines[1]) == {"-", " "}
    assert [line.split()[3] for line in lines[2:]] == ["ok", "ok", "FAILED"]
    rc = cli(deploy_cmd, argv[:2] + ["--board", "a", "--inventory", str(inventory), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0 and doc["boards"][0]["ok"] and doc["boards"][0]["uploaded"] is False


def test_board_facts_cli_json(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.add("f")
    rc = cli(board_cmd, ["board", "facts", "f", "--inventory", str(fleet.inventory()), "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert rc == 1 and doc["arch"] == platform.machine() and doc["ok"] is False
    assert "does not match target orin-agx-64gb" in captured.err


def test_single_board_error_is_one_line_through_the_real_cli(
    fleet: Fleet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet.add("nx", target="xavier-nx")
    plan = make_plan(tmp_path / "orin.plan", target="orin-agx-64gb")
    argv = ["deploy", str(plan), "--board", "nx", "--inventory", str(fleet.inventory())]
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 1 and err.startswith("tandem: error: plan ") and "\n" not in err
    assert "built for target 'orin-agx-64gb' but board nx" in err
