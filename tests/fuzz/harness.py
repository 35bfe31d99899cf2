"""Run one ``tandem`` command the way a user would and check what the CLI promises.

The contract (README, DESIGN.md "The CLI"): exit 0 ok, 1 user error, 2 usage error, 3 a numeric
mismatch (``compare`` only); an error is one line on stderr (``tandem: error: ...``; argparse's
usage errors print the usage first); never a traceback; ``--json`` prints one JSON document on
stdout; a failed command leaves no file under its output names. On top of that the fuzzer bounds
wall time (a hang) and peak RSS (a small file must not cost gigabytes).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GIB = 1 << 30

#: The address-space cap of every child: far above the RSS bound, so a runaway allocation is
#: measured (and reported as RSS) before the kernel refuses it, yet the shared machine survives.
ADDRESS_SPACE_CAP = 4 * GIB

_USAGE_LINE = re.compile(r"^tandem( [\w-]+)*: error: \S")
_TRACEBACK = "Traceback (most recent call last)"
_FRAME = re.compile(r'^\s*File "([^"]+)", line (\d+), in (\S+)')
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)\b|[A-Z]\w+):?")


@dataclass(frozen=True)
class Limits:
    # A valid `compare --plan` of the seed takes ~13 s on the 2-core machine, two runs at a
    # time: 30 s leaves room for a loaded CI machine and still catches a hang.
    timeout_s: float = 30.0
    rss_bytes: int = GIB
    address_space: int = ADDRESS_SPACE_CAP


@dataclass
class Result:
    argv: list[str]
    exit: int  # negative: the signal that ended it (a hang is killed with SIGKILL)
    stdout: str
    stderr: str
    wall_s: float
    peak_rss: int  # bytes
    timed_out: bool


@dataclass
class Violation:
    rule: str  # traceback | exit-code | hang | stderr | json | partial-file | rss | code-executed
    detail: str
    signature: str = ""  # what groups equal failures beyond the rule: exception + innermost frame


@dataclass
class Expect:
    """What one command line may do: its exit codes, its output files, whether --json."""

    exits: frozenset[int] = frozenset({0, 1, 2})
    outputs: tuple[str, ...] = ()  # relative to the output folder
    json_stdout: bool = False
    canary: Path | None = None  # a file hostile payloads try to create


LAUNCHER = Path(__file__).resolve().with_name("launch.py")


def run_tandem(argv: list[str], cwd: Path, limits: Limits) -> Result:
    """``python -m tandem ARGV`` with this checkout first on the path, in its own session (so a
    hang is killed with all its children), address space capped, peak RSS as the CLI's own
    ``ru_maxrss`` (reported by ``launch.py``: a process forked from here would inherit this
    process's high-water mark)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("TANDEM_PLUGINS", None)
    env.pop("TANDEM_INVENTORY", None)
    out_path, err_path, rss_path = cwd / ".stdout", cwd / ".stderr", cwd / ".rss"
    rss_path.unlink(missing_ok=True)
    start = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(limits.address_space), str(rss_path), *argv],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    timed_out = False
    try:
        proc.wait(timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):  # unreaped, it can hardly be gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    wall = time.monotonic() - start
    stdout = out_path.read_bytes().decode("utf-8", "replace")
    stderr = err_path.read_bytes().decode("utf-8", "replace")
    peak_kib = int(rss_path.read_text(encoding="utf-8")) if rss_path.exists() else 0
    for path in (out_path, err_path, rss_path):
        path.unlink(missing_ok=True)
    return Result(argv, proc.returncode, stdout, stderr, wall, peak_kib * 1024, timed_out)


def check(result: Result, expect: Expect, out_dir: Path, limits: Limits) -> list[Violation]:
    """Every way ``result`` breaks the CLI's contract (empty when it keeps it)."""
    found: list[Violation] = []
    if result.timed_out:
        found.append(Violation("hang", f"killed after {limits.timeout_s:.0f} s"))
    if _TRACEBACK in result.stderr or _TRACEBACK in result.stdout:
        sig = traceback_signature(result.stderr + result.stdout)
        found.append(Violation("traceback", sig, sig))
    if not result.timed_out and result.exit not in expect.exits:
        name = _exit_name(result.exit)
        found.append(Violation("exit-code", f"exit {name}", f"exit {name}"))
    if result.peak_rss > limits.rss_bytes:
        found.append(
            Violation(
                "rss",
                f"peak RSS {result.peak_rss / GIB:.2f} GiB > {limits.rss_bytes / GIB:.2f} GiB",
            )
        )
    # Exit 3 is compare's verdict, printed on stdout like a match's; stderr may stay empty.
    if not result.timed_out and result.exit not in (0, 3) and _TRACEBACK not in result.stderr:
        problem = stderr_problem(result.stderr, result.exit)
        if problem:
            found.append(Violation("stderr", problem, re.sub(r"\d+", "N", problem.split(":")[0])))
    if result.exit == 0 and expect.json_stdout:
        try:
            json.loads(result.stdout)
        except ValueError as err:
            found.append(Violation("json", f"stdout is not one JSON document ({err})"))
    left = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file())
    allowed = set(expect.outputs) if result.exit == 0 else set()
    stray = [p for p in left if p not in allowed]
    if result.timed_out:  # SIGKILLed mid-write: a temp file may stay, a final name may not
        stray = [p for p in stray if p in expect.outputs]
    if stray:
        state = "succeeded" if result.exit == 0 else f"failed (exit {result.exit})"
        found.append(Violation("partial-file", f"command {state} and left {', '.join(stray)}"))
    if expect.canary is not None and expect.canary.exists():
        found.append(Violation("code-executed", f"{expect.canary.name} was created"))
    return found


def stderr_problem(stderr: str, code: int) -> str:
    """Why ``stderr`` of a failed command is not the one error line the docs promise ('' if it
    is). Exit 2 may carry argparse's usage lines first; its last line is the error."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no message: stderr is empty"
    if code == 2:
        if _USAGE_LINE.match(lines[-1]) and all(
            line.startswith(("usage:", " ")) for line in lines[:-1]
        ):
            return ""
        return f"usage error not in argparse's form: {lines[-1][:120]!r}"
    if len(lines) != 1:
        return f"{len(lines)} lines on stderr: {lines[0][:80]!r} ... {lines[-1][:80]!r}"
    if not lines[0].startswith("tandem: "):
        return f"message without the 'tandem: ' prefix: {lines[0][:120]!r}"
    return ""


def traceback_signature(text: str) -> str:
    """``ExcType at file:line (function)``: the exception and the innermost frame in this
    checkout (else the innermost at all), which is where a fix belongs."""
    frames = [m.groups() for m in map(_FRAME.match, text.splitlines()) if m]
    ours = [f for f in frames if f[0].startswith(str(REPO)) and "/.venv" not in f[0]]
    frame = (ours or frames or [("?", "?", "?")])[-1]
    where = frame[0]
    if where.startswith(str(REPO)):
        where = os.path.relpath(where, REPO)
    else:
        where = where.split("site-packages/")[-1]
    lines = text.splitlines()
    start = max(i for i, line in enumerate(lines) if _TRACEBACK in line)
    exc = "?"
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            m = _EXCEPTION.match(line)
            if m:
                exc = m.group(1).split(".")[-1]
                break
    return f"{exc} at {where}:{frame[1]} ({frame[2]})"


def _exit_name(code: int) -> str:
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)
