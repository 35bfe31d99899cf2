"""CI (no GPU): squeeze-and-excitation blocks lower to two kernels (se.cu: the pooled means and
the first FC, then the second FC + gate + scale), checked on the numpy kernel model against the
CPU reference on small graphs and against ONNX Runtime on torchvision's EfficientNet-B0 and
MobileNetV3-Small; the same kernels on CUDA are the @pytest.mark.gpu tests at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from gpu_kernels.lowering.conv import DW_STRIP
from gpu_kernels.lowering.se import pool_tiling, scale_tiling
from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err
from tests.gpu_kernels.kernel_sim import force_dw_strip, simulate
from tests.models import ort_run, random_inputs

TOL = {"fp32": 1e-5, "fp16": 1e-2}


def se_model(**kwargs):
    """:func:`se_proto` as the framework's graph."""
    return graph_of(se_proto(**kwargs))


def se_proto(c: int = 24, s: int = 6, n: int = 1, hw: tuple[int, int] = (5, 7),
             act: str = "Silu", gate: str = "Sigmoid", pool: str = "GlobalAveragePool",
             bias: bool = True, gate_first: bool = True, extra_reader: bool = False,
             concat: bool = False, depthwise: bool = True, kernel: int = 3,
             stride: int = 1) -> onnx.ModelProto:
    """x -> depthwise 3x3 conv -> SE block (pool, 1x1 conv, act, 1x1 conv, gate, Mul) -> 1x1
    projection, as torchvision's MBConv; ``extra_reader``: the gate is also a graph output;
    ``concat``: the SE output goes into a channel Concat (written in place); not
    ``depthwise``: a full 3x3 conv writes the block's input (RegNetY's are grouped)."""
    rng = np.random.default_rng(7)
    inits: list = []

    def const(name: str, *shape: int, scale: float = 0.4) -> str:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    nodes = [helper.make_node("Conv", ["x", const("wd", c, 1 if depthwise else c, kernel,
                                                 kernel), const("bd", c)], ["d"], name="dw",
                              group=c if depthwise else 1, pads=[kernel // 2] * 4,
                              strides=[stride, stride])]
    if pool == "ReduceMean":
        inits.append(numpy_helper.from_array(np.array([2, 3], np.int64), "axes"))
        nodes.append(helper.make_node("ReduceMean", ["d", "axes"], ["p"], name="pool"))
    else:
        nodes.append(helper.make_node("GlobalAveragePool", ["d"], ["p"], name="pool"))
    fc1 = ["p", const("w1", s, c, 1, 1)] + ([const("b1", s)] if bias else [])
    nodes.append(helper.make_node("Conv", fc1, ["h0"], name="fc1"))
    if act == "Silu":
        nodes += [helper.make_node("Sigmoid", ["h0"], ["hs"], name="act_sig"),
                  helper.make_node("Mul", ["h0", "hs"], ["h"], name="act_mul")]
    else:
        nodes.append(helper.make_node(act, ["h0"], ["h"], name="act"))
    fc2 = ["h", const("w2", c, s, 1, 1)] + ([const("b2", c)] if bias else [])
    nodes.append(helper.make_node("Conv", fc2, ["g0"], name="fc2"))
    attrs = {"alpha": 1 / 6, "beta": 0.5} if gate == "HardSigmoid" else {}
    nodes.append(helper.make_node(gate, ["g0"], ["g"], name="gate", **attrs))
    nodes.append(helper.make_node("Mul", ["g", "d"] if gate_first else ["d", "g"], ["e"],
                                  name="scale"))
    outs = ["y"]
    if concat:
        nodes.append(helper.make_node("Concat", ["e", "d"], ["ed"], name="cat", axis=1))
        nodes.append(helper.make_node("Conv", ["ed", const("wp", 8, 2 * c, 1, 1)], ["y"],
                                      name="proj"))
    else:
        nodes.append(helper.make_node("Conv", ["e", const("wp", 8, c, 1, 1)], ["y"],
                                      name="proj"))
    if extra_reader:
        outs.append("g")
    graph = helper.make_graph(
        nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, *hw])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8  # the GPU machine's onnxruntime reads IR <= 13 only
    return model


