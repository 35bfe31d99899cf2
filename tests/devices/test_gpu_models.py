"""GPU: every zoo model end to end against the numpy reference (FP16 and FP32)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err

pytestmark = pytest.mark.gpu

MODELS = ["resnet18", "resnet50", "mobilenetv2", "mobilenetv3-small", "yolov5s",
          "ssd-mobilenet", "unet-small", "vit-tiny"]
# FP16 end to end: errors compound over tens of layers, so the bound is looser than per layer.
TOL = {"fp32": 1e-4, "fp16": 3e-2}


@pytest.mark.parametrize("precision", ["fp16", "fp32"])
@pytest.mark.parametrize("name", MODELS)
def test_zoo_model_matches_reference(name, precision) -> None:
    from devices.gpu import GpuRunner
    from tandem.zoo import build_model

    # smaller inputs where the numpy reference would be slow; batch 2 once to cover batching
    resolution = {"yolov5s": 320, "unet-small": 128}.get(name)
    graph = graph_of(build_model(name, 2 if name == "resnet18" else 1, resolution))
    feeds = feeds_for(graph, seed=7)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision) as runner:
        got = runner.infer(feeds)
        again = runner.infer(feeds)  # a second replay of the CUDA graph gives the same
        summary = runner.summary()
    assert summary["cuda_graph"]
    assert summary["peak_activation_bytes"] > 0
    for out, r in ref.items():
        assert np.all(np.isfinite(got[out]))
        np.testing.assert_array_equal(got[out], again[out])
        err = rel_err(got[out], r)
        assert err <= TOL[precision], f"{name} {precision} {out}: rel err {err:.2e}"


def test_programmatic_launch_gives_the_same_outputs_as_plain_launches() -> None:
    """sm_90+: kernels chained by programmatic dependent launch wait for their predecessor, so
    the outputs are bit-identical to a graph captured without it (same kernels, same tactics)."""
    from devices.gpu import GpuRunner
    from tandem.zoo import build_model

    graph = graph_of(build_model("vit-tiny", 2, depth=3))
    feeds = feeds_for(graph, seed=3)
    with GpuRunner(graph, "fp16") as runner:
        if not runner.pdl:
            pytest.skip(f"programmatic launch needs sm_90+, this GPU is {runner.arch_key}")
        assert runner.summary()["programmatic_launch"]
        with_pdl = [runner.infer(feeds) for _ in range(3)]
        runner.pdl = False
        runner.capture()
        plain = runner.infer(feeds)
    for got in with_pdl:
        for name, r in plain.items():
            np.testing.assert_array_equal(got[name], r)
