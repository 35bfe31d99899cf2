"""Real ONNX files written by other tools' exporters (tests/fixtures/export_*_models.py):
torch.onnx.export and paddle2onnx. Each is valid, ONNX Runtime reproduces the framework's own
outputs, and they carry the features the issues name (HardSwish / HardSigmoid, ConvTranspose +
nearest and bilinear Resize, YOLO's SiLU / Upsample / Concat / reshape-permute head, a symbolic
batch). Each case skips with the reason when its exporter is not installed."""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from tandem.zoo import build_model
from tests.models import (
    EXPORTED_CASES,
    EXPORTERS,
    TORCH_MISSING,
    ModelCase,
    input_specs,
    max_rel_error,
    model_params,
    ort_run,
    random_inputs,
)

needs_torch = pytest.mark.skipif(TORCH_MISSING is not None, reason=str(TORCH_MISSING))

# name -> (opset, {op: minimum count}, {Resize modes}) as each exporter writes them
EXPECTED = {
    "torch-resnet18": (17, {"Conv": 20, "Add": 8, "MaxPool": 1, "Gemm": 1}, set()),
    "torch-mobilenetv3-small": (
        17,
        {"HardSwish": 19, "HardSigmoid": 9, "GlobalAveragePool": 10, "Mul": 9},
        set(),
    ),
    "torch-dbnet-lite": (11, {"ConvTranspose": 2, "Resize": 6, "Shape": 3}, {"nearest", "linear"}),
    "torch-yolo-lite": (
        17,
        {"Sigmoid": 30, "Mul": 30, "MaxPool": 3, "Concat": 5, "Reshape": 4, "Transpose": 2},
        {"nearest"},
    ),
    "torch-yolo-lite-dynamic": (13, {"Shape": 1, "Gather": 1, "Split": 2}, {"nearest"}),
    # paddle2onnx: HardSwish as HardSigmoid * x, unfused BN, conv bias as a separate Add,
    # Identity nodes, Shape/Slice/Concat feeding Resize sizes, batch "DynamicDimension.0"
    "paddle-ocr-det-lite": (
        11,
        {"HardSigmoid": 12, "BatchNormalization": 15, "Identity": 1, "ConvTranspose": 2},
        {"nearest", "linear"},
    ),
    # dynamic batch and height: Im2Seq's reshape from Shape -> Slice -> Mul -> Concat
    "paddle-ocr-rec-lite": (11, {"Conv": 3, "Shape": 1, "Mul": 1, "Concat": 1}, set()),
    # a CRNN recogniser: paddle2onnx writes its 2-layer bidirectional LSTM as two LSTM nodes
    "paddle-ocr-rec-crnn": (11, {"LSTM": 2, "BatchNormalization": 2, "Softmax": 1}, set()),
}


@pytest.mark.parametrize("source", list(EXPORTERS))
def test_export_script_lists_the_models_tests_know(source: str) -> None:
    exporter = EXPORTERS[source]
    if exporter.python is None:
        pytest.skip(exporter.missing)
    proc = subprocess.run(
        [exporter.python, str(exporter.script), "--list"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert tuple(proc.stdout.split()) == exporter.models
    assert set(exporter.models) <= set(EXPECTED)


@pytest.mark.parametrize("case", model_params(EXPORTED_CASES))
def test_export_is_valid_and_ort_matches_torch(
    case: ModelCase, model_file: Callable[[ModelCase], Path]
) -> None:
    path = model_file(case)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    opset, min_ops, resize_modes = EXPECTED[case.name]
    assert model.opset_import[0].version == opset
    if case.source == "torch":
        assert model.producer_name == "pytorch"
    ops = Counter(n.op_type for n in model.graph.node)
    for op, count in min_ops.items():
        assert ops[op] >= count, f"{op}: {ops[op]} < {count}"
    modes = {
        onnx.helper.get_attribute_value(a).decode()
        for n in model.graph.node
        if n.op_type == "Resize"
        for a in n.attribute
        if a.name == "mode"
    }
    assert modes == resize_modes

    # the framework's own outputs for a seeded input were saved beside the model
    reference = np.load(path.with_suffix(".npz"))
    feeds = {name: reference[name] for name in input_specs(path)}
    for name, value in ort_run(path, feeds).items():
        expected = reference[name]
        assert value.shape == expected.shape
        assert np.isfinite(value).all()
        assert max_rel_error(value, expected) < 1e-5, name
        assert value.std() > 1e-3, f"{name} is constant"


@needs_torch
def test_dynamic_batch_export_keeps_a_symbolic_dim(
    model_file: Callable[[ModelCase], Path],
) -> None:
    path = model_file(ModelCase("torch-yolo-lite-dynamic", source="torch"))
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 128, 128]
    assert input_specs(path, symbolic=3)["images"][0] == (3, 3, 128, 128)
    for batch in (1, 3):
        (out,) = ort_run(path, random_inputs(path, symbolic=batch)).values()
        assert out.shape == (batch, 3 * (8 * 8 + 4 * 4), 25)


@needs_torch
@pytest.mark.parametrize(
    ("exported", "zoo", "ops"),
    [
        ("torch-resnet18", "resnet18", ("Conv", "Add", "Relu", "MaxPool", "Gemm")),
        ("torch-mobilenetv3-small", "mobilenetv3-small", ("Conv", "HardSwish", "HardSigmoid")),
    ],
)
def test_zoo_topology_matches_the_torch_export(
    exported: str, zoo: str, ops: tuple[str, ...], model_file: Callable[[ModelCase], Path]
) -> None:
    """The zoo's hand-built graph has the layers torch exports for the same architecture."""
    torch_ops = Counter(
        n.op_type for n in onnx.load(str(model_file(ModelCase(exported, "torch")))).graph.node
    )
    zoo_ops = Counter(n.op_type for n in build_model(zoo, resolution=64).graph.node)
    for op in ops:
        assert zoo_ops[op] == torch_ops[op], op
