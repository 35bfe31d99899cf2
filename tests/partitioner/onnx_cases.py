"""Hand-built one-op ONNX models for the importer / shape-inference / export tests.

Each case builds a model at a given opset in that opset's own form (attributes where the opset
has attributes, inputs where it has inputs), so importing it exercises the normalisation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

OPSETS = (11, 13, 17, 21)
F = np.float32
I64 = np.int64

NodesFn = Callable[[int], tuple[list[onnx.NodeProto], dict[str, np.ndarray]]]


@dataclass
class Case:
    id: str
    nodes: NodesFn
    inputs: dict[str, tuple[tuple[Any, ...], Any]] = field(
        default_factory=lambda: {"x": ((2, 3, 8, 8), F)}
    )
    outputs: list[tuple[str, int]] = field(default_factory=lambda: [("y", TP.FLOAT)])
    min_opset: int = 11
    max_opset: int = 21
    positive: bool = False
    data_dependent: bool = False  # output dims set by values (NonZero): inferred as None

    def opsets(self) -> list[int]:
        return [o for o in OPSETS if self.min_opset <= o <= self.max_opset] or [self.min_opset]

    def model(self, opset: int) -> onnx.ModelProto:
        nodes, inits = self.nodes(opset)
        ins = [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dt)), s)
            for name, (s, dt) in self.inputs.items()
        ]
        outs = [helper.make_tensor_value_info(name, elem, None) for name, elem in self.outputs]
        graph = helper.make_graph(
            nodes, f"case_{self.id}", ins, outs,
            [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
        )  # fmt: skip
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = 7 if opset <= 13 else 8
        return m

    def feeds(self, seed: int = 0) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out = {}
        for name, (shape, dt) in self.inputs.items():
            concrete = [d if isinstance(d, int) else 2 for d in shape]
            if np.dtype(dt) == np.bool_:
                out[name] = rng.random(concrete) > 0.5
            else:
                v = rng.standard_normal(concrete)
                out[name] = (np.abs(v) + 0.5 if self.positive else v).astype(dt)
        return out


def node(op: str, ins: list[str], outs: list[str] | None = None, **attrs: Any) -> onnx.NodeProto:
    return helper.make_node(op, ins, outs or ["y"], **attrs)


def fixed(*nodes: onnx.NodeProto, **inits: Any) -> NodesFn:
    return lambda opset: (list(nodes), {k: np.asarray(v) for k, v in inits.items()})


def axes_op(op: str, axes: list[int], input_from: int, data: str = "x", **attrs: Any) -> NodesFn:
    """An op whose ``axes`` moved from an attribute to an input at opset ``input_from``."""

    def build(opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
        if opset >= input_from:
            return [node(op, [data, "axes"], **attrs)], {"axes": np.array(axes, I64)}
        return [node(op, [data], axes=axes, **attrs)], {}

    return build


def split_op(split: list[int] | None, axis: int) -> NodesFn:
    def build(opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
        outs = ["y", "z"]
        if split is None:
            extra = {"num_outputs": 2} if opset >= 18 else {}
            return [node("Split", ["x"], outs, axis=axis, **extra)], {}
        if opset >= 13:
            return [node("Split", ["x", "s"], outs, axis=axis)], {"s": np.array(split, I64)}
        return [node("Split", ["x"], outs, axis=axis, split=split)], {}

    return build


def dropout(opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
    if opset >= 12:
        return [node("Dropout", ["x", "r"], ["y", "mask"])], {"r": np.array(0.3, F)}
    return [node("Dropout", ["x"], ["y", "mask"], ratio=0.3)], {}


def resize(mode: str, scales: list[float] | None = None, sizes: list[int] | None = None,
           **attrs: Any) -> NodesFn:  # fmt: skip
    def build(opset: int) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:
        inits: dict[str, np.ndarray] = {"roi": np.array([], F)}
        ins = ["x", "roi"]
        ins.append("sc" if scales is not None or opset < 13 else "")
        inits["sc"] = np.array(scales if scales is not None else [], F)
        if sizes is not None:
            ins.append("sz")
            inits["sz"] = np.array(sizes, I64)
        return [node("Resize", ins, mode=mode, **attrs)], inits

    return build


rng = np.random.default_rng(42)
W33 = rng.standard_normal((4, 3, 3, 3)).astype(F)
B4 = rng.standard_normal(4).astype(F)
C3 = (rng.random(3) + 0.5).astype(F)
X4 = {"x": ((2, 3, 8, 8), F)}
XY = {"x": ((2, 3, 8, 8), F), "b": ((3, 1, 1), F)}
BOOL_OUT = [("y", TP.BOOL)]
INT_OUT = [("y", TP.INT64)]


def _unary(op: str, **kw: Any) -> Case:
    attrs = kw.pop("attrs", {})
    return Case(op if not attrs else f"{op}-{'-'.join(attrs)}", fixed(node(op, ["x"], **attrs)),
                **kw)  # fmt: skip


CASES: list[Case] = [
    *[_unary(op) for op in "Relu Sigmoid Tanh Elu Selu Softplus Erf Exp Abs Neg Floor Ceil "
      "Identity HardSigmoid".split()],  # fmt: skip
    *[_unary(op, positive=True) for op in ("Sqrt", "Log", "Reciprocal")],
    _unary("LeakyRelu", attrs={"alpha": 0.1}),
    _unary("HardSwish", min_opset=14),
    _unary("Mish", min_opset=18),
    _unary("Gelu", min_opset=20),
    _unary("Gelu", min_opset=20, attrs={"approximate": "tanh"}),
    *[Case(op, fixed(node(op, ["x", "b"])), XY) for op in "Add Sub Mul Div Max Min".split()],
    Case("Pow", fixed(node("Pow", ["x", "b"])), XY, positive=True),
    Case("Sum", fixed(node("Sum", ["x", "b", "x"])), XY),
    *[Case(op, fixed(node(op, ["x", "b"])), XY, BOOL_OUT) for op in ("Greater", "Less")],
    Case("Equal", fixed(node("Equal", ["x", "b"])), {"x": ((2, 3), I64), "b": ((3,), I64)},
         BOOL_OUT),  # fmt: skip
    Case("Not", fixed(node("Not", ["x"])), {"x": ((2, 3), np.bool_)}, BOOL_OUT),
    Case("Where", fixed(node("Where", ["c", "x", "b"])),
         {"c": ((2, 3, 8, 8), np.bool_), "x": ((2, 3, 8, 8), F), "b": ((3, 1, 1), F)}),
    Case("PRelu", fixed(node("PRelu", ["x", "s"]), s=C3.reshape(3, 1, 1))),
    Case("Clip", fixed(node("Clip", ["x", "lo", "hi"]), lo=np.array(-0.5, F),
                       hi=np.array(0.7, F))),  # fmt: skip
    Case("Clip-min-only", fixed(node("Clip", ["x", "lo"]), lo=np.array(0.0, F))),
    Case("Conv", fixed(node("Conv", ["x", "w", "b"], pads=[1, 1, 1, 1], strides=[2, 2]),
                       w=W33, b=B4)),  # fmt: skip
    Case("Conv-same", fixed(node("Conv", ["x", "w"], auto_pad="SAME_UPPER", strides=[2, 2]),
                            w=W33)),  # fmt: skip
    Case("Conv-same-lower", fixed(node("Conv", ["x", "w"], auto_pad="SAME_LOWER"), w=W33)),
    Case("Conv-valid", fixed(node("Conv", ["x", "w"], auto_pad="VALID"), w=W33)),
    Case("Conv-group-dil", fixed(node("Conv", ["x", "w"], group=3, dilations=[2, 2],
                                      pads=[2, 1, 2, 1]),  # fmt: skip
                                 w=rng.standard_normal((6, 1, 3, 3)).astype(F))),
    Case("Conv-1d", fixed(node("Conv", ["x", "w"]), w=W33[:, :, 0]),
         {"x": ((2, 3, 9), F)}),
    Case("ConvTranspose", fixed(node("ConvTranspose", ["x", "w", "b"], strides=[2, 2],
                                     output_padding=[1, 1], pads=[1, 1, 1, 1]),
                                w=rng.standard_normal((3, 2, 3, 3)).astype(F),
                                b=np.ones(2, F))),  # fmt: skip
    Case("ConvTranspose-group", fixed(node("ConvTranspose", ["x", "w"], group=3, strides=[2, 2]),
                                      w=rng.standard_normal((3, 2, 2, 2)).astype(F))),
    Case("ConvTranspose-outshape",
         fixed(node("ConvTranspose", ["x", "w"], strides=[2, 2], output_shape=[17, 17]),
               w=rng.standard_normal((3, 2, 3, 3)).astype(F))),
    Case("ConvTranspose-outshape-odd",
         fixed(node("ConvTranspose", ["x", "w"], strides=[2, 2], output_shape=[16, 15]),
               w=rng.standard_normal((3, 2, 3, 3)).astype(F))),
    Case("ConvTranspose-same", fixed(node("ConvTranspose", ["x", "w"], strides=[2, 2],
                                          auto_pad="SAME_UPPER"),
                                     w=rng.standard_normal((3, 2, 3, 3)).astype(F))),
    Case("ConvTranspose-same-lower", fixed(node("ConvTranspose", ["x", "w"], strides=[2, 2],
                                                auto_pad="SAME_LOWER"),
                                           w=rng.standard_normal((3, 2, 4, 4)).astype(F))),
    Case("Gemm", fixed(node("Gemm", ["a", "w", "c"], transB=1, alpha=0.5, beta=2.0),
                       w=rng.standard_normal((6, 5)).astype(F), c=np.ones(6, F)),
         {"a": ((4, 5), F)}),
    Case("Gemm-transA", fixed(node("Gemm", ["a", "w"], transA=1),
                              w=rng.standard_normal((4, 6)).astype(F)),
         {"a": ((4, 5), F)}),
    Case("MatMul", fixed(node("MatMul", ["a", "w"]), w=rng.standard_normal((5, 3)).astype(F)),
         {"a": ((2, 4, 5), F)}),
    Case("MatMul-1d", fixed(node("MatMul", ["a", "w"]), w=rng.standard_normal((5,)).astype(F)),
         {"a": ((2, 4, 5), F)}),
    Case("BatchNormalization",
         fixed(node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3),
               s=C3, b=C3 - 1, m=C3 * 0.1, v=C3)),  # fmt: skip
    Case("InstanceNormalization", fixed(node("InstanceNormalization", ["x", "s", "b"]),
                                        s=C3, b=C3 - 1)),  # fmt: skip
    Case("LayerNormalization", fixed(node("LayerNormalization", ["x", "s", "b"], axis=-1),
                                     s=np.ones(8, F), b=np.zeros(8, F)), min_opset=17),
    Case("LRN", fixed(node("LRN", ["x"], size=3))),
    Case("MaxPool", fixed(node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                               pads=[1, 1, 1, 1]))),  # fmt: skip
    Case("MaxPool-ceil", fixed(node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2],
                                    ceil_mode=1)), {"x": ((1, 2, 9, 9), F)}),
    Case("MaxPool-same", fixed(node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2],
                                    auto_pad="SAME_UPPER")), {"x": ((1, 2, 7, 7), F)}),
    Case("AveragePool", fixed(node("AveragePool", ["x"], kernel_shape=[3, 3],
                                   pads=[1, 1, 1, 1], count_include_pad=1))),  # fmt: skip
    Case("AveragePool-excl", fixed(node("AveragePool", ["x"], kernel_shape=[2, 2],
                                        strides=[2, 2], pads=[1, 1, 0, 0]))),  # fmt: skip
    Case("GlobalAveragePool", fixed(node("GlobalAveragePool", ["x"]))),
    Case("GlobalMaxPool", fixed(node("GlobalMaxPool", ["x"]))),
    Case("Concat", fixed(node("Concat", ["x", "x"], axis=1))),
    Case("Split", split_op([1, 2], 1), outputs=[("y", TP.FLOAT), ("z", TP.FLOAT)]),
    Case("Split-equal", split_op(None, 2), outputs=[("y", TP.FLOAT), ("z", TP.FLOAT)]),
    Case("Slice", fixed(node("Slice", ["x", "s", "e", "a", "st"]), s=np.array([1, -1], I64),
                        e=np.array([8, -8], I64), a=np.array([2, 3], I64),
                        st=np.array([2, -2], I64))),  # fmt: skip
    Case("Reshape", fixed(node("Reshape", ["x", "s"]), s=np.array([0, -1, 4], I64))),
    Case("Flatten", fixed(node("Flatten", ["x"], axis=2))),
    Case("Transpose", fixed(node("Transpose", ["x"], perm=[0, 2, 3, 1]))),
    Case("Squeeze", axes_op("Squeeze", [1], 13), {"x": ((2, 1, 8), F)}),
    Case("Unsqueeze", axes_op("Unsqueeze", [0, 3], 13)),
    Case("Pad", fixed(node("Pad", ["x", "p", "v"]), p=np.array([0, 0, 1, 2, 0, 0, 3, 0], I64),
                      v=np.array(1.5, F))),  # fmt: skip
    Case("Pad-reflect", fixed(node("Pad", ["x", "p"], mode="reflect"),
                              p=np.array([0, 0, 1, 2, 0, 0, 2, 1], I64))),
    Case("Pad-axes", fixed(node("Pad", ["x", "p", "", "a"]), p=np.array([1, 2, 0, 3], I64),
                           a=np.array([1, -1], I64)), min_opset=18),  # fmt: skip
    Case("Slice-int-max", fixed(node("Slice", ["x", "s", "e", "a"]), s=np.array([1], I64),
                                e=np.array([2**63 - 1], I64), a=np.array([-1], I64))),
    Case("Squeeze-all", fixed(node("Squeeze", ["x"])), {"x": ((1, 3, 1, 8), F)}),
    Case("Unsqueeze-neg", axes_op("Unsqueeze", [-1], 13)),
    Case("Gather-neg", fixed(node("Gather", ["x", "i"], axis=-1), i=np.array([-1, 0], I64))),
    Case("AveragePool-dil", fixed(node("AveragePool", ["x"], kernel_shape=[2, 2],
                                       dilations=[2, 2])), min_opset=19),  # fmt: skip
    Case("Resize-axes", fixed(node("Resize", ["x", "", "sc"], mode="nearest", axes=[2, 3]),
                              sc=np.array([2, 0.5], F)), min_opset=18),  # fmt: skip
    Case("Resize-nearest", resize("nearest", scales=[1, 1, 2, 2])),
    Case("Resize-linear", resize("linear", scales=[1, 1, 1.5, 2],
                                 coordinate_transformation_mode="half_pixel")),
    Case("Resize-sizes", resize("linear", sizes=[2, 3, 5, 12],
                                coordinate_transformation_mode="align_corners")),
    Case("Softmax-axis1", fixed(node("Softmax", ["x"], axis=1))),
    Case("Softmax-last", fixed(node("Softmax", ["x"], axis=3))),
    Case("Softmax-default", fixed(node("Softmax", ["x"]))),
    Case("LogSoftmax-axis2", fixed(node("LogSoftmax", ["x"], axis=2))),
    Case("ReduceMean", axes_op("ReduceMean", [2, 3], 18)),
    Case("ReduceMax", axes_op("ReduceMax", [1], 18, keepdims=0)),
    Case("ReduceMin", axes_op("ReduceMin", [-1], 18)),
    Case("ReduceSum", axes_op("ReduceSum", [1, 2], 13, keepdims=0)),
    Case("ReduceSum-all", fixed(node("ReduceSum", ["x"]))),
    Case("Gather", fixed(node("Gather", ["x", "i"], axis=1), i=np.array([[0, 2], [1, 1]], I64))),
    Case("Shape", fixed(node("Shape", ["x"])), outputs=INT_OUT),
    Case("Shape-start", fixed(node("Shape", ["x"], start=1, end=-1)), outputs=INT_OUT,
         min_opset=15),
    Case("ConstantOfShape", fixed(node("ConstantOfShape", ["s"],
                                       value=numpy_helper.from_array(np.array([2.5], F))),
                                  s=np.array([2, 3], I64)), {}),  # fmt: skip
    Case("Cast", fixed(node("Cast", ["x"], to=TP.INT32)), outputs=[("y", TP.INT32)]),
    Case("Cast-fp16", fixed(node("Cast", ["x"], to=TP.FLOAT16)), outputs=[("y", TP.FLOAT16)]),
    Case("Dropout", dropout),
    Case("Expand", fixed(node("Expand", ["x", "s"]), s=np.array([2, 3, 4, 8], I64)),
         {"x": ((3, 1, 8), F)}),
    Case("Tile", fixed(node("Tile", ["x", "r"]), r=np.array([1, 2, 1, 3], I64))),
    Case("QDQ", fixed(node("QuantizeLinear", ["x", "s", "z"], ["q"]),
                      node("DequantizeLinear", ["q", "s", "z"]),
                      s=np.array(0.02, F), z=np.array(3, np.uint8))),  # fmt: skip
    Case("QDQ-per-axis", fixed(node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
                               node("DequantizeLinear", ["q", "s", "z"], axis=1),
                               s=np.array([0.02, 0.03, 0.01], F),
                               z=np.array([0, 1, -2], np.int8)), min_opset=13),
    Case("TopK", fixed(node("TopK", ["x", "k"], ["y", "z"], axis=-1), k=np.array([3], I64)),
         outputs=[("y", TP.FLOAT), ("z", TP.INT64)]),
    Case("ArgMax", fixed(node("ArgMax", ["x"], axis=1, keepdims=0)), outputs=INT_OUT),
    Case("Range", fixed(node("Range", ["s", "l", "d"]), s=np.array(1.0, F),
                        l=np.array(7.5, F), d=np.array(1.5, F)), {}),  # fmt: skip
    Case("Constant", fixed(helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0]),
                           node("Mul", ["x", "c"])), {"x": ((3, 2), F)}),  # fmt: skip
    # ----- ops real exporters add ------------------------------------------------------------
    *[_unary(op) for op in "Sin Cos Tan Atan Sinh Cosh Asinh Sign Round Softsign".split()],
    _unary("Celu", attrs={"alpha": 0.5}, min_opset=12),
    _unary("ThresholdedRelu", attrs={"alpha": 0.5}),
    *[Case(op, fixed(node(op, ["x"])), {"x": ((2, 3), F)}, positive=True)
      for op in ("Acosh",)],
    Case("Asin", fixed(node("Asin", ["x"], ["t"]), node("Atanh", ["t"])),
         {"x": ((2, 3), F)}),  # asin of N(0,1) is NaN outside [-1, 1]; checks the NaN path
    Case("Acos", fixed(node("Acos", ["x"])), {"x": ((2, 3), F)}),
    Case("Mod", fixed(node("Mod", ["x", "b"])), {"x": ((2, 3), I64), "b": ((3,), I64)},
         INT_OUT, positive=True),  # fmt: skip
    Case("Mod-fmod", fixed(node("Mod", ["x", "b"], fmod=1)), XY, positive=True),
    Case("Mean", fixed(node("Mean", ["x", "b", "x"])), XY),
    *[Case(op, fixed(node(op, ["x"])), X4, BOOL_OUT) for op in ("IsNaN", "IsInf")],
    *[Case(op, fixed(node(op, ["x", "b"])), {"x": ((2, 3), np.bool_), "b": ((3,), np.bool_)},
           BOOL_OUT) for op in ("And", "Or", "Xor")],  # fmt: skip
    *[Case(op, fixed(node(op, ["x", "b"])), XY, BOOL_OUT, min_opset=12)
      for op in ("GreaterOrEqual", "LessOrEqual")],
    Case("CastLike", fixed(node("CastLike", ["x", "t"]), t=np.array([1], np.int32)),
         outputs=[("y", TP.INT32)], min_opset=15),
    Case("Size", fixed(node("Size", ["x"])), outputs=INT_OUT),
    *[Case(op, axes_op(op, [1, -1], 18, keepdims=k), positive=True)
      for op, k in (("ReduceProd", 1), ("ReduceL1", 0), ("ReduceL2", 1), ("ReduceLogSum", 0),
                    ("ReduceLogSumExp", 1), ("ReduceSumSquare", 0))],  # fmt: skip
    Case("ArgMin", fixed(node("ArgMin", ["x"], axis=-1)), outputs=INT_OUT),
    Case("Hardmax", fixed(node("Hardmax", ["x"]))),  # opset < 13: coerced 2-D at axis 1
    Case("Hardmax-axis2", fixed(node("Hardmax", ["x"], axis=2))),
    Case("CumSum", fixed(node("CumSum", ["x", "a"], exclusive=1), a=np.array(2, I64))),
    Case("Einsum", fixed(node("Einsum", ["x", "w"], equation="bchw,hk->bckw"),
                         w=rng.standard_normal((8, 5)).astype(F)), min_opset=12),  # fmt: skip
    Case("Einsum-implicit", fixed(node("Einsum", ["x"], equation="...ij")), min_opset=12),
    Case("GatherElements", fixed(node("GatherElements", ["x", "i"], axis=1),
                                 i=np.array([[1, 0, -1], [2, 2, 0]], I64)),
         {"x": ((2, 3), F)}),  # fmt: skip
    Case("GatherND", fixed(node("GatherND", ["x", "i"]), i=np.array([[0, 1], [1, 2]], I64))),
    Case("GatherND-batch", fixed(node("GatherND", ["x", "i"], batch_dims=1),
                                 i=np.array([[[1], [0]], [[2], [2]]], I64)), min_opset=12),
    Case("ScatterND", fixed(node("ScatterND", ["x", "i", "u"]), i=np.array([[1], [0]], I64),
                            u=np.ones((2, 3, 8, 8), F))),  # fmt: skip
    Case("ScatterND-add", fixed(node("ScatterND", ["x", "i", "u"], reduction="add"),
                                i=np.array([[1, 2], [1, 2]], I64), u=np.ones((2, 8, 8), F)),
         min_opset=16),  # fmt: skip
    Case("ScatterElements", fixed(node("ScatterElements", ["x", "i", "u"], axis=1),
                                  i=np.array([[2, 0]], I64), u=np.array([[5.0, 6.0]], F)),
         {"x": ((2, 3), F)}),  # fmt: skip
    Case("OneHot", fixed(node("OneHot", ["x", "d", "v"], axis=1), d=np.array(4, I64),
                         v=np.array([0.0, 3.0], F)), {"x": ((2, 3), I64)}),  # fmt: skip
    Case("Trilu", fixed(node("Trilu", ["x", "k"], upper=0), k=np.array(1, I64)), min_opset=14),
    Case("DepthToSpace", fixed(node("DepthToSpace", ["x"], blocksize=2, mode="CRD")),
         {"x": ((1, 8, 3, 3), F)}),  # fmt: skip
    Case("SpaceToDepth", fixed(node("SpaceToDepth", ["x"], blocksize=2))),
    Case("GridSample", fixed(node("GridSample", ["x", "g"], mode="bilinear",
                                  padding_mode="border")),
         {"x": ((2, 3, 8, 8), F), "g": ((2, 5, 6, 2), F)}, min_opset=16, max_opset=19),
    Case("GridSample-cubic", fixed(node("GridSample", ["x", "g"], mode="cubic",
                                        align_corners=1)),
         {"x": ((2, 3, 8, 8), F), "g": ((2, 5, 6, 2), F)}, min_opset=20),
    Case("NonZero", fixed(node("NonZero", ["x"])), {"x": ((2, 3), np.bool_)}, INT_OUT,
         data_dependent=True),  # fmt: skip
    Case("NonMaxSuppression", fixed(node("NonMaxSuppression", ["x", "s", "m", "t"]),
                                    m=np.array([2], I64), t=np.array([0.5], F)),
         {"x": ((1, 6, 4), F), "s": ((1, 2, 6), F)}, INT_OUT, data_dependent=True),
    Case("LSTM", fixed(node("LSTM", ["x", "w", "r", "b"], ["y", "h", "c"], hidden_size=4,
                            direction="bidirectional"),
                       w=rng.standard_normal((2, 16, 3)).astype(F),
                       r=rng.standard_normal((2, 16, 4)).astype(F),
                       b=rng.standard_normal((2, 32)).astype(F)),
         {"x": ((5, 2, 3), F)}, [("y", TP.FLOAT), ("h", TP.FLOAT), ("c", TP.FLOAT)]),
    Case("GRU", fixed(node("GRU", ["x", "w", "r"], ["y", "h"], hidden_size=4,
                           linear_before_reset=1),
                      w=rng.standard_normal((1, 12, 3)).astype(F),
                      r=rng.standard_normal((1, 12, 4)).astype(F)),
         {"x": ((5, 2, 3), F)}, [("y", TP.FLOAT), ("h", TP.FLOAT)]),
    Case("RNN", fixed(node("RNN", ["x", "w", "r"], ["", "h"], hidden_size=4, direction="reverse"),
                      w=rng.standard_normal((1, 4, 3)).astype(F),
                      r=rng.standard_normal((1, 4, 4)).astype(F)),
         {"x": ((5, 2, 3), F)}, [("h", TP.FLOAT)]),
]
