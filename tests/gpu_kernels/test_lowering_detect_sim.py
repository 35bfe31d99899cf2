"""CI (no GPU): the YOLO detect head -- Reshape / Transpose / Sigmoid / Split (or Slice) / Mul /
Add / Pow / Concat, as Ultralytics' Detect exports it -- lowered to one element-wise kernel a
scale that writes the decoded boxes straight into their rows of the FP32 graph output: no
concat copy, no FP16 -> FP32 output pass. Checked on the numpy kernel model against ONNX
Runtime at batch 1 and 2, on heads built here and on the zoo's yolov5s; the same on CUDA is
the @pytest.mark.gpu test at the end (``test_detect_head_on_cuda_matches_onnx_runtime``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from tandem.zoo import build_model
from tests.devices.gpu_cases import graph_of, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_reference

TOL = {"fp32": 1e-5, "fp16": 1e-2}
STRIDES = (8, 16, 32)
ANCHORS = ((10, 13, 16, 30, 33, 23), (30, 61, 62, 45, 59, 119), (116, 90, 156, 198, 373, 326))


def detect_head(
    batch: int,
    split: str = "split",
    nc: int = 3,
    res: int = 64,
    channels: tuple[int, ...] = (16, 32, 24),
) -> onnx.ModelProto:
    """Ultralytics' Detect head (YOLOv5 v6/v7 export) over three feature-map inputs: per scale
    a 1x1 conv, (N, 3*no, ny, nx) -> (N, 3, no, ny, nx) -> (N, 3, ny, nx, no), sigmoid, xy / wh
    / conf apart (one Split, or three Slices as older exports wrote it), xy = (2 xy + grid) *
    stride, wh = (2 wh)^2 * anchor_grid, Concat back, (N, 3*ny*nx, no); the scales Concat
    along the box axis into the one FP32 output."""
    rng = np.random.default_rng(5)
    no = nc + 5
    nodes: list = []
    inits: list = []
    inputs, decoded = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op: str, ins: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    two = const("two", np.array(2.0, np.float32))
    for i, (c, s) in enumerate(zip(channels, STRIDES)):
        ny = nx = res // s
        x = f"p{i}"
        inputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, [batch, c, ny, nx]))
        m = f"m{i}"
        wt = const(f"{m}.w", (rng.standard_normal((3 * no, c, 1, 1)) * 0.3).astype(np.float32))
        b = const(f"{m}.b", (rng.standard_normal(3 * no) * 0.5).astype(np.float32))
        y = node("Conv", [x, wt, b], f"{m}.conv")
        y = node(
            "Reshape",
            [y, const(f"{m}.s5", np.array([batch, 3, no, ny, nx], np.int64))],
            f"{m}.reshape",
        )
        y = node("Transpose", [y], f"{m}.transpose", perm=[0, 1, 3, 4, 2])
        y = node("Sigmoid", [y], f"{m}.sigmoid")
        if split == "split":
            parts = [f"{m}.xy", f"{m}.wh", f"{m}.conf"]
            nodes.append(
                helper.make_node(
                    "Split",
                    [y, const(f"{m}.sizes", np.array([2, 2, no - 4], np.int64))],
                    parts,
                    name=f"{m}.split",
                    axis=4,
                )
            )
            xy, wh, conf = parts
        else:
            xy, wh, conf = (
                node(
                    "Slice",
                    [
                        y,
                        const(f"{m}.{k}0", np.array([a], np.int64)),
                        const(f"{m}.{k}1", np.array([e], np.int64)),
                        const(f"{m}.{k}ax", np.array([4], np.int64)),
                    ],
                    f"{m}.{k}",
                )
                for k, a, e in (("xy", 0, 2), ("wh", 2, 4), ("conf", 4, no))
            )
        yv, xv = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        grid = (np.stack([xv, yv], -1)[None, None].repeat(3, axis=1) - 0.5).astype(np.float32)
        anchor = np.broadcast_to(
            np.asarray(ANCHORS[i], np.float32).reshape(1, 3, 1, 1, 2), (1, 3, ny, nx, 2)
        ).copy()
        xy = node("Mul", [xy, two], f"{m}.xy2")
        xy = node("Add", [xy, const(f"{m}.grid", grid)], f"{m}.xyg")
        xy = node("Mul", [xy, const(f"{m}.stride", np.array(float(s), np.float32))], f"{m}.xys")
        wh = node("Mul", [wh, two], f"{m}.wh2")
        wh = node("Pow", [wh, two], f"{m}.whp")
        wh = node("Mul", [wh, const(f"{m}.anchor", anchor)], f"{m}.wha")
        y = node("Concat", [xy, wh, conf], f"{m}.cat", axis=4)
        decoded.append(
            node("Reshape", [y, const(f"{m}.s3", np.array([batch, -1, no], np.int64))], f"{m}.view")
        )
    node("Concat", decoded, "output0", axis=1)
    graph = helper.make_graph(
        nodes,
        "detect",
        inputs,
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model



def _head_launches(prog) -> list:
    """The launches after the detect head's convolutions (and their inputs' conversions): the
    decode and whatever follows it."""
    return [ln for ln in prog.launches if not ln.layer.endswith(".conv")]


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("split", ["split", "slice"])
@pytest.mark.parametrize("batch", [1, 2])
def test_detect_head_matches_onnx_runtime(batch, split, precision, tmp_path) -> None:
    model = detect_head(batch, split)
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), precision, arch=87)
    got = simulate(prog, feeds)
    assert got["output0"].dtype == np.float32
    assert rel_err(got["output0"], ref["output0"]) <= TOL[precision]
    head = _head_launches(prog)
    # one kernel a scale (xy, wh and conf its three pieces), each writing its rows of the FP32
    # output itself: no concat copy, no output cast
    assert [(ln.layer, ln.kernel, ln.ints[3]) for ln in head] == [
        (f"m{i}.cat", "fused_f32" if precision == "fp32" else "fused_f16_f32", 3) for i in range(3)
    ]
    assert all(ln.ptrs[1].buf is prog.outputs["output0"][0] for ln in head)


def test_zoo_yolov5s_matches_onnx_runtime(tmp_path) -> None:
    model = build_model("yolov5s", 1, 64)
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), "fp16", arch=87)
    got = simulate(prog, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= 2e-2, name


@pytest.mark.parametrize("batch", [1, 32])
def test_zoo_yolov5s_head_writes_its_output_in_place(batch) -> None:
    """640 px (the benchmark's): after each scale's 1x1 conv one decode kernel, writing the
    FP32 output; no model.24.concat copy, no output:output0 cast: 69 kernels, 79 before (3
    decode kernels a scale, 3 concat copies, the output cast), at batch 32 and at batch 1."""
    prog = lower(graph_of(build_model("yolov5s", batch, 640)), "fp16", arch=90)
    layers = [ln.layer for ln in prog.launches]
    assert "model.24.concat" not in layers and "output:output0" not in layers
    out = prog.outputs["output0"][0]
    decode = [ln for ln in prog.launches if ln.ptrs[1] is not None and ln.ptrs[1].buf is out]
    assert [(ln.layer, ln.kernel) for ln in decode] == [
        (f"model.24.m.{i}.cat", "fused_f16_f32") for i in range(3)
    ]
    assert prog.kernel_count == 69
    # the two nearest 2x upsamples (FPN) move 8 channels a thread, into their Concats' slices
    ups = [ln for ln in prog.launches if ln.layer in ("model.11", "model.15")]
    assert [ln.kernel for ln in ups] == ["resize_nhwc_x8_f16"] * 2


def test_ssd_head_maps_are_copied_once_into_their_concats(tmp_path) -> None:
    """SSD's heads (conv -> Transpose -> Reshape -> Concat): each map is copied once, by its
    Reshape, straight into its rows of the Concat -- the boxes' FP32 graph output itself (no
    output cast), the scores' Concat buffer the Softmax reads (no Concat copy)."""
    model = build_model("ssd-mobilenet", 1, 64)
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), "fp16", arch=87)
    got = simulate(prog, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= 2e-2, name
    layers = [ln.layer for ln in prog.launches]
    assert not {"head.box.concat", "head.cls.concat", "output:boxes"} & set(layers)
    boxes = prog.outputs["boxes"][0]
    into = [ln for ln in prog.launches if ln.ptrs[1] is not None and ln.ptrs[1].buf is boxes]
    assert [ln.kernel for ln in into] == ["copy_f16_f32"] * 6  # the six box maps
    assert prog.kernel_count == 62  # 63 before: the boxes' output cast


# ----- on CUDA (the integrator's GPU run) -------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("split", ["split", "slice"])
@pytest.mark.parametrize("batch", [1, 2])
def test_detect_head_on_cuda_matches_onnx_runtime(batch, split, precision, tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = detect_head(batch, split, res=128)
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), precision, autotune=False) as runner:
        got = runner.infer(feeds)
    assert rel_err(got["output0"], ref["output0"]) <= TOL[precision]


