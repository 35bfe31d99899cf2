"""Per-layer parameters and FLOPs: hand-computed tables and a known model total."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from partitioner.analysis import layer_flops, layer_summary, summarize
from partitioner.ir import Graph, Shape
from partitioner.onnx_import import import_onnx
from partitioner.shape_inference import infer_shapes
from tandem.zoo import build_model

F = np.float32


def one_layer(op: str, x: Shape, consts: list[np.ndarray], attrs: dict[str, Any]) -> Graph:
    g = Graph("g")
    ins = [g.add_input("x", x)] + [g.add_constant(f"c{i}", c) for i, c in enumerate(consts)]
    n = g.add_node(op, ins, 1, attrs, name="layer")
    g.mark_output(n.outputs[0])
    infer_shapes(g)
    return g


@pytest.mark.parametrize(
    "op,x,consts,attrs,params,flops",
    [
        # out (1,4,8,8); 3*3*3 MACs per output element
        ("Conv", (1, 3, 8, 8), [np.ones((4, 3, 3, 3), F), np.ones(4, F)],
         {"pads": [1, 1, 1, 1]}, 112, 2 * 4 * 64 * 27),
        # depthwise: one 3x3 window per output element
        ("Conv", (1, 8, 8, 8), [np.ones((8, 1, 3, 3), F)], {"group": 8, "strides": [2, 2],
                                                            "pads": [1, 1, 1, 1]},
         72, 2 * 8 * 16 * 9),
        # every input element scatters a 2x2 window to M=2 channels
        ("ConvTranspose", (1, 3, 4, 4), [np.ones((3, 2, 2, 2), F)], {"strides": [2, 2]},
         24, 2 * 48 * 2 * 4),
        ("Gemm", (4, 5), [np.ones((6, 5), F), np.ones(6, F)], {"transB": 1}, 36, 2 * 4 * 6 * 5),
        ("MatMul", (2, 4, 5), [np.ones((5, 3), F)], {}, 15, 2 * 2 * 4 * 3 * 5),
        ("Relu", (1, 3, 8, 8), [], {}, 0, 192),
        ("MaxPool", (1, 3, 8, 8), [], {"kernel_shape": [3, 3], "strides": [2, 2],
                                       "pads": [1, 1, 1, 1]}, 0, 48 * 9),
        ("GlobalAveragePool", (1, 3, 8, 8), [], {}, 0, 192),
        ("Reshape", (1, 3, 8, 8), [np.array([1, -1])], {}, 0, 0),
        ("Add", (1, 3, 8, 8), [np.ones((3, 1, 1), F)], {}, 3, 192),
    ],
)  # fmt: skip
def test_layer_params_and_flops(
    op: str, x: Shape, consts: list[np.ndarray], attrs: dict[str, Any], params: int, flops: int
) -> None:
    (info,) = layer_summary(one_layer(op, x, consts, attrs))
    assert (info.name, info.op, info.params, info.flops) == ("layer", op, params, flops)


def test_unknown_shapes_give_no_flops() -> None:
    g = one_layer("Relu", ("N", 3), [], {})
    assert layer_flops(g.nodes[0]) is None
    assert summarize(g).unknown_flops == 1


def test_resnet18_totals_match_the_published_figures() -> None:
    s = summarize(import_onnx(build_model("resnet18", resolution=224)))
    # torchvision's resnet18 has 11,689,512 parameters; ONNX also stores BatchNorm's running
    # mean and variance (2 x 4,800 channels). 1.82 GMACs at 224x224.
    assert s.total_params == 11_689_512 + 2 * 4_800
    assert 1.80e9 < s.total_flops / 2 < 1.83e9
    assert s.unknown_flops == 0
    assert s.layers[0].output_shapes == [(1, 64, 112, 112)]


def test_shared_constants_count_once_in_the_total() -> None:
    g = Graph("g")
    x = g.add_input("x", (1, 4))
    w = g.add_constant("w", np.ones((4, 4), F))
    a = g.add_node("MatMul", [x, w], 1).outputs[0]
    b = g.add_node("MatMul", [a, w], 1).outputs[0]
    g.mark_output(b)
    infer_shapes(g)
    s = summarize(g)
    assert [layer.params for layer in s.layers] == [16, 16] and s.total_params == 16
