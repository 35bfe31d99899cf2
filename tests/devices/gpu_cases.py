"""Single-layer ONNX models for the GPU tests: each case is built with onnx's helpers, imported,
and run on the GPU backend and on the numpy reference (devices.cpu)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from devices.cpu import CpuRunner, evaluate_node
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes import simplify


@dataclass
class Case:
    name: str
    op: str
    inputs: dict[str, tuple[int, ...]]  # run-time inputs (float32)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    input_order: list[str] | None = None  # node input names in order ("" = omitted)
    n_outputs: int = 1


def build(case: Case, opset: int = 17) -> onnx.ModelProto:
    order = case.input_order or [*case.inputs, *case.consts]
    outs = [f"y{i}" for i in range(case.n_outputs)]
    node = helper.make_node(case.op, order, outs, name=case.name, **case.attrs)
    graph = helper.make_graph(
        [node], case.name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s))
         for n, s in case.inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs],
        [numpy_helper.from_array(v, n) for n, v in case.consts.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def graph_of(model: onnx.ModelProto) -> Graph:
    g = import_onnx(model)
    simplify(g, evaluate_node)
    return g


def feeds_for(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: rng.standard_normal(t.static_shape()).astype(np.float32)
            for t in graph.inputs}


def reference(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    with CpuRunner(graph) as r:
        return r.infer(feeds)


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    """max|got - ref| / max|ref| (the issue's FP16 metric)."""
    ref = ref.astype(np.float64)
    denom = max(float(np.max(np.abs(ref))), 1e-30)
    return float(np.max(np.abs(got.astype(np.float64) - ref))) / denom


def w(rng: np.random.Generator, *shape: int, scale: float = 0.2) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def cases() -> list[Case]:
    rng = np.random.default_rng(1)
    c: list[Case] = []
    # convolutions: tensor-core (C % 8 == 0), direct (C = 3), depthwise, grouped, odd sizes
    for name, (n, ci, h, wd, k, r, s, st, pd, dl, g) in {
        "conv3x3": (1, 16, 13, 11, 24, 3, 3, 1, 1, 1, 1),
        "conv_stem_c3": (2, 3, 17, 17, 16, 7, 7, 2, 3, 1, 1),
        "conv1x1_oddk": (1, 64, 7, 7, 13, 1, 1, 1, 0, 1, 1),
        "conv_stride2": (2, 32, 15, 15, 40, 3, 3, 2, 1, 1, 1),
        "conv_dilated": (1, 8, 12, 12, 8, 3, 3, 1, 2, 2, 1),
        "conv_depthwise": (1, 32, 14, 14, 32, 3, 3, 1, 1, 1, 32),
        "conv_dw_stride2": (2, 24, 9, 9, 24, 5, 5, 2, 2, 1, 24),
        "conv_dw_c12": (1, 12, 9, 7, 12, 3, 3, 1, 1, 1, 12),  # C % 8 != 0: one channel a thread
        "conv_grouped": (1, 16, 8, 8, 32, 3, 3, 1, 1, 1, 4),
        "conv_bigk": (1, 256, 7, 7, 512, 3, 3, 1, 1, 1, 1),
    }.items():
        c.append(Case(name, "Conv", {"x": (n, ci, h, wd)},
                      {"w": w(rng, k, ci // g, r, s), "b": w(rng, k)},
                      dict(kernel_shape=[r, s], strides=[st, st], pads=[pd] * 4,
                           dilations=[dl, dl], group=g)))
    # 1-D convolutions (wav2vec2's feature extractor and positional conv, Whisper's stem)
    c.append(Case("conv1d", "Conv", {"x": (2, 8, 30)}, {"w": w(rng, 16, 8, 3), "b": w(rng, 16)},
                  dict(kernel_shape=[3], strides=[2], pads=[1, 1])))
    c.append(Case("conv1d_stem_c1", "Conv", {"x": (1, 1, 400)}, {"w": w(rng, 32, 1, 10)},
                  dict(kernel_shape=[10], strides=[5])))
    c.append(Case("conv1d_grouped", "Conv", {"x": (1, 16, 20)}, {"w": w(rng, 16, 4, 5)},
                  dict(kernel_shape=[5], pads=[2, 2], group=4)))
    c.append(Case("convtranspose", "ConvTranspose", {"x": (1, 16, 7, 9)},
                  {"w": w(rng, 16, 8, 2, 2), "b": w(rng, 8)},
                  dict(kernel_shape=[2, 2], strides=[2, 2])))
    c.append(Case("convtranspose_pad", "ConvTranspose", {"x": (2, 8, 5, 5)},
                  {"w": w(rng, 8, 4, 3, 3)},
                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])))
    c.append(Case("maxpool", "MaxPool", {"x": (2, 16, 15, 13)}, {},
                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])))
    c.append(Case("maxpool_c5", "MaxPool", {"x": (1, 5, 9, 8)}, {},  # C % 8 != 0: scalar kernel
                  dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])))
    c.append(Case("avgpool_incl", "AveragePool", {"x": (1, 8, 9, 9)}, {},
                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                       count_include_pad=1)))
    c.append(Case("avgpool_excl", "AveragePool", {"x": (1, 8, 9, 9)}, {},
                  dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])))
    c.append(Case("gap", "GlobalAveragePool", {"x": (3, 40, 7, 5)}))
    c.append(Case("gemm", "Gemm", {"a": (4, 64)}, {"b": w(rng, 100, 64), "c": w(rng, 100)},
                  dict(transB=1)))
    c.append(Case("gemm_odd", "Gemm", {"a": (3, 37)}, {"b": w(rng, 37, 11)}, dict(alpha=0.5),
                  input_order=["a", "b"]))
    c.append(Case("matmul_const", "MatMul", {"a": (2, 5, 48)}, {"b": w(rng, 48, 40)}))
    c.append(Case("matmul_batched", "MatMul", {"a": (2, 3, 17, 24), "b": (2, 3, 24, 19)}))
    c.append(Case("softmax", "Softmax", {"x": (3, 7, 50)}, {}, dict(axis=-1)))
    c.append(Case("layernorm", "LayerNormalization", {"x": (2, 9, 96)},
                  {"g": w(rng, 96, scale=1.0), "bb": w(rng, 96)}, dict(axis=-1, epsilon=1e-5)))
    c.append(Case("resize_nearest", "Resize", {"x": (1, 8, 5, 7)},
                  {"scales": np.array([1, 1, 2, 2], np.float32)}, dict(mode="nearest"),
                  input_order=["x", "", "scales"]))
    c.append(Case("resize_linear", "Resize", {"x": (1, 8, 5, 7)},
                  {"scales": np.array([1, 1, 2, 3], np.float32)}, dict(mode="linear"),
                  input_order=["x", "", "scales"]))
    c.append(Case("concat_ch", "Concat", {"a": (1, 8, 5, 5), "b": (1, 13, 5, 5)}, {},
                  dict(axis=1)))
    c.append(Case("concat_last", "Concat", {"a": (2, 3, 7), "b": (2, 3, 5)}, {}, dict(axis=2)))
    c.append(Case("transpose", "Transpose", {"x": (2, 3, 4, 5)}, {}, dict(perm=[0, 2, 3, 1])))
    c.append(Case("transpose5", "Transpose", {"x": (2, 3, 4, 5, 6)}, {},
                  dict(perm=[0, 1, 3, 4, 2])))
    c.append(Case("slice", "Slice", {"x": (2, 10, 6, 6)},
                  {"st": np.array([1, 1], np.int64), "en": np.array([9, 5], np.int64),
                   "ax": np.array([1, 3], np.int64), "sp": np.array([2, 1], np.int64)}))
    c.append(Case("split", "Split", {"x": (1, 12, 4, 4)},
                  {"sp": np.array([4, 8], np.int64)}, dict(axis=1), n_outputs=2))
    c.append(Case("reshape", "Reshape", {"x": (2, 6, 4, 4)},
                  {"shape": np.array([2, 6, 16], np.int64)}))
    c.append(Case("flatten", "Flatten", {"x": (2, 6, 3, 3)}, {}, dict(axis=1)))
    c.append(Case("batchnorm", "BatchNormalization", {"x": (2, 6, 5, 5)},
                  {"s": w(rng, 6, scale=1.0), "bb": w(rng, 6), "m": w(rng, 6),
                   "v": np.abs(w(rng, 6, scale=1.0)) + 0.5}))
    c.append(Case("gather", "Gather", {"x": (3, 2, 4, 5)}, {"i": np.array(1, np.int64)},
                  dict(axis=0)))
    # opset 17: ReduceMean-13 takes its axes as an attribute (an input only from opset 18)
    c.append(Case("reducemean", "ReduceMean", {"x": (2, 7, 33)}, {}, dict(axes=[-1], keepdims=1)))
    for op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
        c.append(Case(f"{op.lower()}_bcast", op, {"a": (2, 8, 5, 5), "b": (1, 8, 1, 1)}))
    c.append(Case("add_const", "Add", {"a": (2, 4, 6)}, {"b": w(rng, 6)}))
    c.append(Case("pow_const", "Pow", {"a": (2, 4, 6)}, {"b": np.array(2.0, np.float32)}))
    for op, attrs in (("Relu", {}), ("Sigmoid", {}), ("Tanh", {}), ("LeakyRelu", {"alpha": 0.1}),
                      ("HardSwish", {}), ("HardSigmoid", {}), ("Erf", {}), ("Abs", {}),
                      ("Neg", {}), ("Exp", {}), ("Elu", {"alpha": 0.7}), ("Softplus", {})):
        c.append(Case(op.lower(), op, {"x": (2, 5, 3, 7)}, {}, attrs))
    c.append(Case("floor", "Floor", {"x": (2, 5, 3, 7)}))
    c.append(Case("ceil", "Ceil", {"x": (2, 5, 3, 7)}))
    c.append(Case("selu", "Selu", {"x": (2, 5, 3, 7)}, {}, {"alpha": 1.5, "gamma": 1.1}))
    c.append(Case("prelu", "PRelu", {"x": (2, 5, 3, 7)},
                  {"slope": np.linspace(0.1, 0.5, 5).reshape(5, 1, 1).astype(np.float32)}))
    c.append(Case("clip", "Clip", {"x": (2, 5, 3, 7)},
                  {"lo": np.array(0.0, np.float32), "hi": np.array(0.5, np.float32)}))
    c += reduction_cases()
    # grouped convolutions the tensor cores run in bundles of groups (conv_mma.cu): ResNeXt's
    # 4-channel groups (bundles of 8 groups, two bundles), RegNet's 16-channel ones with stride 2
    # (bundles of 2, three bundles), 64-channel groups (a bundle a group, 64-wide tiles fit), and
    # 3-channel groups no bundle makes a multiple of 8 (the SIMT kernel). Own generator: the
    # cases above keep their weights.
    rng = np.random.default_rng(7)
    for name, (n, ci, h, wd, k, st, g) in {
        "conv_grouped_resnext": (2, 64, 9, 9, 64, 1, 16),
        "conv_grouped_regnet": (1, 96, 11, 11, 96, 2, 6),
        "conv_grouped_wide": (1, 128, 6, 6, 128, 1, 2),
        "conv_grouped_c3": (1, 12, 8, 8, 24, 1, 4),
    }.items():
        c.append(Case(name, "Conv", {"x": (n, ci, h, wd)},
                      {"w": w(rng, k, ci // g, 3, 3), "b": w(rng, k)},
                      dict(kernel_shape=[3, 3], strides=[st, st], pads=[1] * 4, group=g)))
    return c


def reduction_cases() -> list[Case]:
    """Reductions over any axes and softmax over any axis, in ops the importer takes (opset
    17: ReduceSum's axes are an input, the others' an attribute)."""
    c = [
        Case("reducemean_hw", "ReduceMean", {"x": (2, 16, 5, 7)}, {},
             dict(axes=[2, 3], keepdims=0)),  # ShuffleNet / MNASNet's head
        Case("reducemean_c", "ReduceMean", {"x": (2, 9, 4, 5)}, {}, dict(axes=[1])),
        Case("reducemean_all", "ReduceMean", {"x": (3, 4, 5)}, {}, dict(keepdims=0)),
        Case("reducemean_rows", "ReduceMean", {"x": (3, 700)}, {}, dict(axes=[1])),
        Case("reducemax_02", "ReduceMax", {"x": (3, 4, 5, 6)}, {}, dict(axes=[0, 2],
                                                                            keepdims=0)),
        Case("reducemin_last", "ReduceMin", {"x": (2, 3, 40)}, {}, dict(axes=[-1])),
        Case("reducesum_13", "ReduceSum", {"x": (2, 6, 5, 4)},
             {"axes": np.array([1, 3], np.int64)}, dict(keepdims=1)),
        Case("reducesum_noop", "ReduceSum", {"x": (2, 3)}, {"axes": np.zeros(0, np.int64)},
             dict(noop_with_empty_axes=1)),
        Case("softmax_axis1", "Softmax", {"x": (2, 16, 4, 10)}, {}, dict(axis=1)),  # YOLO DFL
        Case("softmax_axis0", "Softmax", {"x": (5, 3, 4)}, {}, dict(axis=0)),
        Case("logsoftmax_last", "LogSoftmax", {"x": (3, 7, 50)}, {}, dict(axis=-1)),
        Case("logsoftmax_mid", "LogSoftmax", {"x": (2, 6, 9)}, {}, dict(axis=1)),
    ]
    i64 = np.int64
    c += [
        Case("pad_const", "Pad", {"x": (1, 3, 5, 6)},
             {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], i64), "v": np.array(0.5, np.float32)}),
        Case("pad_reflect", "Pad", {"x": (2, 4, 5, 6)},
             {"p": np.array([0, 0, 2, 2, 0, 0, 2, 2], i64)}, dict(mode="reflect")),
        Case("pad_edge", "Pad", {"x": (2, 3, 4)}, {"p": np.array([0, 1, 0, 1, 0, 3], i64)},
             dict(mode="edge")),
        Case("instancenorm", "InstanceNormalization", {"x": (2, 6, 7, 5)},
             {"s": np.linspace(0.5, 1.5, 6).astype(np.float32),
              "b": np.linspace(-1, 1, 6).astype(np.float32)}, dict(epsilon=1e-5)),
        Case("instancenorm_3d", "InstanceNormalization", {"x": (2, 8, 30)},
             {"s": np.linspace(0.5, 1.5, 8).astype(np.float32),
              "b": np.linspace(-1, 1, 8).astype(np.float32)}),
        Case("layernorm_axis1", "LayerNormalization", {"x": (2, 4, 3, 5)},
             {"s": np.linspace(0.5, 1.5, 60).reshape(4, 3, 5).astype(np.float32)},
             dict(axis=1)),
        Case("expand", "Expand", {"x": (3, 1, 5)}, {"s": np.array([2, 3, 4, 5], i64)}),
        Case("tile", "Tile", {"x": (2, 3, 4)}, {"r": np.array([2, 1, 3], i64)}),
        Case("pad_crop", "Pad", {"x": (1, 4, 6, 6)},
             {"p": np.array([0, 0, -1, 1, 0, 0, 2, -2], i64)}),
    ]
    return c


