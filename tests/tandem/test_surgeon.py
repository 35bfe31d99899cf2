"""``tandem surgeon`` (issue 7 item 6): an extracted subgraph of a zoo model and a sanitized
model pass ``onnx.checker`` (full check) and match ONNX Runtime on the original model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tandem.cli import main
from tests.models import ort_run, random_inputs, zoo_model_path


def _with_outputs(model: Path, names: list[str], path: Path) -> Path:
    """``model`` with intermediate tensors ``names`` added as graph outputs (ORT computes them
    in the full model: the reference for an extracted piece)."""
    m = onnx.load(str(model))
    for name in names:
        m.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    onnx.save(m, str(path))
    return path


def _check(path: Path) -> onnx.ModelProto:
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def resnet(tmp_path_factory) -> Path:
    return zoo_model_path("resnet18", resolution=64, cache_dir=tmp_path_factory.mktemp("zoo"))


@pytest.mark.parametrize(
    "inputs, outputs",
    [
        (["maxpool", "layer1.0.conv1.relu"], ["layer1.1.relu"]),  # two inputs: a residual cut
        (["layer3.1.relu"], ["logits"]),  # through Flatten/Gemm to the model output
        (["input"], ["layer1.0.relu", "layer2.0.add"]),  # two outputs
    ],
)
def test_extract_matches_the_full_model(resnet, tmp_path, inputs, outputs, capsys):
    sub_path = tmp_path / "sub.onnx"
    assert main(["surgeon", "extract", str(resnet), "--inputs", ",".join(inputs),
                 "--outputs", ",".join(outputs), "-o", str(sub_path)]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    sub = _check(sub_path)
    assert [i.name for i in sub.graph.input] == inputs
    assert [o.name for o in sub.graph.output] == outputs
    for vi in [*sub.graph.input, *sub.graph.output, *sub.graph.value_info]:  # shapes included
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), vi.name
    full = _with_outputs(resnet, [n for n in inputs + outputs if n not in ("input", "logits")],
                         tmp_path / "full.onnx")  # fmt: skip
    feeds = random_inputs(resnet)
    everything = {**feeds, **ort_run(full, feeds)}
    got = ort_run(sub_path, {n: everything[n] for n in inputs})
    for name in outputs:
        np.testing.assert_allclose(got[name], everything[name], rtol=1e-5, atol=1e-5)


def _messy_model(path: Path) -> Path:
    """Symbolic N/H/W, a Shape->Gather->Concat->Reshape chain, Identity, Conv+BN, a dead branch."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype("f4"), "w"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype("f4"), "gamma"),
        numpy_helper.from_array(rng.standard_normal(8).astype("f4"), "beta"),
        numpy_helper.from_array(rng.standard_normal(8).astype("f4") * 0.1, "mean"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 8).astype("f4"), "var"),
        numpy_helper.from_array(np.array([0], "i8"), "zero"),
        numpy_helper.from_array(np.array([-1], "i8"), "minus_one"),
        numpy_helper.from_array(np.array(2.0, "f4"), "two"),
    ]
    nodes = [
        helper.make_node("Identity", ["x"], ["x_id"], name="id"),
        helper.make_node("Conv", ["x_id", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["bn"], name="bn"
        ),  # fmt: skip
        helper.make_node("Relu", ["bn"], ["r"], name="relu"),
        helper.make_node("Shape", ["r"], ["shape"], name="shape"),
        helper.make_node("Gather", ["shape", "zero"], ["n"], name="batch", axis=0),
        helper.make_node("Concat", ["n", "minus_one"], ["target"], name="target", axis=0),
        helper.make_node("Reshape", ["r", "target"], ["flat"], name="flatten"),
        helper.make_node("Mul", ["flat", "two"], ["y"], name="scale"),
        helper.make_node("Sigmoid", ["r"], ["unused"], name="dead"),
    ]
    graph = helper.make_graph(
        nodes,
        "messy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", None])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_sanitize_folds_fixes_shapes_and_matches(tmp_path, capsys):
    original = _messy_model(tmp_path / "messy.onnx")
    out = tmp_path / "clean.onnx"
    assert main(["surgeon", "sanitize", str(original), "--shapes", "x:2x3x16x16",
                 "-o", str(out)]) == 0  # fmt: skip
    assert "10 -> 4 layers" in capsys.readouterr().out
    clean = _check(out)
    # Identity, BN (into the Conv), the Shape->Gather->Concat chain and the dead Sigmoid are gone
    assert [n.op_type for n in clean.graph.node] == ["Conv", "Relu", "Reshape", "Mul"]
    for vi in [*clean.graph.input, *clean.graph.output, *clean.graph.value_info]:
        assert all(d.HasField("dim_value") for d in vi.type.tensor_type.shape.dim), vi.name
    assert [d.dim_value for d in clean.graph.output[0].type.tensor_type.shape.dim] == [2, 2048]
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype("f4")
    want, got = ort_run(original, {"x": x})["y"], ort_run(out, {"x": x})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sanitize_zoo_model_matches_the_original(resnet, tmp_path):
    out = tmp_path / "clean.onnx"
    assert main(["surgeon", "sanitize", str(resnet), "-o", str(out)]) == 0
    clean = _check(out)
    assert "BatchNormalization" not in {n.op_type for n in clean.graph.node}
    feeds = random_inputs(resnet)
    want, got = ort_run(resnet, feeds), ort_run(out, feeds)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


def _opset(model: Path | onnx.ModelProto) -> int:
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


@pytest.mark.parametrize("action", ["sanitize", "extract"])
def test_surgeon_keeps_the_input_opset_unless_asked(resnet, tmp_path, action, capsys):
    """An opset-17 model stays opset 17 (a runtime that accepts 17 may refuse 21); --opset
    moves it, and the written model says which it is."""
    assert _opset(resnet) == 17
    kept, moved = tmp_path / "kept.onnx", tmp_path / "moved.onnx"
    assert main(["surgeon", action, str(resnet), "-o", str(kept)]) == 0
    assert "opset 17" in capsys.readouterr().out
    assert main(["surgeon", action, str(resnet), "--opset", "21", "-o", str(moved)]) == 0
    assert "opset 21" in capsys.readouterr().out
    assert (_opset(_check(kept)), _opset(_check(moved))) == (17, 21)
    feeds = random_inputs(resnet)
    want = ort_run(resnet, feeds)
    for got in (ort_run(kept, feeds), ort_run(moved, feeds)):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--inputs", "maxpol", "--outputs", "layer1.1.relu"],
         "has no tensor named 'maxpol'; similar names: maxpool"),
        (["--inputs", "layer1.0.conv1.relu", "--outputs", "layer1.1.relu"],
         "depend on 'input', which is not among the given inputs"),
    ],
)  # fmt: skip
def test_extract_errors_name_the_tensor_and_write_nothing(resnet, tmp_path, argv, message, capsys):
    out = tmp_path / "never.onnx"
    capsys.readouterr()
    assert main(["surgeon", "extract", str(resnet), *argv, "-o", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never.onnx.*"))


def test_sanitize_rejects_a_bad_shape(tmp_path, capsys):
    original = _messy_model(tmp_path / "messy.onnx")
    out = tmp_path / "never.onnx"
    assert main(["surgeon", "sanitize", str(original), "--shapes", "x:2x4x16x16",
                 "-o", str(out)]) == 1  # fmt: skip
    assert "input 'x' fixes dim 1 to 3" in capsys.readouterr().err
    assert not out.exists()
