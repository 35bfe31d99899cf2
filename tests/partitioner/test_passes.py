"""Passes: each changes what it should, keeps names and semantics (ONNX Runtime as oracle)."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from devices.cpu.registry import evaluate_node
from partitioner.errors import InternalError
from partitioner.ir import Graph, Tensor
from partitioner.onnx_export import export_onnx
from partitioner.onnx_import import import_onnx
from partitioner.passes import (
    MAX_EXPANDED_ELEMENTS,
    drop_identity,
    eliminate_dead_nodes,
    fold_batchnorm_into_conv,
    fold_constants,
    mark_fusions,
    run_passes,
    simplify,
)
from tandem.zoo import build_model
from tests.partitioner.test_import import make_model, symbolic_model
from tests.partitioner.test_import_ops import ort_run

fold = functools.partial(fold_constants, evaluate=evaluate_node)
RNG = np.random.default_rng(7)


def ops(g: Graph) -> list[str]:
    return [n.op for n in g.topological_order()]


def same_outputs(model: onnx.ModelProto, graph: Graph, rtol: float = 1e-5) -> None:
    feeds = {}
    for vi in model.graph.input:
        shape = [d.dim_value or 2 for d in vi.type.tensor_type.shape.dim]
        feeds[vi.name] = RNG.standard_normal(shape).astype(np.float32)
    want = ort_run(model, feeds)
    exported = export_onnx(graph)
    onnx.checker.check_model(exported, full_check=True)
    assert [o.name for o in exported.graph.output] == [o.name for o in model.graph.output]
    for got, ref in zip(ort_run(exported, feeds), want):
        assert got.shape == ref.shape
        scale = max(float(np.max(np.abs(ref))), 1e-12)
        assert float(np.max(np.abs(got - ref))) / scale <= rtol


# ----- fold_constants ------------------------------------------------------------------------
def test_shape_subgraph_vanishes_when_shapes_are_static() -> None:
    model = symbolic_model()
    g = import_onnx(model, fixed_dims={"batch": 2, "h": 5})
    assert ops(g) == ["Conv", "Shape", "Gather", "Concat", "Reshape"]
    assert run_passes(g, [fold, eliminate_dead_nodes], lint=True)
    assert ops(g) == ["Conv", "Reshape"]
    shape = g.node("reshape").constant_input(1)
    assert shape is not None and shape.tolist() == [2, -1]


def test_shape_of_symbolic_tensor_is_not_folded() -> None:
    g = import_onnx(symbolic_model())
    assert not fold(g)
    assert "Shape" in ops(g)


def test_static_parts_of_a_symbolic_shape_subgraph_fold() -> None:
    """Reshape(x, Concat(Gather(Shape(x), 0), Gather(Shape(x), 1) * 4, [-1])) with x (N, 3, 4, 4):
    the batch part stays, the channel part (static) folds."""
    i0, i1 = (numpy_helper.from_array(np.array([i], np.int64), f"i{i}") for i in (0, 1))
    four = numpy_helper.from_array(np.array([4], np.int64), "four")
    rest = numpy_helper.from_array(np.array([-1], np.int64), "rest")
    nodes = [
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "i0"], ["n"], name="batch"),
        helper.make_node("Gather", ["s", "i1"], ["c"], name="channels"),
        helper.make_node("Mul", ["c", "four"], ["c4"], name="times4"),
        helper.make_node("Concat", ["n", "c4", "rest"], ["shp"], axis=0, name="concat"),
        helper.make_node("Reshape", ["x", "shp"], ["y"], name="reshape"),
    ]
    x = helper.make_tensor_value_info("x", TP.FLOAT, ["N", 3, 4, 4])
    model = make_model(nodes, inputs=[x], inits=[i0, i1, four, rest])
    g = import_onnx(model)
    assert g.outputs[0].shape == ("N", 12, 4)
    assert run_passes(g, [fold, eliminate_dead_nodes], lint=True)
    assert ops(g) == ["Shape", "Gather", "Concat", "Reshape"]
    concat = g.node("concat")
    assert concat.constant_input(1).tolist() == [12]  # type: ignore[union-attr]
    same_outputs(model, g)


def test_folded_graph_output_keeps_its_name() -> None:
    nodes = [helper.make_node("Add", ["c", "c"], ["y"], name="add")]
    c = numpy_helper.from_array(np.arange(4, dtype=np.float32), "c")
    x = helper.make_tensor_value_info("x", TP.FLOAT, [4])
    g = import_onnx(make_model(nodes, inputs=[x], inits=[c]))
    assert fold(g) and ops(g) == []
    assert [t.name for t in g.outputs] == ["y"]
    np.testing.assert_array_equal(g.outputs[0].values, np.arange(4) * 2.0)  # type: ignore[attr-defined]


@pytest.mark.parametrize("count,folded", [(1000, True), (MAX_EXPANDED_ELEMENTS + 1, False)])
def test_expanding_ops_fold_only_when_small(count: int, folded: bool) -> None:
    g = Graph("g")
    x = g.add_input("x", (count,))
    shape = g.add_constant("shape", np.array([count], np.int64))
    cos = g.add_node("ConstantOfShape", [shape], 1, {"value": np.array([1.0], np.float32)})
    add = g.add_node("Add", [x, cos.outputs[0]], 1)
    g.mark_output(add.outputs[0])
    from partitioner.shape_inference import infer_shapes

    infer_shapes(g)
    assert fold(g) is folded
    assert ("ConstantOfShape" in ops(g)) is not folded


def test_quantize_dequantize_are_kept() -> None:
    g = Graph("g")
    w = g.add_constant("w", RNG.standard_normal((4, 4)).astype(np.float32))
    s = g.add_constant("s", np.array(0.1, np.float32))
    z = g.add_constant("z", np.array(0, np.int8))
    q = g.add_node("QuantizeLinear", [w, s, z], 1)
    dq = g.add_node("DequantizeLinear", [q.outputs[0], s, z], 1)
    g.mark_output(dq.outputs[0])
    assert not fold(g)
    assert ops(g) == ["QuantizeLinear", "DequantizeLinear"]


# ----- fold_batchnorm_into_conv ------------------------------------------------------------------
def conv_bn_model(bias: bool, group: int = 1, extra_reader: bool = False) -> onnx.ModelProto:
    c_in, c_out = 4, 8
    w = RNG.standard_normal((c_out, c_in // group, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w")]
    conv_in = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(RNG.standard_normal(c_out).astype(np.float32), "b"))
        conv_in.append("b")
    for name, lo in (("gamma", 0.5), ("beta", -1), ("mean", -0.5), ("var", 0.1)):
        inits.append(numpy_helper.from_array((RNG.random(c_out) + lo).astype(np.float32), name))
    nodes = [
        helper.make_node("Conv", conv_in, ["c"], name="conv", pads=[1, 1, 1, 1], group=group),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"],
                         name="bn", epsilon=1e-3),  # fmt: skip
    ]
    outputs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["c"], ["r"], name="relu"))
        outputs.append("r")
    x = helper.make_tensor_value_info("x", TP.FLOAT, [2, c_in, 6, 6])
    return make_model(nodes, inputs=[x], inits=inits, outputs=outputs)


@pytest.mark.parametrize("bias,group", [(True, 1), (False, 1), (True, 2), (False, 4)])
def test_batchnorm_folds_into_conv_exactly(bias: bool, group: int) -> None:
    model = conv_bn_model(bias, group)
    g = import_onnx(model)
    assert run_passes(g, [fold_batchnorm_into_conv], lint=True)
    assert ops(g) == ["Conv"]
    (conv,) = g.nodes
    assert conv.name == "conv" and conv.outputs[0].name == "y" and len(conv.inputs) == 3
    assert set(g.tensors) == {"x", "y", conv.inputs[1].name, conv.inputs[2].name}  # type: ignore[union-attr]
    same_outputs(model, g)


def test_batchnorm_not_folded_when_conv_output_has_other_readers() -> None:
    g = import_onnx(conv_bn_model(True, extra_reader=True))
    assert not fold_batchnorm_into_conv(g)
    assert "BatchNormalization" in ops(g)


# ----- drop_identity / eliminate_dead_nodes -----------------------------------------------------
def test_identity_and_dropout_are_dropped() -> None:
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("Dropout", ["b"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["d"]),
        helper.make_node("Identity", ["d"], ["y"]),
    ]
    model = make_model(nodes)
    g = import_onnx(model)
    assert run_passes(g, [drop_identity], lint=True)
    assert ops(g) == ["Relu", "Sigmoid"]
    assert [t.name for t in g.outputs] == ["y"]
    same_outputs(model, g)


def test_identity_between_graph_input_and_output_stays() -> None:
    g = import_onnx(make_model([helper.make_node("Identity", ["x"], ["y"])]))
    assert not drop_identity(g)
    assert [t.name for t in g.outputs] == ["y"]


def test_dropout_in_training_mode_stays() -> None:
    g = Graph("g")
    x = g.add_input("x", (4,))
    mode = g.add_input("training", (), "bool")
    d = g.add_node("Dropout", [x, None, mode], 1)
    g.mark_output(d.outputs[0])
    assert not drop_identity(g)


def test_dead_nodes_and_their_constants_are_removed() -> None:
    g = Graph("g")
    x = g.add_input("x", (4,))
    c = g.add_constant("c", np.ones(4, np.float32))
    live = g.add_node("Relu", [x], 1, name="live")
    dead1 = g.add_node("Add", [x, c], 1, name="dead1")
    g.add_node("Sigmoid", [dead1.outputs[0]], 1, name="dead2")
    g.mark_output(live.outputs[0])
    assert run_passes(g, [eliminate_dead_nodes], lint=True)
    assert [n.name for n in g.nodes] == ["live"] and "c" not in g.tensors


# ----- pass manager -----------------------------------------------------------------------------
def test_run_passes_reaches_a_fixed_point_and_reports_change() -> None:
    g = import_onnx(symbolic_model(), fixed_dims={"batch": 1, "h": 3})
    calls: list[bool] = []

    def counting(graph: Graph) -> bool:
        changed = fold(graph)
        calls.append(changed)
        return changed

    assert run_passes(g, [counting, eliminate_dead_nodes])
    assert calls[-1] is False and len(calls) >= 2
    assert not run_passes(g, [counting, eliminate_dead_nodes])


def test_run_passes_is_bounded() -> None:
    rounds = []
    run_passes(Graph("g"), [lambda g: rounds.append(1) or True], max_iterations=5)
    assert len(rounds) == 5


def test_lint_between_passes_names_the_broken_pass() -> None:
    g = import_onnx(make_model([helper.make_node("Relu", ["x"], ["y"])]))

    def breaks_links(graph: Graph) -> bool:
        graph.nodes[0].outputs[0].producer = None
        return True

    with pytest.raises(InternalError, match="pass 'breaks_links' left a malformed graph"):
        run_passes(g, [breaks_links], lint=True)


# ----- mark_fusions -----------------------------------------------------------------------------
def conv_chain(*steps: str) -> Graph:
    """x -> Conv -> steps... ; 'add' adds a residual from x, 'badd' a broadcast add."""
    g = Graph("g")
    x = g.add_input("x", (1, 4, 8, 8))
    w = g.add_constant("w", np.ones((4, 4, 1, 1), np.float32))
    t: Tensor = g.add_node("Conv", [x, w], 1, {"kernel_shape": [1, 1]}, name="conv").outputs[0]
    t.shape = (1, 4, 8, 8)
    for i, step in enumerate(steps):
        ins: list[Any]
        if step == "silu":
            sig = g.add_node("Sigmoid", [t], 1, name=f"s{i}").outputs[0]
            t = g.add_node("Mul", [t, sig], 1, name=f"m{i}").outputs[0]
        elif step == "hswish":
            hs = g.add_node("HardSigmoid", [t], 1, {"alpha": 1 / 6, "beta": 0.5}, name=f"h{i}")
            t = g.add_node("Mul", [hs.outputs[0], t], 1, name=f"m{i}").outputs[0]
        elif step in ("relu6", "clip"):
            lo = g.add_constant(f"lo{i}", np.array(0.0 if step == "relu6" else -1.0, np.float32))
            hi = g.add_constant(f"hi{i}", np.array(6.0, np.float32))
            t = g.add_node("Clip", [t, lo, hi], 1, name=f"a{i}").outputs[0]
        elif step in ("add", "badd"):
            other = x if step == "add" else g.add_constant(f"b{i}", np.ones(4, np.float32))
            ins = [t, other] if i % 2 == 0 else [other, t]
            t = g.add_node("Add", ins, 1, name=f"add{i}").outputs[0]
        else:
            t = g.add_node(step, [t], 1, name=f"a{i}").outputs[0]
        t.shape = (1, 4, 8, 8)
    g.mark_output(t)
    return g


@pytest.mark.parametrize(
    "steps,pattern,roles",
    [
        (["Relu"], "Conv+relu", {"conv": "conv", "a0": "activation"}),
        (["relu6"], "Conv+clip", {"conv": "conv", "a0": "activation"}),
        (["clip"], "Conv+clip", {"conv": "conv", "a0": "activation"}),
        (["LeakyRelu"], "Conv+leaky", {"conv": "conv", "a0": "activation"}),
        (["Sigmoid"], "Conv+sigmoid", {"conv": "conv", "a0": "activation"}),
        (["Tanh"], "Conv+tanh", {"conv": "conv", "a0": "activation"}),
        (["HardSwish"], "Conv+hardswish", {"conv": "conv", "a0": "activation"}),
        (["silu"], "Conv+silu", {"conv": "conv", "s0": "activation", "m0": "activation"}),
        (["add"], "Conv+Add", {"conv": "conv", "add0": "residual"}),
        # after an activation and the Add, a second activation is a kernel of its own
        (["Relu", "add", "Relu"], "Conv+relu+Add",
         {"conv": "conv", "a0": "activation", "add1": "residual"}),
        (["add", "Relu"], "Conv+Add+relu",
         {"conv": "conv", "add0": "residual", "a1": "post_activation"}),
        (["silu", "add"], "Conv+silu+Add",
         {"conv": "conv", "s0": "activation", "m0": "activation", "add1": "residual"}),
        # the GPU kernels have no Mish epilogue nor x * HardSigmoid(x): priced as kernels
        (["Mish"], None, {}),
        (["hswish"], None, {}),
        (["badd"], None, {}),
        (["Softmax"], None, {}),
        (["Relu", "Relu"], "Conv+relu", {"conv": "conv", "a0": "activation"}),
    ],
)  # fmt: skip
def test_fusion_patterns(steps: list[str], pattern: str | None, roles: dict[str, str]) -> None:
    g = conv_chain(*steps)
    before = [(n.name, n.op, [t.name if t else None for t in n.inputs]) for n in g.nodes]
    assert mark_fusions(g) is (pattern is not None)
    marked = {n.name: n.meta["fusion"] for n in g.nodes if "fusion" in n.meta}
    assert {k: v["role"] for k, v in marked.items()} == roles
    assert all(v["group"] == "conv" and v["pattern"] == pattern for v in marked.values())
    assert [(n.name, n.op, [t.name if t else None for t in n.inputs]) for n in g.nodes] == before
    assert not mark_fusions(g)  # idempotent


def se_block(
    gate: str = "Sigmoid", group: int = 1, pool_read_twice: bool = False, dw: bool = False
) -> Graph:
    """x -> GlobalAveragePool -> Conv 1x1 -> Relu -> Conv 1x1 -> gate -> Mul(x); ``dw``: x is
    written by a depthwise conv + ReLU6."""
    from partitioner.shape_inference import infer_shapes

    g = Graph("g")
    x = g.add_input("x", (1, 16, 4, 4))
    if dw:
        wd = g.add_constant("wd", np.ones((16, 1, 3, 3), np.float32))
        attrs = {"group": 16, "pads": [1, 1, 1, 1]}
        x = g.add_node("Conv", [x, wd], 1, attrs, name="dw").outputs[0]
        lo = g.add_constant("lo", np.array(0.0, np.float32))
        hi = g.add_constant("hi", np.array(6.0, np.float32))
        x = g.add_node("Clip", [x, lo, hi], 1, name="relu6").outputs[0]
    p = g.add_node("GlobalAveragePool", [x], 1, name="pool").outputs[0]
    w1 = g.add_constant("w1", np.ones((4, 16 // group, 1, 1), np.float32))
    b1 = g.add_constant("b1", np.ones(4, np.float32))
    h = g.add_node("Conv", [p, w1, b1], 1, {"group": group}, name="fc1").outputs[0]
    h = g.add_node("Relu", [h], 1, name="act").outputs[0]
    w2 = g.add_constant("w2", np.ones((16, 4, 1, 1), np.float32))
    s = g.add_node("Conv", [h, w2], 1, name="fc2").outputs[0]
    s = g.add_node(gate, [s], 1, name="gate").outputs[0]
    g.mark_output(g.add_node("Mul", [x, s], 1, name="scale").outputs[0])
    if pool_read_twice:
        g.mark_output(p)
    infer_shapes(g)
    return g


@pytest.mark.parametrize(
    "options,roles",
    [
        ({}, {"pool": "conv", "fc1": "se_fc", "act": "activation", "fc2": "se_fc",
              "gate": "activation", "scale": "scale"}),
        ({"gate": "HardSigmoid"}, {"pool": "conv", "fc1": "se_fc", "act": "activation",
                                   "fc2": "se_fc", "gate": "activation", "scale": "scale"}),
        # the depthwise conv writing x sums it per channel: the pool has no kernel
        ({"dw": True}, {"dw": "conv", "relu6": "activation", "pool": "pooled", "fc1": "se_fc",
                        "act": "activation", "fc2": "se_fc", "gate": "activation",
                        "scale": "scale"}),
        # not an SE block the kernels take: the FCs keep their own epilogues
        ({"gate": "Tanh"}, {"fc1": "conv", "act": "activation", "fc2": "conv",
                            "gate": "activation"}),
        ({"group": 2}, {"fc1": "conv", "act": "activation", "fc2": "conv",
                        "gate": "activation"}),
        ({"pool_read_twice": True}, {"fc1": "conv", "act": "activation", "fc2": "conv",
                                     "gate": "activation"}),
    ],
)  # fmt: skip
def test_squeeze_excitation_marks(options: dict[str, Any], roles: dict[str, str]) -> None:
    g = se_block(**options)
    assert mark_fusions(g)
    marked = {n.name: n.meta["fusion"] for n in g.nodes if "fusion" in n.meta}
    assert {k: v["role"] for k, v in marked.items()} == roles
    if "scale" in roles:
        gate = options.get("gate", "Sigmoid").lower()
        assert {v["pattern"] for k, v in marked.items() if k not in ("dw", "relu6")} == {
            f"GlobalAveragePool+Conv+relu+Conv+{gate}+Mul"
        }
        assert {v["group"] for k, v in marked.items() if k not in ("dw", "relu6")} == {"pool"}
    assert not mark_fusions(g)  # idempotent


def test_conv_output_read_twice_is_not_fused() -> None:
    g = conv_chain("Relu")
    conv_out = g.node("conv").outputs[0]
    g.mark_output(conv_out)
    mark_fusions(g)
    assert not any("fusion" in n.meta for n in g.nodes)


def test_gemm_epilogue_bias_activation_residual_and_run_time_operands() -> None:
    from partitioner.shape_inference import infer_shapes

    g = Graph("g")
    x = g.add_input("x", (4, 8))
    w = g.add_constant("w", np.ones((8, 8), np.float32))
    b = g.add_constant("b", np.ones(8, np.float32))
    t = g.add_node("MatMul", [x, w], 1, name="mm").outputs[0]
    t = g.add_node("Add", [t, b], 1, name="bias").outputs[0]
    t = g.add_node("Relu", [t], 1, name="act").outputs[0]
    t = g.add_node("Add", [t, x], 1, name="res").outputs[0]
    x2 = g.add_input("x2", (8, 3))
    y = g.add_node("MatMul", [t, x2], 1, name="bmm").outputs[0]  # run-time operands: no epilogue
    g.add_node("Relu", [y], 1, name="after_bmm")
    g.mark_output(g.node("after_bmm").outputs[0])
    infer_shapes(g)
    mark_fusions(g)
    marked = {n.name: n.meta["fusion"]["role"] for n in g.nodes if "fusion" in n.meta}
    assert marked == {"mm": "conv", "bias": "bias", "act": "activation", "res": "residual"}
    assert g.node("res").meta["fusion"]["pattern"] == "MatMul+relu+Add"


# ----- the default pipeline -----------------------------------------------------------------------
@pytest.mark.parametrize("name,opset", [("resnet18", 11), ("mobilenetv2", 13), ("yolov5s", 17),
                                        ("vit-tiny", 21), ("unet-small", 17)])  # fmt: skip
def test_simplify_zoo_models_keeps_outputs(name: str, opset: int) -> None:
    model = build_model(name, resolution=64 if name != "vit-tiny" else 32, opset=opset)
    g = import_onnx(model)
    before = len(g.nodes)
    simplify(g, evaluate_node, lint=True)
    assert "BatchNormalization" not in ops(g) and "Identity" not in ops(g)
    assert len(g.nodes) <= before
    if name != "vit-tiny":
        assert any("fusion" in n.meta for n in g.nodes)
    same_outputs(model, g, rtol=1e-4)
