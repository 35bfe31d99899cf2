"""Deploy against hostile paths, keys and servers: real sshd on loopback, real TCP listeners."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devices.plan import file_sha256
from targets.deploy import UPLOAD_LOCK, deploy_plan
from targets.inventory import load_inventory, with_overrides
from targets.ssh import (
    AuthError,
    BoardConnection,
    BoardError,
    SSHTimeoutError,
    Timeouts,
    TransientError,
)
from tests.sshd import REPO, Fleet, fleet_of_boards, interrupt, with_ctrl_c
from tests.targets.test_deploy import FAST, final_path, make_plan, parts_left


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP listener that completes handshakes (the kernel does) and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


@pytest.fixture
def resetting_port() -> Iterator[int]:
    """A TCP listener that accepts and resets every connection at once."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # linger 0: an RST, as a board whose sshd crashes mid-handshake

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    done.set()
    thread.join()
    listener.close()


def events_of(log: list[str]):
    return lambda board, event, details: log.append(event)


# ------------------------------------------------------------------ remote paths


def test_remote_dir_with_backslash_and_newline_deploys_then_skips(
    fleet: Fleet, tmp_path: Path
) -> None:
    """sha256sum escapes such names in its output; the hash must still be read right, both
    for the uploaded part and for the installed file (the skip check)."""
    board = fleet.add("odd")
    odd_dir = board.board_dir / "back\\slash\nnew line"
    entry = with_overrides(load_inventory(fleet.inventory()).board("odd"), remote_dir=str(odd_dir))
    plan = make_plan(tmp_path / "m\\x.plan")
    first = deploy_plan(plan, entry, timeouts=FAST)
    installed = odd_dir / "plans" / plan.name
    assert first.ok and first.uploaded and file_sha256(installed) == file_sha256(plan)
    again = deploy_plan(plan, entry, timeouts=FAST)
    assert again.ok and not again.uploaded  # the board's hash of the final name was understood


def test_nul_in_a_remote_path_is_refused_in_one_line(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add("nul")
    entry = with_overrides(load_inventory(fleet.inventory()).board("nul"), remote_dir="/tmp/a\0b")
    with pytest.raises(BoardError, match="NUL character") as info:
        deploy_plan(make_plan(tmp_path / "m.plan"), entry, timeouts=FAST, retries=0)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ keys: permanent errors


def _garbage_keys(folder: Path) -> dict[str, Path]:
    binary = folder / "binary_key"
    binary.write_bytes(bytes(range(256)) * 3)
    pem = folder / "pem_garbage_key"
    pem.write_text(
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a key\n-----END OPENSSH PRIVATE KEY-----\n"
    , encoding="utf-8")
    empty = folder / "empty_key"
    empty.write_bytes(b"")
    locked = folder / "locked_key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(locked)],
        check=True,
        capture_output=True,
    )
    return {"binary": binary, "pem": pem, "empty": empty, "locked": locked}


@pytest.mark.parametrize("kind", ["binary", "pem", "empty", "locked"])
def test_a_bad_key_file_is_refused_once_before_connecting(
    fleet: Fleet, tmp_path: Path, kind: str
) -> None:
    board = fleet.add("keyed")
    board.kill()  # nothing listens: a retried or network-bound failure would read differently
    key = _garbage_keys(tmp_path)[kind]
    entry = load_inventory(fleet.inventory(key=key)).board("keyed")
    log: list[str] = []
    start = time.monotonic()
    with pytest.raises(AuthError) as info:
        deploy_plan(
            make_plan(tmp_path / "m.plan"), entry, timeouts=FAST, backoff=1, progress=events_of(log)
        )
    assert time.monotonic() - start < 3 and "retry" not in log
    message = str(info.value)
    assert str(key) in message and "keyed" in message and "\n" not in message
    expected = "passphrase-protected" if kind == "locked" else "not a private key"
    assert expected in message


# ------------------------------------------------------------------ servers: transient errors


