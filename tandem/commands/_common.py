"""Pieces several commands share: argument groups, table printing, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np


def add_model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dim",
        action="append",
        metavar="NAME=N",
        help="fix a symbolic input dimension, e.g. --dim batch=1 (repeatable)",
    )
    parser.add_argument(
        "--no-optimize",
        action="store_true",
        help="skip the import-time passes (constant folding, BN folding, identity removal)",
    )


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document on stdout and nothing else"
    )


def print_json(doc: Any) -> None:
    json.dump(doc, sys.stdout, indent=2, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """An aligned text table; columns listed in ``right`` are right-aligned (numbers)."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ]
        return "  ".join(parts).rstrip()

    out = [line(list(headers)), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    return "\n".join(out)


def shape_text(shape: Sequence[Any] | None) -> str:
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"


def human(n: float, unit: str = "") -> str:
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def add_target_args(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("target and placement")
    group.add_argument(
        "--target",
        required=required,
        metavar="T",
        help="a catalog board (orin-agx-64gb, xavier-nx, ...), a target YAML path, or 'host'",
    )
    group.add_argument("--power-mode", metavar="M", help="nvpmodel mode (MAXN, 15W, ...)")
    group.add_argument("--policy", metavar="P.yaml", help="device policy (docs/policy.md)")
    group.add_argument("--partition", choices=("trt", "cost"), help="placement strategy")
    group.add_argument("--dla-core", type=int, choices=(0, 1), help="DLA core to use")
    prec = group.add_mutually_exclusive_group()
    prec.add_argument("--fp32", dest="precision", action="store_const", const="fp32")
    prec.add_argument("--fp16", dest="precision", action="store_const", const="fp16")
    prec.add_argument("--int8", dest="precision", action="store_const", const="int8")
    group.add_argument("--calib", metavar="DIR", help="folder of .npz calibration inputs (INT8)")
    group.add_argument(
        "--calib-random",
        type=int,
        default=0,
        metavar="N",
        help="calibrate INT8 on N seeded random inputs (a smoke run, not for accuracy)",
    )
    group.add_argument("--calib-cache", metavar="FILE", help="TensorRT-format calibration cache")
    group.add_argument(
        "--timing-cache", metavar="FILE",
        help="GPU tactic timing cache (JSON): picks tactics at build; on a GPU, `run` autotunes "
        "and writes what it measured back to it",
    )
