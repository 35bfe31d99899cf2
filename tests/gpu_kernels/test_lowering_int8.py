"""CI (no GPU): where the INT8 lowering quantises, what it keeps as INT8, and its refusals."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_kernels.lowering import GpuLoweringError, lower
from gpu_kernels.tactics import ConvProblem, ConvTactic, candidates
from tests.devices.gpu_cases import graph_of
from tests.devices.int8_cases import int8_values, lowering, minmax_scales, models

MODELS = models()


def _setup(name: str, arch: int = 90):
    graph = graph_of(MODELS[name])
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.standard_normal(t.static_shape()).astype(np.float32)
             for t in graph.inputs}
    scales = minmax_scales(graph, [feeds])
    return graph, scales, lowering(graph, scales, arch)


def _kernels(low) -> list[str]:
    return [ln.kernel for ln in low.launches]


def test_int8_chain_keeps_the_intermediate_in_int8() -> None:
    graph, scales, low = _setup("chain")
    assert set(int8_values(low)) == {"x", "c1.act"} or set(int8_values(low)) == {"c1.act"}
    ks = _kernels(low)
    assert ks.count("conv_mma_i8") == 2 and "copy_f32_i8" in ks  # input quantised once
    first = next(ln for ln in low.launches if ln.kernel == "conv_mma_i8")
    assert first.ints[23] == 1 and first.floats[2] == pytest.approx(1 / scales["c1.act"])
    assert first.ptrs[7] is not None  # per-channel dequantisation scales


def test_residual_block_reads_its_residual_in_int8() -> None:
    _, scales, low = _setup("resblock")
    stored = int8_values(low)
    assert {"c0.act", "c1.act", "blk"} <= set(stored)
    fused = next(ln for ln in low.launches if ln.layer == "c2")
    assert fused.kernel == "conv_mma_i8" and fused.ints[22] == 1  # INT8 residual
    assert fused.floats[3] == pytest.approx(scales["c0.act"])
    assert not any(k.startswith(("binary", "copy_i8")) for k in _kernels(low))


def test_depthwise_fp16_kernel_requantises_for_the_next_int8_conv() -> None:
    _, _, low = _setup("depthwise")
    assert "conv_dw_px1_x8_f16_i8" in _kernels(low)  # (a small grid: a pixel a thread)
    assert "dw.act" in int8_values(low) and "pw1.act" not in int8_values(low)


def test_int8_concat_is_written_in_place_with_the_concat_scale() -> None:
    _, scales, low = _setup("concat")
    stored = int8_values(low)
    assert stored["cat"].scale == pytest.approx(scales["cat"])
    assert stored["ca.act"].buf is stored["cat"].buf  # zero-copy channel slices
    assert not any(ln.layer == "cat" for ln in low.launches)


def test_stem_with_three_channels_stays_fp16_and_writes_int8() -> None:
    _, _, low = _setup("stem")
    stem = next(ln for ln in low.launches if ln.layer == "stem" and ln.kernel.startswith("conv"))
    assert stem.kernel == "conv_mma_f16" and stem.ints[23] == 1


def test_below_sm80_int8_requests_run_fp16() -> None:
    _, _, low = _setup("resblock", arch=72)
    assert not int8_values(low)
    assert not any("i8" in k for k in _kernels(low))


def test_int8_needs_scales() -> None:
    graph = graph_of(MODELS["chain"])
    with pytest.raises(GpuLoweringError, match="scales"):
        lower(graph, "int8")
    with pytest.raises(GpuLoweringError, match="fp32, fp16 or int8"):
        lower(graph, "int4")


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "yolov5s"])
def test_zoo_models_lower_to_int8_tensor_cores(name) -> None:
    from tandem.zoo import build_model

    graph = graph_of(build_model(name, 1, 64))
    scales = {t: 0.05 for t in graph.tensors}
    prog = lower(graph, "int8", arch=87, sm_count=16, scales=scales)
    convs = [n for n in graph.nodes if n.op == "Conv" and int(n.attrs.get("group", 1)) == 1
             and n.inputs[0].static_shape()[1] % 16 == 0]  # 16 INT8 channels = 16 bytes
    i8 = sum(1 for ln in prog.launches if ln.kernel == "conv_mma_i8")
    assert i8 == len(convs)
    quantise = sum(1 for ln in prog.launches if ln.kernel.endswith("_i8")
                   and ln.kernel.startswith("copy"))
    assert quantise <= 10  # values stay INT8 between INT8 layers instead of round-tripping


def test_int8_tactics_are_named_and_parsed() -> None:
    p = ConvProblem(1, 14, 14, 256, 256, 14, 14, 3, 3, (1, 1), (1, 1), dtype="int8")
    cands = candidates(p, 90)
    assert cands and all(t.dtype == "i8" and t.kernel == "conv_mma_i8" for t in cands)
    for t in cands:
        assert ConvTactic.from_name(t.name) == t
        assert "-DINT8=1" in t.compile_options()
    assert ConvTactic("mma", 64, 64, 2, 2, 3, 1, 64, "i8").smem_bytes == 3 * 128 * 80
    with pytest.raises(ValueError, match="INT8"):
        candidates(ConvProblem(1, 8, 8, 8, 16, 8, 8, 1, 1, dtype="int8"), 90)  # C % 16 != 0


def test_quantize_dequantize_layers_lower_to_copies() -> None:
    from tests.devices.int8_cases import qdq_model

    prog = lower(graph_of(qdq_model()), "fp16", arch=90)
    q = next(ln for ln in prog.launches if ln.layer == "q")
    dq = next(ln for ln in prog.launches if ln.layer == "dq")
    assert q.kernel == "copy_f32_i8" and q.floats == [pytest.approx(1 / 0.02)]
    assert dq.kernel == "copy_i8_f16" and dq.floats == [pytest.approx(0.02)]


def test_asymmetric_or_per_channel_qdq_is_refused_with_the_layer() -> None:
    from onnx import TensorProto

    from tests.devices.int8_cases import qdq_model

    with pytest.raises(GpuLoweringError, match="'q'.*zero point 0"):
        lower(graph_of(qdq_model(TensorProto.UINT8)), "fp16", arch=90)


@pytest.mark.parametrize("name", list(MODELS))
def test_the_kernel_model_of_conv_mma_i8_matches_fake_quant(name) -> None:
    """The numpy model of the INT8 tensor-core convolution (tests/gpu_kernels/kernel_sim.py),
    the oracle of the CPU INT8 lowering tests, against the fake-quant reference on the networks
    the GPU test checks with the same 2e-2 (measured 2.8e-4 to 5.6e-3: it stages in FP32, not
    FP16, so it flips fewer roundings than the GPU); "depthwise" also runs the FP16 depthwise
    kernel that writes INT8 (conv_dw_px1_x8_f16_i8; both strips: test_lowering_depthwise_sim)."""
    from tests.devices.gpu_cases import feeds_for, rel_err
    from tests.devices.int8_cases import fake_quant_reference
    from tests.gpu_kernels.kernel_sim import simulate

    graph = graph_of(MODELS[name])
    feeds = feeds_for(graph, 0)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)] + [feeds])
    prog = lower(graph, "int8", arch=87, scales=scales)
    assert "conv_mma_i8" in {ln.kernel for ln in prog.launches}
    got = simulate(prog, feeds)
    for out, ref in fake_quant_reference(graph, feeds, lowering(graph, scales, 87)).items():
        assert rel_err(got[out], ref) <= 2e-2, out
