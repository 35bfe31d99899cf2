"""Acceptance of [foundation]: every zoo model and every model exported by another tool runs on
the CPU reference backend (through the same import + passes as `tandem run`) and matches ONNX
Runtime within max|a-b|/max|b| <= 1e-4 per output in FP32."""

from __future__ import annotations

import pytest

from devices.cpu import CpuRunner
from tandem.api import load_graph
from tandem.metrics import closeness
from tests.models import model_params, ort_run, random_inputs

FP32_MAX_REL = 1e-4


@pytest.mark.parametrize("case", model_params())
def test_cpu_backend_matches_onnxruntime(case, model_file):
    path = model_file(case)
    feeds = random_inputs(path)
    expected = ort_run(path, feeds)
    graph = load_graph(path, fixed_dims={d: 1 for d in _symbolic_dims(path)})
    with CpuRunner(graph) as runner:
        actual = runner.infer(feeds)
    assert set(actual) == set(expected)
    for name, ref in expected.items():
        c = closeness(actual[name], ref)
        assert c.shape_ok, f"{name}: shape {actual[name].shape} != {ref.shape}"
        assert c.max_rel <= FP32_MAX_REL, f"{case.id} output {name}: max rel {c.max_rel:.3e}"


def _symbolic_dims(path) -> set[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {
        d.dim_param
        for vi in model.graph.input
        for d in vi.type.tensor_type.shape.dim
        if d.dim_param
    }
