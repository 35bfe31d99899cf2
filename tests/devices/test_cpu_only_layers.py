"""Layers only the CPU reference runs: training-time outputs and narrow element types.

The importer keeps Dropout's mask, MaxPool's Indices, BatchNormalization's training mode and
bfloat16 / float8 / int4 tensors (the ONNX node tests exercise them); the GPU and DLA support
tables must refuse them with a reason, the partitioner must then place them on the CPU, and the
GPU lowering must refuse them with its own clear error rather than compute something else.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from devices.capability import capabilities_for
from devices.cost import transition_cost_for
from devices.support import dla_table, evaluate, gpu_table
from gpu_kernels.lowering import GpuLoweringError, lower
from partitioner.assign import partition
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from targets.catalog import load_target

C = 4
_STATS = [numpy_helper.from_array(np.full(C, v, np.float32), n)
          for n, v in (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0))]  # fmt: skip

# name: (the layer under test, extra graph outputs with their element types, initializers,
#        the support reason, the GPU lowering error)
CASES = {
    "dropout_mask": (
        helper.make_node("Dropout", ["a"], ["l", "mask"]), [("mask", TP.BOOL)], [],
        "Dropout's mask output", "mask output unsupported",
    ),
    "maxpool_indices": (
        helper.make_node("MaxPool", ["a"], ["l", "idx"], kernel_shape=[2, 2], strides=[2, 2]),
        [("idx", TP.INT64)], [], "MaxPool's Indices output", "Indices output unsupported",
    ),
    "batchnorm_training": (
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["l", "rm", "rv"],
                         training_mode=1),
        [("rm", TP.FLOAT), ("rv", TP.FLOAT)], _STATS,
        "BatchNormalization in training mode", "training mode",
    ),
    "batchnorm_training_y_only": (
        helper.make_node("BatchNormalization", ["a", "s", "b", "m", "v"], ["l"], training_mode=1),
        [], _STATS, "BatchNormalization in training mode", "training mode",
    ),
}  # fmt: skip


def _model(case: str) -> onnx.ModelProto:
    """Relu -> the layer -> Relu, the layer's extra outputs as graph outputs."""
    layer, extra, inits, _, _ = CASES[case]
    layer = onnx.NodeProto.FromString(layer.SerializeToString())
    layer.name = "layer"
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="pre"), layer,
             helper.make_node("Relu", ["l"], ["y"], name="post")]  # fmt: skip
    outs = [helper.make_tensor_value_info("y", TP.FLOAT, None)]
    outs += [helper.make_tensor_value_info(n, t, None) for n, t in extra]
    x = helper.make_tensor_value_info("x", TP.FLOAT, [1, C, 8, 8])
    graph = helper.make_graph(nodes, "m", [x], outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("case", sorted(CASES))
def test_support_tables_refuse_with_a_reason(case: str) -> None:
    g = import_onnx(_model(case))
    layer = g.node("layer")
    want = CASES[case][3]
    for table, precision in ((gpu_table(), "fp16"), (dla_table(2), "fp16"), (dla_table(1), "int8")):
        result = evaluate(table, layer, g, precision)
        assert not result.ok and want in result.detail, (table.label, result)


@pytest.mark.parametrize("case", sorted(CASES))
def test_partition_places_the_layer_on_the_cpu(case: str) -> None:
    g = import_onnx(_model(case))
    spec = load_target("orin-agx-64gb")
    placed = partition(g, capabilities_for(spec), None, transition_cost_for(spec))
    assert placed.assignments["layer"].device == "cpu"
    assert CASES[case][3] in placed.assignments["layer"].reason
    assert {placed.assignments[n].device for n in ("pre", "post")} != {"cpu"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_gpu_lowering_refuses_clearly(case: str) -> None:
    with pytest.raises(GpuLoweringError, match=rf"'layer'.*{CASES[case][4]}"):
        lower(import_onnx(_model(case)), "fp16")


@pytest.mark.parametrize("to", [TP.BFLOAT16, TP.FLOAT8E4M3FN, TP.INT4])
def test_narrow_element_types_stay_on_the_cpu(to: int) -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="pre"),
             helper.make_node("Cast", ["a"], ["b"], to=to, name="down"),
             helper.make_node("Cast", ["b"], ["c"], to=TP.FLOAT, name="up"),
             helper.make_node("Relu", ["c"], ["y"], name="post")]  # fmt: skip
    graph = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TP.FLOAT, [1, C])],
                              [helper.make_tensor_value_info("y", TP.FLOAT, None)])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    model.ir_version = 9
    g = import_onnx(model)
    spec = load_target("orin-agx-64gb")
    placed = partition(g, capabilities_for(spec), None, transition_cost_for(spec))
    name = onnx.helper.tensor_dtype_to_np_dtype(to).name
    for layer in ("down", "up"):
        assert placed.assignments[layer].device == "cpu"
        assert f"on a {name} tensor" in placed.assignments[layer].reason


def test_cpu_only_layers_keep_the_graph_valid() -> None:
    """Nothing in the IR breaks on them: lint passes, every output has a shape and dtype."""
    for case in CASES:
        g: Graph = import_onnx(_model(case))
        g.lint()
        for t in g.outputs:
            assert t.shape is not None and t.dtype is not None, (case, t.name)
