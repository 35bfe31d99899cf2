"""The one table renderer of Tandem: every table the CLI prints and every table a report writes
to docs/ comes from :func:`table`.

Terminal text goes through ``rich``: on a TTY it fits the terminal's width (long cells wrap
inside their column) and the header is bold; piped or redirected it is plain ASCII with no
width limit, one row per line, so ``grep`` and scripts see whole rows. ``markdown=True`` gives
a GitHub Markdown table (``|`` in a cell escaped) for reports.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from rich import box
from rich.console import Console
from rich.table import Table

# Header, a rule of dashes under it, then rows; columns two spaces apart; ASCII only, so the
# same text reads in a log file, a CI page and a terminal without a Unicode font.
_PLAIN = box.Box("    \n    \n -  \n    \n    \n    \n    \n    \n", ascii=True)
_UNLIMITED = 100_000  # columns: piped output is never wrapped


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    right: Sequence[int] = (),
    markdown: bool = False,
    stream: TextIO | None = None,
) -> list[str]:
    """The table's lines. ``right``: indexes of right-aligned (numeric) columns. ``stream``
    (default stdout) is where the lines will be printed: a TTY there means colour and the
    terminal's width, anything else plain unwrapped text."""
    cells = [[str(c) for c in row] for row in rows]
    if markdown:
        return _markdown(headers, cells)
    out = stream if stream is not None else sys.stdout
    tty = _is_tty(out)
    grid = Table(
        box=_PLAIN,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
        header_style="bold" if tty else "",
        highlight=False,
    )
    for i, h in enumerate(headers):
        grid.add_column(h, justify="right" if i in right else "left", overflow="fold")
    for r in cells:
        grid.add_row(*r)
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=shutil.get_terminal_size().columns if tty else _UNLIMITED,
        force_terminal=tty,
        color_system="auto" if tty and "NO_COLOR" not in os.environ else None,
        highlight=False,
        emoji=False,
        markup=False,
    )
    console.print(grid)
    return [line.rstrip() for line in buffer.getvalue().splitlines()]


def _markdown(headers: Sequence[str], rows: list[list[str]]) -> list[str]:
    rows = [[c.replace("|", "\\|") for c in r] for r in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    fmt = "| " + " | ".join(f"{{:<{w}}}" for w in widths) + " |"
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return [fmt.format(*headers), rule, *(fmt.format(*r) for r in rows)]


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or foreign stream: plain text
        return False
