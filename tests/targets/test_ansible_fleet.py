"""The tandem.jetson collection's example playbook, driven by real ``ansible-playbook`` against
five real OpenSSH ``sshd`` boards on loopback (tests/sshd.py) that run THIS checkout's tandem.

Three boards are orin-agx-64gb and two orin-nano-8gb, so the playbook builds two plans on the
controller. One board's ``tandem`` kills its own sshd (listener and session) the first time it
runs: the board dies mid-benchmark. The report then lists four benchmarks and that board's
failure with its reason; a second run, with the board back, changes nothing on any board.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.sshd import REPO, Fleet, SshdBoard, fleet_of_boards
from tests.targets.test_deploy_bench import build_plan

BIN = Path(sys.executable).parent
PLAYBOOK = "tandem.jetson.fleet"
TARGETS = {
    "agx1": "orin-agx-64gb",
    "agx2": "orin-agx-64gb",
    "agx3": "orin-agx-64gb",
    "nano1": "orin-nano-8gb",
    "nano2": "orin-nano-8gb",
}
DOOMED = "agx3"

pytestmark = pytest.mark.skipif(
    not (BIN / "ansible-playbook").exists(),
    reason=f"ansible-core is not installed in {BIN} (it is in requirements/test.txt)",
)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


def install_dying_shim(board: SshdBoard) -> None:
    """The board's ``tandem``: the first call SIGKILLs the board's sshd listener and every sshd
    process above it (its session): the board vanishes mid-run. Later calls run tandem."""
    normal = board.install_tandem_shim()
    real = normal.with_name("tandem-real")
    normal.rename(real)
    mark = board.root / "died-once"
    assert board.proc is not None
    killer = (
        "import os, signal\n"
        f"victims = [{board.proc.pid}]\n"
        "pid = os.getppid()\n"
        "while pid > 1:\n"
        "    if open(f'/proc/{pid}/comm').read().startswith('sshd'):\n"
        "        victims.append(pid)\n"
        "    pid = int(open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()[1])\n"
        "for pid in victims:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
    )
    normal.write_text(
        "#!/bin/sh\n"
        f'if [ ! -e {mark} ]; then touch {mark}; exec {sys.executable} -c "{killer}"; fi\n'
        f'exec {real} "$@"\n',
        encoding="utf-8",
    )
    normal.chmod(0o755)


def ansible_inventory(fleet: Fleet, path: Path) -> Path:
    hosts = {
        b.name: {
            "ansible_host": "127.0.0.1",
            "ansible_port": b.port,
            "ansible_user": getpass.getuser(),
            "ansible_ssh_private_key_file": str(fleet.client_key),
            "tandem_target": b.target,
            "tandem_remote_dir": str(b.board_dir),
            "tandem_known_hosts": str(fleet.known_hosts),
        }
        for b in fleet.boards
    }
    doc = {"all": {"children": {"jetsons": {"hosts": hosts}}}}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def ansible_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "ansible-home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ANSIBLE_") and k not in ("SSH_AUTH_SOCK",)
    }
    env.update(
        PYTHONPATH=str(REPO),  # Tandem on the controller: this checkout
        ANSIBLE_COLLECTIONS_PATH=str(REPO),  # the collection: ./ansible_collections/tandem
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_FORKS="5",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_CONFIG=str(tmp_path / "no-ansible.cfg"),  # no stray ansible.cfg applies
    )
    env.update(extra)
    return env


def ansible(tmp_path: Path, *argv: str, tool: str = "ansible-playbook", **env: str):
    return subprocess.run(
        [str(BIN / tool), *argv],
        cwd=tmp_path,
        env=ansible_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=300,
    )


def recap(stdout: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP: host -> {ok, changed, unreachable, failed, skipped, rescued, ignored}."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", stdout, re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


def test_playbook_deploys_benchmarks_and_reports_a_fleet_with_a_dead_board(
    fleet: Fleet, tmp_path: Path
) -> None:
    from tests.models import zoo_model_path

    model = zoo_model_path("mobilenetv3-small", resolution=32)
    for name, target in TARGETS.items():
        board = fleet.add(name, target=target)
        if name == DOOMED:
            install_dying_shim(board)
        else:
            board.install_tandem_shim()
    inventory = ansible_inventory(fleet, tmp_path / "hosts.yml")
    out = tmp_path / "fleet"
    extra = {
        "tandem_model": str(model),
        "fleet_dir": str(out),
        "tandem_cli": [sys.executable, "-m", "tandem"],
        "tandem_backend": "cpu",
        "tandem_iterations": 2,
        "tandem_retries": 1,
        # The loopback boards are x86 hosts without L4T: their facts are read and reported,
        # and do not match their targets.
        "tandem_require_matching_facts": False,
    }
    run = ansible(tmp_path, "-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra))
    assert run.returncode == 2, run.stdout[-4000:] + run.stderr[-2000:]
    assert sorted(p.name for p in (out / "plans").iterdir()) == [
        "mobilenetv3-small_b1_r32_op17_s0-orin-agx-64gb.plan",
        "mobilenetv3-small_b1_r32_op17_s0-orin-nano-8gb.plan",
    ]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["benchmarks"] == 4
    [failure] = report["failures"]
    assert failure["board"] == DOOMED and failure["step"] == "bench"
    assert failure["reason"].startswith(f"unreachable: connection to {DOOMED} ")
    assert "gave up after 2 attempts" in failure["reason"]
    rows = {r["board"]: r for r in report["boards"]}
    for name, target in TARGETS.items():
        row = rows[name]
        assert row["target"] == target and row["deployed"] == "uploaded"
        assert row["facts_ok"] is False  # x86 loopback boards are no Jetsons: said, not hidden
        if name == DOOMED:
            assert not row["ok"] and row["measured"] is None
            continue
        assert row["ok"]
        # cpu backend on an x86 host: timed on the board, but not on Jetson hardware.
        assert row["measured"]["source"] == "emulated" and row["measured"]["median_ms"] > 0
        assert set(row["measured"]["backends"].values()) <= {"cpu", "dla-emulator"}
        assert row["predicted"]["source"] == "predicted" and row["predicted"]["total_ms"] > 0
        stem = f"mobilenetv3-small_b1_r32_op17_s0-{target}"
        fetched = json.loads((out / "results" / name / f"{stem}.json").read_text("utf-8"))
        assert fetched["latency_ms"]["median"] == row["measured"]["median_ms"]
    table = (out / "report.txt").read_text(encoding="utf-8")
    assert table.splitlines()[-1] == "4 benchmarked, 1 failed, 5 boards"
    assert re.search(rf"^{DOOMED}\s.*FAILED at bench: unreachable: ", table, re.M)
    assert "1 of 5 boards failed" in run.stdout
    first = recap(run.stdout)
    assert {first[n]["changed"] for n in TARGETS} == {1}  # each board got its plan
    assert first[DOOMED]["ignored"] == 1 and first[DOOMED]["unreachable"] == 0

    fleet.boards[[b.name for b in fleet.boards].index(DOOMED)].start()  # the board is back
    # The plans are kept this time (the default rebuilds them: same bytes, only slower).
    extra["tandem_reuse_plans"] = True
    again = ansible(tmp_path, "-i", str(inventory), PLAYBOOK, "-e", json.dumps(extra))
    assert again.returncode == 0, again.stdout[-4000:] + again.stderr[-2000:]
    second = recap(again.stdout)
    assert {second[n]["changed"] for n in TARGETS} == {0}, again.stdout[-3000:]
    assert second["localhost"]["changed"] == 1  # only the report was written
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["benchmarks"] == 5 and report["failures"] == []
    assert {r["deployed"] for r in report["boards"]} == {"unchanged"}

    # A plan built for another target is refused before anything is sent.
    nano_plan = out / "plans" / "mobilenetv3-small_b1_r32_op17_s0-orin-nano-8gb.plan"
    refused = ansible(
        tmp_path,
        "-i",
        str(inventory),
        "agx1",
        "-m",
        "tandem.jetson.plan_deploy",
        "-a",
        f"plan={nano_plan}",
        tool="ansible",
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert (
        "is built for target 'orin-nano-8gb' but board agx1" in refused.stdout
        and "nothing was uploaded" in refused.stdout
    )
    assert not (fleet.boards[0].board_dir / "plans" / nano_plan.name).exists()


def test_host_keys_follow_ansibles_host_key_checking(fleet: Fleet, tmp_path: Path) -> None:
    board = fleet.add("stranger", trusted=False)
    inventory = ansible_inventory(fleet, tmp_path / "hosts.yml")
    # The key file's path comes from Ansible vault (host_vars beside the inventory): the
    # plugin gets what Ansible decrypted, or the board would refuse the login.
    doc = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    host = doc["all"]["children"]["jetsons"]["hosts"]["stranger"]
    key = host.pop("ansible_ssh_private_key_file")
    inventory.write_text(yaml.safe_dump(doc), encoding="utf-8")
    secret = tmp_path / "vault-pass"
    secret.write_text("not-a-real-secret\n", encoding="utf-8")
    sealed = ansible(
        tmp_path,
        "encrypt_string",
        "--vault-password-file",
        str(secret),
        "--name",
        "ansible_ssh_private_key_file",
        key,
        tool="ansible-vault",
    )
    assert sealed.returncode == 0 and "$ANSIBLE_VAULT" in sealed.stdout, sealed.stderr
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "host_vars" / "stranger.yml").write_text(sealed.stdout, encoding="utf-8")
    plan = build_plan(tmp_path)
    args = ["-i", str(inventory), "stranger", "-m", "tandem.jetson.plan_deploy"]
    args += ["-a", f"plan={plan}", "--vault-password-file", str(secret)]
    refused = ansible(tmp_path, *args, tool="ansible")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "host key of [127.0.0.1]:" in refused.stdout and "is not in" in refused.stdout
    assert not (board.board_dir / "plans").exists()
    assert fleet.known_hosts.read_text(encoding="utf-8") == ""

    # host_key_checking off: the first key seen is recorded (OpenSSH's accept-new), not
    # skipped; a board presenting another key later is still refused.
    trusted = ansible(tmp_path, *args, tool="ansible", ANSIBLE_HOST_KEY_CHECKING="False")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert '"changed": true' in trusted.stdout
    assert "host_key_checking is off: trusted the new ssh-ed25519 host key of [127.0.0.1]:" in (
        trusted.stdout + trusted.stderr
    )
    assert board.known_hosts_line().split()[2] in fleet.known_hosts.read_text(encoding="utf-8")
    board.kill()
    board.host_key.unlink()
    Path(f"{board.host_key}.pub").unlink()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(board.host_key)], check=True
    )
    board.start()
    changed = ansible(tmp_path, *args, tool="ansible", ANSIBLE_HOST_KEY_CHECKING="False")
    assert changed.returncode != 0 and "CHANGED" in changed.stdout, changed.stdout
