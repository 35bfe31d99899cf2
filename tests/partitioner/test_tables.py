"""The one table renderer: plain and unwrapped when piped, width-aware with a bold header on a
terminal, GitHub Markdown for reports."""

from __future__ import annotations

import io
import re

import pytest

from partitioner.tables import table

REASON = "concatenation on axis 4 of a 5-D tensor: DLA concatenates on the channel axis only"
ROWS = [("model.24.m.0.cat", "Concat", "3", REASON), ("fc", "Gemm", "12", "[unconfirmed] a|b")]
HEADERS = ("Layer", "Op", "Count", "Reason")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_piped_is_plain_ascii_one_row_per_line() -> None:
    lines = table(HEADERS, ROWS, right=(2,), stream=io.StringIO())
    assert lines[0].split() == list(HEADERS)
    assert set(lines[1]) == {"-", " "}
    assert lines[2] == f"model.24.m.0.cat  Concat      3  {REASON}"  # never wrapped
    assert lines[3].startswith("fc  ") and lines[3].endswith("12  [unconfirmed] a|b")  # as given
    assert all(line.isascii() and line == line.rstrip() for line in lines)
    assert "\x1b[" not in "".join(lines)


def test_terminal_fits_its_width_and_bolds_the_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.delenv("NO_COLOR", raising=False)
    lines = table(HEADERS, ROWS, right=(2,), stream=Terminal())
    plain = [re.sub(r"\x1b\[[0-9;]*m", "", line) for line in lines]
    assert max(len(line) for line in plain) <= 60 < len(REASON)
    assert "\x1b[1m" in lines[0]  # bold header
    assert "concatenation on axis" in plain[2] and len(plain) > 2 + len(ROWS)  # wrapped
    words = " ".join(plain[2:]).split()
    assert all(w in words for w in REASON.split())  # in its column, nothing cut off
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in "".join(table(HEADERS, ROWS, stream=Terminal()))


def test_markdown_escapes_pipes() -> None:
    lines = table(HEADERS, ROWS, markdown=True)
    assert lines[0].startswith("| Layer") and lines[1].startswith("|---")
    assert "| [unconfirmed] a\\|b " in lines[3] and lines[3].endswith(" |")
