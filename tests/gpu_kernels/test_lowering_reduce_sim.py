"""CI (no GPU): reductions over any axes, softmax over any axis, Pad and the normalisations,
lowered and run on the numpy kernel model against the CPU reference."""

from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import ACT, GpuLoweringError, lower, supports
from partitioner.ir import Graph
from tests.devices.gpu_cases import (
    DISCONTINUOUS,
    EINSUMS,
    GRID_SAMPLES,
    away_from_steps,
    build,
    cases,
    einsum_graph,
    embedding_feeds,
    embedding_graph,
    feeds_for,
    graph_of,
    grid_sample_feeds,
    grid_sample_graph,
    grid_sample_ref,
    ir_cases,
    ir_feeds,
    ir_graph,
    mask_model,
    reduction_cases,
    reference,
    rel_err,
)
from tests.gpu_kernels.kernel_sim import simulate

TOL = {"fp32": 1e-5, "fp16": 1e-2}
CASES = reduction_cases()
IR_CASES = ir_cases()


def _check(graph, precision: str, feeds=None, tol: float | None = None):
    feeds = feeds or feeds_for(graph)
    for node in graph.nodes:
        assert supports(node, 87, precision), node.name
    prog = lower(graph, precision, arch=87)
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    for name, r in ref.items():
        assert got[name].shape == r.shape, name
        err = rel_err(got[name], r)
        assert err <= (tol or TOL[precision]), (name, err)
    return prog


def _kernels(prog) -> list[str]:
    """Kernel names without their (last) dtype; fused_f16_f32 (an FP32 output) is fused."""
    return [re.sub(r"^fused_f(16|32)_f(16|32)$", "fused_f", ln.kernel).rsplit("_", 1)[0]
            for ln in prog.launches]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_layer_matches_reference(case, precision) -> None:
    _check(graph_of(build(case)), precision)


ACTIVATION_CASES = [c for c in cases() if c.name in ("floor", "ceil", "selu", "prelu")]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", ACTIVATION_CASES, ids=[c.name for c in ACTIVATION_CASES])
def test_new_activations_match_reference(case, precision) -> None:
    graph = graph_of(build(case))
    feeds = feeds_for(graph)
    _check(graph, precision, away_from_steps(feeds) if case.op in DISCONTINUOUS else feeds)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("case", IR_CASES, ids=[c.name for c in IR_CASES])
def test_ir_layer_matches_reference(case, precision) -> None:
    graph = ir_graph(case)
    _check(graph, precision, ir_feeds(case, graph))


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s)
                     for n, s in inputs.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        [numpy_helper.from_array(v, n) for n, v in dict(inits).items()])
    return graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _conv(name: str, x: str, k: int, c: int, inits: dict) -> helper.NodeProto:
    inits[f"{name}_w"] = (np.random.default_rng(2).standard_normal((k, c, 1, 1)) * 0.3
                          ).astype(np.float32)
    return helper.make_node("Conv", [x, f"{name}_w"], [name], name=name)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("keep", [0, 1])
