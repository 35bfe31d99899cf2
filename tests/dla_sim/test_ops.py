"""Each DLA engine op against the FP32 CPU reference: FP16 closely, INT8 within quantisation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from devices.cpu import CpuRunner
from dla_sim.compiler import DlaCompileError, compile_loadable
from dla_sim.execute import run_loadable
from dla_sim.numerics import quantize
from partitioner.errors import ExecutionError, InputError
from partitioner.ir import Graph
from tests.dla_sim.graphs import Builder

RNG = np.random.default_rng(3)


def w(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape) * (2.0 / np.prod(shape[1:])) ** 0.5


def conv_bn_relu() -> Graph:
    b = Builder("conv_bn_relu")
    x = b.input("x", (2, 8, 9, 9))
    y = b.conv(x, w(16, 8, 3, 3), RNG.standard_normal(16), strides=(2, 2), pads=(1, 1, 1, 1))
    c = 16
    params = [RNG.uniform(0.5, 2, c), RNG.standard_normal(c), RNG.standard_normal(c),
              RNG.uniform(0.5, 2, c)]  # fmt: skip
    bn = b.op("BatchNormalization", [y] + [b.const(p.astype(np.float32)) for p in params],
              y.static_shape(), epsilon=1e-5)  # fmt: skip
    r = b.op("Relu", [bn], bn.static_shape())
    return b.output(r)


def activations() -> Graph:
    b = Builder("acts")
    x = b.input("x", (1, 8, 6, 6))
    y = b.conv(x, w(8, 8, 1, 1))
    shape = y.static_shape()
    outs = [
        b.op("Clip", [y, b.const(np.float32(0)), b.const(np.float32(6))], shape),
        b.op("LeakyRelu", [y], shape, alpha=0.1),
        b.op("PRelu", [y, b.const(RNG.uniform(0, 0.3, (8, 1, 1)).astype(np.float32))], shape),
        b.op("Sigmoid", [y], shape),
        b.op("Tanh", [y], shape),
        b.op("HardSigmoid", [y], shape, alpha=1 / 6, beta=0.5),
    ]
    return b.output(*outs)


def elementwise() -> Graph:
    b = Builder("eltwise")
    x = b.input("x", (1, 4, 5, 5))
    z = b.input("z", (1, 4, 5, 5))
    s = b.op("Sigmoid", [x], (1, 4, 5, 5))
    silu = b.op("Mul", [x, s], (1, 4, 5, 5))
    sub = b.op("Sub", [z, silu], (1, 4, 5, 5))  # the running value is the second operand
    scaled = b.op("Mul", [sub, b.const(RNG.uniform(0.5, 2, (1, 4, 1, 1)).astype(np.float32))],
                  (1, 4, 5, 5))  # fmt: skip
    mx = b.op("Max", [scaled, z], (1, 4, 5, 5))
    return b.output(mx)


def pooling() -> Graph:
    b = Builder("pool")
    x = b.input("x", (1, 6, 11, 11))
    outs = [
        b.op("MaxPool", [x], (1, 6, 6, 6), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        b.op("AveragePool", [x], (1, 6, 6, 6), kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1], count_include_pad=0),
        b.op("AveragePool", [x], (1, 6, 6, 6), kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1], count_include_pad=1),
        b.op("GlobalAveragePool", [x], (1, 6, 1, 1)),
        b.op("MaxPool", [x], (1, 6, 4, 4), kernel_shape=[3, 3], strides=[3, 3], pads=[0] * 4,
             ceil_mode=1),
    ]  # fmt: skip
    return b.output(*outs)


def lrn_softmax() -> Graph:
    b = Builder("lrn")
    x = b.input("x", (1, 12, 4, 4))
    lrn = b.op("LRN", [x], (1, 12, 4, 4), size=5, alpha=1e-2, beta=0.75, bias=1.0)
    sm = b.op("Softmax", [x], (1, 12, 4, 4), axis=1)
    return b.output(lrn, sm)


def movement() -> Graph:
    b = Builder("move")
    x = b.input("x", (1, 8, 4, 6))
    y = b.input("y", (1, 4, 4, 6))
    cat = b.op("Concat", [x, y], (1, 12, 4, 6), axis=1)
    sl = b.op("Slice", [cat, b.const(np.array([2, 1])), b.const(np.array([10, 4])),
              b.const(np.array([1, 3])), b.const(np.array([1, 1]))], (1, 8, 4, 3))  # fmt: skip
    parts = [b.g.add_variable(f"part{i}", (1, 4, 4, 3), "float32") for i in range(2)]
    b.g.add_node("Split", [sl, b.const(np.array([4, 4]))], parts, {"axis": 1}, name="split")
    t = b.op("Transpose", [parts[0]], (1, 4, 3, 4), perm=[0, 1, 3, 2])
    r = b.op("Reshape", [parts[1], b.const(np.array([1, 48]))], (1, 48))
    up = b.op(
        "Resize",
        [y, None, b.const(np.array([1, 1, 2, 2], np.float32))],
        (1, 4, 8, 12),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    lin = b.op("Resize", [y, None, b.const(np.array([1, 1, 2, 2], np.float32))], (1, 4, 8, 12),
               mode="linear", coordinate_transformation_mode="half_pixel")  # fmt: skip
    return b.output(t, r, up, lin)


def conv_kinds() -> Graph:
    b = Builder("convs")
    x = b.input("x", (1, 8, 7, 7))
    dw = b.conv(x, w(8, 1, 3, 3), pads=(1, 1, 1, 1), group=8)
    grp = b.conv(dw, w(8, 4, 3, 3), pads=(2, 2, 2, 2), group=2, dilations=(2, 2))
    de = b.op("ConvTranspose", [grp, b.const(w(8, 4, 2, 2).astype(np.float32)),
              b.const(RNG.standard_normal(4).astype(np.float32))], (1, 4, 14, 14),
              kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0], group=1,
              dilations=[1, 1])  # fmt: skip
    gap = b.op("GlobalAveragePool", [de], (1, 4, 1, 1))
    flat = b.op("Flatten", [gap], (1, 4), axis=1)
    fc = b.op("Gemm", [flat, b.const(w(4, 10).astype(np.float32)),
              b.const(RNG.standard_normal(10).astype(np.float32))], (1, 10), transB=0)  # fmt: skip
    mm = b.op("MatMul", [fc, b.const(w(10, 3).astype(np.float32))], (1, 3))
    return b.output(mm, de)


GRAPHS: dict[str, Callable[[], Graph]] = {
    "conv_bn_relu": conv_bn_relu,
    "activations": activations,
    "elementwise": elementwise,
    "pooling": pooling,
    "lrn_softmax": lrn_softmax,
    "movement": movement,
    "conv_kinds": conv_kinds,
}


def feeds_for(g: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(11)
    return {t.name: rng.standard_normal(t.static_shape()).astype(np.float32) for t in g.inputs}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fp16_matches_reference(name: str) -> None:
    g = GRAPHS[name]()
    feeds = feeds_for(g)
    with CpuRunner(g) as cpu:
        ref = cpu.infer(feeds)
    out = run_loadable(compile_loadable(g, "fp16", 2), feeds)
    for key, want in ref.items():
        got = out[key]
        assert got.shape == want.shape, key
        scale = max(float(np.abs(want).max()), 1e-3)
        err = float(np.abs(got - want).max()) / scale
        assert err < 4e-3, f"{name}/{key}: max error {err:.2e} of max |ref| {scale:.3g}"


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_int8_tracks_reference(name: str) -> None:
    g = GRAPHS[name]()
    feeds = feeds_for(g)
    with CpuRunner(g, capture=True) as cpu:
        ref = cpu.infer(feeds)
        acts = dict(cpu.captured)
    acts.update(feeds)
    scales = {k: float(np.abs(v).max()) / 127 for k, v in acts.items() if np.abs(v).max() > 0}
    lo = compile_loadable(g, "int8", 2, scales)
    out = run_loadable(lo, feeds)
    for key, want in ref.items():
        assert cosine(out[key], want) > 0.995, f"{name}/{key}"


def test_movement_ops_keep_int8_values_exact() -> None:
    g = movement()
    feeds = feeds_for(g)
    cat_name = next(n for n in g.nodes if n.op == "Concat").outputs[0].name
    scales = {"x": 0.03, "y": 0.03, cat_name: 0.03, g.outputs[3].name: 0.1}
    lo = compile_loadable(g, "int8", 2, scales, output_dtype="int8")
    raw = run_loadable(lo, feeds, raw=True)
    qx, qy = (quantize(feeds[n], 0.03) for n in ("x", "y"))
    sl = np.concatenate([qx, qy], axis=1)[:, 2:10, :, 1:4]
    t_name, r_name, up_name, _ = (t.name for t in g.outputs)
    assert raw[t_name].dtype == np.int8
    np.testing.assert_array_equal(raw[t_name], sl[:, :4].transpose(0, 1, 3, 2))
    np.testing.assert_array_equal(raw[r_name], sl[:, 4:].reshape(1, 48))
    np.testing.assert_array_equal(raw[up_name], qy.repeat(2, axis=2).repeat(2, axis=3))


def test_errors_name_loadable_op_and_layer() -> None:
    b = Builder("seg7")
    x = b.input("x", (1, 2, 3, 3))
    y = b.op("Div", [x, b.const(np.zeros((1, 2, 3, 3), np.float32))], (1, 2, 3, 3), name="bad_div")
    g = b.output(y)
    lo = compile_loadable(g, "fp16", 2)
    lo.ops[0].params["post"][0]["kind"] = "xor"  # a corrupted program
    with pytest.raises(ExecutionError, match=r"loadable 'seg7', engine op 'op000_sdp' .*bad_div"):
        run_loadable(lo, {"x": np.ones((1, 2, 3, 3), np.float32)})
    with pytest.raises(InputError, match="built for \\[1, 2, 3, 3\\]"):
        run_loadable(lo, {"x": np.ones((1, 2, 3, 4), np.float32)})
    b2 = Builder("seg8")
    x2 = b2.input("x", (1, 2, 3, 3))
    g2 = b2.output(b2.op("Gather", [x2, b2.const(np.array([0]))], (1, 1, 3, 3), name="gat", axis=1))
    with pytest.raises(DlaCompileError, match="'seg8'.*'gat' \\(Gather\\)"):
        compile_loadable(g2, "fp16", 2)


def test_softmax_needs_orin() -> None:
    with pytest.raises(DlaCompileError, match="softmax needs DLA 2"):
        compile_loadable(lrn_softmax(), "fp16", 1)