@pytest.mark.gpu
def test_zoo_yolov5s_on_cuda_matches_onnx_runtime(tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = build_model("yolov5s", 2, 320)
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), "fp16", autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= 2e-2, name


def _chains_concat(axis: int) -> onnx.ModelProto:
    """Concat of a sigmoid, a plain input, a broadcast affine chain and a transposed view along
    ``axis`` of (2, 5, 3, 6)-shaped pieces: the one-kernel Concat beyond YOLO's layout."""
    shapes = {"a": [2, 5, 3, 6], "b": [2, 5, 3, 6], "c": [2, 5, 3, 6], "t": [2, 5, 3, 6]}
    for name in shapes:
        shapes[name][axis] = {"a": 3, "b": 1, "c": 4, "t": 2}[name]
    shapes["t"][2], shapes["t"][3] = shapes["t"][3], shapes["t"][2]  # transposed back below
    rng = np.random.default_rng(2)
    bias = [1] * 4
    bias[axis] = shapes["c"][axis]
    inits = [
        numpy_helper.from_array((rng.standard_normal(bias)).astype(np.float32), "k"),
        numpy_helper.from_array(np.array(1.5, np.float32), "s"),
    ]
    nodes = [
        helper.make_node("Sigmoid", ["a"], ["sa"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["c2"], name="mul"),
        helper.make_node("Add", ["c2", "k"], ["ck"], name="add"),
        helper.make_node("Transpose", ["t"], ["tt"], name="tr", perm=[0, 1, 3, 2]),
        helper.make_node("Concat", ["sa", "b", "ck", "tt"], ["y"], name="cat", axis=axis),
    ]
    graph = helper.make_graph(
        nodes,
        "cat",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in shapes.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("axis", [0, 2, 3])
def test_concat_of_chains_is_one_kernel(axis, precision, tmp_path) -> None:
    """Pieces along the outer (batch), a middle and the innermost axis (a thread's elements
    then span pieces, or rows whose pieces differ), one piece a plain input, one a view."""
    model = _chains_concat(axis)
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), precision, arch=87)
    got = simulate(prog, feeds)
    assert rel_err(got["y"], ref["y"]) <= TOL[precision]
    fused = [ln for ln in prog.launches if ln.kernel.startswith("fused")]
    assert [(ln.layer, ln.ints[3]) for ln in fused] == [("cat", 4)]  # one kernel, 4 pieces
    # nothing else but (in FP16) the FP32 inputs' conversions
    assert len(prog.launches) == 1 + 4 * (precision == "fp16")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("axis", [0, 2, 3])
def test_concat_of_chains_on_cuda_matches_onnx_runtime(axis, precision, tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = _chains_concat(axis)
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), precision, autotune=False) as runner:
        got = runner.infer(feeds)
    assert rel_err(got["y"], ref["y"]) <= TOL[precision]
