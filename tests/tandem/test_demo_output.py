"""Issue 18: ``make demo`` prints a summary a user reads in one screen — at most 60 lines,
counting the command lines make echoes — and every time in it names its source.

The commands are read from the Makefile's ``demo:`` recipe (so the test follows the Makefile)
and run as make would run them, with this checkout's ``python -m tandem`` for ``$(BIN)/tandem``.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sshd import REPO
from tests.tandem.test_time_sources import unlabelled

SCREEN = 60  # lines: one terminal screen (issue 18 acceptance)


def demo_commands(makefile: Path, out: Path) -> list[list[str]]:
    """The ``demo:`` recipe's commands, make's variables substituted."""
    text = makefile.read_text(encoding="utf-8")
    variables = dict(re.findall(r"^(\w+)\s*\??:?=\s*(.*?)\s*$", text, re.M))
    variables.update(DEMO=str(out), BIN="")
    recipe = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, f"{makefile}: no demo: recipe"
    commands = []
    for line in recipe.group(1).splitlines():
        line = line.strip()
        if line.startswith("@"):  # make runs these silently (mkdir)
            continue
        line = re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], line)
        argv = shlex.split(line)
        assert argv[0] == "/tandem", f"demo runs something other than tandem: {line}"
        commands.append(argv[1:])
    return commands


@pytest.mark.slow
def test_make_demo_fits_one_screen(tmp_path: Path) -> None:
    commands = demo_commands(REPO / "Makefile", tmp_path)
    assert len(commands) >= 5  # zoo, inspect (x2), build, run, compare
    printed: list[str] = []
    for argv in commands:
        proc = subprocess.run(
            [sys.executable, "-m", "tandem", *argv],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.returncode == 0, f"tandem {' '.join(argv)}:\n{proc.stdout}"
        printed += ["tandem " + " ".join(argv), *proc.stdout.splitlines()]  # make echoes each
    text = "\n".join(printed)
    assert len(printed) <= SCREEN, f"make demo prints {len(printed)} lines:\n{text}"
    assert not unlabelled(text), "\n".join(unlabelled(text))
    # the summary still answers the questions the full tables did
    assert "--verbose" in text  # where the full tables are
    assert "Layers not on the DLA:" in text and "Predicted for" in text
    assert "match" in text
