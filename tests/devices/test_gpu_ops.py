"""Every GPU kernel (through the GPU backend) against the numpy reference, FP32 and FP16.

FP32: max|gpu - ref| / max|ref| <= 1e-5; FP16: <= 1e-2 (the issue's bounds).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.devices.gpu_cases import (
    DISCONTINUOUS,
    EINSUMS,
    away_from_steps,
    build,
    cases,
    einsum_graph,
    feeds_for,
    graph_of,
    ir_cases,
    ir_feeds,
    ir_graph,
    recurrent_cases,
    reference,
    rel_err,
)

pytestmark = pytest.mark.gpu

TOL = {"fp32": 1e-5, "fp16": 1e-2}
CASES = cases()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_layer_matches_reference(case, precision) -> None:
    from devices.gpu import GpuRunner

    graph = graph_of(build(case))
    feeds = feeds_for(graph)
    if case.op in ("Sqrt", "Log", "Pow") or case.name.startswith("div"):
        feeds = {k: np.abs(v) + 0.5 for k, v in feeds.items()}  # stay in the op's domain
    if case.op in DISCONTINUOUS:
        feeds = away_from_steps(feeds)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        assert np.all(np.isfinite(got[name])), name
        err = rel_err(got[name], r)
        assert err <= TOL[precision], f"{case.name} {precision} {name}: rel err {err:.2e}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_fused_transformer_mlp(precision) -> None:
    from devices.gpu import GpuRunner
    from tests.devices.gpu_cases import mlp_model

    graph = graph_of(mlp_model())
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)["y0"]
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)["y0"]
    assert rel_err(got, ref) <= TOL[precision]


IR_CASES = ir_cases()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", IR_CASES, ids=[c.name for c in IR_CASES])
def test_ir_layer_matches_reference(case, precision) -> None:
    """Layers of ops the importer does not take yet, built on the IR (ReduceProd, ReduceL2, ...)."""
    from devices.gpu import GpuRunner

    graph = ir_graph(case)
    feeds = ir_feeds(case, graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        err = rel_err(got[name], r)
        assert err <= TOL[precision], f"{case.name} {precision} {name}: rel err {err:.2e}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("equation,a,b", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum_matches_numpy(equation, a, b, precision) -> None:
    from devices.gpu import GpuRunner

    graph = einsum_graph(equation, a, b)
    feeds = feeds_for(graph)
    ref = np.einsum(equation.replace(" ", ""), feeds["a"], feeds["b"])
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)[graph.outputs[0].name]
    assert got.shape == ref.shape
    assert rel_err(got, ref) <= TOL[precision], f"{equation} {precision}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_mask_chain(precision) -> None:
    """Comparisons, Not, bool-to-float Cast and Where on the GPU as 0 / 1 values."""
    from devices.gpu import GpuRunner
    from tests.devices.gpu_cases import mask_model

    graph = graph_of(mask_model())
    feeds = feeds_for(graph)
    feeds["b"][0, 0, :3] = feeds["x"][0, 0, :3]
    ref = reference(graph, feeds)["y0"]
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)["y0"]
    assert rel_err(got, ref) <= TOL[precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding_lookup_by_token_ids(index_dtype, precision) -> None:
    """BERT's embeddings: an integer graph input gathers rows of a table on the GPU."""
    from devices.gpu import GpuRunner
    from tests.devices.gpu_cases import embedding_feeds, embedding_graph

    graph = embedding_graph(index_dtype)
    feeds = embedding_feeds(index_dtype)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= TOL[precision], name


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("mode,padding,align", [
    ("bilinear", "zeros", 0), ("bilinear", "border", 1), ("nearest", "zeros", 1),
    ("nearest", "border", 0)])
def test_grid_sample(mode, padding, align, precision) -> None:
    """Against grid_sample_ref (checked against ONNX Runtime 1.32 for these settings)."""
    from devices.gpu import GpuRunner
    from tests.devices.gpu_cases import grid_sample_feeds, grid_sample_graph, grid_sample_ref

    graph = grid_sample_graph(mode, padding, align)
    feeds = grid_sample_feeds()
    ref = grid_sample_ref(feeds["x"], feeds["grid"], mode, padding, align)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)[graph.outputs[0].name]
    assert rel_err(got, ref) <= TOL[precision]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", recurrent_cases(), ids=lambda c: c.name)
def test_recurrent_layer_matches_reference(case, precision) -> None:
    """RNN / GRU / LSTM: one projection bmm + one rnn.cu time loop (a block per batch entry
    and direction), every output (Y, Y_h, Y_c) against the CPU reference."""
    from devices.gpu import GpuRunner

    graph = graph_of(build(case))
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        err = rel_err(got[name], r)
        assert err <= TOL[precision], f"{case.name} {precision} {name}: rel err {err:.2e}"
