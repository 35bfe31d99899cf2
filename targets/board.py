"""Board bring-up and identity: ``tandem board setup`` and ``tandem board facts``.

``setup_board`` installs Tandem on a board with no internet: the wheels of a local wheelhouse go
up (verified, atomic, like plans), a venv is made there and ``pip install --no-index
--find-links`` fills it. ``board_facts`` reads what the board says it is (``uname -m``,
``/etc/nv_tegra_release``, ``dpkg-query -W nvidia-jetpack``, ``nvpmodel -q``, CUDA's
``version.json``, the ``tensorrt`` package, TensorRT's DLA core count) and checks it against its
catalog target (``targets/catalog.py``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.dla_export import generation_for
from devices.plan import file_sha256
from partitioner.errors import ConfigError, InputError, TandemError
from targets.deploy import Progress, emit, upload_verified
from targets.inventory import Board
from targets.ssh import BoardConnection, BoardError, Timeouts

PACKAGE = "tandem-rt"


class SetupError(BoardError):
    """Installing Tandem on a board failed."""


# ------------------------------------------------------------------------------------ setup


@dataclass
class SetupResult:
    board: str
    venv: str
    wheels: list[str]
    uploaded: list[str]
    version: str
    seconds: float = 0.0


def build_wheelhouse(
    dest: str | Path,
    *,
    project_dir: str | Path = ".",
    with_dependencies: bool = True,
    platform: str = "manylinux2014_aarch64",
    python_version: str = "3.10",
    python: str = sys.executable,
) -> list[Path]:
    """Fill ``dest`` with Tandem's wheel and (optionally) its dependencies for the board.

    Runs on the workstation, which has the internet: ``pip wheel --no-deps`` for the project,
    ``pip download --only-binary=:all: --platform ... --python-version ...`` for the
    dependencies (JetPack 6 ships Python 3.10 on aarch64).
    """
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    steps = [[python, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(project_dir)]]
    if with_dependencies:
        steps.append(
            [
                python,
                "-m",
                "pip",
                "download",
                "--only-binary=:all:",
                "--platform",
                platform,
                "--python-version",
                python_version,
                "-d",
                str(out),
                str(project_dir),
            ]
        )
    for argv in steps:
        proc = subprocess.run(argv, capture_output=True, encoding="utf-8", errors="replace")
        if proc.returncode != 0:
            raise SetupError(f"`{' '.join(argv)}` failed: {proc.stderr.strip()[-1500:]}")
    return sorted(out.glob("*.whl"))


def setup_board(
    board: Board,
    wheelhouse: str | Path,
    *,
    package: str = PACKAGE,
    system_site_packages: bool = True,
    no_deps: bool = False,
    accept_new_host_key: bool = False,
    known_hosts: str | None = None,
    timeouts: Timeouts | None = None,
    progress: Progress | None = None,
) -> SetupResult:
    """Install ``package`` from ``wheelhouse`` into ``<remote_dir>/venv`` on the board.

    ``system_site_packages`` (default on) lets the venv see JetPack's own Python packages, such
    as TensorRT's bindings, which come from apt and not from PyPI. ``no_deps`` installs only the
    package itself, for boards that already have the dependencies.
    """
    import time

    start = time.monotonic()
    wheels = sorted(Path(wheelhouse).glob("*.whl"))
    if not wheels:
        raise SetupError(
            f"no wheels in {wheelhouse}; make them with `pip wheel --no-deps -w {wheelhouse} .` "
            f"and `pip download --only-binary=:all: --platform manylinux2014_aarch64 "
            f"--python-version 3.10 -d {wheelhouse} .` (or targets.board.build_wheelhouse)"
        )
    with BoardConnection(
        board, accept_new_host_key=accept_new_host_key, known_hosts=known_hosts, timeouts=timeouts
    ) as conn:
        base = conn.resolve(board.remote_dir).rstrip("/")
        remote_wheels = f"{base}/wheelhouse"
        uploaded = []
        for wheel in wheels:
            if upload_verified(
                conn, wheel, f"{remote_wheels}/{wheel.name}", file_sha256(wheel), progress=progress
            ):
                uploaded.append(wheel.name)
        venv = f"{base}/venv"
        make_venv = [board.python, "-m", "venv"]
        if system_site_packages:
            make_venv.append("--system-site-packages")
        # An existing venv is reused: recreating it would rerun ensurepip (seconds on a board).
        if conn.run(["test", "-x", f"{venv}/bin/python"], check=False).rc != 0:
            emit(progress, board.name, "venv", path=venv)
            _run_step(conn, make_venv + [venv], "creating the venv")
        pip = [f"{venv}/bin/python", "-m", "pip", "install", "--no-index", "--find-links"]
        pip += [remote_wheels, "--upgrade"]
        if no_deps:
            pip.append("--no-deps")
        emit(progress, board.name, "pip", package=package)
        _run_step(conn, pip + [package], f"installing {package}")
        check = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
        version = _run_step(conn, [f"{venv}/bin/python", "-c", check, package], "checking")
    return SetupResult(
        board.name,
        venv,
        [w.name for w in wheels],
        uploaded,
        version.strip(),
        time.monotonic() - start,
    )


def _run_step(conn: BoardConnection, argv: list[str], doing: str) -> str:
    result = conn.run(argv, check=False, timeout=conn.timeouts.command)
    if result.rc != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise SetupError(f"{doing} on {conn.label} failed (exit {result.rc}): {tail}")
    return result.stdout


# ------------------------------------------------------------------------------------ facts


@dataclass(frozen=True)
class FactCheck:
    fact: str
    expected: str
    actual: str
    ok: bool
    note: str = ""


@dataclass
class BoardFacts:
    board: str
    target: str
    arch: str | None = None
    l4t: str | None = None  # "R36.4.3"
    jetpack: str | None = None  # dpkg version of nvidia-jetpack, e.g. "6.2+b77"
    power_mode: str | None = None  # "MAXN"
    cuda: str | None = None  # /usr/local/cuda/version.json, e.g. "12.6.68"
    tensorrt: str | None = None  # dpkg version of tensorrt, e.g. "10.3.0.30-1+cuda12.5"
    dla_cores: int | None = None  # TensorRT's Builder.num_DLA_cores
    raw: dict[str, str] = field(default_factory=dict)
    checks: list[FactCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def mismatch(self) -> str | None:
        """One line naming every fact that differs from the target's, or None."""
        if self.ok:
            return None
        bad = ", ".join(
            f"{c.fact} {c.actual} (target says {c.expected})" for c in self.checks if not c.ok
        )
        return f"board {self.board} does not match target {self.target}: {bad}"

    @property
    def dla_export(self) -> str | None:
        """The TensorRT generation whose DLA segment files this board's JetPack takes
        (``trt10``: precision flags + calibration cache; ``trt11``: strongly typed), or None
        when the JetPack version is unknown."""
        try:
            return generation_for(jetpack=self.jetpack).name if self.jetpack else None
        except InputError:
            return None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "checks"}
        out["checks"] = [c.__dict__ for c in self.checks]
        out["ok"] = self.ok
        out["dla_export"] = self.dla_export
        return out


