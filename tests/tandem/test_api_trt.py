"""TensorRT 10 scripts ported by changing ``import tensorrt as trt`` to ``import tandem as trt``
(plus a target), checked against ONNX Runtime, and each TensorRT 10 name they use.

The two flows follow NVIDIA's samples call for call, written here as a user would write them:
``samples/python/introductory_parser_samples/onnx_resnet50.py`` (ONNX parse, memory pool, build,
``common.allocate_buffers`` / ``do_inference``: I/O by address and ``execute_async_v3``) and
the DLA INT8 flow of TensorRT's DLA guide (DLA core, GPU fallback, INT8 with an
``IInt8EntropyCalibrator2`` subclass whose ``get_batch`` returns buffer addresses and whose
cache methods read and write a file). On the CPU path the buffers are numpy arrays' host
addresses; the ``gpu`` tests pass device pointers from cuda-python.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh

import tandem as trt
from devices.io import run_onnxruntime, run_onnxruntime_model
from devices.runtime import cuda_arch_here
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import SUPPORTED_OPS
from tandem.trt_types import mapped_ops
from tests.models import zoo_model_path

TRT_LOGGER = trt.Logger(trt.Logger.WARNING)


def resnet50() -> str:
    return str(zoo_model_path("resnet50", resolution=32))


def closeness(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    a, e = actual.ravel().astype(np.float64), expected.ravel().astype(np.float64)
    cosine = float(a @ e / (np.linalg.norm(a) * np.linalg.norm(e)))
    return float(np.abs(a - e).max() / np.abs(e).max()), cosine


# ----- the user's script: onnx_resnet50.py's flow ----------------------------------------------
def build_engine_onnx(model_file, target=None):
    builder = trt.Builder(TRT_LOGGER)
    network = builder.create_network(0)
    config = builder.create_builder_config()
    if target is not None:
        config.target = target  # the one line a TensorRT script does not have
    parser = trt.OnnxParser(network, TRT_LOGGER)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    with open(model_file, "rb") as model:
        if not parser.parse(model.read()):
            for error in range(parser.num_errors):
                print(parser.get_error(error))
            return None
    engine_bytes = builder.build_serialized_network(network, config)
    runtime = trt.Runtime(TRT_LOGGER)
    return runtime.deserialize_cuda_engine(engine_bytes)


class HostDeviceMem:
    """The sample's host/device pair; on the CPU path the host array is both."""

    def __init__(self, size, dtype):
        self.host = np.empty(size, dtype)
        self.device = int(self.host.ctypes.data)


def allocate_buffers(engine):
    inputs, outputs, bindings = [], [], []
    for name in [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]:
        shape = engine.get_tensor_shape(name)
        assert all(s >= 0 for s in shape), f"{name} is dynamic: {shape}"
        mem = HostDeviceMem(trt.volume(shape), np.dtype(trt.nptype(engine.get_tensor_dtype(name))))
        bindings.append(mem.device)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(mem)
        else:
            outputs.append(mem)
    return inputs, outputs, bindings, 0  # stream 0: no CUDA stream on the CPU path


def do_inference(context, engine, bindings, inputs, outputs, stream):
    for i in range(engine.num_io_tensors):
        context.set_tensor_address(engine.get_tensor_name(i), bindings[i])
    assert context.execute_async_v3(stream_handle=stream)
    return [out.host for out in outputs]


def normalize_image(image: np.ndarray) -> np.ndarray:
    """The sample's preprocessing: HWC uint8 -> CHW, /255, minus 0.45, over 0.225."""
    chw = image.transpose([2, 0, 1]).astype(trt.nptype(trt.float32)).ravel()
    return (chw / 255.0 - 0.45) / 0.225


