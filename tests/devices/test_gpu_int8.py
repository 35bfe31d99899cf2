"""GPU: the INT8 path (m16n8k32 tensor cores, per-channel weight scales, fused requantisation,
INT8 residuals / concats, the depthwise kernel's INT8 output) against the reference.

Two bounds per network: against the fake-quantised reference (tests/devices/int8_cases.py: the
same quantisation points, FP32 arithmetic) the GPU may differ only by its FP16 staging of
(accumulator + bias), which moves a value next to a rounding boundary by one INT8 step now and
then: max|gpu - ref| / max|ref| <= 2e-2 on the small networks (their quantisation error itself
is 1-2e-2 by the same metric, so a wrong scale or a wrong integer product fails); against the
plain FP32 reference the error is the quantisation itself, checked as cosine similarity.
"""

from __future__ import annotations

import numpy as np
import pytest

from gpu_kernels.tactics import ConvProblem, candidates
from gpu_kernels.timing_cache import TimingCache
from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err
from tests.devices.int8_cases import fake_quant_reference, lowering, minmax_scales, models

pytestmark = pytest.mark.gpu

MODELS = models()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a64 @ b64 / max(np.linalg.norm(a64) * np.linalg.norm(b64), 1e-30))


def _check(graph, scales, feeds, runner_kwargs, fq_tol: float, cos_min: float) -> None:
    from devices.gpu import GpuRunner

    with GpuRunner(graph, "int8", scales=scales, **runner_kwargs) as runner:
        got = runner.infer(feeds)
        arch = runner.ctx.info.arch
        kernels = {ln.kernel for ln in runner.program.launches}
    assert "conv_mma_i8" in kernels
    fq = fake_quant_reference(graph, feeds, lowering(graph, scales, arch))
    fp32 = reference(graph, feeds)
    for name, ref in fq.items():
        err, cos = rel_err(got[name], ref), cosine(got[name], fp32[name])
        print(f"{graph.name}:{name} rel err vs fake-quant {err:.2e}, cosine vs FP32 {cos:.6f}")
        assert err <= fq_tol, f"{name}: rel err vs fake-quant reference {err:.2e}"
        assert cos >= cos_min, f"{name}: cosine vs FP32 {cos:.6f}"


@pytest.mark.parametrize("name", list(MODELS))
def test_int8_network_matches_fake_quant_reference(name) -> None:
    graph = graph_of(MODELS[name])
    calib = [feeds_for(graph, seed) for seed in (1, 2)]
    feeds = feeds_for(graph, 0)
    _check(graph, minmax_scales(graph, calib + [feeds]), feeds, {"autotune": False}, 2e-2,
           0.999)


def test_every_int8_tactic_matches() -> None:
    from devices.gpu import GpuRunner

    graph = graph_of(MODELS["splitk"])
    feeds = feeds_for(graph)
    scales = minmax_scales(graph, [feeds])
    fq = fake_quant_reference(graph, feeds, lowering(graph, scales))
    y = graph.outputs[0].name
    p = ConvProblem(1, 7, 7, 256, 512, 7, 7, 3, 3, (1, 1), (1, 1), dtype="int8")
    tactics = candidates(p, 90)
    assert any(t.splits > 1 for t in tactics)
    for t in tactics:
        cache = TimingCache()
        cache.record(p.signature(), "sm_90", t.name, 0.0)  # force this tactic
        with GpuRunner(graph, "int8", scales=scales, timing_cache=cache,
                       autotune=False) as runner:
            if runner.arch_key != "sm_90":
                pytest.skip("tactic forcing assumes an sm_90 GPU")
            assert runner.tactic_source[p.signature()] == "cache"
            got = runner.infer(feeds)[y]
        err = rel_err(got, fq[y])
        assert err <= 1e-2, f"{t.name}: rel err {err:.2e}"


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenetv2", "yolov5s",
                                  "unet-small"])
def test_zoo_model_int8(name) -> None:
    from tandem.zoo import build_model

    graph = graph_of(build_model(name, 1, 64))
    calib = [feeds_for(graph, seed) for seed in (1, 2, 3)]
    feeds = feeds_for(graph, 0)
    # deeper nets: an FP16-staged value next to a rounding boundary flips one INT8 step now and
    # then, and the flips add up over tens of layers; the FP32 cosine is the accuracy bound
    _check(graph, minmax_scales(graph, calib), feeds, {"autotune": True}, 1e-1, 0.99)


def test_quantize_dequantize_layers_match_the_reference() -> None:
    """ONNX QuantizeLinear / DequantizeLinear (a QAT model built FP16) on the GPU's copies:
    round half to even and saturation as the numpy reference."""
    from devices.gpu import GpuRunner
    from tests.devices.int8_cases import qdq_model

    graph = graph_of(qdq_model())
    feeds = {"x": feeds_for(graph)["x"] * 2.0}  # some values beyond 127 * scale: saturation
    ref = reference(graph, feeds)
    with GpuRunner(graph, "fp16", autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= 1e-2, name
