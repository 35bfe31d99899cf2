"""The ONNX backend node tests, run through Tandem's importer and the numpy CPU backend.

The harness lives in ``bench/onnx_node_tests.py`` (which also regenerates
``docs/onnx-node-tests.md``); this test runs it and holds the line: at least 95 % of the cases it
runs pass, every failure has a reason, and the committed report lists every failure.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIN_PASS_RATE = 0.95


def _harness() -> ModuleType:
    path = ROOT / "bench" / "onnx_node_tests.py"
    spec = importlib.util.spec_from_file_location("tandem_bench_onnx_node_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def summary():  # type: ignore[no-untyped-def]
    return _harness().run_all()


def test_pass_rate(summary) -> None:  # type: ignore[no-untyped-def]
    assert summary.ran >= 500, f"only {summary.ran} node tests ran; the harness lost cases"
    failures = "\n".join(f"{o.name}: {o.reason}" for o in summary.of("fail"))
    assert summary.pass_rate >= MIN_PASS_RATE, (
        f"{len(summary.of('pass'))}/{summary.ran} passed "
        f"({100 * summary.pass_rate:.1f} %):\n{failures}"
    )


def test_every_failure_has_a_reason_and_is_listed(summary) -> None:  # type: ignore[no-untyped-def]
    report = (ROOT / "docs" / "onnx-node-tests.md").read_text()
    for outcome in summary.of("fail"):
        assert outcome.reason, f"{outcome.name} failed without a reason"
        assert f"`{outcome.name}`" in report, (
            f"{outcome.name} fails but docs/onnx-node-tests.md does not list it; "
            "regenerate it with `.venv/bin/python bench/onnx_node_tests.py`"
        )