def _check(graph, precision: str, tol: float | None = None):
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=87)
    got, ref = simulate(prog, feeds), reference(graph, feeds)
    for name, r in ref.items():
        err = rel_err(got[name], r)
        assert err <= (tol or TOL[precision]), (name, err)
    return prog


SE_VARIANTS = {
    "efficientnet": {},  # SiLU, sigmoid, biases, gate * x
    "mobilenetv3": {"act": "Relu", "gate": "HardSigmoid", "gate_first": False},
    "reducemean_nobias_batch2": {"pool": "ReduceMean", "bias": False, "n": 2},
    "after_full_conv": {"depthwise": False, "n": 2, "hw": (23, 24)},  # se_pool
    "unaligned_wide": {"c": 36, "s": 3, "hw": (9, 11)},  # not 8 channels a thread
    "into_concat": {"concat": True, "c": 16, "s": 4},
    "pool_split_4": {"c": 8, "s": 2, "hw": (41, 30)},  # 1230 pixels: the last block short
}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", list(SE_VARIANTS))
def test_se_block_is_two_kernels(variant, precision) -> None:
    prog = _check(se_model(**SE_VARIANTS[variant]), precision)
    dt = "f32" if precision == "fp32" else "f16"
    x8 = "x8_" if dt == "f16" and SE_VARIANTS[variant].get("c", 24) % 8 == 0 else ""
    se = [(ln.layer, ln.kernel) for ln in prog.launches
          if ln.kernel.startswith(("se_", "conv_dw"))]
    if SE_VARIANTS[variant].get("depthwise", True):  # the depthwise conv sums for the pool
        # (a pixel a thread: these grids are far from filling 132 SMs)
        assert se == [("dw", f"se_dw_pool_px1_{x8}{dt}"), ("scale", f"se_scale_{x8}{dt}")]
    else:
        assert se == [("pool", f"se_pool_{x8}{dt}"), ("scale", f"se_scale_{x8}{dt}")]
    # neither FC, the activations nor the Mul has a kernel of its own
    layers = {ln.layer for ln in prog.launches}
    assert not layers & {"fc1", "fc2", "act", "act_sig", "act_mul", "gate"}
    if variant == "into_concat":  # written straight into its slice of the concat (32 channels)
        scale = next(ln for ln in prog.launches if ln.kernel.startswith("se_scale"))
        assert scale.ints[4] == 32 and "cat" not in layers


@pytest.mark.parametrize("variant,why", [
    ({"extra_reader": True}, "the gate leaves the graph"),
    ({"gate": "HardSwish"}, "not a gate"),
    ({"c": 16, "s": 10177, "hw": (1, 2)}, "S + 264 x 8 floats exceed se_scale's shared memory"),
])
def test_blocks_the_se_kernels_do_not_take_lower_as_before(variant, why) -> None:
    prog = _check(se_model(**variant), "fp32")
    assert not any(ln.kernel.startswith("se_") for ln in prog.launches), why


def test_the_widest_hidden_layer_that_fits_48_kib_takes_the_se_kernels() -> None:
    """S = 10176 is the last hidden width whose se_scale shared memory (S + 264 x 8 floats
    at most) fits 48 KiB: the SE kernels run it, within that memory, and match the
    reference."""
    graph = se_model(c=16, s=10176, hw=(3, 2))
    prog = _check(graph, "fp16")
    smem = {ln.kernel: ln.smem for ln in prog.launches if ln.kernel.startswith("se_")}
    assert set(smem) == {"se_dw_pool_px1_x8_f16", "se_scale_x8_f16"}
    assert max(smem.values()) <= 48 * 1024


@pytest.mark.parametrize("c", [32, 48])  # INT8 convolutions take C % 16 == 0
def test_se_output_read_by_an_int8_conv_is_written_int8(c) -> None:
    """The projection conv reads INT8: se_scale quantises as it stores, no copy kernel."""
    from tests.devices.int8_cases import minmax_scales

    graph = se_model(c=c, s=8)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)])
    prog = lower(graph, "int8", arch=87, sm_count=16, scales=scales)
    scale = next(ln for ln in prog.launches if ln.layer == "scale")
    assert scale.kernel == "se_scale_x8_f16_i8"
    assert scale.floats[0] == pytest.approx(1 / scales["e"])
    assert [ln.kernel for ln in prog.launches if ln.layer == "proj"] == ["conv_mma_i8"]


