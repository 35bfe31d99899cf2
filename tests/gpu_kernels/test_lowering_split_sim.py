"""CI (no GPU): a channel Split of NHWC data is a channel-slice view (same pixel stride), so
convolutions read its outputs in place; and when a Concat takes every output of a Split in
order (YOLOv8's C2f block: cv1 -> Split -> bottlenecks -> Concat(all)), the Split's input is
written straight into the Concat's buffer and its outputs are views there: no copy kernels.
Checked on the numpy kernel model against ONNX Runtime; on CUDA by the @pytest.mark.gpu test."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from gpu_kernels.lowering import lower
from tests.devices.gpu_cases import graph_of, rel_err
from tests.gpu_kernels.kernel_sim import simulate
from tests.models import ort_reference, ort_run, random_inputs

TOL = {"fp32": 1e-5, "fp16": 1e-2}


def c2f_block(c: int = 16, n: int = 1, hw: tuple[int, int] = (6, 7), bottlenecks: int = 2,
              split: tuple[int, ...] | None = None, extra_reader: bool = False):  # fmt: skip
    """Ultralytics' C2f as exported: 1x1 conv (2c) + SiLU -> Split(c, c) -> each bottleneck
    (3x3 conv + SiLU twice, residual Add) on the last output -> Concat(every Split output,
    every bottleneck output) -> 1x1 conv. ``split``: other split sizes (the Concat then still
    takes all of them); ``extra_reader``: the first Split output is also a graph output."""
    rng = np.random.default_rng(5)
    inits: list = []
    nodes: list = []

    def conv(x: str, cin: int, cout: int, k: int, name: str) -> str:
        w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}.w"))
        inits.append(numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(
            np.float32), f"{name}.b"))
        nodes.append(helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [f"{name}.c"],
                                      name=name, pads=[k // 2] * 4))
        nodes.append(helper.make_node("Sigmoid", [f"{name}.c"], [f"{name}.s"], name=f"{name}.sig"))
        nodes.append(helper.make_node("Mul", [f"{name}.c", f"{name}.s"], [f"{name}.y"],
                                      name=f"{name}.silu"))
        return f"{name}.y"

    sizes = split or (c, c)
    y = conv("x", 8, sum(sizes), 1, "cv1")
    inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "split"))
    outs = [f"sp{i}" for i in range(len(sizes))]
    nodes.append(helper.make_node("Split", [y, "split"], outs, name="split", axis=1))
    feats, last = list(outs), outs[-1]
    for b in range(bottlenecks):
        h = conv(last, sizes[-1], sizes[-1], 3, f"m{b}.cv1")
        h = conv(h, sizes[-1], sizes[-1], 3, f"m{b}.cv2")
        nodes.append(helper.make_node("Add", [last, h], [f"m{b}.out"], name=f"m{b}.add"))
        feats.append(last := f"m{b}.out")
    nodes.append(helper.make_node("Concat", feats, ["cat"], name="cat", axis=1))
    total = sum(sizes) + bottlenecks * sizes[-1]
    z = conv("cat", total, 16, 1, "cv2")
    graph_outs = [helper.make_tensor_value_info(z, TensorProto.FLOAT, None)]
    if extra_reader:
        graph_outs.append(helper.make_tensor_value_info("sp0", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "c2f", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, 8, *hw])],
        graph_outs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


VARIANTS = {
    "c16": {},
    "c32_batch2": {"c": 32, "n": 2, "hw": (5, 9)},
    "one_bottleneck": {"bottlenecks": 1},
    "unaligned": {"split": (12, 12)},  # the second output at channel 12: its conv copies it
    "three_way": {"split": (8, 8, 16)},
    "split_output_read_by_the_graph": {"extra_reader": True},
}


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_c2f_matches_onnx_runtime(variant, precision, tmp_path) -> None:
    model = c2f_block(**VARIANTS[variant])
    feeds, ref = ort_reference(model, tmp_path)
    prog = lower(graph_of(model), precision, arch=87)
    got = simulate(prog, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= TOL[precision], name
    copies = [ln.layer for ln in prog.launches if ln.kernel.startswith(("copy_", "memset"))]
    assert "cat" not in copies and "split" not in copies  # no Concat or Split kernel at all
    if variant == "unaligned":  # 12 channels: tensor cores pad each convolution's input to 16
        assert "m0.cv1" in copies
    else:  # only the graph input's and outputs' conversions
        assert set(copies) <= {"cv1", "output:cv2.y", "output:sp0"}, copies


def test_cv1_writes_into_the_concat_and_the_split_outputs_are_views_there() -> None:
    graph = graph_of(c2f_block())
    prog = lower(graph, "fp16", arch=87)
    by_layer = {ln.layer: ln for ln in prog.launches if ln.kernel.startswith("conv_mma")}
    cat_buf = by_layer["m1.cv2"].ptrs[4].buf  # the last bottleneck writes its slice
    assert by_layer["cv1"].ptrs[4].buf is cat_buf and by_layer["cv1"].ptrs[4].byte_offset == 0
    assert by_layer["m0.cv1"].ptrs[0].buf is cat_buf  # reads sp1 in place
    assert by_layer["m0.cv1"].ptrs[0].byte_offset == 16 * 2
    assert by_layer["cv2"].ptrs[0].buf is cat_buf
    assert prog.kernel_count == 8  # the input's conversion, 6 convolutions, the output's


def test_exported_yolov8n_loses_its_c2f_copies(conformance_model, tmp_path) -> None:
    """Ultralytics' yolov8n (conformance export, 640 px would be slow here: its own size):
    107 kernels before (8 convolutions copied a Split output first, 16 copies of Split
    outputs into C2f Concats), 83 now; the same outputs as ONNX Runtime."""
    path = conformance_model("ultralytics", "yolov8n", ("yolov8n",))
    from targets.build import load_model

    graph = load_model(path, {})
    prog = lower(graph, "fp16", arch=87)
    assert prog.kernel_count == 83
    feeds = random_inputs(path)
    got, ref = simulate(prog, feeds), ort_run(path, feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= 2e-2, name


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["c16", "c32_batch2", "unaligned", "three_way"])
def test_c2f_on_cuda_matches_onnx_runtime(variant, tmp_path) -> None:
    from devices.gpu import GpuRunner

    model = c2f_block(**VARIANTS[variant])
    feeds, ref = ort_reference(model, tmp_path)
    with GpuRunner(graph_of(model), "fp16", autotune=False) as runner:
        got = runner.infer(feeds)
    for name, r in ref.items():
        assert rel_err(got[name], r) <= TOL["fp16"], name
