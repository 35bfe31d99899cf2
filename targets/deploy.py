"""Deploy a plan to boards over SSH and (optionally) benchmark it there.

One board: refuse a target mismatch before connecting, upload to a temp name, verify the
SHA-256 on the board with ``sha256sum``, ``mv -f`` onto the final name (atomic on one
filesystem), skip when the board already holds the same bytes; retry transient failures with
exponential backoff. A group: boards in parallel with bounded concurrency; one board's failure
never stops the others, and every board gets a :class:`DeployResult` for the summary table.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.io import write_atomic
from devices.plan import file_sha256, read_plan
from devices.plan_header import PlanHeader
from devices.timesource import MEASURED_BACKENDS
from partitioner.errors import TandemError
from partitioner.tables import table
from targets.inventory import Board
from targets.ssh import BoardConnection, BoardError, Timeouts, TransientError

#: ``progress(board_name, event, details)``; events: connect, skip, upload, uploaded, verified,
#: installed, bench, retry, done.
Progress = Callable[[str, str, dict[str, Any]], None]

# Uploads go to ".NAME.<8 hex digits>.part" beside NAME. While one is under way its deploy holds
# a shared flock(1) on <remote_dir>/UPLOAD_LOCK, from its board-side shell; a dropped
# connection ends that shell and so releases the lock. A deploy that gets the lock exclusively
# knows no upload to that board is alive, and removes every file of exactly that shape (a
# killed upload's leftovers) in its folder, then holds the lock shared for its own upload.
UPLOAD_LOCK = ".tandem-upload.lock"
_TOKEN_BYTES = 4
_PART_GLOB = ".?*." + "[0-9a-f]" * 2 * _TOKEN_BYTES + ".part"
_SWEEP_AND_HOLD = f"""
command -v flock >/dev/null 2>&1 || {{ echo unlocked; exec cat >/dev/null; }}
exec 9>>"$2"
if flock -n -x 9; then rm -f -- "$1"/{_PART_GLOB} 2>/dev/null; fi
if flock -s 9; then echo locked; else echo unlocked; fi
exec cat >/dev/null
"""


class HashMismatchError(TransientError):
    """The board's copy does not hash to what we sent (retried: a transfer may go wrong)."""


class TargetMismatchError(BoardError):
    """The plan was built for another target than the board's."""


class BenchError(BoardError):
    """``tandem run`` on the board failed or printed something that is not JSON."""


@dataclass
class DeployResult:
    """What happened on one board; ``error`` is set (and the rest partial) when it failed."""

    board: str
    host: str = ""
    target: str = ""
    remote_path: str = ""
    sha256: str = ""
    uploaded: bool = False
    bytes: int = 0
    seconds: float = 0.0
    attempts: int = 0
    bench: dict[str, Any] | None = None
    bench_json: str | None = None  # local path of the saved bench JSON
    profile: str | None = None  # local path of the fetched Chrome trace
    timing_cache: str | None = None  # local path of the timing cache measured with ``tune``
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "details"}
        out["ok"] = self.ok
        return out


def check_target(plan_path: str | Path, board: Board) -> PlanHeader:
    """The plan's header, after refusing a plan built for another target than the board's."""
    board.with_target()
    header = read_plan(plan_path).record  # also refuses corrupt or foreign-version plans
    if header.target != board.target:
        raise TargetMismatchError(
            f"plan {plan_path} is built for target {header.target!r} but board {board.name} "
            f"({board.source}) is {board.target!r}; nothing was uploaded. Rebuild it with "
            f"`tandem build MODEL.onnx --target {board.target}`"
        )
    return header


def remote_plan_path(conn: BoardConnection, plan_path: str | Path) -> str:
    return f"{conn.resolve(conn.board.remote_dir).rstrip('/')}/plans/{Path(plan_path).name}"