def test_onnx_resnet50_sample_flow_matches_onnxruntime():
    path = resnet50()
    engine = build_engine_onnx(path)
    inputs, outputs, bindings, stream = allocate_buffers(engine)
    context = engine.create_execution_context()
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    np.copyto(inputs[0].host, normalize_image(image))
    trt_outputs = do_inference(context, engine, bindings, inputs, outputs, stream)
    expected = run_onnxruntime(path, {"input": inputs[0].host.reshape(1, 3, 32, 32)})["logits"]
    max_rel, _ = closeness(trt_outputs[0], expected)
    assert max_rel < 1e-4
    assert int(np.argmax(trt_outputs[0])) == int(np.argmax(expected))
    # execute_v2 with the same bindings writes the same answer
    outputs[0].host[:] = 0
    assert context.execute_v2(bindings)
    assert closeness(outputs[0].host, expected)[0] < 1e-4


# ----- the user's script: DLA + GPU fallback + INT8 with an entropy calibrator -----------------
class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
    def __init__(self, batches, cache_file):
        trt.IInt8EntropyCalibrator2.__init__(self)
        self.batches = list(batches)
        self.cache_file = cache_file
        self.buffer = np.empty(self.batches[0].shape, np.float32)  # "device" memory
        self.served = 0

    def get_batch_size(self):
        return 1

    def get_batch(self, names):
        if self.served == len(self.batches):
            return None
        np.copyto(self.buffer, self.batches[self.served])
        self.served += 1
        return [int(self.buffer.ctypes.data)]

    def read_calibration_cache(self):
        if os.path.exists(self.cache_file):
            with open(self.cache_file, "rb") as f:
                return f.read()
        return None

    def write_calibration_cache(self, cache):
        with open(self.cache_file, "wb") as f:
            f.write(cache)


def build_dla_engine(model_file, calibrator, target):
    builder = trt.Builder(TRT_LOGGER)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, TRT_LOGGER)
    with open(model_file, "rb") as model:
        assert parser.parse(model.read())
    config = builder.create_builder_config()
    if target is not None:
        config.target = target
    config.set_flag(trt.BuilderFlag.INT8)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    config.int8_calibrator = calibrator
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = 0
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    return trt.Runtime(TRT_LOGGER).deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )


def calibration_images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        normalize_image(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).reshape(1, 3, 32, 32)
        for _ in range(count)
    ]


def test_dla_int8_flow_with_an_entropy_calibrator(tmp_path):
    path, cache = resnet50(), str(tmp_path / "calibration.cache")
    calibrator = EntropyCalibrator(calibration_images(4), cache)
    engine = build_dla_engine(path, calibrator, "orin-agx-64gb")
    assert calibrator.served == 4 and open(cache, "rb").read().startswith(b"TRT-")
    devices = set(engine.device_types.values())
    assert "dla0" in devices and "cpu" not in devices
    info = json.loads(
        engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    )
    assert {layer["Precision"] for layer in info["Layers"] if layer["Device"] == "DLA0"} >= {"int8"}
    x = calibration_images(1)[0]
    with engine.create_execution_context() as context:
        out = context.execute({"input": x})["logits"]
    _, cosine = closeness(out, run_onnxruntime(path, {"input": x})["logits"])
    assert cosine > 0.99  # INT8 (DLA emulator) against ONNX Runtime's FP32
    # a second build reads the cache the first wrote and asks for no batch
    again = EntropyCalibrator(calibration_images(4), cache)
    engine2 = build_dla_engine(path, again, "orin-agx-64gb")
    assert again.served == 0
    assert engine2.plan.header["calibration"] == engine.plan.header["calibration"]


def test_dla_build_without_a_target_names_config_target(tmp_path):
    calibrator = EntropyCalibrator(calibration_images(1), str(tmp_path / "c.cache"))
    with pytest.raises(trt.TandemError, match=r"config\.target is not set.*DLA"):
        build_dla_engine(resnet50(), calibrator, None)


