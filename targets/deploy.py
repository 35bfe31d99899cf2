"""Deploy a plan to boards over SSH and (optionally) benchmark it there.

One board: refuse a target mismatch before connecting, upload to a temp name, verify the
SHA-256 on the board with ``sha256sum``, ``mv -f`` onto the final name (atomic on one
filesystem), skip when the board already holds the same bytes; retry transient failures with
exponential backoff. A group: boards in parallel with bounded concurrency; one board's failure
never stops the others, and every board gets a :class:`DeployResult` for the summary table.

A plan group (the folder ``tandem plan-group -o DIR`` writes) deploys as a whole: every plan is
checked against the board's target before connecting, then each is uploaded by the same
protocol into ``plans/<folder name>/``; its benchmark is ``tandem run-group`` on the board (the
models served at once: frames/s per model, busy fraction per device, beside the predictions).
A concurrent plan (one with lanes) is benchmarked by ``run-group`` too.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.concurrent_bench import check_group, group_plan_paths
from devices.io import write_atomic
from devices.plan import Plan, check_devices, file_sha256, read_plan
from devices.timesource import MEASURED_BACKENDS
from partitioner.errors import InputError, TandemError
from partitioner.tables import table
from targets.catalog import list_targets, load_target
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
    #: a plan group's plans, each {plan, remote_path, sha256, uploaded} (empty for one plan;
    #: then ``remote_path`` is the group's folder and ``sha256`` :func:`group_digest`)
    plans: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "details"}
        out["ok"] = self.ok
        return out


def check_target(plan_path: str | Path, board: Board) -> Plan:
    """The plan, after refusing a plan built for another target than the board's."""
    board.with_target()
    plan = read_plan(plan_path)  # also refuses corrupt or foreign-version plans
    if plan.record.target != board.target:
        raise TargetMismatchError(
            f"plan {plan_path} is built for target {plan.record.target!r} but board "
            f"{board.name} ({board.source}) is {board.target!r}; nothing was uploaded. Rebuild "
            f"it with `tandem build MODEL.onnx --target {board.target}`"
        )
    if board.target in list_targets():  # a catalog board: its DLA cores are known
        check_devices(plan, load_target(board.target), str(plan_path))
    return plan


@dataclass(frozen=True)
class Deployable:
    """What one deploy uploads: a plan file, or a plan group's plans (``group`` names the
    folder they go to under ``plans/`` on the board); ``concurrent`` when the benchmark is
    ``tandem run-group`` (a group, or a plan with lanes)."""

    files: tuple[Path, ...]
    group: str | None
    concurrent: bool
    target: str


def deployable(plan_path: str | Path, board: Board) -> Deployable:
    """The plans at ``plan_path`` (a plan file or a plan-group folder), every one checked
    against the board's target (before any connection) and, for a group, serving distinct
    models."""
    path = Path(plan_path)
    files = group_plan_paths([path])
    plans = [check_target(f, board) for f in files]
    if not path.is_dir():
        return Deployable((path,), None, bool(plans[0].record.lanes), plans[0].target)
    check_group(files, plans)
    return Deployable(tuple(files), path.resolve().name, True, plans[0].target)


def group_digest(hashes: Sequence[tuple[str, str]]) -> str:
    """One SHA-256 for a plan group: over its ``name sha256`` lines in name order (a plan
    added, removed, renamed or changed changes it)."""
    text = "".join(f"{name} {digest}\n" for name, digest in sorted(hashes))
    return hashlib.sha256(text.encode()).hexdigest()


def remote_plan_path(conn: BoardConnection, plan_path: str | Path, group: str | None = None) -> str:
    folder = f"{conn.resolve(conn.board.remote_dir).rstrip('/')}/plans"
    return (
        f"{folder}/{group}/{Path(plan_path).name}" if group else f"{folder}/{Path(plan_path).name}"
    )


