"""Issue 21's acceptance on the published combined figures (bench/concurrency.py, predicted): the
GPU + 2 DLA throughput of ResNet-50 INT8 on AGX Orin MAXN within +-15 % of NVIDIA's MLPerf
configurations, with the contention term on, built as MLPerf's builder builds the network."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from concurrency import TOLERANCE, mlperf_endpoint, published  # noqa: E402

from tandem.zoo import build_model  # noqa: E402


def test_mlperf_endpoint_computes_the_same_logits() -> None:
    plain = build_model("resnet50", batch=2, resolution=224)
    cut = mlperf_endpoint(build_model("resnet50", batch=2, resolution=224))
    assert [n.op_type for n in cut.graph.node][-2:] == ["AveragePool", "Conv"]
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)

    def run(model):
        sess = ort.InferenceSession(model.SerializeToString())
        return sess.run(None, {model.graph.input[0].name: x})[0]

    a, b = run(plain), run(cut)
    assert b.shape == (2, 1000, 1, 1)
    np.testing.assert_allclose(b.reshape(a.shape), a, rtol=1e-4, atol=1e-4)


def test_gpu_plus_two_dlas_within_tolerance_of_mlperf(tmp_path) -> None:
    rows = {r["id"]: r for r in published(tmp_path)}
    assert set(rows) == {"resnet50-orin-maxn-v3.0", "resnet50-orin-maxn-v2.1"}
    for row in rows.values():
        assert abs(row["error"]) <= TOLERANCE, row
        assert row["predicted_gain"] > 0.2  # the DLAs add throughput beside the GPU
