"""CI (no GPU): RNN / GRU / LSTM lowered (one projection GEMM + one rnn.cu time loop a layer)
and run on the numpy kernel model against the CPU reference; what supports() refuses."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_kernels.lowering import GpuLoweringError, lower, supports
from tests.devices.gpu_cases import (
    build,
    feeds_for,
    graph_of,
    recurrent_case,
    recurrent_cases,
    reference,
    rel_err,
)
from tests.gpu_kernels.kernel_sim import simulate

TOL = {"fp32": 1e-5, "fp16": 1e-2}
CASES = recurrent_cases()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_recurrent_layer_matches_reference(case, precision) -> None:
    graph = graph_of(build(case))
    node = next(n for n in graph.nodes if n.op == case.op)
    assert supports(node, 87, precision), supports(node, 87, precision).reason
    prog = lower(graph, precision, arch=87)
    kernels = [ln.kernel for ln in prog.launches
               if ln.layer == case.name and not ln.kernel.startswith("copy_")]  # FP16 input
    assert kernels == [f"bmm_{prog_dt(precision)}", f"rnn_{prog_dt(precision)}"]
    feeds = feeds_for(graph)
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    assert set(got) == set(ref)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        err = rel_err(got[name], r)
        assert err <= TOL[precision], (name, err)


def prog_dt(precision: str) -> str:
    return "f32" if precision == "fp32" else "f16"


def _node(case):
    graph = graph_of(build(case))
    return graph, next(n for n in graph.nodes if n.op == case.op)


def _refusal(case) -> str:
    graph, node = _node(case)
    verdict = supports(node, 87, "fp16")
    assert not verdict
    with pytest.raises(GpuLoweringError, match="LSTM|GRU|RNN"):
        lower(graph, "fp16", arch=87)
    return verdict.reason


def _lstm(**kw):
    return recurrent_case("l", "LSTM", 4, 2, 3, 5, **kw)


def test_refuses_non_default_activations() -> None:
    reason = _refusal(_lstm(activations=["Relu", "Tanh", "Tanh"]))
    assert "activations ['Relu', 'Tanh', 'Tanh'] unsupported" in reason


def test_explicit_default_activations_are_accepted() -> None:
    _, node = _node(_lstm(direction="bidirectional", activations=["Sigmoid", "Tanh", "Tanh"]))
    assert supports(node, 87, "fp32")


@pytest.mark.parametrize("attrs,why", [
    ({"clip": 3.0}, "clip unsupported"),
    ({"input_forget": 1}, "input_forget unsupported"),
])
def test_refuses_clip_and_input_forget(attrs, why) -> None:
    assert why in _refusal(_lstm(**attrs))


def test_refuses_peepholes() -> None:
    case = _lstm()
    case.consts["P"] = np.zeros((1, 15), np.float32)
    case.input_order = ["x", "W", "R", "B", "", "", "", "P"]
    assert "peepholes" in _refusal(case)


def test_refuses_run_time_weights() -> None:
    case = _lstm()
    case.inputs["R"] = case.consts.pop("R").shape
    assert "run-time weights" in _refusal(case)


def test_sequence_lens_only_as_a_constant_full_length() -> None:
    from onnx import TensorProto, helper

    case = _lstm()
    case.input_order = ["x", "W", "R", "B", "lens"]
    case.consts["lens"] = np.array([4, 4], np.int32)
    _, node = _node(case)
    assert supports(node, 87, "fp16")  # every sequence runs the whole length
    case.consts["lens"] = np.array([4, 2], np.int32)
    assert "sequence_lens [4, 2] shorter" in _refusal(case)
    # at run time: an int32 graph input
    model = build(_lstm())
    model.graph.node[0].input[4:] = ["lens"]
    model.graph.input.append(helper.make_tensor_value_info("lens", TensorProto.INT32, [2]))
    graph = graph_of(model)
    node = next(n for n in graph.nodes if n.op == "LSTM")
    assert "run-time sequence_lens" in supports(node, 87, "fp16").reason


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_crnn_head_reads_a_transposed_feature_map_and_writes_only_y_h(precision) -> None:
    """CRNN's shape: the CNN's features transposed to (T, B, C) feed the LSTM (a strided view
    the lowering materialises once); only Y_h is read (Y and Y_c omitted as ""), so the kernel
    is given no Y pointer."""
    from onnx import TensorProto, helper, numpy_helper

    case = recurrent_case("lstm", "LSTM", 10, 2, 6, 12, "bidirectional", seed=11)
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2], name="tr"),
             helper.make_node("LSTM", ["xt", "W", "R", "B"], ["", "yh"], name="lstm",
                              **case.attrs)]
    model = helper.make_model(helper.make_graph(
        nodes, "crnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 10, 6])],
        [helper.make_tensor_value_info("yh", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in case.consts.items()]),
        opset_imports=[helper.make_opsetid("", 17)])
    graph = graph_of(model)
    prog = lower(graph, precision, arch=87)
    rnn = next(ln for ln in prog.launches if ln.kernel.startswith("rnn_"))
    assert rnn.ptrs[5] is None and rnn.ptrs[6] is not None and rnn.ptrs[7] is None
    feeds = feeds_for(graph)
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    assert rel_err(got["yh"], ref["yh"]) <= TOL[precision]