def board_holds(
    plan_path: str | Path,
    board: Board,
    *,
    accept_new_host_key: bool = False,
    known_hosts: str | None = None,
    timeouts: Timeouts | None = None,
) -> tuple[str, bool]:
    """Where the plan goes on the board and whether that file already has the plan's bytes
    (a group: its folder, and whether every plan is there): what a deploy would do, found
    without changing the board (Ansible's check mode)."""
    what = deployable(plan_path, board)
    with BoardConnection(
        board, accept_new_host_key=accept_new_host_key, known_hosts=known_hosts, timeouts=timeouts
    ) as conn:
        finals = [remote_plan_path(conn, f, what.group) for f in what.files]
        held = all(conn.sha256(r) == file_sha256(f) for f, r in zip(what.files, finals))
        return (finals[0].rsplit("/", 1)[0] if what.group else finals[0]), held


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
    remote_plan: str | Sequence[str],
    results_dir: Path,
    *,
    iterations: int | None = None,
    run_args: Sequence[str] = (),
    timeout: float | None = None,
    stem: str | None = None,
) -> tuple[dict[str, Any], Path, Path | None]:
    """``tandem run PLAN --json --profile TRACE`` on the board; the JSON and trace come back.

    Several plans (a plan group, or a list of one concurrent plan) run with ``tandem run-group
    PLANS --json --profile TRACE`` (``iterations``: the fastest model's frames); ``stem`` names
    the results (default: the plan's)."""
    board = conn.board
    group = not isinstance(remote_plan, str)
    plans = list(remote_plan) if not isinstance(remote_plan, str) else [remote_plan]
    stem = stem or Path(plans[0]).name.removesuffix(".plan")
    results = f"{conn.resolve(board.remote_dir).rstrip('/')}/results"
    trace = f"{results}/{stem}.trace.json"
    conn.run(["mkdir", "-p", "--", results])
    command = "run-group" if group else "run"
    argv = [conn.resolve(board.remote_tandem), command, *plans, "--json", "--profile", trace]
    if iterations is not None:
        argv += ["--frames" if group else "--iterations", str(int(iterations))]
    argv += list(run_args)
    result = conn.run(argv, check=False, timeout=timeout)
    if result.rc != 0:
        tail = (result.stderr.strip() or result.stdout.strip())[-1500:]
        raise BenchError(f"`tandem {command}` on {conn.label} exited {result.rc}: {tail}")
    try:
        report = json.loads(result.stdout)
    except ValueError:
        raise BenchError(
            f"`tandem {command} --json` on {conn.label} printed no JSON document: "
            f"{result.stdout.strip()[:300]!r}"
        ) from None
    if not isinstance(report, dict):
        raise BenchError(
            f"`tandem {command} --json` on {conn.label} printed {type(report).__name__}"
        )
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
    """Deploy (and with ``bench`` benchmark) one plan, or a plan-group folder's plans, on one
    board; raises on failure.

    A transient failure is retried up to ``retries`` times; failing to reach the board stops
    retrying once ``timeouts.total`` seconds are spent on it (time after a session opened,
    such as an upload that dropped, does not count)."""
    start = time.monotonic()
    what = deployable(plan_path, board)
    if tune and what.group:
        # one timing cache per plan, and a model placed wholly on a DLA has nothing to time
        raise InputError(
            f"--tune takes one plan, not the plan group {plan_path}: tune each plan with a GPU "
            "part (`tandem deploy PLAN --tune`)"
        )
    hashes = [file_sha256(f) for f in what.files]
    digest = group_digest([(f.name, h) for f, h in zip(what.files, hashes)])
    result = DeployResult(
        board.name, board.host, what.target, sha256=digest if what.group else hashes[0]
    )
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
                finals = _upload_all(conn, what, hashes, result, progress)
                final = finals[0]
                if tune:
                    emit(progress, board.name, "tune", path=final)
                    result.timing_cache = str(tune_remote(conn, final, Path(results_dir)))
                if bench:
                    emit(progress, board.name, "bench", path=final)
                    report, saved, profile = bench_remote(
                        conn,
                        finals if what.concurrent else final,
                        Path(results_dir),
                        iterations=iterations,
                        run_args=run_args,
                        stem=what.group,
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


def _upload_all(
    conn: BoardConnection,
    what: Deployable,
    hashes: Sequence[str],
    result: DeployResult,
    progress: Progress | None,
) -> list[str]:
    """Every plan of ``what`` uploaded (or found there) by :func:`upload_verified`; the
    result records what happened (kept across retries: a plan uploaded before a dropped
    connection counts as uploaded). Returns the plans' paths on the board."""
    finals = [remote_plan_path(conn, f, what.group) for f in what.files]
    done = {p["plan"]: p for p in result.plans}
    for file, final, digest in zip(what.files, finals, hashes):
        entry = done.get(str(file)) or {"plan": str(file), "uploaded": False}
        entry.update(remote_path=final, sha256=digest)
        entry["uploaded"] = upload_verified(conn, file, final, digest, progress=progress) or bool(
            entry["uploaded"]
        )
        done[str(file)] = entry
    if what.group:
        result.plans = [done[str(f)] for f in what.files]
    uploaded = [f for f in what.files if done[str(f)]["uploaded"]]
    result.uploaded = bool(uploaded)
    result.bytes = sum(f.stat().st_size for f in uploaded)
    result.remote_path = finals[0].rsplit("/", 1)[0] if what.group else finals[0]
    return finals


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
        median, source = "", bench_source(r.bench) if r.bench else ""
        latency = (r.bench or {}).get("latency_ms")
        if isinstance(latency, dict) and isinstance(latency.get("median"), (int, float)):
            median = f"{latency['median']:.3f}"
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
    if isinstance(report.get("measured_source"), str):  # a plan group's (``run-group``)
        return str(report["measured_source"])
    backends = set((report.get("backends") or {}).values())
    if backends and backends <= MEASURED_BACKENDS:
        return "measured on the board's GPU/DLA"
    return "emulated on the board's CPU (backends: " + ", ".join(sorted(backends)) + ")"