def test_dynamic_batch_by_address_with_set_input_shape(tmp_path):
    model = onnx.load(str(zoo_model_path("resnet18", resolution=32)))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    path = str(tmp_path / "resnet18_dynamic.onnx")
    onnx.save(model, path)
    with trt.Builder(TRT_LOGGER) as builder, builder.create_network(0) as network:
        with trt.OnnxParser(network, TRT_LOGGER) as parser:
            assert parser.parse_from_file(path)
        config = builder.create_builder_config()
        profile = builder.create_optimization_profile()
        profile.set_shape("input", (1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 32, 32))
        config.add_optimization_profile(profile)
        engine = trt.Runtime(TRT_LOGGER).deserialize_cuda_engine(
            builder.build_serialized_network(network, config)
        )
    assert engine.get_tensor_shape("input") == (-1, 3, 32, 32)
    context = engine.create_execution_context()
    assert context.infer_shapes() == ["input"]
    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    logits = np.full((4, 1000), np.nan, np.float32)  # sized for the profile's max batch
    context.set_tensor_address("input", x.ctypes.data)
    context.set_tensor_address("logits", logits.ctypes.data)
    with pytest.raises(trt.TandemError, match="call set_input_shape"):
        context.execute_async_v3(0)
    context.set_input_shape("input", x.shape)
    assert context.infer_shapes() == []
    assert context.execute_async_v3(0)
    assert context.get_tensor_shape("logits") == (3, 1000)
    expected = run_onnxruntime(path, {"input": x})["logits"]
    assert closeness(logits[:3], expected)[0] < 1e-4
    assert np.isnan(logits[3]).all()  # nothing written past the actual output


# ----- the names, one by one --------------------------------------------------------------------
def parsed(path):
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network).parse_from_file(path)
    return builder, network, {layer.name: layer for layer in network}


def test_layer_type_is_tensorrts_and_every_imported_op_has_one():
    assert SUPPORTED_OPS <= mapped_ops()
    _, _, layers = parsed(resnet50())
    assert layers["conv1"].type == trt.LayerType.CONVOLUTION
    assert layers["conv1"].op_type == "Conv"
    assert layers["bn1"].type == trt.LayerType.SCALE
    assert layers["avgpool"].type == trt.LayerType.REDUCE  # the parser's GlobalAveragePool
    assert layers["fc"].type == trt.LayerType.MATRIX_MULTIPLY
    assert str(trt.LayerType.CONVOLUTION) == "LayerType.CONVOLUTION"


def test_tensorrt_names_tandem_lacks_raise_tandem_errors_naming_the_call():
    builder = trt.Builder()
    config = builder.create_builder_config()
    with pytest.raises(trt.TandemError, match=r"tensorrt\.IAlgorithmSelector.*timing cache"):
        trt.IAlgorithmSelector  # noqa: B018
    with pytest.raises(trt.UnsupportedApiError, match=r"IBuilderConfig\.set_tactic_sources"):
        config.set_tactic_sources(0)
    with pytest.raises(trt.TandemError, match=r"IBuilder\.build_engine_with_config.*build_ser"):
        builder.build_engine_with_config  # noqa: B018
    assert not hasattr(config, "set_preview_feature")  # still an AttributeError for hasattr
    assert trt.init_libnvinfer_plugins(TRT_LOGGER, "")  # nothing to load: Python plugins
    engine = trt.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(conv_relu_network(builder), config)
    )
    with pytest.raises(trt.TandemError, match=r"removed in TensorRT 10.*num_io_tensors"):
        engine.num_bindings  # noqa: B018 - a TensorRT 8 script's call
    with pytest.raises(AttributeError) as err:
        config.no_such_thing  # noqa: B018
    assert not isinstance(err.value, trt.TandemError)
    with pytest.raises(trt.UnsupportedApiError, match="BF16"):
        config.set_flag(trt.BuilderFlag.BF16)


