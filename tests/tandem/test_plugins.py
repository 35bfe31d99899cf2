"""Plugins (issue 7 item 7): a model with a custom op imports, places, builds, runs and matches
its numpy reference (checked against ONNX Runtime on the same model with the op written as
standard ONNX ops); the plan records the plugin and is refused without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from devices.plan import read_plan
from devices.runtime import PlanRunner
from partitioner.errors import UnsupportedOpError
from partitioner.onnx_import import import_onnx
from partitioner.plugins import PLUGINS, PluginError, PluginRegistry
from tandem.cli import main
from tests.models import ort_run
from tests.tandem import swish2_plugin

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_FILE = Path(swish2_plugin.__file__)
BETA = 1.5


def swish_model(path: Path, custom: bool = True, seed: int = 0) -> Path:
    """conv -> Swish2 -> conv; with ``custom=False`` Swish2 is written as x * Sigmoid(beta x)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array((rng.standard_normal((8, 3, 3, 3)) * 0.3).astype("f4"), "w1")
    w2 = numpy_helper.from_array((rng.standard_normal((4, 8, 3, 3)) * 0.3).astype("f4"), "w2")
    inits = [w1, w2]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1", pads=[1, 1, 1, 1])]
    if custom:
        nodes.append(
            helper.make_node("Swish2", ["a"], ["b"], name="swish", domain="custom", beta=BETA)
        )
    else:
        inits.append(numpy_helper.from_array(np.array(BETA, "f4"), "beta"))
        nodes += [
            helper.make_node("Mul", ["a", "beta"], ["ab"], name="scaled"),
            helper.make_node("Sigmoid", ["ab"], ["s"], name="gate"),
            helper.make_node("Mul", ["a", "s"], ["b"], name="swish"),
        ]
    nodes.append(helper.make_node("Conv", ["b", "w2"], ["y"], name="conv2", pads=[1, 1, 1, 1]))
    graph = helper.make_graph(
        nodes,
        "swish_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16, 16])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17)]
    if custom:
        opsets.append(helper.make_opsetid("custom", 1))
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path


@pytest.fixture
def swish2() -> Iterator[None]:
    """The plugin registered for one test, then removed (the registry is process-wide)."""
    PLUGINS.register(
        "Swish2",
        "custom",
        version=1,
        reference=swish2_plugin.swish2,
        infer_shape=swish2_plugin.same_shape,
        cuda_source=swish2_plugin.CUDA_SOURCE,
        support={"gpu": ["fp32", "fp16"], "dla": False},
    )
    yield
    PLUGINS.deregister("Swish2", "custom")


@pytest.fixture
def models(tmp_path: Path) -> tuple[Path, Path, Path]:
    custom = swish_model(tmp_path / "swish.onnx")
    reference = swish_model(tmp_path / "swish_ref.onnx", custom=False)
    feeds = tmp_path / "in.npz"
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype("f4")
    np.savez(feeds, x=x)
    return custom, reference, feeds


def _plan_outputs(plan: Path, feeds: Path, out: Path, *extra: str) -> np.ndarray:
    assert main(["run", str(plan), "--inputs", str(feeds), "--save-outputs", str(out),
                 "--backend", "cpu", *extra]) == 0  # fmt: skip
    return np.load(out)["y"]


@pytest.mark.parametrize(
    "target, precision, atol",
    [("host", "--fp32", 1e-5), ("orin-agx-64gb", "--fp16", 0.05)],
)
def test_custom_op_builds_runs_and_matches_reference(
    models, tmp_path, target, precision, atol, capsys
):
    custom, reference, feeds = models
    plan = tmp_path / "swish.plan"
    args = ["build", str(custom), "--target", target, precision, "-o", str(plan), "--quiet"]
    assert main([*args, "--plugin", str(PLUGIN_FILE)]) == 0
    try:
        got = _plan_outputs(plan, feeds, tmp_path / "out.npz")
        expected = ort_run(reference, dict(np.load(feeds)))["y"]
        assert got.shape == expected.shape == (1, 4, 16, 16)
        assert float(np.max(np.abs(got - expected))) < atol
        header = read_plan(plan).header
        (entry,) = header["plugins"]
        assert entry["key"] == "custom::Swish2" and entry["version"] == "1"
        assert entry["layers"] == ["swish"]
        seg = next(s for s in header["segments"] if "swish" in s["layers"])
        assert entry["segments"] == [seg["name"]]
        # the plugin layer never goes to the DLA: its declaration says so, and the reason too
        layer = next(r for r in header["layers"] if r["name"] == "swish")
        assert not layer["device"].startswith("dla")
        if target != "host":
            assert "plugin custom::Swish2 v1 declares no DLA support" in layer["reason"]
        capsys.readouterr()
        assert main(["inspect", str(plan), "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)["layers"]
        assert [r["op"] for r in rows if r["name"] == "swish"] == ["Swish2"]
    finally:
        PLUGINS.deregister("Swish2", "custom")


def test_plan_is_refused_without_its_plugin(models, tmp_path, capsys, swish2):
    custom, _, feeds = models
    plan = tmp_path / "swish.plan"
    assert main(["build", str(custom), "--target", "orin-agx-64gb", "-o", str(plan),
                 "--quiet"]) == 0  # fmt: skip
    PLUGINS.deregister("Swish2", "custom")
    with pytest.raises(PluginError, match=r"custom::Swish2 version 1 \(used by cpu_\d+\) is not "
                       r"registered.*--plugin MODULE or TANDEM_PLUGINS"):  # fmt: skip
        PlanRunner(read_plan(plan))
    capsys.readouterr()
    assert main(["run", str(plan), "--inputs", str(feeds)]) == 1
    assert "needs plugins: custom::Swish2 version 1" in capsys.readouterr().err
    # another version of the plugin is not the one the plan was built with
    PLUGINS.register("Swish2", "custom", version=2, reference=swish2_plugin.swish2)
    with pytest.raises(PluginError, match="version 1 is needed, version 2 is registered"):
        PlanRunner(read_plan(plan))
    # inspect still reads the plan: it runs nothing
    assert main(["inspect", str(plan)]) == 0


def test_import_without_plugin_names_the_op_and_the_way_out(models):
    custom, _, _ = models
    with pytest.raises(UnsupportedOpError, match=r"custom::Swish2 \(1: swish\).*docs/plugins.md"):
        import_onnx(custom)


def test_plugin_shape_function_drives_shape_inference(tmp_path):
    """A plugin that changes the shape: its rule, not the file's value_info, sets it."""
    PLUGINS.register(
        "HalfChannels",
        "custom",
        reference=lambda x: x[:, : x.shape[1] // 2],
        infer_shape=lambda s: (s[0], s[1] // 2, *s[2:]),
    )
    try:
        node = helper.make_node("HalfChannels", ["x"], ["h"], name="half", domain="custom")
        relu = helper.make_node("Relu", ["h"], ["y"], name="relu")
        graph = helper.make_graph(
            [node, relu],
            "half",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 6, 5, 5])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom", 1)]
        )
        g = import_onnx(model)
        assert g.tensor("h").shape == ("batch", 3, 5, 5)
        assert g.tensor("y").shape == ("batch", 3, 5, 5)
        from devices.cpu import run_graph

        x = np.random.default_rng(0).standard_normal((2, 6, 5, 5)).astype("f4")
        np.testing.assert_array_equal(run_graph(g, {"x": x})["y"], np.maximum(x[:, :3], 0))
    finally:
        PLUGINS.deregister("HalfChannels", "custom")


def test_plugin_without_cuda_source_runs_on_the_cpu_with_the_reason(models, tmp_path, capsys):
    custom, reference, feeds = models
    PLUGINS.register("Swish2", "custom", reference=swish2_plugin.swish2)
    try:
        capsys.readouterr()
        assert main(["inspect", str(custom), "--target", "orin-agx-64gb", "--json"]) == 0
        rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["layers"]}
        assert rows["swish"]["device"] == "cpu"
        assert "plugin custom::Swish2 v1 declares no GPU" in rows["swish"]["reason"]
        assert rows["conv1"]["device"] == "dla0"
    finally:
        PLUGINS.deregister("Swish2", "custom")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"support": {"dla": True}}, "the DLA runs no plugin layers"),
        ({"support": {"gpu": True}}, "GPU support needs cuda_source"),
        ({"support": {"npu": True}}, "unknown device"),
        ({"support": {"gpu": ["fp8"]}, "cuda_source": "x"}, "expected precisions"),
        ({"support": {"cpu": ["fp16"]}}, "the CPU reference runs fp32 only"),
        ({"reference": 3}, "reference must be callable"),
    ],
)
def test_bad_declarations_are_refused(kwargs, message):
    registry = PluginRegistry()
    args = {"reference": np.negative, **kwargs}
    with pytest.raises(PluginError, match=message):
        registry.register("Op", "custom", **args)
    assert len(registry) == 0


