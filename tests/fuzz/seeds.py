"""The valid inputs every mutation starts from, made the way a user makes them: the model with
``tandem zoo``, the plan with ``tandem build``; the YAML seeds are the ones the loaders' own tests
and docs use."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.fuzz.harness import REPO, Limits, run_tandem
from tests.partitioner.test_policy_fuzz import VALID as POLICY_SEED
from tests.targets.test_inventory import ANSIBLE_INI, ANSIBLE_YAML, TANDEM_YAML

TARGET = "orin-agx-64gb"


@dataclass(frozen=True)
class InventorySeed:
    filename: str  # the reader tells Ansible INI from YAML by content; names kept as users write
    text: str
    board: str
    group: str


@dataclass(frozen=True)
class Seeds:
    folder: Path
    model: Path
    plan: Path
    npz: Path
    policy: str
    target: str
    inventories: tuple[InventorySeed, ...]


def _tandem(*argv: str, cwd: Path) -> None:
    result = run_tandem(list(argv), cwd, Limits(timeout_s=600, rss_bytes=1 << 40))
    if result.exit != 0:
        raise RuntimeError(f"seed `tandem {' '.join(argv)}` failed: {result.stderr.strip()}")


def make_seeds(folder: Path) -> Seeds:
    folder.mkdir(parents=True, exist_ok=True)
    model, plan, npz = folder / "model.onnx", folder / "model.plan", folder / "inputs.npz"
    _tandem("zoo", "resnet18", "--resolution", "32", "-o", str(model), cwd=folder)
    _tandem("build", str(model), "--target", TARGET, "--fp16", "--quiet", "-o", str(plan),
            cwd=folder)  # fmt: skip
    buf = io.BytesIO()
    np.savez(buf, input=np.random.default_rng(0).standard_normal((1, 3, 32, 32), np.float32))
    npz.write_bytes(buf.getvalue())
    return Seeds(
        folder=folder,
        model=model,
        plan=plan,
        npz=npz,
        # INT8 would need calibration data in every build; the seed is to be valid as it is.
        policy=POLICY_SEED.replace("precision: int8", "precision: fp16", 1),
        target=(REPO / "targets" / "boards" / "orin-nx-16gb.yaml").read_text(encoding="utf-8"),
        inventories=(  # Ansible INI first: host ranges and group chains are its own syntax
            InventorySeed("hosts", ANSIBLE_INI, "orin02", "lab"),
            InventorySeed("inventory.yaml", TANDEM_YAML, "orin1", "lab"),
            InventorySeed("inv.yml", ANSIBLE_YAML, "nx3", "jetsons"),
        ),
    )