def board_holds(
    plan_path: str | Path,
    board: Board,
    *,
    accept_new_host_key: bool = False,
    known_hosts: str | None = None,
    timeouts: Timeouts | None = None,
) -> tuple[str, bool]:
    """Where the plan goes on the board and whether that file already has the plan's bytes:
    what a deploy would do, found without changing the board (Ansible's check mode)."""
    check_target(plan_path, board)
    with BoardConnection(
        board, accept_new_host_key=accept_new_host_key, known_hosts=known_hosts, timeouts=timeouts
    ) as conn:
        final = remote_plan_path(conn, plan_path)
        return final, conn.sha256(final) == file_sha256(plan_path)


def upload_verified(
    conn: BoardConnection,
    local: str | Path,
    final: str,
    local_hash: str,
    *,
    progress: Progress | None = None,
) -> bool:
    """Put ``local`` at ``final`` on the board atomically and verified; False if already there.

    The bytes go to ``.<name>.<random>.part`` beside ``final``; only a copy whose on-board
    SHA-256 matches is renamed, so the final name never holds a partial or corrupt file.
    Parts that killed uploads left in that folder are removed first (see ``UPLOAD_LOCK``).
    """
    directory = final.rsplit("/", 1)[0]
    home = conn.resolve(conn.board.remote_dir).rstrip("/")
    conn.run(["mkdir", "-p", "--", directory, home])
    with conn.hold(["sh", "-c", _SWEEP_AND_HOLD, "sh", directory, f"{home}/{UPLOAD_LOCK}"]):
        return _upload_locked(conn, local, final, local_hash, progress)


def _upload_locked(
    conn: BoardConnection, local: str | Path, final: str, local_hash: str, progress: Progress | None
) -> bool:
    name = conn.board.name
    directory, base = final.rsplit("/", 1)
    if conn.sha256(final) == local_hash:
        emit(progress, name, "skip", path=final, sha256=local_hash)
        return False
    part = f"{directory}/.{base}.{secrets.token_hex(_TOKEN_BYTES)}.part"
    total = Path(local).stat().st_size
    emit(progress, name, "upload", path=part, bytes=total)
    try:
        conn.put(
            local,
            part,
            callback=lambda sent, size: emit(progress, name, "sent", sent=sent, size=size),
        )
        emit(progress, name, "uploaded", path=part, bytes=total)
        remote_hash = conn.sha256(part)
        if remote_hash != local_hash:
            raise HashMismatchError(
                f"the copy on {conn.label} hashes to {remote_hash}, not {local_hash}: "
                "the upload was corrupted; it was removed and not installed"
            )
        emit(progress, name, "verified", sha256=remote_hash)
        conn.run(["mv", "-f", "--", part, final])
    except BaseException:
        if conn.is_open:
            try:
                conn.run(["rm", "-f", "--", part], check=False)
            except TandemError:
                pass  # the connection is going away; the next deploy here removes the part
        raise
    emit(progress, name, "installed", path=final)
    return True


def emit(progress: Progress | None, board: str, event: str, **details: Any) -> None:
    if progress is not None:
        progress(board, event, details)


def bench_remote(
    conn: BoardConnection,
    remote_plan: str,
    results_dir: Path,
    *,
    iterations: int | None = None,
    run_args: Sequence[str] = (),
    timeout: float | None = None,
) -> tuple[dict[str, Any], Path, Path | None]:
    """``tandem run PLAN --json --profile TRACE`` on the board; the JSON and trace come back."""
    board = conn.board
    stem = Path(remote_plan).name.removesuffix(".plan")
    results = f"{conn.resolve(board.remote_dir).rstrip('/')}/results"
    trace = f"{results}/{stem}.trace.json"
    conn.run(["mkdir", "-p", "--", results])
    argv = [conn.resolve(board.remote_tandem), "run", remote_plan, "--json", "--profile", trace]
    if iterations is not None:
        argv += ["--iterations", str(int(iterations))]
    argv += list(run_args)
    result = conn.run(argv, check=False, timeout=timeout)
    if result.rc != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise BenchError(f"`tandem run` on {conn.label} exited {result.rc}: {tail}")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise BenchError(
            f"`tandem run --json` on {conn.label} printed no JSON document: "
            f"{result.stdout.strip()[:300]!r}"
        ) from None
    if not isinstance(report, dict):
        raise BenchError(f"`tandem run --json` on {conn.label} printed {type(report).__name__}")
    local_dir = _local_dir(results_dir, board)
    saved = write_atomic(
        local_dir / f"{stem}.json", json.dumps(report, indent=2, sort_keys=True).encode()
    )
    profile: Path | None = local_dir / f"{stem}.trace.json"
    assert profile is not None
    if conn.sha256(trace) is None:
        profile = None  # the run wrote no trace (an older remote tandem); the JSON still counts
    else:
        conn.get(trace, profile)
    return report, saved, profile


