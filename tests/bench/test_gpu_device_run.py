"""bench/gpu_device_run.sh's ``tests`` job runs every GPU test: a GPU test file it does not
list would never run anywhere (CI has no GPU), as tests/gpu_kernels/test_lowering_split_sim.py's
did not for a session."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_device_script_lists_every_gpu_test_file() -> None:
    script = (ROOT / "bench" / "gpu_device_run.sh").read_text(encoding="utf-8")
    listed = set(re.findall(r"tests/[\w/]+\.py", script))
    marked = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("test_*.py")
        if re.search(r"pytest\.mark\.gpu\b", p.read_text(encoding="utf-8"))
    }
    assert marked, "no GPU tests found: the pattern is wrong"
    assert marked - listed == set(), "GPU tests missing from bench/gpu_device_run.sh"
    assert listed - marked == set(), "bench/gpu_device_run.sh lists files without GPU tests"