_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")
_MODE = re.compile(r"NV Power Mode:\s*(\S+)")


def parse_l4t(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``R36.4.3``."""
    m = _L4T.search(text)
    return f"R{m.group(1)}.{m.group(2)}" if m else None


def parse_power_mode(text: str) -> str | None:
    m = _MODE.search(text)
    return m.group(1) if m else None


def parse_cuda_version(text: str) -> str | None:
    """CUDA's ``version.json`` (CUDA 11.1 on: JetPack 5 and 6) -> ``"12.6.68"``."""
    try:
        version = json.loads(text)["cuda"]["version"]
    except (ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


def expected_facts(target: str) -> dict[str, Any]:
    """What the catalog says a board of ``target`` runs: arch, L4T, JetPack, CUDA, TensorRT,
    DLA cores, power modes."""
    from targets.catalog import load_target

    spec = load_target(target)
    return {
        "arch": "aarch64",
        "l4t": spec.l4t,
        "jetpack": spec.jetpack,
        "cuda": spec.cuda,
        "tensorrt": spec.tensorrt,
        "dla_cores": spec.dla.cores if spec.dla is not None else 0,
        "power_modes": [m.name for m in spec.power_modes],
    }


def _same_release(expected: str, actual: str) -> bool:
    """``6.2`` matches ``6.2+b77`` and ``6.2.1``; ``R36.4`` matches ``R36.4.3``."""
    a = re.split(r"[+~-]", actual)[0]
    return a == expected or a.startswith(expected + ".")


def compare_facts(facts: BoardFacts, expected: dict[str, Any]) -> list[FactCheck]:
    checks = []
    if expected.get("arch"):
        actual = facts.arch or "?"
        checks.append(FactCheck("arch", expected["arch"], actual, actual == expected["arch"]))
    for fact in ("l4t", "jetpack", "cuda", "tensorrt"):
        want, have = expected.get(fact), getattr(facts, fact)
        if not want:
            continue
        if have is None:
            checks.append(
                FactCheck(fact, str(want), "absent", False, f"the board reports no {fact}")
            )
        else:
            checks.append(FactCheck(fact, str(want), have, _same_release(str(want), have)))
    if expected.get("dla_cores") is not None:
        want_cores, cores = int(expected["dla_cores"]), facts.dla_cores
        checks.append(
            FactCheck(
                "dla_cores",
                str(want_cores),
                "absent" if cores is None else str(cores),
                cores == want_cores,
                "TensorRT's Python bindings did not answer" if cores is None else "",
            )
        )
    modes = expected.get("power_modes") or []
    if facts.power_mode is not None and modes:
        known = facts.power_mode in modes
        checks.append(
            FactCheck(
                "power_mode",
                "|".join(modes),
                facts.power_mode,
                known,
                ""
                if known
                else "a mode the target file does not describe; latency predictions "
                "use the target's modes",
            )
        )
    return checks


FACT_COMMANDS: dict[str, Sequence[str]] = {
    "uname -m": ["uname", "-m"],
    "nv_tegra_release": ["cat", "/etc/nv_tegra_release"],
    "nvidia-jetpack": ["dpkg-query", "-W", "-f", "${Version}", "nvidia-jetpack"],
    "nvpmodel -q": ["nvpmodel", "-q"],
    "cuda version.json": ["cat", "/usr/local/cuda/version.json"],
    "tensorrt": ["dpkg-query", "-W", "-f", "${Version}", "tensorrt"],
}
# Run with the board's python: JetPack's TensorRT bindings come from apt, so the system one.
DLA_CORES_SCRIPT = "import tensorrt as t; print(t.Builder(t.Logger()).num_DLA_cores)"


def board_facts(
    board: Board,
    *,
    expected: dict[str, Any] | None = None,
    accept_new_host_key: bool = False,
    known_hosts: str | None = None,
    timeouts: Timeouts | None = None,
) -> BoardFacts:
    """Read the board's identity and check it against its target (``expected`` overrides the
    catalog, for boards described by hand)."""
    board.with_target()
    facts = BoardFacts(board.name, str(board.target))
    with BoardConnection(
        board, accept_new_host_key=accept_new_host_key, known_hosts=known_hosts, timeouts=timeouts
    ) as conn:
        for name, argv in FACT_COMMANDS.items():
            result = conn.run(list(argv), check=False, timeout=30)
            if result.rc == 0:
                facts.raw[name] = result.stdout.strip()
        result = conn.run([board.python, "-c", DLA_CORES_SCRIPT], check=False, timeout=60)
        if result.rc == 0:
            facts.raw["dla cores"] = result.stdout.strip()
    facts.arch = facts.raw.get("uname -m") or None
    facts.l4t = parse_l4t(facts.raw.get("nv_tegra_release", ""))
    facts.jetpack = facts.raw.get("nvidia-jetpack") or None
    facts.power_mode = parse_power_mode(facts.raw.get("nvpmodel -q", ""))
    facts.cuda = parse_cuda_version(facts.raw.get("cuda version.json", ""))
    facts.tensorrt = facts.raw.get("tensorrt") or None
    cores = facts.raw.get("dla cores", "")
    facts.dla_cores = int(cores) if cores.isdigit() else None
    if expected is None:
        try:
            expected = expected_facts(str(board.target))
        except TandemError as err:
            raise ConfigError(f"{board.source}: board {board.name}: {err}") from None
    facts.checks = compare_facts(facts, expected)
    return facts