def test_work_per_cta() -> None:
    """The grids grow with the batch and the pixels: (CT lanes, B blocks, pixels a block)."""
    # EfficientNet-B0's features.1.0 (112 x 112 x 32, x8): 4 lanes x 64 rows; at batch 32 4
    # pixels a row, at batch 1 one (4 x 132 SMs' worth of CTAs where the image allows)
    assert pool_tiling(12544, 4, 32, 132) == (4, 49, 256)
    assert pool_tiling(12544, 4, 1, 132) == (4, 196, 64)
    assert pool_tiling(12544, 4, 1, 16) == (4, 98, 128)  # Orin: 16 SMs, 2 pixels a row
    assert pool_tiling(3136, 18, 32, 132) == (18, 56, 56)  # 14 rows (252 threads)
    assert pool_tiling(49, 144, 32, 132) == (29, 4, 16)  # 7 x 7 x 1152: 5 tiles of 29
    assert pool_tiling(49, 144, 1, 132) == (29, 7, 8)
    assert pool_tiling(100000, 1, 1, 132) == (1, 256, 391)  # at most 256 partial sums
    assert pool_tiling(1, 3, 1, 132) == (3, 1, 85)
    # se_scale: the pools' tiles (up to 32 vectors), narrowed (to 8 at least) where a row of
    # threads would make more than 8 second-FC weight reads; blocks of 256 / CT rows x 4
    # pixels, doubled while 4 CTAs an SM remain
    assert scale_tiling(12544, 4, 32, 132, 8, 8) == (4, 25, 512)  # 32 x 25 = 800 CTAs
    assert scale_tiling(12544, 4, 1, 132, 8, 8) == (4, 49, 256)
    assert scale_tiling(49, 144, 32, 132, 8, 48) == (29, 2, 32)  # 48 / 8 rows: 6 reads
    assert scale_tiling(49, 120, 1, 132, 8, 240) == (8, 1, 128)  # MobileNetV3's 960 x 240
    assert scale_tiling(49, 120, 1, 132, 8, 100) == (20, 2, 48)  # 2048 / 100 -> 20 lanes
    assert scale_tiling(3136, 18, 32, 132, 8, 6) == (18, 28, 112)
    assert scale_tiling(49, 960, 1, 132, 1, 240) == (32, 2, 32)  # FP32: 32 channels a tile
    assert scale_tiling(1, 3, 1, 132, 1, 2) == (3, 1, 340)

# ----- batches against ONNX Runtime -----------------------------------------------------------
# The pools split an image over (pixel blocks x channel tiles) CTAs whose partial sums the last
# CTA of each tile adds (its share of the first FC), the last of those of each image adding the
# shares; se_scale splits it over (pixel blocks x its own channel tiles), each CTA computing its
# tile's gate. Shapes where the splits do not divide evenly, at batch 1, 2 and 32.
BATCH_VARIANTS = {
    "b1_many_blocks": {"c": 8, "s": 2, "hw": (67, 61)},  # 4087 pixels: 4 blocks, last short
    "b2_odd_channels": {"c": 13, "s": 3, "n": 2, "hw": (23, 19)},  # one channel a vector
    "b2_two_tiles": {"c": 320, "s": 20, "n": 2, "hw": (6, 5)},  # 40 vectors: 2 tiles of 20
    "b32_small": {"c": 16, "s": 4, "n": 32, "hw": (9, 7)},
    "b32_stride2_5x5": {"c": 40, "s": 10, "n": 32, "hw": (15, 13), "kernel": 5, "stride": 2},
    "b32_odd_pool": {"c": 21, "s": 5, "n": 32, "hw": (17, 16), "depthwise": False},
    "b3_pool_splits": {"c": 40, "s": 6, "n": 3, "hw": (41, 30), "depthwise": False},
    # 300 hidden units: more than the 256 group sums whose shared memory they reuse
    "b2_wide_hidden": {"c": 16, "s": 300, "n": 2, "hw": (33, 31)},
}


