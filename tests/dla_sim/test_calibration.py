"""INT8 calibration: calibrators, TensorRT's cache format, Q/DQ stripping (the calibration
path from a source to scales is tested in tests/devices/test_calibration.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from dla_sim.calibration import (
    NUM_BINS,
    AbsHistogram,
    CalibrationError,
    calibrate,
    entropy_threshold,
    format_cache,
    parse_cache,
    read_cache,
    write_cache,
)
from partitioner.errors import ModelError
from partitioner.passes import strip_qdq
from tests.dla_sim.graphs import Builder

# The head of a real TensorRT cache (NVIDIA-AI-IOT/cuDLA-samples data/model/qat2ptq.cache),
# plus a TensorFlow-style name that itself contains a colon.
HAND_WRITTEN = """TRT-8600-EntropyCalibration2
images: 3c00f9f4
/model.0/act/Mul_output_0: 3e6c9314
/model.1/act/Mul_output_0: 3e870ad0
input_tensor:0: 3c010a14
"""


def test_hand_written_tensorrt_cache_loads() -> None:
    header, scales = parse_cache(HAND_WRITTEN)
    assert header == "TRT-8600-EntropyCalibration2"
    assert list(scales) == ["images", "/model.0/act/Mul_output_0", "/model.1/act/Mul_output_0",
                            "input_tensor:0"]  # fmt: skip
    assert scales["images"] == struct.unpack(">f", bytes.fromhex("3c00f9f4"))[0]
    assert scales["images"] == pytest.approx(1 / 127, rel=1e-3)  # a [0, 1] image input
    assert scales["/model.0/act/Mul_output_0"] == pytest.approx(0.23103, rel=1e-4)


def test_written_cache_reads_back_identically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _, scales = parse_cache(HAND_WRITTEN)
    path = tmp_path / "calib.cache"
    write_cache(path, scales, trt_version="8600")
    assert path.read_text(encoding="utf-8") == HAND_WRITTEN  # byte-identical to TensorRT's own file
    assert read_cache(path) == scales
    fresh = {"a": 0.0123, "b/c:0": 7.5e-5}
    again = read_cache(_write(tmp_path / "fresh.cache", format_cache(fresh)))
    assert again == {k: float(np.float32(v)) for k, v in fresh.items()}
    assert format_cache(again) == format_cache(fresh)


def _write(path, text: str):  # type: ignore[no-untyped-def]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, message",
    [("images: 3c00f9f4\n", "first line must start with 'TRT-'"),
     ("TRT-8600-EntropyCalibration2\nimages 3c00f9f4\n", ":2: expected 'tensor_name: <8 hex"),
     ("TRT-8600-EntropyCalibration2\na: 3c00f9f4\nb: 3c00zzzz\n", ":3: '3c00zzzz' is not 8 hex")],
)  # fmt: skip
def test_bad_cache_lines_are_reported_with_line_numbers(text: str, message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        parse_cache(text, "calib.cache")


def test_entropy_clips_outliers_that_minmax_keeps() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(400_000)
    x[:20] = 40.0  # a few extreme outliers
    batches = [{"t": x[i::4]} for i in range(4)]
    entropy = calibrate(batches, "entropy")["t"] * 127
    minmax = calibrate(batches, "minmax")["t"] * 127
    pct = calibrate(batches, "percentile", percentile=99.9)["t"] * 127
    assert minmax == pytest.approx(40.0, rel=1e-6)
    assert 2.5 < entropy < 12.0  # a Gaussian's useful range, far below the outliers
    assert pct == pytest.approx(3.29, abs=0.1)  # |N(0,1)| 99.9th percentile


def test_entropy_keeps_nearly_all_of_a_uniform_range() -> None:
    x = np.random.default_rng(1).uniform(-1, 1, 200_000)
    hist = AbsHistogram.empty()
    hist.add(x)
    threshold = entropy_threshold(hist.counts, hist.bin_width)
    assert 0.9 < threshold <= hist.range * (1 + 1 / NUM_BINS)


def test_histogram_range_grows_by_exact_bin_merges() -> None:
    hist = AbsHistogram.empty()
    hist.add(np.array([0.5, -1.0]))
    hist.add(np.array([3.5, 0.25]))  # forces two doublings: 1 -> 2 -> 4
    assert hist.range == 4.0 and hist.amax == 3.5 and hist.counts.sum() == 4
    edges = np.arange(NUM_BINS + 1) * hist.bin_width
    direct, _ = np.histogram([0.5, 3.5, 0.25], bins=edges)
    # The first batch's maximum sat in the top bin of range 1, which merges into bin 511.
    direct[511] += 1
    np.testing.assert_array_equal(hist.counts, direct)


def test_qdq_model_becomes_per_tensor_scales() -> None:
    b = Builder("qat")
    x = b.input("x", (1, 2, 4, 4))
    sx = b.const(np.float32(0.05), "sx")
    zp = b.const(np.int8(0), "zp")
    qx = b.op("QuantizeLinear", [x, sx, zp], (1, 2, 4, 4))
    dx = b.op("DequantizeLinear", [qx, sx, zp], (1, 2, 4, 4))
    wq = b.const(np.array([[[[10]], [[-20]]], [[[127]], [[5]]]], np.int8), "wq")
    ws = b.const(np.array([0.01, 0.02], np.float32), "ws")
    wd = b.op("DequantizeLinear", [wq, ws, b.const(np.zeros(2, np.int8), "wz")], (2, 2, 1, 1),
              axis=0)  # fmt: skip
    y = b.op("Conv", [dx, wd], (1, 2, 4, 4), kernel_shape=[1, 1], strides=[1, 1],
             pads=[0, 0, 0, 0], dilations=[1, 1], group=1)  # fmt: skip
    g = b.output(y)
    plain, scales = strip_qdq(g)
    assert [n.op for n in plain.nodes] == ["Conv"]
    assert scales == {"x": pytest.approx(0.05)}
    conv = plain.nodes[0]
    assert conv.inputs[0].name == "x"
    np.testing.assert_allclose(conv.constant_input(1)[:, :, 0, 0], [[0.1, -0.2], [2.54, 0.1]])
    bad = Builder("asym")
    x2 = bad.input("x", (1, 1, 2, 2))
    q2 = bad.op("QuantizeLinear", [x2, bad.const(np.float32(0.1)), bad.const(np.uint8(128))],
                (1, 1, 2, 2))  # fmt: skip
    d2 = bad.op("DequantizeLinear", [q2, bad.const(np.float32(0.1)), bad.const(np.uint8(128))],
                (1, 1, 2, 2))  # fmt: skip
    with pytest.raises(ModelError, match="zero point .* is not 0"):
        strip_qdq(bad.output(d2))


def reference_entropy_threshold(counts: np.ndarray, bin_width: float) -> float:
    """The EntropyCalibrator2 search written plainly, one candidate at a time."""
    counts = counts.astype(np.float64)
    counts[0] = counts[1]
    best_i, best_kl = counts.size, np.inf
    for i in range(128, counts.size + 1):
        p = counts[:i].copy()
        p[i - 1] += counts[i:].sum()
        sliced = counts[:i]
        q = np.zeros(i)
        for j in range(128):
            lo, hi = j * i // 128, (j + 1) * i // 128
            nz = sliced[lo:hi] != 0
            if nz.any():
                q[lo:hi][nz] = sliced[lo:hi].sum() / nz.sum()
        if q.sum() == 0:
            continue
        p, q = p / p.sum(), q / q.sum()
        q = np.where(q == 0, 1e-4, q)
        q = q / q.sum()
        m = p > 0
        kl = float((p[m] * np.log(p[m] / q[m])).sum())
        if kl < best_kl:
            best_kl, best_i = kl, i
    return (best_i + 0.5) * bin_width


@pytest.mark.parametrize("kind", ["gauss", "relu", "sparse", "outliers"])
def test_vectorised_entropy_search_equals_the_plain_loop(kind: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal(50_000)
    if kind == "relu":
        x = np.maximum(x, 0) ** 2
    elif kind == "sparse":
        x = np.concatenate([rng.integers(0, 5, 3000) * 0.7, [9.0]])
    elif kind == "outliers":  # the tail folded into bin i-1 decides the threshold
        x = np.concatenate([x, rng.standard_normal(5) * 1000])
    hist = AbsHistogram.empty()
    hist.add(x)
    want = reference_entropy_threshold(hist.counts, hist.bin_width)
    assert entropy_threshold(hist.counts, hist.bin_width) == pytest.approx(want, rel=1e-12)


def test_qat_onnx_model_runs_on_the_dla_with_its_own_scales() -> None:
    """A Q/DQ ONNX model (QAT style) -> import -> strip Q/DQ -> INT8 loadable, vs ONNX Runtime."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from dla_sim.compiler import compile_loadable
    from dla_sim.execute import run_loadable
    from partitioner.onnx_import import import_onnx

    rng = np.random.default_rng(9)
    w = (rng.standard_normal((8, 4, 3, 3)) * 0.2).astype(np.float32)
    w_scale = (np.abs(w).reshape(8, -1).max(axis=1) / 127).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.zeros(8, np.int8), "w_zp"),
        numpy_helper.from_array(np.float32(0.02), "x_scale"),
        numpy_helper.from_array(np.float32(0.05), "y_scale"),
        numpy_helper.from_array(np.int8(0), "zp"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "zp"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "zp"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zp"], ["wq"], axis=0),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zp"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "y_scale", "zp"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "y_scale", "zp"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "qat", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    x = (rng.standard_normal((1, 4, 6, 6)) * 0.8).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    plain, scales = strip_qdq(import_onnx(model))
    assert not any(n.op in ("QuantizeLinear", "DequantizeLinear") for n in plain.nodes)
    assert scales["x"] == pytest.approx(0.02) and scales["r"] == pytest.approx(0.05)
    out_name = plain.outputs[0].name
    lo = compile_loadable(plain, "int8", 2, scales, output_dtype="int8")
    got = run_loadable(lo, {"x": x})[out_name]
    # Same grid (0.05 steps); rounding differs only on exact ties (ORT: half to even).
    steps = np.abs(got - want) / 0.05
    assert steps.max() <= 1.0 + 1e-6 and (steps > 0.5).mean() < 0.02
