"""The Python API: the README's examples run as written, and each piece against an oracle.

Layer-by-layer networks are checked against ONNX Runtime on the same graph exported to ONNX
(so a wrongly formed node shows up as a numeric mismatch); ONNX-parsed networks against ONNX
Runtime on the file itself.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import tandem
from devices.io import run_onnxruntime, run_onnxruntime_model
from devices.runtime import RuntimeError_
from partitioner.onnx_export import export_onnx
from tests.models import zoo_model_path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_examples() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def max_rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


# ----- the README ------------------------------------------------------------------------------
def test_readme_has_the_two_examples():
    assert len(readme_examples()) == 2


def test_readme_layer_by_layer_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_examples()[0], "README.md:python-api-1", "exec"), ns)
    engine, outputs, network = ns["engine"], ns["outputs"], ns["network"]
    assert engine.device_types["classifier"] == "gpu"
    assert engine.device_types["conv_0"] == "dla0"
    assert outputs["logits"].shape == (1, 10)
    # the same graph, exported to ONNX, on ONNX Runtime (FP32); the DLA part ran in FP16
    expected = run_onnxruntime_model(export_onnx(network.graph), {"image": ns["image"]}, "net")
    assert max_rel(outputs["logits"], expected["logits"]) < 2e-2
    assert "logits TensorIOMode.OUTPUT (1, 10) DataType.FLOAT" in capsys.readouterr().out


def test_readme_onnx_profiles_example(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(readme_examples()[1], "README.md:python-api-2", "exec"), ns)
    assert ns["logits"].shape == (4, 1000)
    expected = run_onnxruntime(tmp_path / "resnet18_dynamic.onnx", {"input": ns["batch"]})
    assert max_rel(ns["logits"], expected["logits"]) < 1e-3
    out = capsys.readouterr().out
    assert "(-1, 3, 64, 64)" in out
    assert "16x3x64x64, outside active optimization profile 1" in out
    assert (tmp_path / "resnet18.plan").stat().st_size > 0


# ----- layers against ONNX Runtime -------------------------------------------------------------
def host_engine(network, precision_flags=()):
    builder = tandem.Builder()
    config = builder.create_builder_config()
    for flag in precision_flags:
        config.set_flag(flag)
    return tandem.Runtime(backend="cpu").deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )


def check_vs_ort(network, feeds):
    engine = host_engine(network)
    with engine.create_execution_context() as context:
        got = context.execute(feeds)
    expected = run_onnxruntime_model(export_onnx(network.graph), feeds, network.name)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name].shape == expected[name].shape
        assert max_rel(got[name], expected[name]) < 1e-5, name


@pytest.mark.parametrize("kind", list(tandem.ActivationType))
def test_each_activation(kind):
    network = tandem.Builder().create_network()
    x = network.add_input("x", tandem.float32, (2, 4, 5, 5))
    act = network.add_activation(x, kind)
    if kind in (tandem.ActivationType.CLIP, tandem.ActivationType.LEAKY_RELU,
                tandem.ActivationType.ELU, tandem.ActivationType.HARD_SIGMOID):
        act.alpha = -0.5 if kind == tandem.ActivationType.CLIP else 0.3
        if kind in (tandem.ActivationType.CLIP, tandem.ActivationType.HARD_SIGMOID):
            act.beta = 0.7 if kind == tandem.ActivationType.CLIP else 0.4
            assert act.beta == pytest.approx(0.7 if kind == tandem.ActivationType.CLIP else 0.4)
    network.mark_output(act.get_output(0))
    x_val = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32) * 2
    check_vs_ort(network, {"x": x_val})


@pytest.mark.parametrize(
    ("pool", "window", "stride", "padding"),
    [
        (tandem.PoolingType.MAX, (3, 3), (2, 2), (1, 1)),
        (tandem.PoolingType.AVERAGE, (2, 2), (2, 2), (0, 0)),
        (tandem.PoolingType.AVERAGE, (3, 3), (1, 1), (1, 1)),  # padding excluded from the mean
    ],
)
def test_convolution_and_pooling_properties(pool, window, stride, padding):
    rng = np.random.default_rng(1)
    network = tandem.Builder().create_network()
    x = network.add_input("x", tandem.float32, (1, 4, 9, 9))
    conv = network.add_convolution_nd(x, 4, (3, 3), rng.standard_normal((4, 1, 3, 3)),
                                      rng.standard_normal(4))
    conv.num_groups = 4  # depthwise
    conv.stride_nd, conv.padding_nd, conv.dilation_nd = (1, 1), (2, 2), (2, 2)
    assert conv.get_output(0).shape == (1, 4, 9, 9)
    p = network.add_pooling_nd(conv.get_output(0), pool, window)
    p.stride_nd, p.padding_nd = stride, padding
    network.mark_output(p.get_output(0))
    check_vs_ort(network, {"x": rng.standard_normal((1, 4, 9, 9)).astype(np.float32)})


@pytest.mark.parametrize("op", list(tandem.ElementWiseOperation))
def test_elementwise_concat_fc_matmul(op):
    rng = np.random.default_rng(2)
    network = tandem.Builder().create_network()
    a = network.add_input("a", tandem.float32, (2, 3, 4, 4))
    b = network.add_input("b", tandem.float32, (2, 3, 4, 4))
    e = network.add_elementwise(a, b, op)
    cat = network.add_concatenation([e.get_output(0), a])
    assert cat.axis == 1 and cat.get_output(0).shape == (2, 6, 4, 4)
    fc = network.add_fully_connected(cat.get_output(0), 5, rng.standard_normal((5, 96)),
                                     rng.standard_normal(5))
    w = network.add_constant((7, 5), rng.standard_normal((7, 5)).astype(np.float32))
    mm = network.add_matrix_multiply(fc.get_output(0), tandem.MatrixOperation.NONE,
                                     w.get_output(0), tandem.MatrixOperation.TRANSPOSE)
    mm.get_output(0).name = "y"
    network.mark_output(mm.get_output(0))
    feeds = {"a": rng.uniform(0.5, 2, (2, 3, 4, 4)).astype(np.float32),
             "b": rng.uniform(0.5, 2, (2, 3, 4, 4)).astype(np.float32)}
    check_vs_ort(network, feeds)


# ----- builder config --------------------------------------------------------------------------
def test_layer_precision_and_device_type_pins():
    path = zoo_model_path("resnet18", resolution=32)
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(path)
    layers = {layer.name: layer for layer in network}
    layers["layer4.0.conv1"].precision = tandem.float32
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(tandem.BuilderFlag.FP16)
    config.set_flag(tandem.BuilderFlag.GPU_FALLBACK)
    config.default_device_type = tandem.DeviceType.DLA
    config.DLA_core = 1
    config.set_device_type(layers["layer1.0.conv2"], tandem.DeviceType.GPU)
    assert config.get_device_type("layer1.0.conv2") == tandem.DeviceType.GPU
    config.profiling_verbosity = tandem.ProfilingVerbosity.DETAILED  # the inspector's details
    engine = tandem.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config))
    devices = engine.device_types
    assert devices["layer1.0.conv1"] == "dla1"
    assert devices["layer1.0.conv2"] == "gpu" and devices["layer4.0.conv1"] == "gpu"
    info = [__import__("json").loads(engine.create_engine_inspector().get_layer_information(
        i, tandem.LayerInformationFormat.JSON)) for i in range(engine.num_layers)]
    by_name = {layer["Name"]: layer for layer in info}
    assert by_name["layer4.0.conv1"]["Precision"] == "fp32"
    assert "pinned by rule" in by_name["layer1.0.conv2"]["Reason"]


class RandomCalibrator(tandem.IInt8EntropyCalibrator2):
    def __init__(self, count: int, cache: bytes | None = None) -> None:
        self.rng = np.random.default_rng(0)
        self.left = count
        self.cache = cache
        self.written: bytes | None = None

    def get_batch(self, names):
        if self.left == 0:
            return None
        self.left -= 1
        return {"input": self.rng.standard_normal((1, 3, 32, 32)).astype(np.float32)}

    def read_calibration_cache(self):
        return self.cache

    def write_calibration_cache(self, cache):
        self.written = cache


def test_int8_with_a_calibrator_and_its_cache():
    path = zoo_model_path("resnet18", resolution=32)
    builder = tandem.Builder()

    def build(calibrator):
        network = builder.create_network()
        tandem.OnnxParser(network).parse_from_file(path)
        config = builder.create_builder_config()
        config.target = "orin-agx-64gb"
        config.set_flag(tandem.BuilderFlag.INT8)
        config.set_flag(tandem.BuilderFlag.GPU_FALLBACK)
        config.default_device_type = tandem.DeviceType.DLA
        config.int8_calibrator = calibrator
        return tandem.Runtime().deserialize_cuda_engine(
            builder.build_serialized_network(network, config))

    first = RandomCalibrator(2)
    engine = build(first)
    assert first.written and first.written.startswith(b"TRT-")
    assert "int8" in {entry["precision"] for entry in engine.plan.header["layers"]}
    again = build(RandomCalibrator(0, cache=first.written))  # scales from the cache alone
    assert again.plan.header["calibration"] == engine.plan.header["calibration"]
    with pytest.raises(tandem.TandemError, match="int8_calibrator"):
        build(None)


# ----- engine and context ----------------------------------------------------------------------
def test_engine_queries_context_shapes_and_async_without_cuda(tmp_path):
    path = zoo_model_path("resnet18", resolution=32)
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(path)
    config = builder.create_builder_config()
    measured = config.create_timing_cache(b"")
    measured._cache.record("conv-signature", "sm_87", "tactic-a", 0.5)
    cache = config.create_timing_cache(measured.serialize())  # a cache file's bytes
    assert len(cache) == 1
    config.set_timing_cache(cache)
    data = builder.build_serialized_network(network, config)
    engine = tandem.Runtime(backend="cpu").deserialize_cuda_engine(data)
    assert bytes(engine.plan.blob("timing_cache").data) == cache.serialize()
    again = tandem.Runtime().deserialize_cuda_engine(engine.serialize())
    assert again.plan.header["layers"] == engine.plan.header["layers"]
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    assert names == ["input", "logits"]
    assert engine.get_tensor_mode("logits") == tandem.TensorIOMode.OUTPUT
    assert engine.get_tensor_profile_shape("input", 0)[2] == (1, 3, 32, 32)
    context = engine.create_execution_context()
    assert context.all_binding_shapes_specified
    with pytest.raises(tandem.TandemError, match="does not fit the engine's 1x3x32x32"):
        context.set_input_shape("input", (2, 3, 32, 32))
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    out = context.execute({"input": x})
    assert max_rel(out["logits"], run_onnxruntime(path, {"input": x})["logits"]) < 1e-4
    assert context.get_tensor_shape("logits") == (1, 1000)
    with pytest.raises(RuntimeError_, match="execute_async needs CUDA"):
        context.execute_async({"input": x}, stream=0)
    context.close()


def test_parser_reports_errors_like_tensorrt(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    network = tandem.Builder().create_network()
    parser = tandem.OnnxParser(network)
    assert parser.parse_from_file(bad) is False
    assert parser.num_errors == 1 and "bad.onnx" in parser.get_error(0)
    with pytest.raises(tandem.TandemError):
        tandem.OnnxParser(network, raise_errors=True).parse(b"junk")


def test_reexports_of_refit_and_plugins():
    from partitioner.plugins import PLUGINS, PluginRegistry
    from targets.refit import Refitter

    assert issubclass(tandem.Refitter, Refitter)
    assert tandem.PluginRegistry is PluginRegistry
    assert tandem.get_plugin_registry() is PLUGINS
    assert tandem.IOptimizationProfile is tandem.OptimizationProfile
    with pytest.raises(AttributeError):
        tandem.NoSuchThing  # noqa: B018


@pytest.mark.gpu
def test_execute_async_on_cuda():
    path = zoo_model_path("resnet18", resolution=32)
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(path)
    config = builder.create_builder_config()  # target host: this machine's GPU
    config.set_flag(tandem.BuilderFlag.FP16)
    engine = tandem.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config))
    x = np.random.default_rng(5).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with engine.create_execution_context() as context:
        assert set(context.backends.values()) == {"cuda"}
        out = context.execute_async({"input": x}, stream=0)
    assert max_rel(out["logits"], run_onnxruntime(path, {"input": x})["logits"]) < 2e-2


def test_refitter_takes_an_engine_and_refits_it_in_place():
    path = zoo_model_path("resnet18", resolution=32)
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(path)
    engine = tandem.Runtime(backend="cpu").deserialize_cuda_engine(
        builder.build_serialized_network(network, builder.create_builder_config()))
    refitter = tandem.Refitter(engine, tandem.Logger())
    assert "fc.weight" in refitter.get_all_weights()
    weight = refitter.get_named_weights("fc.weight")
    assert refitter.set_named_weights("fc.weight", np.zeros_like(weight))
    assert refitter.refit_cuda_engine() is True
    x = np.random.default_rng(6).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with engine.create_execution_context() as context:
        logits = context.execute({"input": x})["logits"]
    # a zero classifier leaves its bias: the refitted weights are the ones that ran
    np.testing.assert_allclose(logits[0], refitter.get_named_weights("fc.bias"),
                               rtol=0, atol=1e-6)
