"""Render Graphviz DOT text to SVG with the ``dot`` program."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from partitioner.errors import TandemError


def render_svg(dot_text: str, out: str | os.PathLike[str]) -> Path:
    exe = shutil.which("dot")
    if exe is None:
        raise TandemError(
            "--svg needs Graphviz's 'dot' program: install it (apt-get install graphviz, "
            "brew install graphviz) or use --json"
        )
    path = Path(out)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        proc = subprocess.run(
            [exe, "-Tsvg", "-o", str(tmp)],
            input=dot_text,
            text=True,
            capture_output=True,
            timeout=300,
        )
        if proc.returncode != 0:
            raise TandemError(f"dot failed to draw {path}: {proc.stderr.strip()[:500]}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