def test_strongly_typed_fp32_is_honoured_and_precision_flags_refused():
    builder = trt.Builder()
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    assert network.get_flag(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert trt.OnnxParser(network).parse_from_file(resnet50())
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    engine = trt.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    assert {e["precision"] for e in engine.plan.header["layers"]} == {"fp32"}
    config.set_flag(trt.BuilderFlag.FP16)
    with pytest.raises(trt.TandemError, match="STRONGLY_TYPED.*BuilderFlag.FP16 is refused"):
        builder.build_serialized_network(network, config)
    half = builder.create_network(flags)
    x = half.add_input("x", trt.float16, (1, 4))
    half.mark_output(half.add_activation(x, trt.ActivationType.RELU).get_output(0))
    with pytest.raises(trt.UnsupportedApiError, match="FP16 tensors"):
        builder.build_serialized_network(half, builder.create_builder_config())


def einsum_network(builder):
    """Relu then a diagonal Einsum: no GPU lowering takes that Einsum, so it runs on the CPU
    reference, in FP32 whatever its precision is set to."""
    graph = oh.make_graph(
        [
            oh.make_node("Relu", ["x"], ["r"], name="relu"),
            oh.make_node("Einsum", ["r"], ["y"], name="diag", equation="ii->i"),
        ],
        "diag",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [8, 8])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    network = builder.create_network(0)
    assert trt.OnnxParser(network).parse(model.SerializeToString())
    return network, model, {layer.name: layer for layer in network}


def test_precision_constraints_prefer_warns_obey_fails():
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _, layers = einsum_network(builder)
    layers["diag"].precision = trt.float16
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    builder.build_serialized_network(network, config)
    assert any("'diag' (fp16 set, runs fp32)" in msg for _, msg in logger.messages)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    with pytest.raises(trt.TandemError, match=r"OBEY_PRECISION_CONSTRAINTS.*'diag'"):
        builder.build_serialized_network(network, config)


def test_set_output_type_constrains_the_layer_precision():
    builder, network, layers = parsed(resnet50())
    layers["layer1.0.conv1"].set_output_type(0, trt.float16)
    assert layers["layer1.0.conv1"].output_type_is_set(0)
    assert layers["layer1.0.conv1"].get_output_type(0) == trt.float16
    assert layers["layer1.0.conv2"].get_output_type(0) == trt.float32  # the tensor's type
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"  # an FP32 GPU build
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    engine = trt.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    precision = {e["name"]: e["precision"] for e in engine.plan.header["layers"]}
    assert precision["layer1.0.conv1"] == "fp16" and precision["layer1.0.conv2"] == "fp32"
    layers["layer1.0.conv1"].reset_output_type(0)
    assert not layers["layer1.0.conv1"].output_type_is_set(0)


def test_can_run_on_dla_with_its_reason():
    builder, _, layers = parsed(resnet50())
    config = builder.create_builder_config()
    with pytest.raises(trt.TandemError, match=r"config\.target"):
        config.can_run_on_DLA(layers["conv1"])
    config.target = "orin-agx-64gb"
    assert not config.can_run_on_DLA(layers["conv1"])  # FP32: the DLA has none
    assert "FP16/INT8 only" in config.get_DLA_reason(layers["conv1"])
    config.set_flag(trt.BuilderFlag.FP16)
    assert config.can_run_on_DLA(layers["conv1"]) is True
    assert config.get_DLA_reason(layers["conv1"])
    assert config.can_run_on_DLA(layers["avgpool"]) is False
    assert "GlobalAveragePool" in config.get_DLA_reason(layers["avgpool"])


def test_platform_queries_describe_the_configs_target():
    builder = trt.Builder()
    builder.create_builder_config()  # no target: this machine
    assert builder.platform_has_fast_fp16 == (cuda_arch_here() is not None)
    for target, cores in (("orin-agx-64gb", 2), ("xavier-agx", 2)):
        config = builder.create_builder_config()
        config.target = target
        assert builder.platform_has_fast_fp16 and builder.platform_has_fast_int8
        assert builder.num_DLA_cores == cores
    assert trt.nptype(trt.float16) is np.float16 and trt.volume((2, 3, 4)) == 24


def test_builder_flags_as_tensorrts_bit_mask():
    config = trt.Builder().create_builder_config()
    config.flags = 1 << int(trt.BuilderFlag.FP16) | 1 << int(trt.BuilderFlag.GPU_FALLBACK)
    assert config.get_flag(trt.BuilderFlag.FP16) and config.get_flag(trt.BuilderFlag.GPU_FALLBACK)
    assert config.precision == "fp16"
    config.set_flag(trt.BuilderFlag.INT8)
    assert config.flags == 0b1011 and config.precision == "int8"
    with pytest.raises(trt.TandemError, match="no BuilderFlag"):
        config.flags = 1 << 30


def test_memory_pools_follow_tensorrts_rules():
    config = trt.Builder().create_builder_config()
    assert config.get_memory_pool_limit(trt.MemoryPoolType.DLA_MANAGED_SRAM) == 1 << 20
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) is None
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    assert config.get_memory_pool_limit(trt.MemoryPoolType.WORKSPACE) == 1 << 30
    config.set_memory_pool_limit(trt.MemoryPoolType.DLA_LOCAL_DRAM, 1 << 28)
    assert config.get_memory_pool_limit(trt.MemoryPoolType.DLA_LOCAL_DRAM) == 1 << 28
    with pytest.raises(trt.TandemError, match="power of 2 of at least 4096"):
        config.set_memory_pool_limit(trt.MemoryPoolType.DLA_GLOBAL_DRAM, 3000)


