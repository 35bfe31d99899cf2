"""Real OpenSSH ``sshd`` servers on loopback, each playing one Jetson board.

``SshdBoard`` runs ``/usr/sbin/sshd -D -e -f <generated config>`` as the current user on a free
port, with its own ed25519 host key, an ``authorized_keys`` in its temp dir, and a board
directory (``remote_dir`` in the inventory) so every fake board is isolated. The ``fleet``
fixture hands out boards plus the client key and an inventory file describing them.

As root, sshd needs its privilege-separation directory (``/run/sshd``); the fixture creates it
when missing. Tests using these fixtures skip with a reason when ``sshd`` is not installed
(``make test`` installs it through ``scripts/ensure-system-deps.sh``).
"""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

SSHD = "/usr/sbin/sshd"
REPO = Path(__file__).resolve().parents[1]


def sshd_missing_reason() -> str | None:
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (apt-get install openssh-server, or `make system-deps`)"
    if subprocess.run(["ssh-keygen", "-?"], capture_output=True).returncode == 127:
        return "ssh-keygen is not installed (apt-get install openssh-client)"
    return None


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_ctrl_c() -> None:
    """``preexec_fn`` of a child that a test interrupts: SIGINT as a terminal gives it. A suite
    started in the background (``make test &``, nohup) runs with SIGINT ignored, every child
    inherits that, and Python then installs no KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt(proc: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Send SIGINT to ``proc`` and return its (stdout, stderr); if it has not ended after
    ``timeout`` s, fail naming its signal state (/proc: blocked, ignored and caught masks, run
    state), which tells a lost or ignored signal from a slow exit."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            with open(f"/proc/{proc.pid}/status", encoding="utf-8") as f:
                state = " ".join(
                    line.strip() for line in f if line.startswith(("State", "SigBlk", "SigIgn",
                                                                   "SigCgt", "Threads"))
                )
        except OSError as err:
            state = f"(no /proc status: {err})"
        pytest.fail(f"no exit {timeout:g} s after SIGINT; the process: {state}", pytrace=False)


def _descendants(pid: int) -> list[int]:
    """Every live process whose parent chain leads to ``pid`` (sshd's per-connection children)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], [pid]
    while frontier:
        current = frontier.pop()
        children = [p for p, pp in parents.items() if pp == current]
        out += children
        frontier += children
    return out


@dataclass
class SshdBoard:
    name: str
    root: Path
    client_key: Path
    port: int = field(default_factory=free_port)
    target: str = "orin-agx-64gb"
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.board_dir.mkdir(exist_ok=True)
        self.host_key = keygen(self.root / "ssh_host_ed25519_key", f"{self.name}-host")
        pub = Path(f"{self.client_key}.pub").read_text(encoding='utf-8')
        (self.root / "authorized_keys").write_text(pub, encoding="utf-8")
        self.log = self.root / "sshd.log"
        self.config = self.root / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "StrictModes no",
                    "UsePAM no",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "Subsystem sftp internal-sftp",
                    "MaxStartups 50",
                    "LogLevel ERROR",
                    "",
                ]
            )
        , encoding="utf-8")

    @property
    def board_dir(self) -> Path:
        """What the inventory calls ``remote_dir``: this board's Tandem home."""
        return self.root / "board"

    @property
    def host_key_pub(self) -> str:
        return Path(f"{self.host_key}.pub").read_text(encoding='utf-8').split()[1]

    def start(self) -> SshdBoard:
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log.read_text(encoding="utf-8")
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-2.0"):
                        return self
            except OSError:
                time.sleep(0.02)
        log = self.log.read_text(encoding="utf-8")
        raise RuntimeError(f"sshd on port {self.port} did not come up: {log}")

    def kill(self) -> None:
        """SIGKILL the listener and every session it forked: the board dies mid-whatever."""
        if self.proc is None:
            return
        victims = _descendants(self.proc.pid) + [self.proc.pid]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def install_tandem_shim(self) -> Path:
        """``<board>/venv/bin/tandem`` running THIS checkout's tandem: a real run, not a mock."""
        shim = self.board_dir / "venv" / "bin" / "tandem"
        shim.parent.mkdir(parents=True, exist_ok=True)
        python = REPO / ".venv" / "bin" / "python"
        if not python.exists():
            python = Path(sys.executable)
        shim.write_text(
            "#!/bin/sh\n"
            f"cd {REPO}\n"
            f'exec {python} -m tandem "$@"\n'
        , encoding="utf-8")  # fmt: skip
        shim.chmod(0o755)
        return shim

    def inventory_entry(self, key: Path, known_hosts: Path) -> dict[str, object]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": getpass.getuser(),
            "key": str(key),
            "target": self.target,
            "remote_dir": str(self.board_dir),
            "known_hosts": str(known_hosts),
            "agent": False,
        }

    def known_hosts_line(self) -> str:
        kind, b64 = Path(f"{self.host_key}.pub").read_text(encoding='utf-8').split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"


@dataclass
class Fleet:
    root: Path
    client_key: Path
    known_hosts: Path
    boards: list[SshdBoard] = field(default_factory=list)

    def add(self, name: str, target: str = "orin-agx-64gb", trusted: bool = True) -> SshdBoard:
        board = SshdBoard(name, self.root / name, self.client_key, target=target).start()
        if trusted:
            with open(self.known_hosts, "a") as f:
                f.write(board.known_hosts_line())
        self.boards.append(board)
        return board

    def inventory(
        self, groups: dict[str, list[str]] | None = None, key: Path | None = None
    ) -> Path:
        doc = {
            "boards": {
                b.name: b.inventory_entry(key or self.client_key, self.known_hosts)
                for b in self.boards
            },
            "groups": groups or {"all_boards": [b.name for b in self.boards]},
        }
        path = self.root / "inventory.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return path

    def stop(self) -> None:
        for board in self.boards:
            board.kill()


def fleet_of_boards(tmp_path: Path) -> Iterator[Fleet]:
    """Body of a ``fleet`` fixture: ``yield from fleet_of_boards(tmp_path)``; stops every sshd."""
    reason = sshd_missing_reason()
    if reason:
        pytest.skip(f"deploy test needs a real sshd: {reason}")
    keys = tmp_path / "client"
    keys.mkdir()
    fleet = Fleet(tmp_path, keygen(keys / "id_ed25519", "tandem-test"), tmp_path / "known_hosts")
    fleet.known_hosts.touch()
    try:
        yield fleet
    finally:
        fleet.stop()