def test_mean_over_hw_of_nhwc_data_is_the_global_pool(precision, keep) -> None:
    inits: dict = {}
    graph = _model([_conv("c", "x", 16, 8, inits),
                    helper.make_node("ReduceMean", ["c"], ["y"], name="mean", axes=[2, 3],
                                     keepdims=keep)], {"x": [2, 8, 5, 6]}, ["y"], inits)
    prog = _check(graph, precision)
    assert "global_avgpool" in _kernels(prog) and "reduce_axes" not in _kernels(prog)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_reductions_read_nhwc_data_in_place(precision) -> None:
    """A max over channels and a sum over H of a convolution's NHWC output: no copy first."""
    inits: dict = {}
    graph = _model([_conv("c", "x", 12, 8, inits),
                    helper.make_node("ReduceMax", ["c"], ["y0"], name="cmax", axes=[1]),
                    helper.make_node("ReduceMin", ["c"], ["y1"], name="hmin", axes=[2],
                                     keepdims=0)], {"x": [2, 8, 5, 6]}, ["y0", "y1"], inits)
    prog = _check(graph, precision)
    reads = [ln for ln in prog.launches if ln.kernel.startswith("reduce_axes")]
    conv = [ln for ln in prog.launches if ln.layer == "c"][-1]
    assert all(ln.ptrs[0].buf is conv.ptrs[4].buf for ln in reads)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_dfl_softmax_reads_the_transposed_view_in_place(precision) -> None:
    """YOLOv8's DFL: (N, 64, A) -> (N, 4, 16, A) -> transpose(0, 2, 1, 3) -> softmax(axis 1):
    one kernel over the view, no copy of the transpose."""
    graph = _model([
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="r"),
        helper.make_node("Transpose", ["r"], ["t"], name="t", perm=[0, 2, 1, 3]),
        helper.make_node("Softmax", ["t"], ["y"], name="dfl", axis=1),
    ], {"x": [2, 64, 30]}, ["y"], {"shape": np.array([2, 4, 16, 30], np.int64)})
    prog = _check(graph, precision)
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["softmax_axis"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_scaled_log_softmax_folds_the_scale(precision) -> None:
    graph = _model([helper.make_node("Mul", ["x", "s"], ["m"], name="scale"),
                    helper.make_node("LogSoftmax", ["m"], ["y"], name="lsm", axis=-1)],
                   {"x": [3, 40]}, ["y"], {"s": np.array(0.125, np.float32)})
    prog = _check(graph, precision)
    sm = [ln for ln in prog.launches if ln.kernel.startswith("softmax")]
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["softmax_lastdim"]
    assert sm[0].ints[2] == 1 and sm[0].floats == [0.125]



@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("c", [3, 8, 16])
def test_zero_pad_before_a_conv_folds_into_its_padding(precision, c) -> None:
    """TF-style "same" padding (EfficientNet / MobileNet exports): Pad(0, 0, 1, 1 at the end)
    then a stride-2 convolution without padding: no pad kernel, the convolution pads."""
    inits = {"p": np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64),
             "w": (np.random.default_rng(4).standard_normal((16, c, 3, 3)) * 0.3
                   ).astype(np.float32)}
    graph = _model([helper.make_node("Pad", ["x", "p"], ["xp"], name="pad"),
                    helper.make_node("Conv", ["xp", "w"], ["y"], name="conv",
                                     kernel_shape=[3, 3], strides=[2, 2])],
                   {"x": [2, c, 9, 10]}, ["y"], inits)
    prog = _check(graph, precision)
    assert "pad_nd" not in _kernels(prog)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_reflect_pad_before_a_conv_runs_and_keeps_nhwc(precision) -> None:
    inits: dict = {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}
    graph = _model([_conv("c", "x", 8, 8, inits),
                    helper.make_node("Pad", ["c", "p"], ["cp"], name="pad", mode="reflect"),
                    _conv("y", "cp", 8, 8, inits)], {"x": [1, 8, 5, 6]}, ["y"], inits)
    prog = _check(graph, precision)
    pad = next(ln for ln in prog.launches if ln.kernel.startswith("pad_nd"))
    assert pad.ints[2 + 3 * 6 + 1] == 1 and pad.ints[2 + 2 * 6 + 1] == 1  # C stride: NHWC


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_in_a_gemm_epilogue_keeps_its_form(precision, approximate) -> None:
    """Opset 20 Gelu after a MatMul fuses into its epilogue as the form it asked for (the
    tanh approximation once ran as erf)."""
    g = Graph("mlp", 21)
    x = g.add_input("x", [2, 5, 16])
    w = g.add_constant("w", (np.random.default_rng(6).standard_normal((16, 24)) * 0.4
                             ).astype(np.float32))
    h = g.add_node("MatMul", [x, w], 1, {}, "fc").outputs[0]
    h.shape, h.dtype = [2, 5, 24], "float32"
    y = g.add_node("Gelu", [h], 1, {"approximate": approximate}, "gelu").outputs[0]
    y.shape, y.dtype = [2, 5, 24], "float32"
    g.mark_output(y)
    prog = _check(g, precision)
    assert not any(k.startswith("fused") for k in _kernels(prog))
    gemm = next(ln for ln in prog.launches if ln.layer == "fc"
                and not ln.kernel.startswith("copy"))
    act = gemm.ints[10] if gemm.kernel.startswith("bmm") else gemm.ints[16]  # conv_ints' act
    assert act == ACT["gelu_tanh" if approximate == "tanh" else "gelu"], gemm.kernel


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_instance_norm_reads_and_writes_nhwc_in_place(precision) -> None:
    inits: dict = {"s": np.linspace(0.5, 1.5, 16).astype(np.float32),
                   "b": np.linspace(-1, 1, 16).astype(np.float32)}
    graph = _model([_conv("c", "x", 16, 8, inits),
                    helper.make_node("InstanceNormalization", ["c", "s", "b"], ["n"], name="in"),
                    _conv("y", "n", 8, 16, inits)], {"x": [2, 8, 5, 6]}, ["y"], inits)
    prog = _check(graph, precision)
    norm = next(ln for ln in prog.launches if ln.kernel.startswith("groupnorm"))
    assert norm.ints[8] == 1  # channels inner: NHWC
    assert [ln.kernel for ln in prog.launches if ln.kernel.startswith("copy")] == [
        ln.kernel for ln in prog.launches if ln.layer in ("c", "output:y")
        and ln.kernel.startswith("copy")]  # only the boundary reformats


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("equation,a,b", EINSUMS, ids=[e[0] for e in EINSUMS])
def test_einsum_as_one_batched_product(equation, a, b, precision) -> None:
    graph = einsum_graph(equation, a, b)
    assert supports(graph.node("einsum"), 87, precision)
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=87)
    got = simulate(prog, feeds)[graph.outputs[0].name]
    ref = np.einsum(equation.replace(" ", ""), feeds["a"], feeds["b"])
    assert got.shape == ref.shape and rel_err(got, ref) <= TOL[precision]
    assert [k for k in _kernels(prog) if k == "bmm"] == ["bmm"]