def conv_relu_network(builder):
    rng = np.random.default_rng(2)
    network = builder.create_network(0)
    x = network.add_input("x", trt.float32, (1, 8, 16, 16))
    conv = network.add_convolution_nd(x, 8, (3, 3), rng.normal(0, 0.2, (8, 8, 3, 3)))
    conv.padding_nd = (1, 1)
    relu = network.add_activation(conv.get_output(0), trt.ActivationType.RELU)
    network.mark_output(relu.get_output(0))
    return network


def test_engine_capability_dla_standalone_and_safety():
    builder = trt.Builder()
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # DLA_STANDALONE allows no fallback anyway
    config.engine_capability = trt.EngineCapability.DLA_STANDALONE
    engine = trt.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(conv_relu_network(builder), config)
    )
    assert set(engine.device_types.values()) == {"dla0"}
    _, network, _ = parsed(resnet50())
    with pytest.raises(trt.TandemError, match="avgpool"):  # GlobalAveragePool: not on the DLA
        builder.build_serialized_network(network, config)
    config.engine_capability = trt.EngineCapability.SAFETY
    with pytest.raises(trt.UnsupportedApiError, match="SAFETY"):
        builder.build_serialized_network(network, config)


def test_profiling_verbosity_decides_what_the_inspector_tells():
    builder = trt.Builder()
    network = conv_relu_network(builder)
    config = builder.create_builder_config()
    found = {}
    for verbosity in trt.ProfilingVerbosity:
        config.profiling_verbosity = verbosity
        engine = trt.Runtime().deserialize_cuda_engine(
            builder.build_serialized_network(network, config)
        )
        assert engine.profiling_verbosity == verbosity
        found[verbosity] = engine.create_engine_inspector().get_layer_information(
            0, trt.LayerInformationFormat.JSON
        )
    assert found[trt.ProfilingVerbosity.NONE] == ""
    assert json.loads(found[trt.ProfilingVerbosity.LAYER_NAMES_ONLY]) == {"Name": "conv_0"}
    detailed = json.loads(found[trt.ProfilingVerbosity.DETAILED])
    assert detailed["Name"] == "conv_0" and detailed["Precision"] == "fp32"


class Profiler(trt.IProfiler):
    def __init__(self):
        trt.IProfiler.__init__(self)
        self.times: list[tuple[str, float, str]] = []

    def report_layer_time(self, layer_name, ms):
        self.times.append((layer_name, ms, self.sources[layer_name]))


