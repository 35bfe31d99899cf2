"""Depthwise convolutions (conv_dw, se_dw_pool: a thread a strip of DW_STRIP output pixels of a
row, or of 1 where the grid does not fill the GPU, depthwise.cuh): the kernels' paths -- 3x3 and
5x5 at stride 1 and 2 with their input columns shared along the strip, any other shape through
the generic loop -- with strips that run past Q, padding, dilation, residuals, channel-sliced
inputs and outputs, both strip lengths, on the numpy kernel model (CI) and on CUDA
(@pytest.mark.gpu) against the CPU reference; the rule that chooses the strip."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from gpu_kernels.lowering.conv import DW_FILL_CTAS, DW_STRIP, dw_strip
from gpu_kernels.tactics import ConvProblem
from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err
from tests.gpu_kernels.kernel_sim import force_dw_strip, simulate
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
STRIPS = [DW_STRIP, 1]


def dw_kernel(name: str, precision: str, strip: int) -> str:
    """The depthwise entry point model ``name`` takes with strips of ``strip`` pixels."""
    x8 = precision == "fp16" and "c12" not in name
    return f"{'se_dw_pool' if name.startswith('se_') else 'conv_dw'}" \
           f"{'_px1' if strip == 1 else ''}{'_x8' if x8 else ''}" \
           f"_{'f16' if precision == 'fp16' else 'f32'}"


@pytest.mark.parametrize("strip", STRIPS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_depthwise_matches_reference(name, precision, strip, monkeypatch) -> None:
    force_dw_strip(monkeypatch, strip)
    graph = graph_of(MODELS[name])
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=87)
    kernels = {ln.kernel for ln in prog.launches}
    assert dw_kernel(name, precision, strip) in kernels, kernels
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], (out, rel_err(got[out], r))


@pytest.mark.parametrize("strip,threads,strips", [(DW_STRIP, 96, 10 * 3), (1, 312, 10 * 11)])
def test_strips_cover_each_row_once(strip, threads, strips, monkeypatch) -> None:
    """A thread a strip: N x P x ceil(Q / strip) x C / 8 threads; the SE pool's blocks are of
    strips."""
    force_dw_strip(monkeypatch, strip)
    prog = lower(graph_of(MODELS["k3s1_q13"]), "fp16", arch=87)
    (ln,) = [ln for ln in prog.launches if ln.kernel.startswith("conv_dw")]
    assert ln.kernel == dw_kernel("k3s1_q13", "fp16", strip)
    # 2 images x 6 rows x ceil(13 / strip) strips x 2 vectors
    assert threads == 2 * 6 * -(-13 // strip) * 2 and ln.grid == (-(-threads // 256), 1, 1)
    prog = lower(graph_of(MODELS["se_k5s1_q11"]), "fp16", arch=87)
    (ln,) = [ln for ln in prog.launches if ln.kernel.startswith("se_dw_pool")]
    assert ln.kernel == dw_kernel("se_k5s1_q11", "fp16", strip)
    ct, chunk = ln.ints[21:23]
    # 10 rows of ceil(11 / strip) strips an image, each in one block
    assert ct == 4 and (ln.grid[0] - 1) * chunk < strips <= ln.grid[0] * chunk


def dw3x3(n: int, hw: int, c: int) -> ConvProblem:
    """A stride-1 3x3 depthwise convolution of ``c`` channels at ``hw`` x ``hw``."""
    return ConvProblem(n, hw, hw, c, c, hw, hw, 3, 3, pad=(1, 1), groups=c)


def test_strips_where_the_grid_fills_one_wave() -> None:
    """dw_strip: DW_STRIP pixels a thread once the strips' grid has DW_FILL_CTAS CTAs of 256
    threads on every SM, else 1."""
    assert (DW_STRIP, DW_FILL_CTAS) == (4, 2)
    first = dw3x3(1, 112, 32)  # MobileNetV2's first: 112 x 28 strips x 4 vectors, 49 CTAs
    assert dw_strip(first, 8, 132) == 1  # batch 1, H200: 49 CTAs for 132 SMs
    assert dw_strip(replace(first, n=32), 8, 132) == 4  # batch 32: 1568 CTAs
    assert dw_strip(first, 8, 16) == 4  # batch 1, Orin's 16 SMs: 49 >= 32
    assert dw_strip(first, 8, 8) == 4  # Xavier
    assert dw_strip(first, 1, 132) == 4  # a channel a thread (FP32): 392 CTAs
    late = dw3x3(1, 28, 192)  # MobileNetV2's: 28 x 7 strips x 24 vectors, 19 CTAs
    assert dw_strip(late, 8, 16) == 1 and dw_strip(late, 8, 8) == 4
    one = ConvProblem(1, 1, 4, 2048, 2048, 1, 4, 1, 1, groups=2048)  # a CTA of strips an image
    assert dw_strip(replace(one, n=264), 8, 132) == 4  # 264 CTAs = 2 x 132 ...
    assert dw_strip(replace(one, n=263), 8, 132) == 1  # ... 263 fewer
    # 7 x 7 x 960 at batch 32 (MobileNetV3-Large's last shape): 210 CTAs, strips on Orin and
    # single pixels on the H200
    last = dw3x3(32, 7, 960)
    assert dw_strip(last, 8, 16) == 4 and dw_strip(last, 8, 132) == 1


@pytest.mark.parametrize("n,sm_count,strip", [(1, 132, 1), (32, 132, DW_STRIP), (1, 16, DW_STRIP),
                                              (1, 24, DW_STRIP), (1, 25, 1)])
def test_the_lowering_takes_the_rules_strip(n, sm_count, strip) -> None:
    """conv_dw and se_dw_pool launch the kernel of dw_strip's length for the target's SMs, with
    that grid: 112 x 112 x 32 (49 CTAs of strips an image) takes single pixels at batch 1 on
    the H200 and strips at batch 32 or on Orin; 24 SMs are the most that 49 CTAs fill."""
    graph = graph_of(dw_proto(n, 32, 112, 112, (3, 3), 1, (1, 1, 1, 1), 1, False))
    (ln,) = [ln for ln in lower(graph, "fp16", arch=87, sm_count=sm_count).launches
             if ln.kernel.startswith("conv_dw")]
    assert ln.kernel == dw_kernel("", "fp16", strip)
    assert ln.grid[0] == -(-n * 112 * -(-112 // strip) * 4 // 256)
    graph = graph_of(se_proto(c=32, s=8, n=n, hw=(112, 112)))
    (ln,) = [ln for ln in lower(graph, "fp16", arch=87, sm_count=sm_count).launches
             if ln.kernel.startswith("se_dw_pool")]
    assert ln.kernel == dw_kernel("se_", "fp16", strip)
    assert (ln.grid[0] - 1) * ln.ints[22] < 112 * -(-112 // strip) <= ln.grid[0] * ln.ints[22]


@pytest.mark.parametrize("strip", STRIPS)
def test_sliced_inputs_and_outputs_are_read_and_written_in_place(strip, monkeypatch) -> None:
    force_dw_strip(monkeypatch, strip)
    prog = lower(graph_of(MODELS["sliced"]), "fp16", arch=87)
    dws = [ln for ln in prog.launches if ln.layer.startswith("dw")]
    assert [ln.kernel for ln in dws] == [dw_kernel("sliced", "fp16", strip)] * 3
    assert all(ln.ints[18:20] == [48, 48] for ln in dws)  # xcs, ycs: slices of 48 channels
    assert [(ln.ptrs[0].byte_offset, ln.ptrs[4].byte_offset) for ln in dws] == \
        [(0, 0), (32, 32), (64, 64)]  # channels 0, 16, 32 (FP16)
    # only the graph input's and output's conversions copy
    assert [ln.layer for ln in prog.launches if ln.kernel.startswith("copy_")] == \
        ["pw", "output:y"]


@pytest.mark.parametrize("strip", STRIPS)
def test_int8_output_matches_fake_quant(strip, monkeypatch) -> None:
    """The FP16 depthwise kernel that writes INT8 for the next INT8 convolution
    (conv_dw[_px1]_x8_f16_i8), on the kernel model against the fake-quantised reference (the
    bound of tests/devices/test_gpu_int8.py)."""
    from tests.devices.int8_cases import fake_quant_reference, lowering, minmax_scales
    from tests.devices.int8_cases import models as int8_models

    force_dw_strip(monkeypatch, strip)
    graph = graph_of(int8_models()["depthwise"])
    feeds = feeds_for(graph, 0)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)] + [feeds])
    prog = lower(graph, "int8", arch=87, scales=scales)
    assert f"{dw_kernel('depthwise', 'fp16', strip)}_i8" in {ln.kernel for ln in prog.launches}
    got = simulate(prog, feeds)
    for out, ref in fake_quant_reference(graph, feeds, lowering(graph, scales, 87)).items():
        assert rel_err(got[out], ref) <= 2e-2, out


@pytest.mark.gpu
@pytest.mark.parametrize("strip", STRIPS)
def test_int8_output_on_cuda_matches_fake_quant(strip, monkeypatch) -> None:
    from tests.devices.int8_cases import minmax_scales
    from tests.devices.int8_cases import models as int8_models
    from tests.devices.test_gpu_int8 import _check as check_int8

    force_dw_strip(monkeypatch, strip)
    graph = graph_of(int8_models()["depthwise"])
    feeds = feeds_for(graph, 0)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)] + [feeds])
    assert f"{dw_kernel('depthwise', 'fp16', strip)}_i8" in \
        {ln.kernel for ln in lower(graph, "int8", arch=90, scales=scales).launches}
    check_int8(graph, scales, feeds, {"autotune": False}, 2e-2, 0.999)


@pytest.mark.gpu
@pytest.mark.parametrize("strip", STRIPS)
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", list(MODELS))
def test_depthwise_on_cuda_matches_reference(name, precision, strip, monkeypatch) -> None:
    from devices.gpu import GpuRunner

    force_dw_strip(monkeypatch, strip)
    graph = graph_of(MODELS[name])
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
        assert runner.program is not None
        assert dw_kernel(name, precision, strip) in {ln.kernel for ln in runner.program.launches}
    for out, r in ref.items():
        assert np.all(np.isfinite(got[out])), out
        assert rel_err(got[out], r) <= TOL[precision], (out, rel_err(got[out], r))
