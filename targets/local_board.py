"""Which catalog board this machine is, when Tandem runs on a Jetson itself.

The same facts ``tandem board facts`` reads over SSH (``targets.board``: ``/etc/nv_tegra_release``
marks an L4T system), plus the two that name the module: the device tree's model string
(``/proc/device-tree/model``, e.g. "NVIDIA Jetson AGX Orin Developer Kit") and the memory size
(``/proc/meminfo``), which separates the 32 GB / 64 GB AGX Orin and the 8 GB / 16 GB Orin NX.
``root`` lets a test lay out those files in a directory.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from targets.board import parse_l4t, parse_power_mode

# model-string words -> (catalog name below the memory split, name above it, split in GiB).
# MemTotal is what the kernel leaves, a little under the module's size (62.8 GiB on 64 GB).
_MODULES: tuple[tuple[tuple[str, ...], str, str, float], ...] = (
    (("agx", "orin"), "orin-agx-32gb", "orin-agx-64gb", 40.0),
    (("orin", "nx"), "orin-nx-8gb", "orin-nx-16gb", 12.0),
    (("orin", "nano"), "orin-nano-8gb", "orin-nano-8gb", 0.0),
    (("xavier", "nx"), "xavier-nx", "xavier-nx", 0.0),
    (("agx", "xavier"), "xavier-agx", "xavier-agx", 0.0),
    (("jetson-agx",), "xavier-agx", "xavier-agx", 0.0),  # L4T R32/R35's Xavier model string
)


@dataclass(frozen=True)
class LocalBoard:
    target: str  # catalog name
    model: str  # the device tree's model string
    l4t: str | None
    mem_gib: float | None
    power_mode: str | None = None  # ``nvpmodel -q``'s mode name, e.g. "MAXN", "MODE_15W"


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def nvpmodel_query() -> str | None:
    """``nvpmodel -q`` on this machine (the power mode ``tandem board facts`` reads over SSH)."""
    exe = shutil.which("nvpmodel")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def local_board(
    root: str | Path = "/", nvpmodel: Callable[[], str | None] = nvpmodel_query
) -> LocalBoard | None:
    """This machine's catalog board, or None when it is not a Jetson this catalog describes."""
    base = Path(root)
    release = _read(base / "etc/nv_tegra_release")
    model = (_read(base / "proc/device-tree/model") or "").replace("\0", "").strip()
    if release is None or not model:
        return None
    mem_gib = None
    for line in (_read(base / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem_gib = int(line.split()[1]) / (1 << 20)  # kB -> GiB
    lowered = model.lower()
    for keys, small, large, split in _MODULES:
        if all(k in lowered for k in keys):
            name = large if mem_gib is not None and mem_gib > split else small
            mode = parse_power_mode(nvpmodel() or "")
            return LocalBoard(name, model, parse_l4t(release), mem_gib, mode)
    return None