@pytest.mark.parametrize("equation,why", [("ii->i", "two-operand"), ("ij,jk->i", "one operand"),
                                          ("ab...,bc->ac", "ellipsis"),
                                          ("abk,bck->ac", "more than one"),
                                          ("ijk,kl->il", "summed over one operand")])
def test_einsum_that_is_not_one_product_is_refused(equation, why) -> None:
    g = Graph("e", 21)
    ins = [g.add_input("a", [2, 2, 2]), g.add_input("b", [2, 2, 2])][:1 if "," not in equation
                                                                      else 2]
    node = g.add_node("Einsum", ins, 1, {"equation": equation}, "e")
    node.outputs[0].shape, node.outputs[0].dtype = [2, 2], "float32"
    verdict = supports(node, 87, "fp16")
    assert not verdict and why in verdict.reason


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", ["conv1d", "conv1d_stem_c1", "conv1d_grouped"])
def test_1d_convolution_runs_as_a_2d_one_of_height_1(name, precision) -> None:
    case = next(c for c in cases() if c.name == name)
    _check(graph_of(build(case)), precision)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_1d_convolution_then_gelu_fuses_and_feeds_a_layernorm(precision) -> None:
    """Whisper's stem: Conv1d + GELU, then (N, C, L) -> (N, L, C) and a LayerNorm."""
    rng = np.random.default_rng(8)
    inits = {"w": (rng.standard_normal((16, 8, 3)) * 0.3).astype(np.float32),
             "s": np.ones(16, np.float32), "sqrt2": np.array(2 ** 0.5, np.float32),
             "one": np.array(1.0, np.float32), "half": np.array(0.5, np.float32)}
    graph = _model([
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1]),
        helper.make_node("Div", ["c", "sqrt2"], ["d"], name="gd"),
        helper.make_node("Erf", ["d"], ["e"], name="ge"),
        helper.make_node("Add", ["e", "one"], ["e1"], name="ga"),
        helper.make_node("Mul", ["c", "half"], ["h"], name="gh"),
        helper.make_node("Mul", ["h", "e1"], ["g"], name="gm"),
        helper.make_node("Transpose", ["g"], ["t"], name="t", perm=[0, 2, 1]),
        helper.make_node("LayerNormalization", ["t", "s"], ["y"], name="ln", axis=-1),
    ], {"x": [2, 8, 12]}, ["y"], inits)
    prog = _check(graph, precision)
    assert not any(k.startswith("fused") for k in _kernels(prog))


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_masks_run_as_one_fused_chain(precision) -> None:
    """Comparisons, Not, bool-to-float Casts and Where (a select) stay 0 / 1 values inside
    the segment and fuse with the arithmetic around them."""
    graph = graph_of(mask_model())
    feeds = feeds_for(graph)
    feeds["b"][0, 0, :3] = feeds["x"][0, 0, :3]  # some equal elements
    prog = _check(graph, precision, feeds)
    # the mask read twice (Not, Where) is computed once, then everything else in one chain
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["fused", "fused"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_float_to_bool_cast_is_nonzero_inside_the_chain(precision) -> None:
    """DeBERTa casts a float mask to bool before a Where: x != 0 (NaN too), fused."""
    g = Graph("cast_bool", 21)
    x, a = g.add_input("x", [2, 8]), g.add_input("a", [2, 8])
    m = g.add_node("Cast", [x], 1, {"to": 9}, "to_bool").outputs[0]
    m.shape, m.dtype = [2, 8], "bool"
    y = g.add_node("Where", [m, a, g.add_constant("fill", np.array(-7.0, np.float32))], 1, {},
                   "where").outputs[0]
    y.shape, y.dtype = [2, 8], "float32"
    g.mark_output(y)
    feeds = feeds_for(g)
    feeds["x"][0, :4] = 0.0
    feeds["x"][1, 0] = np.nan
    prog = _check(g, precision, feeds)
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["fused"]
    got = simulate(prog, feeds)[y.name]
    np.testing.assert_array_equal(got[0, :4], -7.0)
    assert got[1, 0] == pytest.approx(feeds["a"][1, 0], rel=1e-3)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_bool_segment_output_leaves_as_bools_bytes(precision) -> None:
    """A comparison (or a Cast to bool) read by a layer on the host: its 0 / 1 values are
    written out as one byte each, numpy's bool, by a copy that rounds them into INT8."""
    g = Graph("cmp", 21)
    x = g.add_input("x", [2, 3, 4, 5])
    y = g.add_node("Greater", [x, g.add_constant("t", np.array(0.0, np.float32))], 1, {},
                   "gt").outputs[0]
    y.shape, y.dtype = [2, 3, 4, 5], "bool"
    g.mark_output(y)
    prog = lower(g, precision, arch=87)
    assert prog.outputs[y.name][2] == np.dtype(bool)
    assert prog.launches[-1].kernel == f"copy_{'f32' if precision == 'fp32' else 'f16'}_i8"
    feeds = feeds_for(g)
    got = simulate(prog, feeds)[y.name]
    assert got.dtype == np.dtype(bool)
    np.testing.assert_array_equal(got, feeds["x"] > 0)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_an_expand_feeding_arithmetic_is_read_in_place(precision) -> None:
    graph = _model([helper.make_node("Expand", ["x", "s"], ["e"], name="expand"),
                    helper.make_node("Mul", ["e", "z"], ["y"], name="mul")],
                   {"x": [3, 1, 5], "z": [3, 4, 5]}, ["y"], {"s": np.array([3, 4, 5], np.int64)})
    prog = _check(graph, precision)
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["fused"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding_lookup_by_token_ids(index_dtype, precision) -> None:
    graph = embedding_graph(index_dtype)
    prog = _check(graph, precision, embedding_feeds(index_dtype))
    assert _kernels(prog)[0] == f"gather_rows_{'f32' if precision == 'fp32' else 'f16'}"


def test_integer_inputs_other_than_gather_indices_are_refused() -> None:
    g = Graph("bad", 21)
    x = g.add_input("x", [3], "int64")
    y = g.add_node("Cast", [x], 1, {"to": 1}, "cast").outputs[0]
    y.shape, y.dtype = [3], "float32"
    g.mark_output(y)
    assert not supports(g.node("cast"), 87, "fp16")
    with pytest.raises(GpuLoweringError, match="integer inputs only as Gather indices"):
        lower(g, "fp16", arch=87)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_channel_softmax_of_nhwc_data_stays_nhwc(precision) -> None:
    """A segmentation head's softmax over channels reads and writes NHWC (no reformat)."""
    inits: dict = {}
    graph = _model([_conv("c", "x", 16, 8, inits),
                    helper.make_node("Softmax", ["c"], ["s"], name="sm", axis=1),
                    _conv("y", "s", 8, 16, inits)], {"x": [2, 8, 5, 6]}, ["y"], inits)
    prog = _check(graph, precision)
    sm = next(ln for ln in prog.launches if ln.kernel.startswith("softmax_axis"))
    assert sm.ints[17:19] == [1, 1]  # the channel axis is contiguous in x and y


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_pixel_shuffle_after_a_conv_reads_and_writes_nhwc(precision) -> None:
    g = Graph("shuffle", 21)
    x = g.add_input("x", [1, 8, 5, 6])
    w = g.add_constant("w", (np.random.default_rng(5).standard_normal((16, 8, 1, 1)) * 0.3
                             ).astype(np.float32))
    conv = dict(kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1],
                group=1)
    c = g.add_node("Conv", [x, w], 1, conv, "conv").outputs[0]
    c.shape, c.dtype = [1, 16, 5, 6], "float32"
    d = g.add_node("DepthToSpace", [c], 1, {"blocksize": 2}, "d2s").outputs[0]
    d.shape, d.dtype = [1, 4, 10, 12], "float32"
    g.mark_output(d)
    prog = _check(g, precision)
    d2s = next(ln for ln in prog.launches if ln.layer == "d2s")
    assert d2s.kernel.startswith("copy")
    assert sum(ln.kernel.startswith("copy") for ln in prog.launches) == 3  # in, d2s, out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("mode,padding,align", GRID_SAMPLES)
def test_grid_sample_lowers_to_one_kernel(mode, padding, align, precision) -> None:
    graph = grid_sample_graph(mode, padding, align)
    assert supports(graph.node("gs"), 87, precision)
    feeds = grid_sample_feeds()
    prog = lower(graph, precision, arch=87)
    got = simulate(prog, feeds)[graph.outputs[0].name]
    ref = grid_sample_ref(feeds["x"], feeds["grid"], mode, padding, align)
    assert rel_err(got, ref) <= TOL[precision]
    assert [k for k in _kernels(prog) if not k.startswith("copy")] == ["grid_sample"]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize(("indices", "axis", "views"), [
    (np.arange(24, dtype=np.int64).reshape(1, 24, 1, 1), 0, True),  # torch.export's as_strided
    (np.arange(0, 12, 2, dtype=np.int64).reshape(2, 3), 1, True),  # an even step
    (np.array([[3, 0], [1, 1]], np.int64), 1, False),  # any order: one copy per index
])  # fmt: skip
def test_gather_with_nd_constant_indices(precision, indices, axis, views) -> None:
    """Gather with indices of rank > 1 (the dynamo exporter's ``as_strided``): the index dims
    take the axis's place; an evenly stepping index set is a view, no kernel."""
    x_shape = (24, 5) if axis == 0 else (2, 12, 3)
    graph = _model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                    helper.make_node("Gather", ["r", "i"], ["g"], name="gather", axis=axis),
                    helper.make_node("Neg", ["g"], ["y"], name="neg")],
                   {"x": x_shape}, ["y"], {"i": indices})
    prog = _check(graph, precision)
    copies = [ln for ln in prog.launches if ln.layer == "gather" and "copy" in ln.kernel]
    assert (not copies) if views else copies


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_a_bool_mask_from_the_host_enters_a_segment(precision) -> None:
    """BERT's attention mask is integer math on the host; its bool result enters the GPU
    segment as bytes, widened once to 0 / 1 in the compute precision, then Where / And read it."""
    graph = helper.make_graph(
        [helper.make_node("Not", ["m"], ["nm"], name="not"),
         helper.make_node("Div", ["x", "x"], ["q"], name="div"),  # 0 / 0: NaN where x is 0
         helper.make_node("IsNaN", ["q"], ["nan"], name="isnan"),
         helper.make_node("Or", ["nan", "k"], ["kn"], name="or"),
         helper.make_node("And", ["m", "kn"], ["mk"], name="and"),
         helper.make_node("Where", ["mk", "x", "big"], ["w"], name="where"),
         helper.make_node("Where", ["nm", "w", "x"], ["y"], name="where2")],
        "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (2, 3, 4)),
              helper.make_tensor_value_info("m", TensorProto.BOOL, (2, 1, 4)),
              helper.make_tensor_value_info("k", TensorProto.BOOL, (2, 3, 4))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array(-1e4, np.float32), "big")])
    g = graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    x[0, 1, :2] = 0.0
    feeds = {"x": x, "m": rng.random((2, 1, 4)) > 0.5, "k": rng.random((2, 3, 4)) > 0.3}
    _check(g, precision, feeds)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 6, 7), (1, 4, 3, 2, 5)])
def test_global_pool_of_any_rank(precision, op, shape) -> None:
    """Swin's pooler: GlobalAveragePool over (N, C, L) tokens is the general reduction."""
    graph = _model([helper.make_node("Relu", ["x"], ["r"], name="relu"),
                    helper.make_node(op, ["r"], ["y"], name="pool")], {"x": shape}, ["y"])
    _check(graph, precision)