def with_strips(variants: dict[str, dict]) -> list[tuple[str, int]]:
    """(variant, strip): both strip lengths of se_dw_pool where the variant has a depthwise
    convolution (se_pool has no strips)."""
    return [(name, strip) for name, kw in variants.items()
            for strip in ((DW_STRIP, 1) if kw.get("depthwise", True) else (DW_STRIP,))]


def pool_kernel(variant: str, strip: int, precision: str) -> str:
    """The pool's kernel: se_pool, or se_dw_pool with strips of ``strip`` pixels."""
    kw = {**SE_VARIANTS, **BATCH_VARIANTS}[variant]
    x8 = "x8_" if precision == "fp16" and kw.get("c", 24) % 8 == 0 else ""
    dt = "f16" if precision == "fp16" else "f32"
    if kw.get("depthwise") is False:
        return f"se_pool_{x8}{dt}"
    return f"se_dw_pool_{'px1_' if strip == 1 else ''}{x8}{dt}"


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant,strip", with_strips(BATCH_VARIANTS))
def test_se_batches_match_onnx_runtime(variant, strip, precision, tmp_path,
                                       monkeypatch) -> None:
    force_dw_strip(monkeypatch, strip)
    model = se_proto(**BATCH_VARIANTS[variant])
    path = tmp_path / "se.onnx"
    onnx.save(model, path)
    graph = graph_of(model)
    feeds = feeds_for(graph)
    prog = lower(graph, precision, arch=87)
    kernels = [ln.kernel for ln in prog.launches if ln.kernel.startswith("se_")]
    assert len(kernels) == 2 and kernels[0] == pool_kernel(variant, strip, precision), kernels
    assert kernels[1].startswith("se_scale_"), kernels
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= TOL[precision], (name, rel_err(got[name], r))


def test_grids_grow_with_the_batch() -> None:
    """At batch 32 the SE kernels of a 56 x 56 x 144 block have 16 times the CTAs of batch 1,
    not the same CTAs looping 32 times as long. At batch 1 (56 CTAs of strips for 132 SMs)
    se_dw_pool takes one pixel a thread, 14 rows of a CTA 14 pixels: 4 times the CTAs of
    strips; at batch 32 two strips (of 4 pixels of a row) a thread; se_scale 4 pixels a
    thread."""
    grids = {}
    for n in (1, 32):
        prog = lower(se_model(c=144, s=6, n=n, hw=(56, 56)), "fp16", arch=87)
        grids[n] = {ln.kernel: (ln.grid, ln.ints[22]) for ln in prog.launches
                    if ln.kernel.startswith("se_dw_pool")}
        grids[n].update({ln.kernel: (ln.grid, ln.ints[6]) for ln in prog.launches
                         if ln.kernel.startswith("se_scale")})
    assert grids[1] == {"se_dw_pool_px1_x8_f16": ((224, 1, 1), 14),
                        "se_scale_x8_f16": ((56, 1, 1), 56)}
    assert grids[32] == {"se_dw_pool_x8_f16": ((28, 1, 32), 28),
                         "se_scale_x8_f16": ((28, 1, 32), 112)}


# ----- real exports against ONNX Runtime --------------------------------------------------------
# (model, SE blocks, kernels before this fusion, kernels now) at FP16 on sm_87, 64 x 64 input:
# each block went from pool + 2 convs (+ a memset and pad copy per FC whose input width is not a
# multiple of 8) + the Mul's fused kernel to se_scale, the pool summed by the depthwise conv
# that writes the block's input (se_dw_pool) in every block of both models.
EXPORTS = [("tv-efficientnet_b0", 16, 139, 69), ("tv-mobilenet_v3_small", 9, 75, 48)]


def _export(conformance_model, name: str) -> Path:
    # both exported by one run of tests/conformance/export_torchvision.py
    return conformance_model("torchvision", name, tuple(e[0] for e in EXPORTS))