def _local_dir(results_dir: Path, board: Board) -> Path:
    """``results_dir/<board>``, created."""
    folder = results_dir / board.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BoardError(f"cannot create {folder} for results: {err.strerror or err}") from None
    return folder


def tune_remote(
    conn: BoardConnection, remote_plan: str, results_dir: Path, *, timeout: float | None = None
) -> Path:
    """Autotune the plan's GPU tactics on the board's GPU (``tandem run --backend cuda
    --timing-cache``) and bring the timing cache back for the next cross-build."""
    board = conn.board
    stem = Path(remote_plan).name.removesuffix(".plan")
    results = f"{conn.resolve(board.remote_dir).rstrip('/')}/results"
    cache = f"{results}/{stem}.timing.json"
    conn.run(["mkdir", "-p", "--", results])
    argv = [
        conn.resolve(board.remote_tandem),
        "run",
        remote_plan,
        "--backend",
        "cuda",
        "--timing-cache",
        cache,
        "--json",
    ]
    result = conn.run(argv, check=False, timeout=timeout)
    if result.rc != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise BenchError(f"tuning on {conn.label} needs the board's GPU; `tandem run` said: {tail}")
    if conn.sha256(cache) is None:
        raise BenchError(
            f"tuning on {conn.label} measured nothing: the plan has no GPU segment with "
            "convolution tactics to time"
        )
    local_dir = _local_dir(results_dir, board)
    local = local_dir / f"{stem}.timing.json"
    conn.get(cache, local)
    return local


