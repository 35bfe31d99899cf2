"""Plans stay byte-identical: every zoo model at FP32/FP16/INT8 on two targets, against the
sha256 digests in tests/data/plan_digests.json (made by bench/plan_digests.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _harness() -> ModuleType:
    path = ROOT / "bench" / "plan_digests.py"
    spec = importlib.util.spec_from_file_location("tandem_bench_plan_digests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


def test_the_record_covers_every_zoo_model_precision_and_target() -> None:
    from tandem.zoo import ZOO_MODELS

    bench = _harness()
    recorded = json.loads(bench.RECORD.read_text(encoding="utf-8"))
    keys = {(p["model"], p["precision"], p["target"]) for p in recorded["plans"]}
    assert keys == {
        (m, p, t) for m in ZOO_MODELS for p in bench.PRECISIONS for t in bench.TARGETS
    }
    assert set(recorded["nvrtc"]) == set(bench.TARGETS)


def test_changed_names_the_plans_that_differ() -> None:
    bench = _harness()
    record = {"plans": [
        {"model": "a", "resolution": 32, "precision": "fp16", "target": "t", "sha256": "1"},
        {"model": "b", "resolution": 32, "precision": "fp16", "target": "t", "sha256": "2"},
    ]}
    assert bench.changed(record, {"a@32/fp16/t": "1", "b@32/fp16/t": "2"}) == []
    assert bench.changed(record, {"a@32/fp16/t": "1", "b@32/fp16/t": "3"}) == ["b@32/fp16/t"]
    assert bench.changed(record, {"a@32/fp16/t": "1"}) == ["b@32/fp16/t"]


@pytest.mark.slow
def test_plans_are_byte_identical_to_the_record() -> None:
    bench = _harness()
    recorded = json.loads(bench.RECORD.read_text(encoding="utf-8"))
    try:
        here = bench.nvrtc_versions()
    except Exception as err:  # no NVRTC of a target's CUDA major: its cubins cannot be made
        pytest.skip(f"cannot compile for every recorded target here: {err}")
    if here != recorded["nvrtc"]:
        pytest.skip(
            f"the record's cubins come from NVRTC {recorded['nvrtc']}, this machine has {here}; "
            "install from the lock (requirements/test.txt) to compare"
        )
    found = {case.key: digest for case, digest, _ in bench.digests()}
    changed = bench.changed(recorded, found)
    assert not changed, (
        f"{len(changed)} plan(s) changed bytes: {', '.join(changed)}. If the change is "
        f"intended, regenerate the record with `{bench.REGENERATE}` and say why in the commit"
    )