def test_reset_connections_are_retried(fleet: Fleet, tmp_path: Path, resetting_port: int) -> None:
    fleet.add("resets")
    entry = with_overrides(load_inventory(fleet.inventory()).board("resets"), port=resetting_port)
    log: list[str] = []
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        deploy_plan(
            make_plan(tmp_path / "m.plan"),
            entry,
            retries=2,
            backoff=0.01,
            timeouts=FAST,
            progress=events_of(log),
        )
    assert log.count("retry") == 2


def test_a_silent_server_is_given_up_within_the_total(
    fleet: Fleet, tmp_path: Path, silent_port: int
) -> None:
    fleet.add("hung")
    entry = with_overrides(load_inventory(fleet.inventory()).board("hung"), port=silent_port)
    plan = make_plan(tmp_path / "m.plan")
    start = time.monotonic()
    with pytest.raises(SSHTimeoutError, match="gave up after 1 attempts"):
        # Generous phases, many retries: only the total bounds the wait.
        deploy_plan(plan, entry, retries=9, timeouts=Timeouts(total=1.5))
    assert time.monotonic() - start < 3.5


def test_a_silent_server_through_the_cli_is_one_line(tmp_path: Path, silent_port: int) -> None:
    plan = make_plan(tmp_path / "m.plan")
    inventory = tmp_path / "inv.yaml"
    board = {"host": "127.0.0.1", "port": silent_port, "target": "orin-agx-64gb"}
    inventory.write_text(yaml.safe_dump({"boards": {"hung": board}}), encoding="utf-8")
    argv = ["deploy", str(plan), "--board", "hung", "--inventory", str(inventory)]
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", *argv, "--connect-timeout", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    took = time.monotonic() - start
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1, proc.stderr
    # progress lines name the board; then one error line; no paramiko traceback or log line
    assert all(line.startswith("hung: ") for line in lines[:-1]), proc.stderr
    assert re.match(r"tandem: error: hung \(.*within [\d.]+s", lines[-1]), lines[-1]
    assert took < 20  # was 4 attempts x 10 s, with a paramiko traceback for each


# ------------------------------------------------------------------ stale uploads

FOREIGN = ["notes.part", ".m.plan.part", ".x.DEADBEEF.part", ".x.1234567.part", "k.1234abcd.part"]


def test_killed_uploads_are_removed_by_the_next_deploy_and_nothing_else(
    fleet: Fleet, tmp_path: Path
) -> None:
    board = fleet.add("flaky")
    entry = load_inventory(fleet.inventory()).board("flaky")
    plan = make_plan(tmp_path / "big.plan", megabytes=24)
    killed: list[int] = []

    def kill_midway(name: str, event: str, details: dict) -> None:
        if event == "sent" and details["sent"] > 4 << 20 and not killed:
            killed.append(details["sent"])
            board.kill()

    with pytest.raises(TransientError):
        deploy_plan(plan, entry, retries=0, timeouts=FAST, progress=kill_midway)
    left = parts_left(board)
    assert len(left) == 1 and left[0].startswith(".big.plan.")  # what a killed upload leaves
    plans = board.board_dir / "plans"
    for name in FOREIGN:
        (plans / name).write_text("not ours", encoding="utf-8")
    (plans / ".d.0123abcd.part").mkdir()  # a folder of that shape is not ours either

    board.start()
    result = deploy_plan(plan, entry, timeouts=FAST)
    assert result.ok and file_sha256(final_path(board, plan)) == file_sha256(plan)
    assert sorted(parts_left(board)) == sorted([*FOREIGN, ".d.0123abcd.part"])

    # A deploy that finds the plan already there (and uploads nothing) sweeps as well.
    (plans / ".other.plan.0123abcd.part").write_bytes(b"x" * 1000)
    again = deploy_plan(plan, entry, timeouts=FAST)
    assert again.ok and not again.uploaded
    assert ".other.plan.0123abcd.part" not in parts_left(board)
    assert all((plans / name).read_text(encoding="utf-8") == "not ours" for name in FOREIGN)


