"""``tandem deploy PLAN|DIR --board NAME | --group G``: verified upload, optional remote
benchmark; a plan-group folder deploys all its plans and benchmarks them running at once."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from devices.concurrent_bench import report_lines
from tandem.commands._common import progress_bars
from targets.deploy import DeployResult, deploy_group, deploy_plan, summary_table
from targets.inventory import load_inventory
from targets.ssh import Timeouts

_SHOWN = {"connect", "skip", "upload", "installed", "tune", "bench", "retry"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "deploy",
        help="copy a plan to boards over SSH (verified, atomic), optionally benchmark it there",
        description="Copy a plan to one board or a group over SSH: upload to a temp name, "
        "verify its SHA-256 on the board, rename atomically; skip boards that already hold it. "
        "With --bench, run `tandem run PLAN --json` there and bring back results and profile. "
        "A plan-group folder (`tandem plan-group -o DIR`) or a concurrent plan is benchmarked "
        "with `tandem run-group`: every model at once, frames/s per model and busy fraction per "
        "device beside the predicted figures.",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--board", metavar="NAME", help="a board of the inventory")
    where.add_argument("--group", metavar="G", help="a group of the inventory (in parallel)")
    p.add_argument(
        "plan",
        metavar="PLAN|DIR",
        help="a plan file from `tandem build`, or a plan-group folder from `tandem plan-group -o`",
    )
    p.add_argument(
        "--inventory",
        metavar="INV",
        help="inventory YAML or Ansible inventory "
        "(default $TANDEM_INVENTORY or ~/.config/tandem/inventory.yaml)",
    )
    p.add_argument("--bench", action="store_true", help="run the plan on the board, fetch results")
    p.add_argument(
        "--tune",
        action="store_true",
        help="autotune the plan's GPU tactics on each board's GPU and bring the timing caches "
        "back, merged into --timing-cache (for the next `tandem build --timing-cache`)",
    )
    p.add_argument(
        "--timing-cache", metavar="FILE", help="with --tune: merge the boards' caches into FILE"
    )
    p.add_argument(
        "--iterations",
        type=int,
        metavar="N",
        help="benchmark iterations (--bench); for a plan group, the frames of its fastest model",
    )
    p.add_argument(
        "--backend", choices=["auto", "cuda", "cpu"], help="backend for the remote run (--bench)"
    )
    p.add_argument(
        "--results",
        default="tandem-results",
        metavar="DIR",
        help="where bench JSON and traces land, one folder per board (default tandem-results)",
    )
    p.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust a board's host key on first use and record it in known_hosts "
        "(a changed key is always refused)",
    )
    p.add_argument(
        "--known-hosts",
        metavar="FILE",
        help="known_hosts file (default per board, else ~/.ssh/known_hosts)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=4,
        metavar="K",
        help="boards at a time for --group (default 4)",
    )
    p.add_argument("--retries", type=int, default=3, help="retries of transient failures")
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=Timeouts.total,
        metavar="S",
        help="give up reaching a board after S seconds: TCP connect, SSH handshake and "
        f"authentication, retries included (default {Timeouts.total:g})",
    )
    p.add_argument("--command-timeout", type=float, default=600.0, metavar="S")
    p.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    p.set_defaults(func=lambda args: run(args, p))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    if args.iterations is not None and args.iterations < 1:
        parser.error("--iterations must be at least 1")
    if args.retries < 0:
        parser.error("--retries must be 0 or more")
    for flag in ("connect_timeout", "command_timeout"):
        if not getattr(args, flag) > 0:  # also refuses nan
            parser.error(f"--{flag.replace('_', '-')} must be a positive number of seconds")
    inventory = load_inventory(args.inventory)
    boards = inventory.select(board=args.board, group=args.group)
    run_args = ["--backend", args.backend] if args.backend else []
    timeouts = Timeouts(total=args.connect_timeout, command=args.command_timeout)

    with progress_bars() as bars:
        boards_done = bars.add("boards", len(boards))
        uploads: dict[str, Callable[[float], None]] = {}
        sent: dict[str, float] = {}

        def progress(board: str, event: str, details: dict[str, Any]) -> None:
            # bars, drawn only on a TTY, for what takes long: each upload's bytes, the boards
            if event == "upload":
                uploads[board] = bars.add(f"{board}: upload", details.get("bytes"))
                sent[board] = 0.0
            elif event == "sent" and board in uploads:
                uploads[board](details["sent"] - sent[board])
                sent[board] = details["sent"]
            elif event == "done":
                boards_done(1)
            if event in _SHOWN and not args.json:
                extra = details.get("error") or details.get("path") or ""
                print(f"{board}: {event} {extra}".rstrip(), file=sys.stderr)

        options: dict[str, Any] = {
            "bench": args.bench,
            "tune": args.tune,
            "iterations": args.iterations,
            "run_args": run_args,
            "results_dir": args.results,
            "accept_new_host_key": args.accept_new_host_key,
            "known_hosts": args.known_hosts,
            "timeouts": timeouts,
            "retries": args.retries,
            "progress": progress,
        }
        if args.board is not None:
            # One board: its error is the command's error (one line, exit 1), not a table row.
            results = [deploy_plan(args.plan, boards[0], **options)]
        else:
            results = deploy_group(args.plan, boards, concurrency=args.concurrency, **options)
    if args.tune and args.timing_cache:
        merged = merge_timing_caches(args.timing_cache, [r.timing_cache for r in results])
        if not args.json:
            print(f"timing cache {args.timing_cache}: {merged} layer signatures", file=sys.stderr)
    if args.json:
        print(json.dumps({"plan": args.plan, "boards": [r.to_json() for r in results]}, indent=2))
    else:
        print(summary_table(results))
        for r in results:
            if (r.bench or {}).get("kind") == "plan-group-bench":
                print(f"\n{r.board}: plan group {r.remote_path}")
                print("\n".join(report_lines(r.bench or {})))
    return report_exit(results)


def merge_timing_caches(path: str, fetched: list[str | None]) -> int:
    """Fold every fetched cache into ``path`` (kept if it exists: caches are mergeable, the
    lower time of a tactic wins); written atomically under a lock. Returns the signatures it
    holds."""
    from gpu_kernels.timing_cache import TimingCache

    cache = TimingCache()
    for item in fetched:
        if item:
            cache.merge(TimingCache.load(item))
    cache.save(path)
    return len(cache)


def report_exit(results: list[DeployResult]) -> int:
    failed = [r.board for r in results if not r.ok]
    if failed:
        print(
            f"tandem: error: {len(failed)} of {len(results)} boards failed: {', '.join(failed)}",
            file=sys.stderr,
        )
        return 1
    return 0
