"""``gpu_kernels.lowering.supports`` says ok exactly when lowering the node succeeds, and a
refusal names what it refuses (the attribute, input or output)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto

from gpu_kernels.lowering import GpuLoweringError, lower, supports
from partitioner.ir import Graph
from partitioner.subgraph import extract_subgraph
from tandem.zoo import ZOO_MODELS, build_model
from tests.devices.gpu_cases import Case, build, cases, graph_of
from tests.devices.int8_cases import qdq_model

# (precision, arch): FP32 / FP16 / INT8 with tensor cores (Orin), FP16 / INT8 without (Xavier)
SETTINGS = (("fp32", 87), ("fp16", 87), ("int8", 87), ("fp16", 72), ("int8", 72))
SMALL = {"yolov5s": 64, "ssd-mobilenet": 64}  # the rest at 32, the smallest they take


def _lowers(graph: Graph, precision: str, arch: int) -> str | None:
    """None when ``graph`` lowers, else the lowering's error."""
    scales = {name: 0.05 for name in graph.tensors} if precision == "int8" else None
    try:
        lower(graph, precision, arch=arch, scales=scales)
    except GpuLoweringError as err:
        return str(err)
    return None


def _disagreements(graph: Graph) -> list[str]:
    """Every (node, precision, arch) of ``graph`` where supports() and lowering the node on its
    own disagree."""
    out = []
    for node in graph.topological_order():
        alone = extract_subgraph(graph, [node.name], node.name)
        for precision, arch in SETTINGS:
            # asked of the node as the lowering sees it: alone, its outputs read by nobody
            verdict = supports(alone.node(node.name), arch, precision)
            error = _lowers(alone, precision, arch)
            if verdict.ok != (error is None):
                out.append(f"{node.name} ({node.op}) {precision} sm_{arch}: supports says "
                           f"{verdict}, lowering says {error or 'ok'}")
    return out


@pytest.mark.parametrize("model", sorted(ZOO_MODELS))
def test_supports_agrees_with_lowering_on_every_zoo_node(model: str) -> None:
    graph = graph_of(build_model(model, 1, SMALL.get(model, 32)))
    found = _disagreements(graph)
    assert not found, "\n".join(found)


def test_supports_agrees_with_lowering_on_the_op_cases() -> None:
    graphs = [graph_of(build(case)) for case in cases()]
    graphs += [graph_of(qdq_model(TensorProto.INT8)), graph_of(qdq_model(TensorProto.UINT8))]
    found = [d for g in graphs for d in _disagreements(g)]
    assert not found, "\n".join(found)


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


X4 = {"x": (1, 8, 6, 6)}
# name: (the layer, what the refusal must name)
REFUSED = {
    "conv_runtime_weights": (Case("c", "Conv", {"x": (1, 4, 6, 6), "w": (4, 4, 3, 3)}),
                             "constant weights"),
    "conv_runtime_bias": (Case("c", "Conv", {"x": (1, 4, 6, 6), "b": (4,)}, {"w": _w(4, 4, 1, 1)},
                               input_order=["x", "w", "b"]), "bias"),
    "deconv_runtime_bias": (Case("d", "ConvTranspose", {"x": (1, 4, 6, 6), "b": (2,)},
                                 {"w": _w(4, 2, 2, 2)}, {"strides": [2, 2]}, ["x", "w", "b"]),
                            "bias"),
    "gemm_runtime_b": (Case("g", "Gemm", {"a": (3, 5), "b": (5, 4)}), "B must"),
    "gemm_c_per_row": (Case("g", "Gemm", {"a": (3, 5)}, {"b": _w(5, 4), "c": _w(3, 1)}),
                       "C must broadcast"),
    "matmul_1d": (Case("m", "MatMul", {"a": (5,), "b": (5, 4)}), "1-D operands"),
    "layernorm_runtime_scale": (Case("n", "LayerNormalization", {"x": (3, 7, 5), "g": (5,)}),
                                "run-time scale"),
    "reducesum_runtime_axes": (Case("r", "ReduceSum", {"x": (3, 7, 5), "ax": (1,)}),
                               "run-time axes"),
    "resize_cubic": (Case("r", "Resize", X4, {"scales": np.array([1, 1, 2, 2], np.float32)},
                          {"mode": "cubic"}, ["x", "", "scales"]), "mode 'cubic'"),
    "resize_transform": (Case("r", "Resize", X4, {"scales": np.array([1, 1, 2, 2], np.float32)},
                              {"coordinate_transformation_mode": "half_pixel_symmetric"},
                              ["x", "", "scales"]), "coordinate_transformation_mode"),
    "resize_channels": (Case("r", "Resize", X4, {"scales": np.array([1, 2, 1, 1], np.float32)},
                             {}, ["x", "", "scales"]), "only H/W"),
    "cast_to_int": (Case("c", "Cast", X4, attrs={"to": TensorProto.INT64}), "to=7"),
    "slice_runtime_starts": (Case("s", "Slice", {"x": (4, 6), "st": (1,)},
                                  {"en": np.array([3], np.int64)}), "starts"),
    "clip_runtime_min": (Case("c", "Clip", {"x": (4, 6), "lo": ()}), "min / max"),
    "batchnorm_training": (Case("b", "BatchNormalization", X4,
                                {n: _w(8) ** 2 for n in ("s", "bb", "m", "v")},
                                {"training_mode": 1}), "training_mode"),
    "maxpool_1d": (Case("p", "MaxPool", {"x": (1, 4, 8)}, attrs={"kernel_shape": [2]}),
                   "kernel_shape"),
    "no_kernel": (Case("t", "ArgMax", {"x": (4, 6)}), "ArgMax has no GPU kernel"),
    "pad_runtime_pads": (Case("p", "Pad", {"x": (2, 3), "pads": (4,)}), "run-time pads"),
    "instancenorm_runtime_scale": (Case("n", "InstanceNormalization",
                                        {"x": (1, 4, 3, 3), "s": (4,)}, {"b": _w(4)}),
                                   "run-time scale"),
    "mod_float_fmod0": (Case("m", "Mod", {"x": (4, 6)}, {"d": np.array(0.7, np.float32)}),
                        "fmod=0"),
    "where_int_values": (Case("w", "Where", {"x": (4,)}, {
        "c": np.array([True, False, True, True]), "y": np.arange(4, dtype=np.int64)},
        input_order=["c", "x", "y"]), "non-float"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_refusal_names_what_it_refuses_and_lowering_raises_it(case: str) -> None:
    layer, named = REFUSED[case]
    graph = graph_of(build(layer))
    verdict = supports(graph.node(layer.name), 87, "fp16")
    assert not verdict.ok and named in verdict.reason, verdict
    with pytest.raises(GpuLoweringError, match=f"'{layer.name}'") as err:
        lower(graph, "fp16", arch=87)
    assert verdict.reason in str(err.value)


def test_quantize_with_a_uint8_zero_point_is_refused() -> None:
    graph = graph_of(qdq_model(TensorProto.UINT8))
    verdict = supports(graph.node("q"), 90, "fp16")
    assert not verdict.ok and "zero point 0" in verdict.reason


def test_an_unknown_precision_is_refused() -> None:
    graph = graph_of(build(cases()[0]))
    verdict = supports(graph.nodes[0], 87, "int4")
    assert not verdict.ok and "'int4'" in verdict.reason