def test_profiler_gets_each_segments_time_and_source_and_device_memory_size():
    builder = trt.Builder()
    network = conv_relu_network(builder)
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(trt.BuilderFlag.FP16)
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    config.default_device_type = trt.DeviceType.DLA
    engine = trt.Runtime(backend="cpu").deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    # the one activation between conv and relu, and the input and output: 3 x 8x16x16 floats
    assert engine.device_memory_size >= 2 * 8 * 16 * 16 * 4
    context = engine.create_execution_context()
    context.profiler = Profiler()
    x = np.random.default_rng(3).standard_normal((1, 8, 16, 16)).astype(np.float32)
    out = context.execute({"x": x})
    times = context.profiler.times
    assert [t[0] for t in times] == [s["name"] for s in engine.plan.header["segments"]]
    assert all(ms > 0 for _, ms, _ in times)
    assert all(src.startswith("emulated on") and "DLA emulator" in src for *_, src in times)
    expected = run_onnxruntime_model(export_onnx(network.graph), {"x": x}, "conv-relu")
    ((name, ref),) = expected.items()
    assert closeness(out[name], ref)[1] > 0.999  # FP16 on the DLA emulator against FP32


# ----- device pointers (a GPU) ------------------------------------------------------------------
def cuda_call(result):
    err, *rest = result
    from cuda.bindings import runtime as cudart

    assert err == cudart.cudaError_t.cudaSuccess, err
    return rest[0] if len(rest) == 1 else rest


@pytest.mark.gpu
def test_onnx_resnet50_flow_with_device_pointers_and_a_stream():
    from cuda.bindings import runtime as cudart

    path = resnet50()
    engine = build_engine_onnx(path)  # host target: this machine's GPU
    context = engine.create_execution_context()
    assert "cuda" in set(context.backends.values())
    stream = cuda_call(cudart.cudaStreamCreate())
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    host = {n: np.empty(engine.get_tensor_shape(n), np.float32) for n in names}
    device = {n: cuda_call(cudart.cudaMalloc(host[n].nbytes)) for n in names}
    host["input"][:] = np.random.default_rng(4).standard_normal(host["input"].shape)
    kind = cudart.cudaMemcpyKind
    cuda_call(
        cudart.cudaMemcpyAsync(
            device["input"],
            host["input"].ctypes.data,
            host["input"].nbytes,
            kind.cudaMemcpyHostToDevice,
            stream,
        )
    )
    for n in names:
        context.set_tensor_address(n, int(device[n]))
    assert context.execute_async_v3(stream_handle=int(stream))
    cuda_call(
        cudart.cudaMemcpyAsync(
            host["logits"].ctypes.data,
            device["logits"],
            host["logits"].nbytes,
            kind.cudaMemcpyDeviceToHost,
            stream,
        )
    )
    cuda_call(cudart.cudaStreamSynchronize(stream))
    expected = run_onnxruntime(path, {"input": host["input"]})["logits"]
    assert closeness(host["logits"], expected)[0] < 1e-3
    for n in names:
        cuda_call(cudart.cudaFree(device[n]))
    cuda_call(cudart.cudaStreamDestroy(stream))


@pytest.mark.gpu
def test_calibrator_returning_device_pointers(tmp_path):
    from cuda.bindings import runtime as cudart

    class DeviceCalibrator(EntropyCalibrator):
        def __init__(self, batches, cache_file):
            super().__init__(batches, cache_file)
            self.device = cuda_call(cudart.cudaMalloc(self.buffer.nbytes))

        def get_batch(self, names):
            host = super().get_batch(names)
            if host is None:
                return None
            cuda_call(
                cudart.cudaMemcpy(
                    self.device,
                    self.buffer.ctypes.data,
                    self.buffer.nbytes,
                    cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                )
            )
            return [int(self.device)]

    on_device = DeviceCalibrator(calibration_images(2), str(tmp_path / "d.cache"))
    on_host = EntropyCalibrator(calibration_images(2), str(tmp_path / "h.cache"))
    a = build_dla_engine(resnet50(), on_device, "orin-agx-64gb")
    b = build_dla_engine(resnet50(), on_host, "orin-agx-64gb")
    assert a.plan.header["calibration"] == b.plan.header["calibration"]
    cuda_call(cudart.cudaFree(on_device.device))
