"""Deploy against real OpenSSH sshd servers on loopback (tests/sshd.py); no mocks."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from devices.plan import Plan, file_sha256, new_header, write_plan
from targets.deploy import (
    BenchError,
    HashMismatchError,
    TargetMismatchError,
    deploy_group,
    deploy_plan,
    summary_table,
)
from targets.inventory import load_inventory, with_overrides
from targets.ssh import (
    AuthError,
    BoardConnection,
    HostKeyError,
    SSHTimeoutError,
    Timeouts,
    TransientError,
)
from tests.sshd import Fleet, fleet_of_boards, keygen

FAST = Timeouts(connect=3, banner=5, auth=5, channel=5, command=60)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


def make_plan(path: Path, target: str = "orin-agx-64gb", megabytes: float = 0.05) -> Path:
    plan = Plan(new_header(target, "fp16", metadata={"made_by": "test_deploy"}))
    rng = np.random.default_rng(1)
    plan.add_array("w", rng.standard_normal(int(megabytes * (1 << 20)) // 4).astype(np.float32))
    return write_plan(plan, path)


def final_path(board, plan: Path) -> Path:
    return board.board_dir / "plans" / plan.name


def parts_left(board) -> list[str]:
    plans = board.board_dir / "plans"
    return [p.name for p in plans.iterdir() if p.name.endswith(".part")] if plans.exists() else []


def test_fleet_deploys_in_parallel_then_skips_unchanged(fleet: Fleet, tmp_path: Path) -> None:
    boards = [fleet.add(f"orin{i}") for i in range(3)]
    inv = load_inventory(fleet.inventory())
    plan = make_plan(tmp_path / "model.plan")
    results = deploy_group(plan, inv.group("all_boards"), concurrency=3, timeouts=FAST)
    assert [r.board for r in results] == ["orin0", "orin1", "orin2"]
    assert all(r.ok and r.uploaded for r in results), summary_table(results)
    for board in boards:
        assert file_sha256(final_path(board, plan)) == file_sha256(plan)
        assert parts_left(board) == []
    again = deploy_group(plan, inv.group("all_boards"), concurrency=3, timeouts=FAST)
    assert all(r.ok and not r.uploaded for r in again), summary_table(again)
    table = summary_table(again)
    assert table.count("unchanged") == 3 and "FAILED" not in table


def test_unknown_host_key_refused_then_tofu_then_changed_key_refused(
    fleet: Fleet, tmp_path: Path
) -> None:
    board = fleet.add("stranger", trusted=False)
    inv = load_inventory(fleet.inventory())
    plan = make_plan(tmp_path / "m.plan")
    with pytest.raises(HostKeyError) as info:
        deploy_plan(plan, inv.board("stranger"), timeouts=FAST)
    message = str(info.value)
    assert "is not in" in message and "--accept-new-host-key" in message and "SHA256:" in message
    assert not (board.board_dir / "plans").exists()  # refused before anything was written

    result = deploy_plan(plan, inv.board("stranger"), accept_new_host_key=True, timeouts=FAST)
    assert result.ok and result.uploaded
    # recorded, first use only
    assert board.host_key_pub in fleet.known_hosts.read_text(encoding="utf-8")

    # The board is "reflashed": a new host key on the same address must be refused, even with
    # --accept-new-host-key (that accepts unknown hosts, never changed ones).
    board.kill()
    for suffix in ("", ".pub"):
        Path(f"{board.host_key}{suffix}").unlink()
    keygen(board.host_key, "reflashed")
    board.start()
    with pytest.raises(HostKeyError, match="CHANGED.*ssh-keygen -R"):
        deploy_plan(plan, inv.board("stranger"), accept_new_host_key=True, timeouts=FAST)


def test_wrong_key_is_an_authentication_error(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add("locked")
    other = keygen(tmp_path / "other_key", "not-authorised")
    inv = load_inventory(fleet.inventory(key=other))
    start = time.monotonic()
    with pytest.raises(AuthError) as info:
        deploy_plan(make_plan(tmp_path / "m.plan"), inv.board("locked"), timeouts=FAST)
    assert time.monotonic() - start < 10  # auth errors are not retried
    message = str(info.value)
    assert "authentication to locked" in message and str(other) in message
    assert "authorized_keys" in message


def test_sshd_killed_mid_upload_leaves_no_final_file_and_retry_succeeds(
    fleet: Fleet, tmp_path: Path
) -> None:
    board = fleet.add("flaky")
    inv = load_inventory(fleet.inventory())
    plan = make_plan(tmp_path / "big.plan", megabytes=24)
    killed = []

    def kill_midway(name: str, event: str, details: dict) -> None:
        if event == "sent" and details["sent"] > 4 << 20 and not killed:
            killed.append(details["sent"])
            board.kill()

    with pytest.raises(TransientError, match="gave up after 1 attempts"):
        deploy_plan(plan, inv.board("flaky"), retries=0, timeouts=FAST, progress=kill_midway)
    assert killed and killed[0] < plan.stat().st_size
    assert not final_path(board, plan).exists()

    board.start()
    result = deploy_plan(plan, inv.board("flaky"), timeouts=FAST)
    assert result.ok and result.uploaded
    assert file_sha256(final_path(board, plan)) == file_sha256(plan)


def test_board_restarting_mid_upload_is_retried_with_backoff(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("rebooting")
    inv = load_inventory(fleet.inventory())
    plan = make_plan(tmp_path / "big.plan", megabytes=16)
    events: list[str] = []

    def restart_midway(name: str, event: str, details: dict) -> None:
        events.append(event)
        if event == "sent" and details["sent"] > 2 << 20 and "retry" not in events:
            board.restart()  # connection dropped; the board is back for the next attempt

    result = deploy_plan(
        plan,
        inv.board("rebooting"),
        retries=2,
        backoff=0.05,
        timeouts=FAST,
        progress=restart_midway,
    )
    assert result.ok and result.attempts == 2 and "retry" in events
    assert file_sha256(final_path(board, plan)) == file_sha256(plan)


def test_corrupted_upload_is_caught_by_the_board_side_hash(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("bitrot")
    inv = load_inventory(fleet.inventory())
    plan = make_plan(tmp_path / "m.plan", megabytes=1)

    def corrupt(limit: int):
        done = []

        def hook(name: str, event: str, details: dict) -> None:
            if event == "uploaded" and len(done) < limit:
                # details["path"] is the board-side temp file; flip one byte of it on "disk".
                part = Path(details["path"])
                data = bytearray(part.read_bytes())
                data[len(data) // 2] ^= 0xFF
                part.write_bytes(bytes(data))
                done.append(part.name)

        return hook, done

    hook, done = corrupt(limit=99)
    with pytest.raises(HashMismatchError, match="upload was corrupted") as info:
        deploy_plan(
            plan, inv.board("bitrot"), retries=1, backoff=0.01, timeouts=FAST, progress=hook
        )
    assert "gave up after 2 attempts" in str(info.value) and len(done) == 2
    assert not final_path(board, plan).exists() and parts_left(board) == []

    hook, done = corrupt(limit=1)  # corrupted once, the retry gets through
    result = deploy_plan(
        plan, inv.board("bitrot"), retries=1, backoff=0.01, timeouts=FAST, progress=hook
    )
    assert result.attempts == 2 and file_sha256(final_path(board, plan)) == file_sha256(plan)

    # Bit rot in the installed copy: the next deploy sees the hash differ and re-uploads.
    installed = final_path(board, plan)
    data = bytearray(installed.read_bytes())
    data[100] ^= 1
    installed.write_bytes(bytes(data))
    result = deploy_plan(plan, inv.board("bitrot"), timeouts=FAST)
    assert result.uploaded and file_sha256(installed) == file_sha256(plan)


def test_one_dead_board_does_not_stop_the_group(fleet: Fleet, tmp_path: Path) -> None:
    boards = [fleet.add(f"n{i}") for i in range(4)]
    inv = load_inventory(fleet.inventory())
    boards[1].kill()
    plan = make_plan(tmp_path / "m.plan")
    start = time.monotonic()
    results = deploy_group(
        plan, inv.group("all_boards"), concurrency=2, retries=1, backoff=0.05, timeouts=FAST
    )
    assert time.monotonic() - start < 20
    by_name = {r.board: r for r in results}
    assert [r.ok for r in results] == [True, False, True, True], summary_table(results)
    assert "refused" in (by_name["n1"].error or "")
    for board in (boards[0], boards[2], boards[3]):
        assert file_sha256(final_path(board, plan)) == file_sha256(plan)
    table = summary_table(results)
    assert "FAILED" in table and table.count(" ok ") == 3


def test_target_mismatch_is_refused_before_connecting(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("xnx", target="xavier-nx")
    inv = load_inventory(fleet.inventory())
    board.kill()  # nobody is listening: a connection attempt would fail differently
    plan = make_plan(tmp_path / "orin.plan", target="orin-agx-64gb")
    with pytest.raises(TargetMismatchError) as info:
        deploy_plan(plan, inv.board("xnx"), timeouts=FAST)
    message = str(info.value)
    assert "built for target 'orin-agx-64gb'" in message and "'xavier-nx'" in message
    assert "--target xavier-nx" in message and "nothing was uploaded" in message
    assert not (board.board_dir / "plans").exists()


def test_hostile_file_names_are_quoted_not_executed(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("quoted")
    inv = load_inventory(fleet.inventory())
    canary = "PWNED_BY_H7_TEST"  # relative: a shell that ran it would create it in the home dir
    name = f"m; touch {canary} $(touch {canary}) '\"`touch {canary}`.plan"
    plan = make_plan(tmp_path / name)
    result = deploy_plan(plan, inv.board("quoted"), timeouts=FAST)
    assert result.ok and (board.board_dir / "plans" / name).exists()
    assert not (Path.home() / canary).exists()
    assert not any(canary == p.name for p in board.root.rglob("*"))


def test_connection_is_lazy_idempotent_and_runs_argv(fleet: Fleet) -> None:
    fleet.add("plain")
    board = load_inventory(fleet.inventory()).board("plain")
    conn = BoardConnection(board, timeouts=FAST)
    assert not conn.is_open  # nothing happens until first use
    with conn:
        result = conn.run(["printf", "%s|", "a b", "$HOME", "*"])
        assert result.stdout == "a b|$HOME|*|" and result.rc == 0
        assert conn.run(["sh", "-c", "exit 3"], check=False).rc == 3
        digest = hashlib.sha256(b"x").hexdigest()
        assert conn.sha256("/nonexistent/file") is None and len(digest) == 64
    conn.close()
    conn.close()
    assert not conn.is_open


def test_silent_server_hits_the_banner_timeout(fleet: Fleet, tmp_path: Path) -> None:
    """A TCP peer that never speaks SSH (a hung board) fails within the banner timeout."""
    board = fleet.add("hung")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)  # the kernel completes the handshake; nobody ever answers
    try:
        entry = load_inventory(fleet.inventory()).board("hung")
        silent = with_overrides(entry, port=listener.getsockname()[1])
        quick = Timeouts(connect=2, banner=1, auth=2, channel=2, command=5)
        start = time.monotonic()
        with pytest.raises(SSHTimeoutError, match="banner within 1s"):
            BoardConnection(silent, timeouts=quick).open()
        assert time.monotonic() - start < 5
    finally:
        listener.close()
    assert board.proc is not None


def test_agent_authentication(fleet: Fleet, tmp_path: Path) -> None:
    """No key file named: the key comes from a real ssh-agent."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.skip("ssh-agent/ssh-add are not installed (openssh-client)")
    fleet.add("agent")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.01)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        subprocess.run(["ssh-add", str(fleet.client_key)], env=env, check=True, capture_output=True)
        board = with_overrides(
            load_inventory(fleet.inventory()).board("agent"), key=None, agent=True
        )
        old = os.environ.get("SSH_AUTH_SOCK")
        os.environ["SSH_AUTH_SOCK"] = str(sock)
        try:
            with BoardConnection(board, timeouts=FAST) as conn:
                assert conn.run(["echo", "via-agent"]).stdout == "via-agent\n"
        finally:
            if old is None:
                os.environ.pop("SSH_AUTH_SOCK", None)
            else:
                os.environ["SSH_AUTH_SOCK"] = old
    finally:
        agent.kill()
        agent.wait()


def test_bench_without_tandem_on_the_board_says_so(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add("bare")  # no venv on this board: `board setup` was never run
    inv = load_inventory(fleet.inventory())
    with pytest.raises(BenchError, match=r"`tandem run` on bare .* exited 127") as info:
        deploy_plan(
            make_plan(tmp_path / "m.plan"),
            inv.board("bare"),
            bench=True,
            results_dir=tmp_path / "results",
            timeouts=FAST,
        )
    assert "venv/bin/tandem" in str(info.value)
