"""The ONNX backend node tests, run through Tandem's importer and the numpy CPU backend.

The harness lives in ``bench/onnx_node_tests.py`` (which also regenerates
``docs/onnx-node-tests.md``); this test runs it and holds the line: at least 95 % of the in-scope
cases pass, a case that is not run counting as a failure; every failure and every case not run
has a reason, and the committed report lists each of them.

The expected values come from the installed ``onnx`` package's generators, and those of the
narrow types from ``ml_dtypes``' conversions; the report names the versions it was made with
(the ones ``requirements/test.txt`` pins). Any failure here names them, with what to do.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
MIN_PASS_RATE = 0.95
REPORT = ROOT / "docs" / "onnx-node-tests.md"
REGENERATE = "make node-tests-report"


def _versions_in_report() -> dict[str, str]:
    import re

    head = REPORT.read_text(encoding="utf-8").split("### Failures")[0]
    return dict(re.findall(r"\b(onnx|ml_dtypes|numpy) (\d+\.\d+\.\d+)\b", head))


def _installed_versions() -> dict[str, str]:
    import ml_dtypes
    import numpy
    import onnx

    return {"onnx": onnx.__version__, "ml_dtypes": ml_dtypes.__version__,
            "numpy": numpy.__version__}  # fmt: skip


def _hint() -> str:
    """What to do when the node tests disagree with this checkout."""
    made, have = _versions_in_report(), _installed_versions()
    changed = [f"{k} {made.get(k, '?')} -> {v}" for k, v in have.items() if made.get(k) != v]
    if not changed:
        return f"(report and installed versions agree: {have})"
    return (
        f"docs/onnx-node-tests.md was made with other versions than installed "
        f"({', '.join(changed)}); ONNX's expected values come from these packages. Install "
        "from the lock (requirements/test.txt, as `make test` does), or, after `make lock` "
        f"moved them on purpose, regenerate the report with `{REGENERATE}` and review its diff"
    )


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
        f"({100 * summary.pass_rate:.1f} %):\n{failures}\n{_hint()}"
    )


def test_report_made_with_the_installed_versions() -> None:
    made, have = _versions_in_report(), _installed_versions()
    assert made == have, _hint()


def test_narrow_element_types_run(summary) -> None:  # type: ignore[no-untyped-def]
    """bfloat16 / float8 / float4 / int4 / int2 cases run (Cast, QuantizeLinear...) and pass."""
    narrow = [o for o in summary.outcomes if o.narrow and o.status in ("pass", "fail")]
    assert len(narrow) >= 100, f"only {len(narrow)} narrow-type cases ran"
    for kind in ("bfloat16", "float8_e4m3fn", "float8_e5m2fnuz", "int4", "uint4", "float4_e2m1fn"):
        ran = [o for o in narrow if kind in o.narrow.split(", ")]
        assert ran and all(o.status == "pass" for o in ran), (
            kind, [(o.name, o.reason) for o in ran if o.status != "pass"], _hint()
        )


def test_every_failure_has_a_reason_and_is_listed(summary) -> None:  # type: ignore[no-untyped-def]
    for outcome in summary.of("fail") + summary.of("notrun"):
        assert outcome.reason, f"{outcome.name} ({outcome.status}) has no reason"
    report = REPORT.read_text(encoding="utf-8")
    for outcome in summary.of("fail") + summary.of("notrun"):
        assert f"`{outcome.name}`" in report, (
            f"{outcome.name} ({outcome.status}: {outcome.reason}) is not listed in "
            f"docs/onnx-node-tests.md. {_hint()}"
        )


def test_out_of_range_float_to_int4_casts_are_not_compared() -> None:
    """ONNX's Cast spec: float -> fixed point is undefined out of range (so NaN / inf too)."""
    import numpy as np
    from onnx import TensorProto, helper

    harness = _harness()
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.INT4)], "cast",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (5,))],
        [helper.make_tensor_value_info("y", TensorProto.INT4, (5,))],
    )
    model = helper.make_model(graph)
    x = np.array([-9.0, -8.0, 7.0, 8.0, np.nan], np.float32)
    assert harness.spec_undefined(model, [x]).tolist() == [True, False, False, True, True]
    assert harness.spec_undefined(model, [x[1:3]]) is None  # all in range: compare everything


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