def test_tandem_plugins_env_loads_the_module(models, tmp_path):
    """A separate process, as a user runs it: the module comes from TANDEM_PLUGINS."""
    custom, reference, feeds = models
    plan, out = tmp_path / "env.plan", tmp_path / "out.npz"
    env = {**os.environ, "TANDEM_PLUGINS": "tests.tandem.swish2_plugin", "PYTHONPATH": str(ROOT)}
    cli = [sys.executable, "-m", "tandem"]
    for args in (
        ["build", str(custom), "--target", "host", "--fp32", "-o", str(plan), "--quiet"],
        ["run", str(plan), "--inputs", str(feeds), "--save-outputs", str(out)],
    ):
        proc = subprocess.run([*cli, *args], env=env, capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
    expected = ort_run(reference, dict(np.load(feeds)))["y"]
    np.testing.assert_allclose(np.load(out)["y"], expected, atol=1e-5)
    env["TANDEM_PLUGINS"] = "no_such_plugin_module"
    proc = subprocess.run([*cli, "inspect", str(plan)], env=env, capture_output=True, text=True)
    assert proc.returncode == 1
    assert "plugin module 'no_such_plugin_module' cannot be imported" in proc.stderr


def test_surgeon_keeps_plugin_layers_and_their_domain(models, tmp_path):
    """Nested commands take --plugin too; the exported model declares the plugin's domain."""
    custom, _, _ = models
    out = tmp_path / "clean.onnx"
    try:
        assert main(["surgeon", "sanitize", str(custom), "-o", str(out),
                     "--plugin", str(PLUGIN_FILE)]) == 0  # fmt: skip
    finally:
        PLUGINS.deregister("Swish2", "custom")
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert [(n.domain, n.op_type) for n in model.graph.node if n.domain] == [("custom", "Swish2")]
    assert "custom" in {o.domain for o in model.opset_import}
