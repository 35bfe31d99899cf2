"""Peak activation bytes from shapes alone: tiny graphs with their expected peaks, and zoo models
against what the numpy interpreter actually held when it ran them."""

from __future__ import annotations

import numpy as np
import pytest

from devices.cpu import CpuRunner
from devices.io import random_inputs
from partitioner.footprint import Step, estimate, graph_footprint
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.shape_inference import infer_shapes
from tandem.zoo import build_model


def chain() -> Graph:
    """x (64 B) -> relu -> a (64 B) -> neg -> b -> Concat(b, b) -> y (128 B)."""
    g = Graph("chain")
    x = g.add_input("x", (4, 4), "float32")
    a = g.add_node("Relu", [x], 1, name="relu").outputs[0]
    b = g.add_node("Neg", [a], 1, name="neg").outputs[0]
    y = g.add_node("Concat", [b, b], 1, {"axis": 0}, name="cat").outputs[0]
    g.mark_output(y)
    infer_shapes(g)
    return g


def test_chain_peak_holds_feeds_and_frees_after_last_reader() -> None:
    fp = graph_footprint(chain())
    # at 'cat': x (held by the caller) + b (read by cat) + y; a was freed after 'neg'
    assert (fp.peak_bytes, fp.at_layer) == (64 + 64 + 128, "cat")
    graph_output = chain().outputs[0].name
    assert (fp.largest, fp.largest_bytes, fp.largest_shape) == (graph_output, 128, (8, 4))
    assert fp.output_bytes == 128 and fp.unknown == ()


STEPS = [
    # (steps, sizes, inputs, keep, expected peak, layer at the peak)
    ([Step("a", ("x",), ("t",)), Step("b", ("t",), ("y",))], {"x": 10, "t": 100, "y": 1},
     ["x"], {"y"}, 111, "b"),
    # an output nobody reads is freed at once, but counts while its layer runs
    ([Step("a", ("x",), ("t", "unused")), Step("b", ("t",), ("y",))],
     {"x": 10, "t": 100, "unused": 500, "y": 1}, ["x"], {"y"}, 610, "a"),
    # kept tensors (plan boundaries) stay to the end
    ([Step("a", ("x",), ("t",)), Step("b", ("t",), ("u",)), Step("c", ("u",), ("y",))],
     {"x": 1, "t": 100, "u": 100, "y": 100}, ["x"], {"t", "y"}, 301, "c"),
]  # fmt: skip


@pytest.mark.parametrize("steps, sizes, inputs, keep, peak, at", STEPS)
def test_step_table(steps, sizes, inputs, keep, peak, at) -> None:
    tensors = {name: ((size,), "uint8") for name, size in sizes.items()}
    fp = estimate(steps, tensors, inputs, keep)
    assert (fp.peak_bytes, fp.at_layer) == (peak, at)


def test_unknown_dims_are_listed_not_counted() -> None:
    tensors = {"x": ((4,), "float32"), "t": (("n", 4), "float32"), "y": (None, "float32")}
    fp = estimate([Step("a", ("x",), ("t",)), Step("b", ("t",), ("y",))], tensors, ["x"], {"y"})
    assert fp.peak_bytes == 16 and set(fp.unknown) == {"t", "y"}


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "yolov5s"])
def test_zoo_estimate_brackets_what_the_interpreter_held(name: str) -> None:
    graph = import_onnx(build_model(name, batch=1, resolution=64))
    feeds = random_inputs(graph)
    with CpuRunner(graph, threads=1) as runner:
        runner.infer(feeds)
    fp = graph_footprint(graph)
    held = sum(a.nbytes for a in feeds.values())
    # the interpreter frees feeds after their last reader; the estimate keeps them (the caller
    # holds them), otherwise both walk the same order with the same frees
    assert runner.peak_bytes <= fp.peak_bytes <= runner.peak_bytes + held
    assert fp.unknown == ()


def test_symbolic_batch_is_bound_from_the_input_shapes() -> None:
    model = build_model("resnet18", batch=1, resolution=64)
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph = import_onnx(model)
    assert graph_footprint(graph).unknown  # batch unbound: sizes unknown
    one = graph_footprint(graph, {"input": (1, 3, 64, 64)})
    four = graph_footprint(graph, {"input": (4, 3, 64, 64)})
    assert four.peak_bytes == 4 * one.peak_bytes
    assert four.largest_shape is not None and four.largest_shape[0] == 4
    np.testing.assert_equal(four.unknown, ())