def test_a_live_upload_is_never_swept(fleet: Fleet, tmp_path: Path) -> None:
    """Another deploy's upload in flight (it holds the board's upload lock shared) keeps its
    part; once it is gone, the next deploy removes the part."""
    if shutil.which("flock") is None:
        pytest.skip("flock(1) is not installed (util-linux)")
    board = fleet.add("busy")
    entry = load_inventory(fleet.inventory()).board("busy")
    plans = board.board_dir / "plans"
    plans.mkdir(parents=True)
    theirs = plans / ".their.plan.0123abcd.part"
    theirs.write_bytes(b"half an upload")
    # -o: flock itself holds the lock (not its child), so killing it releases the lock
    holder = subprocess.Popen(
        ["flock", "-o", "-s", str(board.board_dir / UPLOAD_LOCK), "sleep", "60"]
    )
    try:
        time.sleep(0.3)
        result = deploy_plan(make_plan(tmp_path / "m.plan"), entry, timeouts=FAST)
        assert result.ok and result.uploaded and theirs.exists()
    finally:
        holder.kill()
        holder.wait()
    deploy_plan(make_plan(tmp_path / "m.plan"), entry, timeouts=FAST)
    assert not theirs.exists()


def test_a_failed_download_leaves_no_file(fleet: Fleet, tmp_path: Path) -> None:
    fleet.add("src")
    entry = load_inventory(fleet.inventory()).board("src")
    local = tmp_path / "got" / "trace.json"
    local.parent.mkdir()
    with BoardConnection(entry, timeouts=FAST) as conn:
        with pytest.raises(BoardError, match="downloading /nonexistent/trace.json"):
            conn.get("/nonexistent/trace.json", local)
    assert list(local.parent.iterdir()) == []


# ------------------------------------------------------------------ Ctrl-C


def _inventory(tmp_path: Path, boards: dict[str, dict]) -> Path:
    path = tmp_path / "inv.yaml"
    doc = {"boards": boards, "groups": {"lab": sorted(boards)}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tandem", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=with_ctrl_c,
    )


def _wait_for(proc: subprocess.Popen, needle: str, count: int = 1) -> list[str]:
    seen: list[str] = []
    while sum(needle in line for line in seen) < count:
        line = proc.stderr.readline()
        assert line, f"{needle!r} never came: {''.join(seen)}"
        seen.append(line)
    return seen


def test_ctrl_c_during_a_group_deploy_exits_at_once(tmp_path: Path, silent_port: int) -> None:
    """Workers stuck on hung boards must not hold the exit (an executor would wait for them)."""
    plan = make_plan(tmp_path / "m.plan")
    board = {"host": "127.0.0.1", "port": silent_port, "target": "orin-agx-64gb"}
    inventory = _inventory(tmp_path, {"h1": board, "h2": board})
    proc = _start(
        ["deploy", str(plan), "--group", "lab", "--inventory", str(inventory)]
        + ["--connect-timeout", "60"]
    )
    try:
        _wait_for(proc, ": connect", count=2)
        time.sleep(0.3)
        sent = time.monotonic()
        _, err = interrupt(proc, 30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and time.monotonic() - sent < 5
    lines = err.strip().splitlines()
    assert lines[-1] == "tandem: interrupted" and "Traceback" not in err
    assert all(line.startswith(("h1: ", "h2: ")) for line in lines[:-1]), err


def test_ctrl_c_mid_upload_leaves_nothing_on_the_board(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("slow")
    plan = make_plan(tmp_path / "big.plan", megabytes=48)
    proc = _start(["deploy", str(plan), "--board", "slow", "--inventory", str(fleet.inventory())])
    try:
        _wait_for(proc, "slow: upload")
        _, err = interrupt(proc, 60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "tandem: interrupted"
    assert not final_path(board, plan).exists() and parts_left(board) == []
    assert os.listdir(board.board_dir / "plans") == []


@pytest.mark.parametrize(
    "flag, value",
    [("--retries", "-1"), ("--connect-timeout", "0"), ("--connect-timeout", "nan")]
    + [("--command-timeout", "-5")],
)
def test_deploy_numbers_out_of_range_are_usage_errors(tmp_path: Path, capsys, flag, value):
    """``--retries -1`` used to run no attempt at all and report the board as deployed."""
    from tandem.cli import main

    with pytest.raises(SystemExit) as info:
        main(["deploy", str(tmp_path / "m.plan"), "--board", "b", flag, value])
    assert info.value.code == 2 and flag in capsys.readouterr().err
