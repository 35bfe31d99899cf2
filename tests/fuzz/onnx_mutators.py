"""Mutations of an ONNX model at the protobuf level: each edits one field the way a broken
exporter or a hostile file would, and the result is serialised without any validation.

``op(rng, model, case_dir) -> name`` edits ``model`` (a private copy) in place; ``bytes_level``
works on the serialised bytes instead. The seed is a zoo ResNet-18: Conv/Relu/MaxPool/Add/
GlobalAveragePool/Flatten/Gemm, one input ``[1, 3, 32, 32]``.
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper

Mutation = Callable[[random.Random, onnx.ModelProto, Path], str]

HUGE_DIMS = [-1, -7, 0, 10**12, 2**62, 2**63 - 1]
BAD_INTS = [-1, 0, -(2**31), 2**40, 2**63 - 1]
RESIZE_SCALES = [0.0, -1.0, -2.0, 1e30, math.nan, math.inf, 2000.0, 1e-9]


def _node(rng: random.Random, model: onnx.ModelProto, op: str | None = None) -> onnx.NodeProto:
    nodes = [n for n in model.graph.node if op is None or n.op_type == op]
    return rng.choice(nodes or list(model.graph.node))


def input_dim(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dim = dims[rng.randrange(len(dims))]
    if rng.random() < 0.2:
        dim.dim_param = rng.choice(["", "\u202e", "n" * 10_000])
        return "input-dim-param"
    dim.dim_value = rng.choice(HUGE_DIMS)
    return "input-dim"


def initializer_dims(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    init = rng.choice(list(model.graph.initializer))
    new = rng.choice([[10**9], [-1, *init.dims[1:]], [0], [*init.dims, 2], [2**31] * 4])
    del init.dims[:]
    init.dims.extend(new)
    return "initializer-dims"


def initializer_dtype(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    init = rng.choice(list(model.graph.initializer))
    init.data_type = rng.choice([TensorProto.INT64, TensorProto.STRING, TensorProto.BOOL,
                                 TensorProto.BFLOAT16, TensorProto.UNDEFINED, 999])  # fmt: skip
    return "initializer-dtype"


def input_dtype(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    model.graph.input[0].type.tensor_type.elem_type = rng.choice(
        [0, TensorProto.UINT8, TensorProto.INT64, TensorProto.STRING, TensorProto.BOOL,
         TensorProto.BFLOAT16, TensorProto.FLOAT16, TensorProto.COMPLEX64, 999]
    )  # fmt: skip
    return "input-dtype"


def constant_mismatch(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    """An initializer becomes a Constant node whose dims promise far more than its data."""
    init = rng.choice(list(model.graph.initializer))
    model.graph.initializer.remove(init)
    value = TensorProto(name=init.name, data_type=TensorProto.FLOAT)
    value.dims.extend(rng.choice([[10**9], [10**6, 10**6], [-3], [4, 4]]))
    value.raw_data = b"\0" * 16
    node = helper.make_node("Constant", [], [init.name], name="fuzz_constant", value=value)
    model.graph.node.insert(0, node)
    return "constant-mismatch"


def attr_range(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    node = _node(rng, model, rng.choice(["Conv", "MaxPool", "Gemm", "Flatten"]))
    attrs = [a for a in node.attribute if a.type in (AttributeProto.INT, AttributeProto.INTS)]
    if not attrs:
        node.attribute.append(helper.make_attribute("group", rng.choice(BAD_INTS)))
        return f"attr-{node.op_type}-group"
    attr = rng.choice(attrs)
    if attr.type == AttributeProto.INT:
        attr.i = rng.choice(BAD_INTS)
    elif attr.ints:
        attr.ints[rng.randrange(len(attr.ints))] = rng.choice(BAD_INTS)
    return f"attr-{node.op_type}-{attr.name}"


def negative_pads(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    node = _node(rng, model, rng.choice(["Conv", "MaxPool"]))
    for attr in list(node.attribute):
        if attr.name == "pads":
            node.attribute.remove(attr)
    node.attribute.append(helper.make_attribute("pads", [-rng.randint(1, 9)] * 4))
    return f"negative-pads-{node.op_type}"


def attr_type(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    node = _node(rng, model, rng.choice(["Conv", "MaxPool", "Gemm"]))
    if node.attribute and rng.random() < 0.7:
        attr = rng.choice(list(node.attribute))
        node.attribute.remove(attr)
        if rng.random() < 0.5:
            return f"attr-removed-{node.op_type}-{attr.name}"
        node.attribute.append(helper.make_attribute(attr.name, rng.choice(["x", 1.5, [0.5]])))
        return f"attr-type-{node.op_type}-{attr.name}"
    node.attribute.append(helper.make_attribute("no_such_attr", 1))
    return f"attr-unknown-{node.op_type}"


def dangling(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    node = _node(rng, model)
    how = rng.choice(["missing", "empty", "no-inputs", "self-cycle", "duplicate-output", "drop"])
    if how == "missing" and node.input:
        node.input[rng.randrange(len(node.input))] = "fuzz_no_such_tensor"
    elif how == "empty" and node.input:
        node.input[0] = ""
    elif how == "no-inputs":
        del node.input[:]
    elif how == "self-cycle" and node.input:
        node.input[0] = node.output[0]
    elif how == "duplicate-output":
        other = _node(rng, model)
        other.output[0] = node.output[0]
    elif how == "drop":
        model.graph.node.remove(node)
    return f"dangling-{how}"


def graph_io(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    how = rng.choice(["output-missing", "no-outputs", "no-nodes", "input-empty-name"])
    if how == "output-missing":
        model.graph.output[0].name = "fuzz_no_such_output"
    elif how == "no-outputs":
        del model.graph.output[:]
    elif how == "no-nodes":
        del model.graph.node[:]
    else:
        old = model.graph.input[0].name
        model.graph.input[0].name = ""
        for node in model.graph.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = ""
    return f"graph-{how}"


def resize(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    """A Resize right after the input: the network ends in global pooling, so any spatial size
    is a valid model, and the scales decide what it costs."""
    source = model.graph.input[0].name
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == source:
                node.input[i] = "fuzz_resized"
    if rng.random() < 0.75:
        s = rng.choice(RESIZE_SCALES)
        scales = np.array([1, 1, s, s if rng.random() < 0.7 else 1.0], np.float32)
        consts = [numpy_helper.from_array(scales, "fuzz_scales")]
        inputs = [source, "", "fuzz_scales"]
        what = f"scales-{s:g}"
    else:
        h = rng.choice([0, -5, 10**9, 2**40, 64])
        consts = [numpy_helper.from_array(np.array([1, 3, h, h], np.int64), "fuzz_sizes")]
        inputs = [source, "", "", "fuzz_sizes"]
        what = f"sizes-{h}"
    mode = rng.choice(["nearest", "linear", "cubic"])
    model.graph.initializer.extend(consts)
    model.graph.node.insert(0, helper.make_node("Resize", inputs, ["fuzz_resized"], mode=mode))
    return f"resize-{what}"


def opset(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    how = rng.choice(["version", "domain", "none", "ir"])
    if how == "version":
        model.opset_import[0].version = rng.choice([0, 1, 6, 22, 99, 2**40])
    elif how == "domain":
        model.opset_import[0].domain = "com.fuzz"
    elif how == "none":
        del model.opset_import[:]
    else:
        model.ir_version = rng.choice([0, 1, 99, -1])
    return f"opset-{how}"


def op_type(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    node = _node(rng, model)
    if rng.random() < 0.2:
        node.domain = "com.fuzz"
        return "op-domain"
    node.op_type = rng.choice(["NoSuchOp", "Loop", "If", "Scan", "Conv", "", "Relu", "Gemm"])
    return f"op-type-{node.op_type or 'empty'}"


def external_data(rng: random.Random, model: onnx.ModelProto, case_dir: Path) -> str:
    """A weight that points outside the model's folder: must be refused, never read."""
    init = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    location = rng.choice(
        ["../../../etc/passwd", "/etc/passwd", "/dev/zero", "missing.bin", "link.bin", "w.bin"]
    )
    if location == "link.bin" and not (case_dir / "link.bin").is_symlink():
        os.symlink("/etc/shadow", case_dir / "link.bin")
    elif location == "w.bin":
        (case_dir / "w.bin").write_bytes(b"\0" * 64)
    init.ClearField("raw_data")
    init.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if location == "w.bin":
        entries.update(offset=str(rng.choice([-1, 2**62, 0])), length=str(2**40))
    for key, value in entries.items():
        init.external_data.add(key=key, value=value)
    return f"external-{location}"


