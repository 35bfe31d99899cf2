"""The ``tandem`` command line: one subcommand per module in ``tandem.commands``.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func(args) -> int``. Errors derived from TandemError print one line and exit 1 (``--debug``
shows the traceback); usage errors exit 2 (argparse's convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from partitioner.errors import TandemError
from partitioner.plugins import load_plugin_modules
from tandem import __version__

# Order is the order of `tandem --help`. Adding a command = adding its module name here.
COMMAND_MODULES = [
    "zoo",
    "inspect",
    "run",
    "compare",
    "build",
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        load_plugin_modules(getattr(args, "plugin_modules", None))
        return int(args.func(args) or 0)
    except TandemError as err:
        if args.debug:
            raise
        print(f"tandem: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("tandem: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
