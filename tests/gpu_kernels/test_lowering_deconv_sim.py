"""CI (no GPU): a kernel == stride ConvTranspose (U-Net's 2x2 / 2) runs as one tensor-core GEMM
whose epilogue writes the upsampled output in place (conv_mma.cu -DD2S), into the Concat's
channel slice that awaits it, with no depth-to-space copy; FP32 and the shapes the tensor-core
kernel does not take keep the GEMM + copy. Checked on the numpy kernel model (kernel_sim)
against ONNX Runtime on U-Net up-blocks built here and on the zoo's unet-small; the same on
CUDA is the @pytest.mark.gpu tests at the end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from gpu_kernels.tactics import ConvTactic
from tandem.zoo import build_model
from tests.devices.gpu_cases import graph_of, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_reference

TOL = {"fp32": 1e-5, "fp16": 1e-2}


def up_block(
    n: int = 1,
    c: int = 16,
    ko: int = 16,
    f: tuple[int, int] = (2, 2),
    bias: bool = True,
    relu: str = "deconv",
    skip_first: bool = False,
    hw: tuple[int, int] = (5, 6),
    skip_c: int = 8,
) -> onnx.ModelProto:
    """A U-Net decoder step: ConvTranspose (kernel = stride = ``f``) of the low-resolution
    ``x`` (N, c, H, W) to ``ko`` channels -> Concat with a 3x3 conv of the skip input ``s``
    (``skip_first``: the skip's channels come first, the deconv writes at an offset) -> 3x3
    conv. ``relu``: after the deconv ("deconv", fused into its epilogue), after the Concat
    ("concat") or nowhere ("none")."""
    rng = np.random.default_rng(7)
    h, w = hw
    inits = [
        numpy_helper.from_array((rng.standard_normal(shape) * 0.3).astype(np.float32), nm)
        for nm, shape in (
            ("wt", (c, ko, *f)),
            ("ws", (skip_c, 4, 3, 3)),
            ("wo", (6, ko + skip_c, 3, 3)),
        )
    ]
    up_in = ["x", "wt"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(ko).astype(np.float32), "bt"))
        up_in.append("bt")
    nodes = [
        helper.make_node(
            "ConvTranspose", up_in, ["up"], name="up", kernel_shape=list(f), strides=list(f)
        ),
        helper.make_node("Conv", ["s", "ws"], ["skip"], name="skip", pads=[1] * 4),
    ]
    up = "up"
    if relu == "deconv":
        nodes.append(helper.make_node("Relu", ["up"], ["up_act"], name="up_act"))
        up = "up_act"
    cat = [up, "skip"] if not skip_first else ["skip", up]
    nodes.append(helper.make_node("Concat", cat, ["cat"], name="cat", axis=1))
    joined = "cat"
    if relu == "concat":
        nodes.append(helper.make_node("Relu", ["cat"], ["cat_act"], name="cat_act"))
        joined = "cat_act"
    nodes.append(helper.make_node("Conv", [joined, "wo"], ["y"], name="out", pads=[1] * 4))
    hf, wf = h * f[0], w * f[1]
    graph = helper.make_graph(
        nodes,
        "up_block",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, h, w]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [n, 4, hf, wf]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, 6, hf, wf])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model


# variant -> (up_block arguments, whether the GEMM's kernel stores the upsampled output itself)
BLOCKS: dict[str, tuple[dict, bool]] = {
    "k2_bias_relu": (dict(), True),
    "k2_nobias_relu_after_concat_skip_first": (
        dict(bias=False, relu="concat", skip_first=True),
        True,
    ),
    "k2_odd_k": (dict(ko=5, relu="none"), True),  # 8 columns straddle taps: per-column stores
    "k2_odd_k_skip_first": (dict(ko=13, skip_first=True, skip_c=3), True),
    "k4": (dict(ko=8, f=(4, 4), hw=(3, 2)), True),
    "k2x1": (dict(f=(2, 1)), False),  # taps not square: GEMM + copy
    "c4": (dict(c=4), True),  # C % 8: the SIMT tiles (conv_tiled_d2s) in FP16 too
}



def _check_sim(model: onnx.ModelProto, precision: str, tmp_path: Path, tol: float, arch: int = 87):
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), precision, arch=arch)
    got = simulate(prog, feeds)
    for out, r in ref.items():
        err = rel_err(got[out], r)
        assert err <= tol, (out, err)
    return prog


@pytest.mark.parametrize("precision,arch", [("fp32", 87), ("fp16", 87), ("fp16", 72)])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("variant", list(BLOCKS))
def test_up_block_matches_onnx_runtime(variant, batch, precision, arch, tmp_path) -> None:
    kwargs, in_place = BLOCKS[variant]
    prog = _check_sim(up_block(n=batch, **kwargs), precision, tmp_path, TOL[precision], arch)
    deconv = [ln for ln in prog.launches if ln.layer == "up" and ln.kernel.startswith("conv")]
    copies = [ln.layer for ln in prog.launches if ln.kernel.startswith("copy_")]
    # the Concat is never a launch: the skip conv and the deconv (or its copy) write its slices
    assert not any(ln.layer == "cat" for ln in prog.launches)
    assert len(deconv) == 1
    ln = deconv[0]
    if not in_place:  # the documented fallback: the GEMM's plain output, then the copy
        assert "d2s" not in ln.kernel and not (ln.tactic and ln.tactic.d2s)
        assert "up:depth_to_space" in copies
        return
    assert "up:depth_to_space" not in copies
    assert ln.ints[15] == kwargs.get("f", (2, 2))[0]  # the upsampling factor, groups slot
    if precision == "fp16" and arch >= 80 and kwargs.get("c", 16) % 8 == 0:
        assert ln.kernel == "conv_mma_f16" and ln.tactic is not None and ln.tactic.d2s
    else:  # FP32, Xavier's FP16, C % 8: the SIMT tiles' upsampling build
        assert ln.kernel == f"conv_tiled_d2s_{'f32' if precision == 'fp32' else 'f16'}"


# (precision, arch) -> kernels of unet-small with the four depth-to-space copies (before #19's
# change, measured with this lowering at batch 2 and 32) and the GEMM's kernel now
UNET = {
    ("fp16", 87): (34, "conv_mma_f16"),
    ("fp32", 87): (33, "conv_tiled_d2s_f32"),
    ("fp16", 72): (33, "conv_tiled_d2s_f16"),
}


@pytest.mark.parametrize("precision,arch", list(UNET))
def test_unet_small_has_no_depth_to_space_copy_and_matches_onnx_runtime(
    precision, arch, tmp_path
) -> None:
    """The zoo U-Net (4 up-blocks, 2x2 / 2 deconvs into Concats) at batch 2: 4 kernels fewer
    than with the copies, and the same outputs as ORT."""
    model = build_model("unet-small", 2, 32)
    prog = _check_sim(model, precision, tmp_path, 2e-2 if precision == "fp16" else 1e-4, arch)
    deconvs = {n.name for n in graph_of(model).nodes if n.op == "ConvTranspose"}
    assert len(deconvs) == 4
    before, kernel = UNET[(precision, arch)]
    ups = [ln for ln in prog.launches if ln.layer in deconvs]
    assert [ln.kernel for ln in ups] == [kernel] * 4 and all(ln.ints[15] == 2 for ln in ups)
    assert not any("depth_to_space" in ln.layer for ln in prog.launches)
    assert len(prog.launches) == before - 4


def test_d2s_tactic_name_round_trips_and_compiles_the_switch() -> None:
    t = ConvTactic("mma", 128, 64, 2, 2, 3, splits=2, d2s=True)
    assert t.name == "mma_128x64_w2x2_s3_k2_d2s"
    assert ConvTactic.from_name(t.name) == t
    assert "-DD2S=1" in t.compile_options()
    assert "-DD2S=1" not in ConvTactic("mma", 128, 64, 2, 2, 3).compile_options()
    i8 = ConvTactic("mma", 64, 64, 2, 2, 3, bk=64, dtype="i8", wide=True, d2s=True)
    assert ConvTactic.from_name(i8.name) == i8
    assert {"-DINT8=1", "-DD2S=1"} <= set(i8.compile_options())


# ----- on CUDA (the integrator's GPU run) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("variant", list(BLOCKS))
def test_up_block_on_cuda_matches_onnx_runtime(variant, batch, precision, tmp_path) -> None:
    from devices.gpu import GpuRunner

    kwargs, _ = BLOCKS[variant]
    model = up_block(n=batch, **kwargs)
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), precision, autotune=False) as runner:
        got = runner.infer(feeds)
    for out, r in ref.items():
        assert rel_err(got[out], r) <= TOL[precision] * (10 if precision == "fp32" else 1), out


@pytest.mark.gpu
@pytest.mark.parametrize("batch", [1, 32])
def test_unet_small_on_cuda_matches_onnx_runtime(batch, tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = build_model("unet-small", batch, 64)
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), "fp16", autotune=False) as runner:
        got = runner.infer(feeds)
        assert runner.program.kernel_count == 30
    for out, r in ref.items():
        assert rel_err(got[out], r) <= 2e-2, out


@pytest.mark.parametrize("precision,arch", [("fp32", 87), ("fp16", 87), ("fp16", 72)])
def test_a_lone_deconv_writes_its_own_output_upsampled(precision, arch, tmp_path) -> None:
    """gpu_cases' 2x2 / 2 ConvTranspose (the per-layer GPU tests run it too) as the graph's
    output: no Concat awaits it, the GEMM's kernel writes a dense NHWC value upsampled and the
    output conversion follows, no depth-to-space copy."""
    from tests.devices.gpu_cases import build, cases

    model = build(next(c for c in cases() if c.name == "convtranspose"))
    prog = _check_sim(model, precision, tmp_path, TOL[precision], arch)
    assert not any("depth_to_space" in ln.layer for ln in prog.launches)
    up = [ln for ln in prog.launches if ln.kernel.startswith("conv")]
    assert len(up) == 1 and up[0].ints[15] == 2 and up[0].ints[19] == 8  # F, Ko-wide pixels
