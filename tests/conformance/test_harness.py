"""The conformance harness reports each kind of failure, with its reason (tiny ONNX graphs
written the way an export script writes a model: NAME.onnx + .npz + .json)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench.conformance import (
    FP32_NOISE_FACTOR,
    SOURCES,
    Row,
    Source,
    check_model,
    summary_counts,
)
from devices.io import run_onnxruntime
from tests.conformance.export_common import Meta, write_export


def _write(folder: Path, name: str, tail: list[onnx.NodeProto] | None = None,
           scale: float = 1.0) -> Path:  # fmt: skip
    """Conv -> Relu (-> ``tail``), seeded; the "framework" outputs are ONNX Runtime's times
    ``scale`` (1: a faithful exporter)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r" if tail else "out"])]  # fmt: skip
    nodes += tail or []
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    scratch = folder / f"{name}.scratch.onnx"
    onnx.save(model, scratch)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    try:
        expected = {k: v * scale for k, v in run_onnxruntime(scratch, {"input": x}).items()}
    except Exception:  # ONNX Runtime cannot run it either (an unknown op): no framework output
        expected = {}
    meta = Meta(source="test", exporter="onnx.helper", opset=17)
    return write_export(folder, name, model.SerializeToString(), {"input": x}, expected, meta)


def test_a_faithful_model_passes_every_check(tmp_path: Path) -> None:
    row = check_model(_write(tmp_path, "plain"), "test")
    assert not row.failures, row.failures
    assert row.cpu_vs_ort is not None and row.cpu_vs_ort <= 1e-4
    assert all(b["ok"] and b["lowered"] == b["gpu_segments"] >= 1 for b in row.builds.values())
    assert row.dla["layers"] and row.inspect_s is not None


def test_an_unlowerable_layer_fails_the_gpu_only_builds(tmp_path: Path) -> None:
    # LRN is imported and has a CPU reference but no GPU kernel (should it get one, pick
    # another op: gpu_kernels.lowering.registry.lowered_ops() lists those with one): the plan
    # records its segment as not lowered (or, once placement asks the lowering, the layer goes
    # off the GPU); either fails the build check
    path = _write(tmp_path, "lrn", [helper.make_node("LRN", ["r"], ["out"], size=3)])
    row = check_model(path, "test")
    for target in ("orin-agx-64gb", "xavier-agx"):
        why = row.failures.get(f"build {target}", "")
        assert "LRN" in why and ("not lowered" in why or "off the GPU" in why), row.failures
    assert "cpu-parity" not in row.failures


def test_outputs_unlike_the_framework_fail_parity_with_the_numbers(tmp_path: Path) -> None:
    row = check_model(_write(tmp_path, "drift", scale=1.01), "test")
    assert "cpu-parity" not in row.failures  # ONNX Runtime still agrees
    why = row.failures["framework-parity"]
    assert "max rel err" in why and row.cpu_vs_framework is not None
    assert 5e-3 < row.cpu_vs_framework < 2e-2


def _write_cancelling(folder: Path, name: str, scale: float = 1.0) -> Path:
    """Two Conv+BN branches 1e-4 apart, subtracted: the difference keeps only what FP32
    rounding left, so any two FP32 evaluations (ONNX Runtime with and without its BN folding,
    Tandem's reference) are ~2e-3 apart relative to it, far above 1e-4, yet all are right.
    The "framework" outputs are ONNX Runtime's times ``scale``."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    bn = [numpy_helper.from_array(a.astype(np.float32), k) for k, a in (
        ("s", rng.uniform(0.5, 2, 8)), ("b", rng.standard_normal(8)),
        ("m", rng.standard_normal(8) * 0.1), ("v", rng.uniform(0.5, 2, 8)))]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c1", "s", "b", "m", "v"], ["b1"]),
             helper.make_node("Conv", ["input", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c2", "s", "b", "m", "v"], ["b2"]),
             helper.make_node("Sub", ["b2", "b1"], ["out"])]  # fmt: skip
    weights = [numpy_helper.from_array(w, "w"),
               numpy_helper.from_array((w * (1 + 1e-4)).astype(np.float32), "w2"), *bn]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], weights,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    scratch = folder / f"{name}.scratch.onnx"
    onnx.save(model, scratch)
    x = (rng.standard_normal((1, 3, 16, 16)) * 100).astype(np.float32)
    expected = {k: v * scale for k, v in run_onnxruntime(scratch, {"input": x}).items()}
    meta = Meta(source="test", exporter="onnx.helper", opset=17)
    return write_export(folder, name, model.SerializeToString(), {"input": x}, expected, meta)


def test_rounding_noise_above_1e_4_passes_within_the_models_own_noise_floor(
        tmp_path: Path) -> None:  # fmt: skip
    row = check_model(_write_cancelling(tmp_path, "cancel"), "test")
    assert "cpu-parity" not in row.failures and "framework-parity" not in row.failures
    assert row.cpu_vs_ort is not None and row.fp32_noise is not None
    # both well above 1e-4: the floor, not the fixed bound, let it pass
    assert row.cpu_vs_ort > 5e-4 and row.fp32_noise > 5e-4
    assert row.cpu_vs_ort <= FP32_NOISE_FACTOR * row.fp32_noise


def test_the_noise_floor_does_not_grow_with_the_exporters_drift(tmp_path: Path) -> None:
    # ONNX Runtime against itself sets the floor: a framework 5 % away fails all the same
    row = check_model(_write_cancelling(tmp_path, "cancel", scale=1.05), "test")
    assert "cpu-parity" not in row.failures
    assert row.fp32_noise is not None and FP32_NOISE_FACTOR * row.fp32_noise < 4e-2
    assert "max rel err" in row.failures["framework-parity"]


def test_an_unknown_op_fails_import_in_one_line(tmp_path: Path) -> None:
    node = helper.make_node("NoSuchOp", ["r"], ["out"], domain="com.example")
    path = _write(tmp_path, "unknown", [node])
    model = onnx.load(path)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    onnx.save(model, path)
    row = check_model(path, "test")
    assert list(row.failures) == ["import"]
    why = row.failures["import"]
    assert "NoSuchOp" in why and "\n" not in why and "Traceback" not in why
    assert str(tmp_path) not in why  # the report names the file, not the cache folder


def test_a_source_without_its_script_or_venv_says_why(tmp_path: Path) -> None:
    assert "not on this branch" in str(Source("nosuch", ".venv-export", "X_PY").missing())
    assert SOURCES["torchvision"].script.exists()
    venv = Source("torchvision", str(tmp_path / "no-venv"), "TANDEM_TEST_UNSET_PYTHON")
    assert "make export-env" in str(venv.missing())


def test_summary_counts_a_check_stopped_by_an_earlier_one_as_not_run() -> None:
    rows = [Row(n, "test") for n in "abcd"]
    rows[0].failures["export"] = "export: it raised"
    rows[1].failures["import"] = "unsupported operators: Mod"
    rows[2].failures["cpu-parity"] = "max rel err 1e-2"
    counts = summary_counts(rows)
    assert counts["import"] == {"pass": 2, "fail": 1, "not run": 1}
    assert counts["cpu-parity"] == {"pass": 1, "fail": 1, "not run": 2}
    assert counts["framework-parity"] == {"pass": 1, "fail": 0, "not run": 3}
    assert counts["build orin-agx-64gb"] == {"pass": 2, "fail": 0, "not run": 2}