def name_bytes(rng: random.Random, model: onnx.ModelProto, _: Path) -> str:
    """A layer name that is not valid UTF-8 (protobuf does not check proto2 strings): the bytes
    are patched into the serialised model by :func:`serialise`."""
    _node(rng, model).name = NAME_SENTINEL.decode()
    return "name-not-utf8"


NAME_SENTINEL = b"FUZZ_NAME_SENTINEL"
_NAME_BYTES = [b"\xed\xa0\x80" * 6, b"\xff" * 18, b"\xc3(" * 9]  # a surrogate, 0xff, cut UTF-8


def serialise(rng: random.Random, model: onnx.ModelProto) -> bytes:
    data = model.SerializeToString()
    if NAME_SENTINEL in data:
        data = data.replace(NAME_SENTINEL, rng.choice(_NAME_BYTES))  # same length: lengths hold
    return data


def bytes_level(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    """Flips and cuts in the first 64 KiB, where the graph's nodes are serialised."""
    buf = bytearray(data)
    how = rng.choice(["flip", "truncate", "insert"])
    if how == "truncate":
        return "bytes-truncate", bytes(buf[: rng.randrange(min(len(buf), 1 << 16))])
    for _ in range(rng.randint(1, 16)):
        pos = rng.randrange(min(len(buf), 1 << 16))
        if how == "flip":
            buf[pos] ^= rng.randint(1, 255)
        else:
            buf[pos:pos] = bytes([rng.randint(0, 255)])
    return f"bytes-{how}", bytes(buf)


# The classes seen failing in issue 16 first, so that a short run (CI's) tries each of them.
STRUCTURAL: list[Mutation] = [
    input_dim, constant_mismatch, resize, negative_pads, dangling, name_bytes, graph_io,
    initializer_dims, resize, initializer_dtype, input_dtype, attr_range, attr_type, opset,
    op_type, external_data,
]  # fmt: skip


def mutate(rng: random.Random, seed: bytes, case_dir: Path, index: int) -> tuple[str, bytes]:
    """Mutant ``index`` of the seed: the structural mutations in turn, a byte-level one after
    each round; an occasional second structural edit on top."""
    if index % (len(STRUCTURAL) + 1) == len(STRUCTURAL):
        return bytes_level(rng, seed)
    model = onnx.ModelProto()
    model.ParseFromString(seed)
    name = STRUCTURAL[index % (len(STRUCTURAL) + 1)](rng, model, case_dir)
    if rng.random() < 0.15:
        name += "+" + rng.choice(STRUCTURAL)(rng, model, case_dir)
    return name, serialise(rng, model)
