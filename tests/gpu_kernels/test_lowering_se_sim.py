"""CI (no GPU): squeeze-and-excitation blocks lower to two kernels (se.cu: the pooled means, then
both FCs + gate + scale), checked on the numpy kernel model against the CPU reference on small
graphs and against ONNX Runtime on torchvision's EfficientNet-B0 and MobileNetV3-Small; the
same kernels on CUDA are the @pytest.mark.gpu tests at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from gpu_kernels.lowering.se import dw_pool_blocks, pool_splits, scale_pixels
from tests.devices.gpu_cases import feeds_for, graph_of, reference, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_run, random_inputs

TOL = {"fp32": 1e-5, "fp16": 1e-2}


def se_model(c: int = 24, s: int = 6, n: int = 1, hw: tuple[int, int] = (5, 7),
             act: str = "Silu", gate: str = "Sigmoid", pool: str = "GlobalAveragePool",
             bias: bool = True, gate_first: bool = True, extra_reader: bool = False,
             concat: bool = False, depthwise: bool = True):
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

    nodes = [helper.make_node("Conv", ["x", const("wd", c, 1 if depthwise else c, 3, 3),
                                           const("bd", c)], ["d"], name="dw",
                              group=c if depthwise else 1, pads=[1, 1, 1, 1])]
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
    return graph_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


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
    "after_full_conv": {"depthwise": False, "n": 2, "hw": (23, 24)},  # se_pool: 2 ranges
    "unaligned_wide": {"c": 36, "s": 3, "hw": (9, 11)},  # not 8 channels a thread
    "into_concat": {"concat": True, "c": 16, "s": 4},
    "pool_split_4": {"c": 8, "s": 2, "hw": (41, 30)},  # 1230 pixels: 4 ranges, the last short
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
        assert se == [("dw", f"se_dw_pool_{x8}{dt}"), ("scale", f"se_scale_{x8}{dt}")]
    else:
        assert se == [("pool", f"se_pool_{dt}"), ("scale", f"se_scale_{x8}{dt}")]
    # neither FC, the activations nor the Mul has a kernel of its own
    layers = {ln.layer for ln in prog.launches}
    assert not layers & {"fc1", "fc2", "act", "act_sig", "act_mul", "gate"}
    if variant == "into_concat":  # written straight into its slice of the concat (32 channels)
        scale = next(ln for ln in prog.launches if ln.kernel.startswith("se_scale"))
        assert scale.ints[5] == 32 and "cat" not in layers


@pytest.mark.parametrize("variant,why", [
    ({"extra_reader": True}, "the gate leaves the graph"),
    ({"gate": "HardSwish"}, "not a gate"),
    ({"c": 6144, "s": 16, "hw": (1, 2)}, "2 C + S floats exceed the kernel's shared memory"),
])
def test_blocks_the_se_kernels_do_not_take_lower_as_before(variant, why) -> None:
    prog = _check(se_model(**variant), "fp32")
    assert not any(ln.kernel.startswith("se_") for ln in prog.launches), why


@pytest.mark.parametrize("c", [32, 48])  # INT8 convolutions take C % 16 == 0
def test_se_output_read_by_an_int8_conv_is_written_int8(c) -> None:
    """The projection conv reads INT8: se_scale quantises as it stores, no copy kernel."""
    from tests.devices.int8_cases import minmax_scales

    graph = se_model(c=c, s=8)
    scales = minmax_scales(graph, [feeds_for(graph, seed) for seed in (1, 2)])
    prog = lower(graph, "int8", arch=87, sm_count=16, scales=scales)
    scale = next(ln for ln in prog.launches if ln.layer == "scale")
    assert scale.kernel == "se_scale_x8_f16_i8"
    assert scale.floats[4] == pytest.approx(1 / scales["e"])
    assert [ln.kernel for ln in prog.launches if ln.layer == "proj"] == ["conv_mma_i8"]


def test_work_per_cta() -> None:
    assert pool_splits(12544) == 32 and pool_splits(1230) == 4 and pool_splits(49) == 1
    assert dw_pool_blocks(12544 * 4) == (32, 1568)  # EfficientNet-B0's first dw conv, x8
    assert dw_pool_blocks(49 * 144) == (28, 256)  # a thread an element
    assert dw_pool_blocks(100) == (1, 256)
    assert scale_pixels(12544, 32, 8) == 128  # 4096 elements a CTA
    assert scale_pixels(196, 480, 20) == 40  # as many elements as the FCs' 2 C S weights
    assert scale_pixels(49, 1152, 48) == 49  # one CTA: recomputing the FCs costs more
    assert scale_pixels(1, 4096, 4) == 1  # never fewer than one pixel, never more than HW
    assert scale_pixels(4, 8, 2) == 4


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
    assert kernels.count("se_dw_pool_x8_f16") + kernels.count("se_pool_f16") == blocks
    assert kernels.count("se_scale_x8_f16") + kernels.count("se_scale_f16") == blocks
    assert prog.kernel_count == now < before
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= 1e-2, out


# ----- on CUDA (the integrator's GPU run) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", list(SE_VARIANTS))
def test_se_kernels_on_cuda_match_reference(variant, precision) -> None:
    from devices.gpu import GpuRunner

    graph = se_model(**SE_VARIANTS[variant])
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)
    with GpuRunner(graph, precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision], out


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