@dataclass
class IrCase:
    """A layer built straight on the IR: for ops the ONNX importer does not take yet."""

    name: str
    op: str
    inputs: dict[str, tuple[int, ...]]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    positive: bool = False  # feed |x| + 0.5 (logarithms)
    order: list[str] | None = None  # node input names in order (default: inputs, constants)


def ir_graph(case: IrCase) -> Graph:
    """One node over graph inputs and constants; output shapes from the numpy reference."""
    g = Graph(case.name, 21)
    named = {n: g.add_input(n, list(s)) for n, s in case.inputs.items()}
    named.update({n: g.add_constant(n, v) for n, v in case.consts.items()})
    ins = [named[n] for n in case.order or named]
    node = g.add_node(case.op, ins, 1, dict(case.attrs), case.name)
    args = [np.ones(t.static_shape(), np.float32) if t in g.inputs else t.values for t in ins]
    for t, v in zip(node.outputs, evaluate_node(node, args)):
        t.shape, t.dtype = list(v.shape), "float32"
        g.mark_output(t)
    return g


# Einsum equations that are one batched matrix product (MaxViT's attention among them), with
# operand shapes; the CPU reference for Einsum lands with the importer, so tests use np.einsum
EINSUMS = [
    ("bghid,bghjd->bghij", (1, 2, 3, 5, 8), (1, 2, 3, 7, 8)),
    ("B G H I J, B G H J D -> B G H I D", (2, 1, 3, 5, 7), (2, 1, 3, 7, 4)),
    ("bij,bjk->bik", (3, 4, 6), (1, 6, 5)),
    ("ik,jk", (5, 6), (4, 6)),  # implicit output: ij
    ("bhqd,bkhd->bhqk", (2, 3, 4, 8), (2, 6, 3, 8)),
    ("bi,bj->bji", (2, 5), (2, 3)),  # outer product: no contracted index
]


