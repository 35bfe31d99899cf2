"""Small ONNX models of the kinds real trtexec command lines name (``test_exec_trtexec_lines``):
the DLA tutorial's ModelBN and a conv-only network the DLA runs whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def model_bn(path: Path) -> None:
    """The DLA tutorial's ModelBN for CIFAR10 (4 x conv/BN/ReLU, global pool, linear) with its
    exported dynamic batch axis ``batch_size``."""
    rng = np.random.default_rng(2)
    inits, nodes, x = [], [], "input"
    for k, (cin, cout) in enumerate(((3, 64), (64, 128), (128, 256), (256, 512))):
        w = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
        bn = [np.ones(cout), np.zeros(cout), rng.normal(0, 0.1, cout), np.ones(cout)]
        names = [f"w{k}", f"g{k}", f"b{k}", f"m{k}", f"v{k}"]
        for name, value in zip(names, [w, *bn]):
            inits.append(onnx.numpy_helper.from_array(value.astype(np.float32), name))
        nodes += [
            helper.make_node(
                "Conv",
                [x, names[0]],
                [f"c{k}"],
                name=f"Conv_{k}",
                strides=[2, 2],
                pads=[1, 1, 1, 1],
            ),
            helper.make_node(
                "BatchNormalization",
                [f"c{k}", *names[1:]],
                [f"n{k}"],
                name=f"BatchNormalization_{k}",
            ),
            helper.make_node("Relu", [f"n{k}"], [f"r{k}"], name=f"Relu_{k}"),
        ]
        x = f"r{k}"
    inits += [
        onnx.numpy_helper.from_array(rng.normal(0, 0.05, (10, 512)).astype(np.float32), "fw"),
        onnx.numpy_helper.from_array(np.zeros(10, np.float32), "fb"),
    ]
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["p"], name="GlobalAveragePool_8"),
        helper.make_node("Flatten", ["p"], ["f"], name="Flatten_9"),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["output"], name="Gemm_15", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "model_bn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 3, 32, 32])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch_size", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def conv_model(path: Path) -> None:
    """A conv-only network every layer of which the DLA runs (cuDLA-samples' trimmed YOLOv5)."""
    rng = np.random.default_rng(1)
    inits = [
        onnx.numpy_helper.from_array(rng.normal(0, 0.2, (16, 3, 3, 3)).astype(np.float32), "w1"),
        onnx.numpy_helper.from_array(rng.normal(0, 0.1, (16, 16, 3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["images", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["out"], name="conv2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 16, 16, 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
