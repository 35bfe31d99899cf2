"""The ``tandem`` command line: one subcommand per module in ``tandem.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Errors derived from TandemError print one line and exit 1 (``--debug``
shows the traceback); usage errors exit 2 (argparse's convention); Ctrl-C exits 130 with one
line, at any moment: this module imports only what is light at the top, and ``main`` runs
everything else, the commands' imports included, inside its handler.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from partitioner.errors import TandemError
from tandem import __version__

# Order is the order of `tandem --help`. Adding a command = adding its module name here.
COMMAND_MODULES = [
    "zoo",
    "inspect",
    "run",
    "compare",
    "build",
    "plan_group",
    "run_group",
    "deploy",
    "board",
    "refit",
    "surgeon",
    "exec",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tandem",
        description="Build, inspect, run and deploy networks split between Jetson GPU and DLA.",
    )
    parser.add_argument("--version", action="version", version=f"tandem {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"tandem.commands.{name}").register(sub)
    for command in sub.choices.values():
        _add_plugin_arg(command)
    return parser


def _add_plugin_arg(parser: argparse.ArgumentParser) -> None:
    """Every command takes ``--plugin MODULE`` (docs/plugins.md); it runs that module's code.

    Commands with actions (``surgeon extract``) take it on each action: a parent's value would
    be overwritten by the action parser's default."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if nested:
        for action in nested:
            for child in action.choices.values():
                _add_plugin_arg(child)
        return
    if "-" not in parser.prefix_chars:
        return  # a command parsing foreign flags itself (exec: trtexec's)
    try:
        parser.add_argument(
            "--plugin",
            dest="plugin_modules",
            action="append",
            metavar="MODULE",
            help="import a plugin module (name or .py path) that registers custom ops; "
            "also read from TANDEM_PLUGINS",
        )
    except argparse.ArgumentError:
        pass  # the command defines its own --plugin


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with _ctrl_c_exits_at_once():
            _printable_output()
            parser = build_parser()
        return _run(parser.parse_args(argv))
    except KeyboardInterrupt:
        print("tandem: interrupted", file=sys.stderr, flush=True)
        if any(t.is_alive() for t in threading.enumerate() if t is not threading.current_thread()):
            # threads left behind on purpose (a group deploy's workers on hung boards) would
            # go on printing while the interpreter shuts down (a retry after a socket closed
            # under them, seen in a full test run): this line is the last word
            sys.stdout.flush()
            os._exit(130)
        return 130


def _run(args: argparse.Namespace) -> int:
    try:
        with _ctrl_c_exits_at_once():
            from partitioner.plugins import load_plugin_modules

            load_plugin_modules(getattr(args, "plugin_modules", None))
        return int(args.func(args) or 0)
    except TandemError as err:
        if args.debug:
            raise
        print(f"tandem: error: {err}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        return 0


@contextmanager
def _ctrl_c_exits_at_once() -> Iterator[None]:
    """While modules import (and the streams are reconfigured), Ctrl-C ends the process at
    once instead of raising: an exception raised in the middle of a C extension's
    initialisation can crash it (protobuf's did, with SIGSEGV), one in the middle of
    ``reconfigure`` leaves stderr unwritable, and nothing is being written yet that would need
    cleaning up. Only where Python's own handler is in place (not where SIGINT is ignored, nor
    off the main thread)."""
    shield = (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    )
    if shield:
        signal.signal(signal.SIGINT, _exit_interrupted)
    try:
        yield
    finally:
        if shield:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _exit_interrupted(signum: int, frame: object) -> None:
    os.write(2, b"tandem: interrupted\n")  # the raw fd: sys.stderr may be mid-reconfigure
    os._exit(130)


def _printable_output() -> None:
    """Any text prints: a character the terminal's encoding lacks (or a lone surrogate, which
    no encoding has, e.g. from a YAML escape) shows as a backslash escape, not an error."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


if __name__ == "__main__":
    sys.exit(main())
