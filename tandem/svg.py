"""Render Graphviz DOT text to SVG with the ``dot`` program."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from devices.io import write_atomic
from partitioner.errors import TandemError


def render_svg(dot_text: str, out: str | os.PathLike[str]) -> Path:
    exe = shutil.which("dot")
    if exe is None:
        raise TandemError(
            "--svg needs Graphviz's 'dot' program: install it (apt-get install graphviz, "
            "brew install graphviz) or use --json"
        )
    proc = subprocess.run(
        [exe, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=300
    )
    if proc.returncode != 0:
        raise TandemError(f"dot failed to draw {out}: {proc.stderr.decode().strip()[:500]}")
    return write_atomic(out, proc.stdout, error=TandemError)