def einsum_graph(equation: str, a: tuple[int, ...], b: tuple[int, ...]) -> Graph:
    g = Graph("einsum", 21)
    ta, tb = g.add_input("a", list(a)), g.add_input("b", list(b))
    y = g.add_node("Einsum", [ta, tb], 1, {"equation": equation}, "einsum").outputs[0]
    out = np.einsum(equation.replace(" ", ""), np.ones(a), np.ones(b))
    y.shape, y.dtype = list(out.shape), "float32"
    g.mark_output(y)
    return g


# steps: FP16 inputs near a step would land on the other side of it
DISCONTINUOUS = {"Floor", "Ceil", "Round", "Sign"}


def away_from_steps(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inputs on a grid k / 4 + 0.1: at least 0.1 from every integer and half-integer."""
    return {k: (np.round(v * 4) / 4 + 0.1).astype(np.float32) for k, v in feeds.items()}


def ir_feeds(case: IrCase, graph: Graph) -> dict[str, np.ndarray]:
    feeds = feeds_for(graph)
    if case.op in DISCONTINUOUS:
        return away_from_steps(feeds)
    return {k: np.abs(v) + 0.5 for k, v in feeds.items()} if case.positive else feeds


def ir_cases() -> list[IrCase]:
    i64 = np.int64
    return [
        IrCase("reduceprod", "ReduceProd", {"x": (2, 3, 4)}, {"a": np.array([1], i64)}),
        IrCase("reducel1", "ReduceL1", {"x": (2, 5, 6)}, {"a": np.array([0, 2], i64)}),
        IrCase("reducel2", "ReduceL2", {"x": (2, 5, 6)}, {"a": np.array([-1], i64)},
               dict(keepdims=0)),
        IrCase("reducesumsquare", "ReduceSumSquare", {"x": (4, 3, 5)},
               {"a": np.array([1], i64)}),
        IrCase("reducelogsum", "ReduceLogSum", {"x": (3, 4, 5)}, {"a": np.array([1, 2], i64)},
               positive=True),
        IrCase("reducelogsumexp", "ReduceLogSumExp", {"x": (2, 3, 4, 5)},
               {"a": np.array([1, 3], i64)}),
        IrCase("gelu", "Gelu", {"x": (2, 5, 3, 7)}),
        IrCase("gelu_tanh", "Gelu", {"x": (2, 5, 3, 7)}, attrs=dict(approximate="tanh")),
        IrCase("groupnorm", "GroupNormalization", {"x": (2, 8, 5, 3)},
               {"s": np.linspace(0.5, 1.5, 8).astype(np.float32),
                "b": np.linspace(-1, 1, 8).astype(np.float32)}, dict(num_groups=4)),
        IrCase("layernorm_2axes", "LayerNormalization", {"x": (2, 3, 6, 5)},
               {"s": np.linspace(0.5, 1.5, 30).reshape(6, 5).astype(np.float32),
                "b": np.linspace(-1, 1, 5).astype(np.float32)}, dict(axis=-2)),
        IrCase("mod", "Mod", {"x": (3, 4, 5)}, {"d": np.array(0.7, np.float32)}, dict(fmod=1)),
        IrCase("fmod", "Mod", {"x": (3, 4, 5)}, {"d": np.array(-0.7, np.float32)},
               dict(fmod=1)),
        IrCase("mod_tensor", "Mod", {"x": (3, 4, 5), "d": (1, 4, 1)}, attrs=dict(fmod=1),
               positive=True),
        IrCase("where_const_cond", "Where", {"x": (2, 3, 4)},
               {"c": np.array([True, False, True, True]), "y": np.array(-1e4, np.float32)},
               order=["c", "x", "y"]),
        # a block per output (the reduced run is contiguous and long): max first for LSE
        IrCase("reducelogsumexp_rows", "ReduceLogSumExp", {"x": (3, 300)},
               {"a": np.array([1], i64)}),
        IrCase("reducel2_rows", "ReduceL2", {"x": (2, 3, 200)}, {"a": np.array([2], i64)},
               dict(keepdims=0)),
        # contiguous FP16 runs of a multiple of 8: 16-byte loads (a block / a thread per output)
        IrCase("reducesum_rows_x8", "ReduceSum", {"x": (4, 512)}, {"a": np.array([1], i64)}),
        IrCase("reducemax_short_rows_x8", "ReduceMax", {"x": (64, 16)},
               {"a": np.array([1], i64)}),
        IrCase("round", "Round", {"x": (4, 9)}),
        IrCase("sign", "Sign", {"x": (4, 9)}),
        IrCase("celu", "Celu", {"x": (4, 9)}, attrs=dict(alpha=0.8)),
        IrCase("softsign", "Softsign", {"x": (4, 9)}),
        IrCase("thresholdedrelu", "ThresholdedRelu", {"x": (4, 9)}, attrs=dict(alpha=0.3)),
        IrCase("sin", "Sin", {"x": (4, 9)}),
        IrCase("cos", "Cos", {"x": (4, 9)}),
        IrCase("mean3", "Mean", {"a": (2, 3, 4), "b": (1, 3, 4), "c": (2, 1, 4)}),
        IrCase("depthtospace_dcr", "DepthToSpace", {"x": (2, 12, 3, 4)},
               attrs=dict(blocksize=2)),
        IrCase("depthtospace_crd", "DepthToSpace", {"x": (1, 18, 2, 3)},
               attrs=dict(blocksize=3, mode="CRD")),
        IrCase("spacetodepth", "SpaceToDepth", {"x": (2, 3, 6, 4)}, attrs=dict(blocksize=2)),
        IrCase("reducemean18", "ReduceMean", {"x": (2, 8, 3, 3)}, {"a": np.array([1], i64)},
               dict(keepdims=0)),
    ]


# GridSample (opset 16): (mode, padding_mode, align_corners); the CPU reference lands with the
# importer's, so tests compare with grid_sample_ref
GRID_SAMPLES = [("bilinear", "zeros", 0), ("bilinear", "border", 1), ("nearest", "zeros", 1),
                ("nearest", "border", 0)]


def grid_sample_graph(mode: str, padding: str, align: int) -> Graph:
    g = Graph("grid", 21)
    x, grid = g.add_input("x", [2, 3, 5, 7]), g.add_input("grid", [2, 4, 6, 2])
    y = g.add_node("GridSample", [x, grid], 1, {"mode": mode, "padding_mode": padding,
                                                "align_corners": align}, "gs").outputs[0]
    y.shape, y.dtype = [2, 3, 4, 6], "float32"
    g.mark_output(y)
    return g


def grid_sample_feeds() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(4)
    # coordinates a little beyond [-1, 1] (padding), kept off exact half-pixel ties
    grid = (rng.uniform(-1.2, 1.2, (2, 4, 6, 2)) + 1e-3).astype(np.float32)
    return {"x": rng.standard_normal((2, 3, 5, 7)).astype(np.float32), "grid": grid}


def grid_sample_ref(x: np.ndarray, grid: np.ndarray, mode: str, padding: str,
                    align: int) -> np.ndarray:
    """ONNX GridSample, 2-D, bilinear / nearest, zeros / border padding."""
    n, c, h, w = x.shape
    gx, gy = grid[..., 0].astype(np.float64), grid[..., 1].astype(np.float64)
    fx = (gx + 1) / 2 * (w - 1) if align else ((gx + 1) * w - 1) / 2
    fy = (gy + 1) / 2 * (h - 1) if align else ((gy + 1) * h - 1) / 2
    if padding == "border":
        fx, fy = np.clip(fx, 0, w - 1), np.clip(fy, 0, h - 1)

    def tap(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # (N, Ho, Wo) -> (N, C, Ho, Wo)
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yc, xc = np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)
        v = x[np.arange(n)[:, None, None], :, yc, xc]  # (N, Ho, Wo, C)
        if padding == "zeros":
            v = v * inside[..., None]
        return np.moveaxis(v, -1, 1)

    if mode == "nearest":
        return tap(np.rint(fy).astype(int), np.rint(fx).astype(int)).astype(np.float32)
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    dx, dy = (fx - x0)[:, None], (fy - y0)[:, None]
    out = (1 - dy) * ((1 - dx) * tap(y0, x0) + dx * tap(y0, x0 + 1)) \
        + dy * ((1 - dx) * tap(y0 + 1, x0) + dx * tap(y0 + 1, x0 + 1))
    return out.astype(np.float32)


def embedding_graph(index_dtype: str = "int64") -> Graph:
    """BERT's embeddings: token ids (a graph input) gather rows of a table, plus positions, then
    a LayerNorm; a second Gather reads the same ids with negative indices allowed."""
    rng = np.random.default_rng(9)
    g = Graph("embed", 21)
    ids = g.add_input("ids", [2, 7], index_dtype)
    table = g.add_constant("table", w(rng, 50, 16, scale=1.0))
    pos = g.add_constant("pos", w(rng, 7, 16, scale=1.0))
    e = g.add_node("Gather", [table, ids], 1, {"axis": 0}, "word").outputs[0]
    s = g.add_node("Add", [e, pos], 1, {}, "add").outputs[0]
    y = g.add_node("LayerNormalization", [s, g.add_constant("g", np.ones(16, np.float32))], 1,
                   {"axis": -1}, "ln").outputs[0]
    for t in (e, s, y):
        t.shape, t.dtype = [2, 7, 16], "float32"
    g.mark_output(y)
    return g


def embedding_feeds(index_dtype: str = "int64") -> dict[str, np.ndarray]:
    ids = np.random.default_rng(3).integers(-50, 50, (2, 7)).astype(index_dtype)
    return {"ids": ids}


def mask_model(opset: int = 17) -> onnx.ModelProto:
    """A mask as attention and Swin's shifted windows build one: comparisons, Not, a bool to
    float Cast and Where filling with a large negative value -- all 0 / 1 values inside."""
    init = {"t": np.array(0.3, np.float32), "neg": np.array(-1e4, np.float32),
            "lo": np.array(-0.5, np.float32)}
    nodes = [
        helper.make_node("Greater", ["x", "t"], ["m"], name="gt"),
        helper.make_node("Less", ["x", "lo"], ["l"], name="lt"),
        helper.make_node("Not", ["m"], ["nm"], name="not"),
        helper.make_node("Cast", ["nm"], ["c"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Where", ["m", "x", "neg"], ["w"], name="where"),
        helper.make_node("Where", ["l", "neg", "b"], ["w2"], name="where2"),
        helper.make_node("Equal", ["x", "b"], ["e"], name="eq"),
        helper.make_node("Cast", ["e"], ["ec"], name="cast2", to=TensorProto.FLOAT),
        helper.make_node("Add", ["w", "c"], ["s"], name="add"),
        helper.make_node("Add", ["s", "w2"], ["s2"], name="add2"),
        helper.make_node("Add", ["s2", "ec"], ["y0"], name="add3"),
    ]
    graph = helper.make_graph(
        nodes, "mask", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8]),
                        helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 1, 8])],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def mlp_model(opset: int = 17) -> onnx.ModelProto:
    """A transformer MLP as PyTorch exports it: MatMul + Add bias, erf-GELU, residual Add."""
    rng = np.random.default_rng(5)
    init = {"w1": w(rng, 16, 32), "b1": w(rng, 32), "w2": w(rng, 32, 16), "b2": w(rng, 16),
            "sqrt2": np.array(2 ** 0.5, np.float32), "one": np.array(1.0, np.float32),
            "half": np.array(0.5, np.float32)}
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"),
        helper.make_node("Add", ["h1", "b1"], ["h1b"], name="fc1_bias"),
        helper.make_node("Div", ["h1b", "sqrt2"], ["d"], name="gelu_div"),
        helper.make_node("Erf", ["d"], ["e"], name="gelu_erf"),
        helper.make_node("Add", ["e", "one"], ["e1"], name="gelu_add"),
        helper.make_node("Mul", ["h1b", "half"], ["hh"], name="gelu_half"),
        helper.make_node("Mul", ["hh", "e1"], ["g"], name="gelu_mul"),
        helper.make_node("MatMul", ["g", "w2"], ["h2"], name="fc2"),
        helper.make_node("Add", ["h2", "b2"], ["h2b"], name="fc2_bias"),
        helper.make_node("Add", ["x", "h2b"], ["y0"], name="residual"),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 16])],
        [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, n) for n, v in init.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


_GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def recurrent_case(name: str, op: str, steps: int, batch: int, isize: int, hidden: int,
                   direction: str = "forward", states: str = "", layout: int = 0,
                   bias: bool = True, seed: int = 0, **attrs: Any) -> Case:
    """A one-node RNN / GRU / LSTM with constant W, R (and B); ``states``: "" (none), "const"
    or "input" (initial_h, and LSTM's initial_c, as constants or run-time inputs)."""
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    gh = _GATES[op] * hidden
    x_shape = (batch, steps, isize) if layout else (steps, batch, isize)
    s_shape = (batch, dirs, hidden) if layout else (dirs, batch, hidden)
    inputs: dict[str, tuple[int, ...]] = {"x": x_shape}
    consts = {"W": w(rng, dirs, gh, isize, scale=0.4), "R": w(rng, dirs, gh, hidden, scale=0.4)}
    order = ["x", "W", "R", "B" if bias else "", ""]
    if bias:
        consts["B"] = w(rng, dirs, 2 * gh, scale=0.3)
    state_names = ["h0", "c0"] if op == "LSTM" else ["h0"]
    for s in state_names if states else []:
        if states == "const":
            consts[s] = w(rng, *s_shape, scale=0.5)
        else:
            inputs[s] = s_shape
    order += state_names if states else []
    while order[-1] == "":
        order.pop()
    return Case(name, op, inputs, consts,
                dict(hidden_size=hidden, direction=direction, layout=layout, **attrs),
                input_order=order, n_outputs=3 if op == "LSTM" else 2)


def recurrent_cases() -> list[Case]:
    """The exported forms the GPU lowers (CRNN: bidirectional LSTM, batch 1, hidden 24+)."""
    return [
        recurrent_case("lstm_fwd", "LSTM", 7, 2, 5, 6),
        recurrent_case("lstm_rev_const_state", "LSTM", 6, 3, 4, 8, "reverse", "const"),
        recurrent_case("lstm_bidir_crnn", "LSTM", 12, 1, 16, 24, "bidirectional"),
        recurrent_case("lstm_bidir_input_state", "LSTM", 5, 2, 6, 40, "bidirectional",
                       "input", seed=1),
        recurrent_case("lstm_bidir_layout1", "LSTM", 6, 3, 5, 7, "bidirectional", "const",
                       layout=1, seed=2),
        recurrent_case("lstm_no_bias", "LSTM", 5, 2, 3, 4, bias=False, seed=3),
        recurrent_case("gru_fwd", "GRU", 7, 2, 5, 6),
        recurrent_case("gru_fwd_lbr", "GRU", 7, 2, 5, 6, linear_before_reset=1, seed=4),
        recurrent_case("gru_rev_input_state", "GRU", 6, 3, 4, 33, "reverse", "input", seed=5),
        recurrent_case("gru_bidir_lbr_const_state", "GRU", 8, 2, 6, 10, "bidirectional",
                       "const", linear_before_reset=1, seed=6),
        recurrent_case("gru_bidir_layout1", "GRU", 5, 2, 4, 9, "bidirectional", layout=1,
                       seed=7),
        recurrent_case("rnn_bidir_const_state", "RNN", 6, 2, 5, 8, "bidirectional", "const",
                       seed=8),
        # more hidden units than threads in a block: each thread owns several
        recurrent_case("lstm_wide", "LSTM", 3, 1, 8, 1100, "bidirectional", seed=9),
    ]
