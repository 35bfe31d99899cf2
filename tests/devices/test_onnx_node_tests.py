"""The ONNX backend node tests, run through Tandem's importer and the numpy CPU backend.

The harness lives in ``bench/onnx_node_tests.py`` (which also regenerates
``docs/onnx-node-tests.md``); this test runs it and holds the line: at least 95 % of the in-scope
cases pass, a case that is not run counting as a failure; every failure and every case not run
has a reason, and the committed report lists each of them.
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
    assert summary.in_scope >= 700, f"only {summary.in_scope} cases in scope; the harness lost some"
    passed = len(summary.of("pass"))
    assert summary.pass_rate == passed / (summary.ran + len(summary.of("notrun")))
    failures = "\n".join(f"{o.name}: {o.reason}" for o in summary.of("fail") + summary.of("notrun"))
    assert summary.pass_rate >= MIN_PASS_RATE, (
        f"{passed}/{summary.in_scope} in-scope cases passed "
        f"({100 * summary.pass_rate:.1f} %):\n{failures}"
    )


def test_narrow_element_types_run(summary) -> None:  # type: ignore[no-untyped-def]
    """bfloat16 / float8 / float4 / int4 / int2 cases run (Cast, QuantizeLinear...) and pass."""
    narrow = [o for o in summary.outcomes if o.narrow and o.status in ("pass", "fail")]
    assert len(narrow) >= 100, f"only {len(narrow)} narrow-type cases ran"
    for kind in ("bfloat16", "float8_e4m3fn", "float8_e5m2fnuz", "int4", "uint4", "float4_e2m1fn"):
        ran = [o for o in narrow if kind in o.narrow.split(", ")]
        assert ran and all(o.status == "pass" for o in ran), (
            kind, [(o.name, o.reason) for o in ran if o.status != "pass"]
        )


def test_every_failure_has_a_reason_and_is_listed(summary) -> None:  # type: ignore[no-untyped-def]
    import re

    import onnx

    for outcome in summary.of("fail") + summary.of("notrun"):
        assert outcome.reason, f"{outcome.name} ({outcome.status}) has no reason"
    report = (ROOT / "docs" / "onnx-node-tests.md").read_text(encoding="utf-8")
    made_with = re.search(r"onnx (\d+\.\d+\.\d+)\)", report)
    if made_with is None or made_with.group(1) != onnx.__version__:
        pytest.skip(
            f"docs/onnx-node-tests.md was generated with onnx "
            f"{made_with.group(1) if made_with else '?'}, onnx {onnx.__version__} is installed "
            "(other node tests): regenerate it with `.venv/bin/python bench/onnx_node_tests.py`"
        )
    for outcome in summary.of("fail") + summary.of("notrun"):
        assert f"`{outcome.name}`" in report, (
            f"{outcome.name} ({outcome.status}) is not listed in docs/onnx-node-tests.md; "
            "regenerate it with `.venv/bin/python bench/onnx_node_tests.py`"
        )


def test_reads_shipped_node_test_directories(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Wheels that ship ``onnx/backend/test/data/node`` are read from disk, .pb files and all."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    harness = _harness()
    case_dir = tmp_path / "test_tandem_relu"
    (case_dir / "test_data_set_0").mkdir(parents=True)
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "relu", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, (2, 3))],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, (2, 3))],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]),
              str(case_dir / "model.onnx"))  # fmt: skip
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    for name, value in (("input_0", x), ("output_0", np.maximum(x, 0))):
        path = case_dir / "test_data_set_0" / f"{name}.pb"
        path.write_bytes(numpy_helper.from_array(value).SerializeToString())
    monkeypatch.setattr(harness, "_shipped_dir", lambda: tmp_path)
    source, cases = harness.collect()
    assert str(tmp_path) in source and [c.name for c in cases] == ["test_tandem_relu"]
    assert harness.run_case(cases[0]).status == "pass"