def deploy_plan(
    plan_path: str | Path,
    board: Board,
    *,
    bench: bool = False,
    tune: bool = False,
    iterations: int | None = None,
    run_args: Sequence[str] = (),
    results_dir: str | Path = "tandem-results",
    accept_new_host_key: bool = False,
    known_hosts: str | None = None,
    timeouts: Timeouts | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy (and with ``bench`` benchmark) one plan on one board; raises on failure.

    A transient failure is retried up to ``retries`` times; failing to reach the board stops
    retrying once ``timeouts.total`` seconds are spent on it (time after a session opened,
    such as an upload that dropped, does not count)."""
    start = time.monotonic()
    header = check_target(plan_path, board)
    local_hash = file_sha256(plan_path)
    result = DeployResult(board.name, board.host, header.target, sha256=local_hash)
    timeouts = timeouts or Timeouts()
    reaching = 0.0  # seconds spent failing to open a session, backoff included
    for attempt in range(max(retries, 0) + 1):
        result.attempts = attempt + 1
        opening, opened = time.monotonic(), False
        try:
            with BoardConnection(
                board,
                accept_new_host_key=accept_new_host_key,
                known_hosts=known_hosts,
                timeouts=timeouts,
            ) as conn:
                emit(progress, board.name, "connect", attempt=attempt + 1)
                conn.open(deadline=opening + timeouts.total - reaching)
                opened = True
                final = remote_plan_path(conn, plan_path)
                result.remote_path = final
                result.uploaded = (
                    upload_verified(conn, plan_path, final, local_hash, progress=progress)
                    or result.uploaded
                )
                if result.uploaded:
                    result.bytes = Path(plan_path).stat().st_size
                if tune:
                    emit(progress, board.name, "tune", path=final)
                    result.timing_cache = str(tune_remote(conn, final, Path(results_dir)))
                if bench:
                    emit(progress, board.name, "bench", path=final)
                    report, saved, profile = bench_remote(
                        conn, final, Path(results_dir), iterations=iterations, run_args=run_args
                    )
                    result.bench, result.bench_json = report, str(saved)
                    result.profile = str(profile) if profile else None
            break
        except TransientError as err:
            delay = backoff * 2**attempt
            if not opened:
                reaching += time.monotonic() - opening + delay
            if attempt == retries or reaching >= timeouts.total:
                raise type(err)(f"{err} (gave up after {attempt + 1} attempts)") from None
            emit(progress, board.name, "retry", error=str(err), delay=delay)
            time.sleep(delay)
    result.seconds = time.monotonic() - start
    emit(progress, board.name, "done", seconds=result.seconds)
    return result


def deploy_group(
    plan_path: str | Path,
    boards: Sequence[Board],
    *,
    concurrency: int = 4,
    **options: Any,
) -> list[DeployResult]:
    """Deploy to every board, ``concurrency`` at a time; errors become result records."""

    def one(board: Board) -> DeployResult:
        start = time.monotonic()
        try:
            return deploy_plan(plan_path, board, **options)
        except TandemError as err:
            return DeployResult(
                board.name,
                board.host,
                board.target or "",
                error=str(err),
                seconds=time.monotonic() - start,
                details={"type": type(err).__name__},
            )
        except Exception as err:  # a bug on one board must not hide the others' results
            return DeployResult(
                board.name,
                board.host,
                board.target or "",
                error=f"internal error ({type(err).__name__}: {err}); please report it",
                seconds=time.monotonic() - start,
                details={"type": type(err).__name__},
            )

    # Daemon threads, not a ThreadPoolExecutor: on Ctrl-C the main thread leaves at once, and
    # an executor would first wait for every running deploy. What an abandoned upload leaves
    # on a board is a ``.part`` file, which the next deploy there removes.
    results: list[DeployResult | None] = [None] * len(boards)
    todo = iter(range(len(boards)))
    take = threading.Lock()

    def worker() -> None:
        while True:
            with take:
                index = next(todo, None)
            if index is None:
                return
            results[index] = one(boards[index])

    threads = [
        threading.Thread(target=worker, name=f"deploy-{i}", daemon=True)
        for i in range(max(1, min(concurrency, len(boards))))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [r for r in results if r is not None]


def summary_table(results: Sequence[DeployResult]) -> str:
    """One row per board: status, what happened, latency (with what produced it) when
    benchmarked, or the error."""
    rows = []
    for r in results:
        median, source = "", ""
        latency = (r.bench or {}).get("latency_ms")
        if isinstance(latency, dict) and isinstance(latency.get("median"), (int, float)):
            median = f"{latency['median']:.3f}"
            source = bench_source(r.bench or {})
        action = "" if not r.ok else ("uploaded" if r.uploaded else "unchanged")
        detail = r.error or r.remote_path
        rows.append(
            (
                r.board,
                r.host,
                r.target,
                "ok" if r.ok else "FAILED",
                action,
                median,
                source,
                f"{r.seconds:.2f}",
                detail.replace("\n", " "),
            )
        )
    headers = (
        "Board", "Host", "Target", "Status", "Action", "Median (ms)", "Source", "Deploy (s)",
        "Detail",
    )  # fmt: skip
    return "\n".join(table(headers, rows, right=(5, 7)))


def bench_source(report: dict[str, Any]) -> str:
    """What produced a board's benchmark: the label its own Tandem wrote beside the times
    (``measured on Orin``, ``emulated on x86_64 CPU (...)``), or, from a Tandem that wrote none,
    what its backends say."""
    latency = report.get("latency_ms")
    if isinstance(latency, dict) and isinstance(latency.get("source"), str):
        return latency["source"]
    backends = set((report.get("backends") or {}).values())
    if backends and backends <= MEASURED_BACKENDS:
        return "measured on the board's GPU/DLA"
    return "emulated on the board's CPU (backends: " + ", ".join(sorted(backends)) + ")"
