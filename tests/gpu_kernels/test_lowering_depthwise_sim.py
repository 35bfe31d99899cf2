"""Depthwise convolutions (conv_dw, se_dw_pool: a thread a strip of DW_STRIP output pixels of a
row, depthwise.cuh): the kernels' paths -- 3x3 and 5x5 at stride 1 and 2 with their input
columns shared along the strip, any other shape through the generic loop -- with strips that
run past Q, padding, dilation, residuals, channel-sliced inputs and outputs, on the numpy
kernel model (CI) and on CUDA (@pytest.mark.gpu) against the CPU reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from gpu_kernels.lowering.conv import DW_STRIP
from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.gpu_kernels.test_lowering_se_sim import se_proto

TOL = {"fp32": 1e-5, "fp16": 1e-2}

# name: (N, C, H, W, kernel (R, S), stride, pads (top, left, bottom, right), dilation,
# residual + ReLU after the convolution)
SHAPES = {
    "k3s1_q13": (2, 16, 6, 13, (3, 3), 1, (1, 1, 1, 1), 1, False),  # a strip of 1 at the end
    "k3s2_q6": (1, 24, 11, 11, (3, 3), 2, (1, 1, 1, 1), 1, False),  # ... of 2
    "k5s1_q7": (1, 32, 9, 7, (5, 5), 1, (2, 2, 2, 2), 1, False),  # ... of 3
    "k5s2_q9": (2, 16, 15, 17, (5, 5), 2, (2, 2, 2, 2), 1, False),
    "k3s1_dil2": (1, 16, 12, 11, (3, 3), 1, (2, 2, 2, 2), 2, False),  # the generic loop
    "k3s2_dil2": (1, 8, 13, 14, (3, 3), 2, (2, 2, 2, 2), 2, False),
    "k3_asym_pad": (1, 16, 10, 9, (3, 3), 1, (0, 1, 2, 0), 1, False),
    "k5s2_no_pad": (1, 16, 12, 21, (5, 5), 2, (0, 0, 0, 0), 1, False),
    "k3x5": (1, 16, 8, 10, (3, 5), 1, (1, 2, 1, 2), 1, False),  # R != S
    "k7s1": (1, 8, 9, 9, (7, 7), 1, (3, 3, 3, 3), 1, False),  # generic
    "k3s1_c12": (1, 12, 7, 10, (3, 3), 1, (1, 1, 1, 1), 1, False),  # one channel a thread
    "k3s1_residual": (2, 16, 7, 11, (3, 3), 1, (1, 1, 1, 1), 1, True),
    "k5s1_residual_c12": (1, 12, 6, 6, (5, 5), 1, (2, 2, 2, 2), 1, True),
}


def dw_proto(n: int, c: int, h: int, w: int, kernel: tuple[int, int], stride: int,
             pads: tuple[int, ...], dilation: int, residual: bool) -> onnx.ModelProto:
    """x -> depthwise conv (+ bias) [-> + x -> ReLU]."""
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array((rng.standard_normal((c, 1, *kernel)) * 0.4)
                                     .astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(c).astype(np.float32) * 0.1, "b")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["d" if residual else "y"], name="dw",
                              group=c, kernel_shape=list(kernel), strides=[stride] * 2,
                              pads=list(pads), dilations=[dilation] * 2)]
    if residual:
        nodes += [helper.make_node("Add", ["d", "x"], ["s"], name="add"),
                  helper.make_node("Relu", ["s"], ["y"], name="relu")]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [n, c, h, w])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def sliced_proto() -> onnx.ModelProto:
    """A 1x1 conv to 48 channels, split in three 16-channel slices (views of its output), a
    depthwise conv on each (3x3 / 2, 5x5, dilated 3x3) into a Concat (written in place):
    channel-sliced inputs and outputs at offsets 0, 16 and 32."""
    rng = np.random.default_rng(5)

    def const(name: str, *shape: int) -> str:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * 0.4).astype(np.float32), name))
        return name

    inits: list = []
    nodes = [helper.make_node("Conv", ["x", const("wp", 48, 8, 1, 1)], ["h"], name="pw"),
             helper.make_node("Split", ["h"], ["h0", "h1", "h2"], name="split", axis=1,
                              num_outputs=3)]
    for i, (k, pad, dil) in enumerate([(3, 1, 1), (5, 2, 1), (3, 2, 2)]):
        nodes.append(helper.make_node("Conv", [f"h{i}", const(f"w{i}", 16, 1, k, k),
                                               const(f"b{i}", 16)], [f"d{i}"], name=f"dw{i}",
                                      group=16, pads=[pad] * 4, dilations=[dil] * 2))
    nodes.append(helper.make_node("Concat", ["d0", "d1", "d2"], ["y"], name="cat", axis=1))
    g = helper.make_graph(nodes, "sliced", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, 8, 9, 14])], [helper.make_tensor_value_info(
            "y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


# SE blocks whose depthwise convolution (se_dw_pool) sums strips that run past Q
SE = {
    "se_k5s1_q11": {"c": 32, "s": 8, "n": 3, "hw": (10, 11), "kernel": 5},
    "se_k3s2_q6": {"c": 16, "s": 4, "n": 2, "hw": (13, 11), "stride": 2},
    "se_k3s1_c12": {"c": 12, "s": 3, "n": 2, "hw": (9, 9)},  # one channel a thread
}


def models() -> dict[str, onnx.ModelProto]:
    out = {name: dw_proto(*shape) for name, shape in SHAPES.items()}
    out["sliced"] = sliced_proto()
    out.update({name: se_proto(**kw) for name, kw in SE.items()})
    return out


MODELS = models()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_depthwise_matches_reference(name, precision) -> None:
    graph = graph_of(MODELS[name])
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=87)
    kernels = {ln.kernel for ln in prog.launches}
    x8 = precision == "fp16" and "c12" not in name
    dw = f"{'se_dw_pool' if name.startswith('se_') else 'conv_dw'}_{'x8_' if x8 else ''}" \
         f"{'f16' if precision == 'fp16' else 'f32'}"
    assert dw in kernels, kernels
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], (out, rel_err(got[out], r))


def test_strips_cover_each_row_once() -> None:
    """A thread a strip: N x P x ceil(Q / DW_STRIP) x C / 8 threads; the SE pool's blocks are of
    strips."""
    prog = lower(graph_of(MODELS["k3s1_q13"]), "fp16", arch=87)
    (ln,) = [ln for ln in prog.launches if ln.kernel == "conv_dw_x8_f16"]
    assert DW_STRIP == 4 and ln.grid == (1, 1, 1)  # 2 x 6 x 4 strips x 2 vectors: 96 threads
    prog = lower(graph_of(MODELS["se_k5s1_q11"]), "fp16", arch=87)
    (ln,) = [ln for ln in prog.launches if ln.kernel == "se_dw_pool_x8_f16"]
    ct, chunk = ln.ints[21:23]
    assert ct == 4 and ln.grid[0] * chunk >= 10 * 3  # 10 rows of 3 strips an image


def test_sliced_inputs_and_outputs_are_read_and_written_in_place() -> None:
    prog = lower(graph_of(MODELS["sliced"]), "fp16", arch=87)
    dws = [ln for ln in prog.launches if ln.layer.startswith("dw")]
    assert [ln.kernel for ln in dws] == ["conv_dw_x8_f16"] * 3
    assert all(ln.ints[18:20] == [48, 48] for ln in dws)  # xcs, ycs: slices of 48 channels
    assert [(ln.ptrs[0].byte_offset, ln.ptrs[4].byte_offset) for ln in dws] == \
        [(0, 0), (32, 32), (64, 64)]  # channels 0, 16, 32 (FP16)
    # only the graph input's and output's conversions copy
    assert [ln.layer for ln in prog.launches if ln.kernel.startswith("copy_")] == \
        ["pw", "output:y"]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_depthwise_on_cuda_matches_reference(name, precision) -> None:
    from devices.gpu import GpuRunner

    graph = graph_of(MODELS[name])
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for out, r in ref.items():
        assert np.all(np.isfinite(got[out])), out
        assert rel_err(got[out], r) <= TOL[precision], (out, rel_err(got[out], r))