@pytest.mark.parametrize("name,blocks,before,now", EXPORTS, ids=[e[0] for e in EXPORTS])
def test_exported_se_models_match_onnx_runtime(name, blocks, before, now,
                                               conformance_model) -> None:
    path = _export(conformance_model, name)
    graph = graph_of(onnx.load(path))
    feeds = random_inputs(path)
    prog = lower(graph, "fp16", arch=87)
    kernels = [ln.kernel for ln in prog.launches]
    # (64 x 64 inputs at batch 1: every depthwise grid takes a pixel a thread)
    assert kernels.count("se_dw_pool_px1_x8_f16") + kernels.count("se_pool_f16") == blocks
    assert kernels.count("se_scale_x8_f16") + kernels.count("se_scale_f16") == blocks
    assert prog.kernel_count == now < before
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= 1e-2, out


# ----- on CUDA (the integrator's GPU run) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant,strip", with_strips({**SE_VARIANTS, **BATCH_VARIANTS}))
def test_se_kernels_on_cuda_match_reference(variant, strip, precision, monkeypatch) -> None:
    from devices.gpu import GpuRunner

    force_dw_strip(monkeypatch, strip)
    graph = se_model(**{**SE_VARIANTS, **BATCH_VARIANTS}[variant])
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
        assert runner.program is not None
        assert pool_kernel(variant, strip, precision) in \
            {ln.kernel for ln in runner.program.launches}
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], out


@pytest.mark.gpu
@pytest.mark.parametrize("variant,strip",
                         with_strips({v: BATCH_VARIANTS[v] for v in ("b32_small",
                                                                     "b3_pool_splits")}))
def test_se_kernels_on_cuda_are_bit_reproducible(variant, strip, monkeypatch) -> None:
    """The last CTA of each channel tile adds the partial sums in block order and the last of
    those of each image the tiles' shares in tile order, whichever CTAs they are, and both
    leave their counters at zero: other inputs in between get their own gate, and the same
    inputs again give the same bits. (se_dw_pool: with either strip length.)"""
    from devices.gpu import GpuRunner

    force_dw_strip(monkeypatch, strip)
    graph = se_model(**BATCH_VARIANTS[variant])
    first, other = feeds_for(graph, 0), feeds_for(graph, 1)
    with GpuRunner(graph, "fp16", autotune=False) as runner:
        before = runner.infer(first)
        between = runner.infer(other)
        again = runner.infer(first)
        assert runner.program is not None
        assert pool_kernel(variant, strip, "fp16") in {ln.kernel for ln in runner.program.launches}
    for out, r in reference(graph, other).items():
        assert rel_err(between[out], r) <= TOL["fp16"], out
    for out in before:
        assert np.array_equal(before[out], again[out]), out


@pytest.mark.gpu
def test_se_int8_on_cuda_matches_fake_quant_reference() -> None:
    from tests.devices.int8_cases import minmax_scales
    from tests.devices.test_gpu_int8 import _check as check_int8

    graph = se_model(c=32, s=8)
    calib = [feeds_for(graph, seed) for seed in (1, 2)]
    feeds = feeds_for(graph, 0)
    check_int8(graph, minmax_scales(graph, calib + [feeds]), feeds, {"autotune": False}, 2e-2,
               0.999)


@pytest.mark.gpu
@pytest.mark.parametrize("name", [e[0] for e in EXPORTS])
def test_exported_se_models_on_cuda_match_onnx_runtime(name, conformance_model) -> None:
    from devices.gpu import GpuRunner

    path = _export(conformance_model, name)
    graph = graph_of(onnx.load(path))
    feeds = random_inputs(path)
    ref = ort_run(path, feeds)
    with GpuRunner(graph, "fp16", autotune=False) as runner:
        got = runner.infer(feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= 1e-2, out


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_zoo_mobilenetv3_at_batch_4_matches_onnx_runtime(precision) -> None:
    """The zoo's MobileNetV3-Small (9 SE blocks, every one pooled by its depthwise conv) at
    batch 4 through the kernel model against ONNX Runtime."""
    from tests.models import zoo_model_path

    path = zoo_model_path("mobilenetv3-small", batch=4)
    graph = graph_of(onnx.load(path))
    feeds = random_inputs(path)
    prog = lower(graph, precision, arch=87, sm_count=16)
    kernels = [ln.kernel for ln in prog.launches]
    assert sum(k.startswith("se_dw_pool_") for k in kernels) == 9
    assert sum(k.startswith("se_scale_") for k in kernels) == 9
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= (1e-4 if precision == "fp32" else 3e-2), out
