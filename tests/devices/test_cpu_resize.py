"""The reference Resize: an upscale holds its output plus a few megabytes, never a float64 (or
dense interpolation matrix) temporary of it; integer images keep their rounding; scales or sizes
computed at run time are checked as ONNX Runtime checks them."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from devices.cpu import evaluate_node, run_graph
from partitioner.errors import ExecutionError
from partitioner.ir import Graph, Node

SCALES = np.array([1, 1, 200, 200], np.float32)  # 1x1x1x200 -> 1x1x200x40000


def _node(mode: str, **attrs: object) -> Node:
    g = Graph("resize")
    x = g.add_input("x", (1, 1, 1, 200))
    scales = g.add_constant("scales", SCALES)
    return g.add_node("Resize", [x, None, scales], 1, {"mode": mode, **attrs}, name="rs")


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8, np.float64])
def test_upscale_holds_little_beyond_its_output(mode: str, dtype: type) -> None:
    node = _node(mode)
    x = (np.arange(200) % 7).astype(dtype).reshape(1, 1, 1, 200)
    evaluate_node(node, [x[..., :2], None, np.ones(4, np.float32)])  # op modules imported
    tracemalloc.start()
    try:
        (y,) = evaluate_node(node, [x, None, SCALES])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (1, 1, 200, 40000) and y.dtype == dtype
    # blocks of 2**20 elements: at most a few 8 MiB float64 temporaries beside the output
    assert peak < y.nbytes + 40 * 2**20, f"{peak / 2**20:.0f} MiB for {y.nbytes / 2**20:.0f} MiB"


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int32])
def test_integer_images_round_the_exact_interpolation(mode: str, dtype: type) -> None:
    """Each integer output is the float64 interpolation rounded to nearest and saturated, the
    axes between interpolated in float (no rounding between axes)."""
    g = Graph("resize")
    x_t = g.add_input("x", (1, 2, 7, 9), str(np.dtype(dtype)))
    scales = g.add_constant("s", np.array([1, 1, 2.5, 0.6], np.float32))
    node = g.add_node("Resize", [x_t, None, scales], 1, {"mode": mode}, name="rs")
    info = np.iinfo(dtype)
    rng = np.random.default_rng(0)
    x = rng.integers(max(info.min, -1000), min(info.max, 1000), (1, 2, 7, 9)).astype(dtype)
    (got,) = evaluate_node(node, [x, None, scales.values])
    (exact,) = evaluate_node(node, [x.astype(np.float64), None, scales.values])
    want = np.clip(np.rint(exact), info.min, info.max).astype(dtype)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    "scales, sizes, message",
    [
        ([1, 1, -2, 2], None, r"scales \[1.0, 1.0, -2.0, 2.0\] must be finite and > 0"),
        ([1, 1, np.nan, 2], None, r"scales \[1.0, 1.0, nan, 2.0\] must be finite"),
        (None, [1, 1, 0, 8], r"sizes \[1, 1, 0, 8\] must be > 0"),
    ],
)
def test_scales_and_sizes_computed_at_run_time_are_checked(scales, sizes, message) -> None:
    g = Graph("dynamic")
    x = g.add_input("x", (1, 1, 4, 4))
    s = g.add_input("s", (4,), "float32" if scales is not None else "int64")
    inputs = [x, None, s] if scales is not None else [x, None, None, s]
    g.mark_output(g.add_node("Resize", inputs, 1, {"mode": "nearest"}, name="rs").outputs[0])
    feed = np.array(scales if scales is not None else sizes,
                    np.float32 if scales is not None else np.int64)  # fmt: skip
    with pytest.raises(ExecutionError, match=rf"layer 'rs' \(Resize\): {message}"):
        run_graph(g, {"x": np.ones((1, 1, 4, 4), np.float32), "s": feed})
