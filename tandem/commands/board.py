"""``tandem board setup|facts NAME``: install Tandem on a board; read and check its identity."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tandem.commands._common import print_table
from targets.board import board_facts, setup_board
from targets.inventory import load_inventory


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "board",
        help="install Tandem on a board (setup) or check its identity (facts)",
        description="setup: upload the wheels of a local wheelhouse and install Tandem into a "
        "venv on the board, offline. facts: read L4T, JetPack, CUDA, TensorRT, DLA cores, power "
        "mode and arch and check "
        "them against the board's target.",
    )
    p.add_argument("action", choices=["setup", "facts"])
    p.add_argument("name", metavar="NAME", help="a board of the inventory")
    p.add_argument("--inventory", metavar="INV", help="inventory file (see `tandem deploy`)")
    p.add_argument(
        "--wheelhouse",
        metavar="DIR",
        help="setup: folder of wheels to install from "
        "(pip wheel --no-deps -w DIR . ; pip download --platform "
        "manylinux2014_aarch64 --python-version 3.10 --only-binary=:all: -d DIR .)",
    )
    p.add_argument(
        "--no-deps",
        action="store_true",
        help="setup: install Tandem only; the board already has its dependencies",
    )
    p.add_argument(
        "--isolated",
        action="store_true",
        help="setup: a venv without the board's system packages (TensorRT's Python "
        "bindings come from JetPack's apt packages, so the default includes them)",
    )
    p.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust the board's host key on first use (recorded in known_hosts)",
    )
    p.add_argument("--known-hosts", metavar="FILE")
    p.add_argument("--json", action="store_true", help="facts: print one JSON document")
    p.set_defaults(func=lambda args: run(args, p))


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    board = load_inventory(args.inventory).board(args.name)
    ssh = {"accept_new_host_key": args.accept_new_host_key, "known_hosts": args.known_hosts}
    if args.action == "setup":
        if not args.wheelhouse:
            parser.error("board setup needs --wheelhouse DIR")
        result = setup_board(
            board,
            args.wheelhouse,
            system_site_packages=not args.isolated,
            no_deps=args.no_deps,
            progress=lambda b, event, d: print(
                f"{b}: {event} {d.get('path', '')}".rstrip(), file=sys.stderr
            ),
            **ssh,
        )
        print(
            f"{result.board}: tandem-rt {result.version} in {result.venv} "
            f"({len(result.uploaded)} of {len(result.wheels)} wheels uploaded, "
            f"{result.seconds:.1f} s)"
        )
        return 0
    facts = board_facts(board, **ssh)
    if args.json:
        print(json.dumps(facts.to_json(), indent=2))
    else:
        print(f"board {facts.board}  target {facts.target}")
        for fact in ("arch", "l4t", "jetpack", "cuda", "tensorrt", "dla_cores", "power_mode",
                     "dla_export"):
            value = getattr(facts, fact)
            print(f"  {fact:<11} {'-' if value in (None, '') else value}")
        print_table(
            ("Check", "Expected", "Actual", "OK"),
            [(c.fact, c.expected, c.actual, "yes" if c.ok else "NO") for c in facts.checks],
        )
    mismatch = facts.mismatch()
    if mismatch is not None:
        print(f"tandem: error: {mismatch}", file=sys.stderr)
        return 1
    return 0
