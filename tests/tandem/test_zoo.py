"""The model zoo: every model is valid ONNX, runs in ONNX Runtime with sane outputs, and the
``tandem zoo`` command writes what was asked for or fails with a one-line message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tandem import cli
from tandem.zoo import ZOO_MODELS, ZooError, build_model
from tests.models import TEST_RESOLUTION, max_rel_error, ort_run, random_inputs

# name -> (resolution, options, {output: shape at batch 2}). Shapes are worked out by hand from
# each architecture, so a wrong stride or head shows up here, not only in ONNX's own checker.
EXPECTED_OUTPUTS = {
    "resnet18": (64, {}, {"logits": (2, 1000)}),
    "resnet50": (64, {}, {"logits": (2, 1000)}),
    "mobilenetv2": (64, {}, {"logits": (2, 1000)}),
    "mobilenetv3-small": (64, {}, {"logits": (2, 1000)}),
    # 3 anchors x (8x8 + 4x4 + 2x2) cells at 64x64, 85 = 4 box + 1 objectness + 80 classes
    "yolov5s": (64, {}, {"output0": (2, 3 * (64 + 16 + 4), 85)}),
    # maps 4x4 (3 anchors), 2x2, then four 1x1 maps (6 anchors each)
    "ssd-mobilenet": (64, {}, {"scores": (2, 48 + 24 + 4 * 6, 91), "boxes": (2, 96, 4)}),
    "unet-small": (64, {}, {"logits": (2, 3, 64, 64)}),
    "vit-tiny": (64, {"depth": 2}, {"logits": (2, 1000)}),
}

# Ops each model must contain: the features the issues name, so a regression that drops one
# (say, SiLU exported as a single op, or Resize replaced) is caught.
REQUIRED_OPS = {
    "resnet18": {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Gemm"},
    "resnet50": {"Conv", "BatchNormalization", "Relu", "MaxPool", "Add", "Gemm"},
    "mobilenetv2": {"Conv", "BatchNormalization", "Clip", "Add", "GlobalAveragePool", "Gemm"},
    "mobilenetv3-small": {"HardSwish", "HardSigmoid", "GlobalAveragePool", "Mul", "Relu"},
    "yolov5s": {"Sigmoid", "Mul", "MaxPool", "Resize", "Concat", "Reshape", "Transpose", "Split"},
    "ssd-mobilenet": {"Clip", "Transpose", "Reshape", "Concat", "Softmax"},
    "unet-small": {"ConvTranspose", "Concat", "MaxPool", "Relu"},
    "vit-tiny": {"LayerNormalization", "MatMul", "Softmax", "Erf", "Transpose", "Gather"},
}


def test_tables_cover_every_model() -> None:
    assert set(EXPECTED_OUTPUTS) == set(ZOO_MODELS) == set(REQUIRED_OPS)
    for name, spec in ZOO_MODELS.items():
        assert spec.test_resolution % spec.multiple == 0, name
        assert spec.resolution % spec.multiple == 0, name


@pytest.mark.parametrize("name", list(ZOO_MODELS))
def test_model_is_valid_runs_in_ort_and_is_not_degenerate(name: str, tmp_path: Path) -> None:
    resolution, options, expected = EXPECTED_OUTPUTS[name]
    model = build_model(name, batch=2, resolution=resolution, **options)
    onnx.checker.check_model(model, full_check=True)
    assert {n.op_type for n in model.graph.node} >= REQUIRED_OPS[name]
    (inp,) = model.graph.input
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [2, 3, resolution, resolution]

    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    outputs = ort_run(path, random_inputs(path, seed=1))
    assert {k: v.shape for k, v in outputs.items()} == expected
    for out_name, value in outputs.items():
        assert np.isfinite(value).all(), f"{name}:{out_name} has NaN/inf"
        assert value.std() > 1e-3, f"{name}:{out_name} is constant"
        # the two images of the batch differ, so must their outputs (no saturation/collapse)
        assert np.abs(value[0] - value[1]).max() > 1e-3 * np.abs(value).max(), out_name


def test_sigmoid_heads_are_not_saturated() -> None:
    """YOLO's objectness/class scores and SSD's class probabilities stay inside (0, 1)."""
    for name, key, sl in (("yolov5s", "output0", np.s_[..., 4:]), ("ssd-mobilenet", "scores", ...)):
        path_model = build_model(name, resolution=64)
        feeds = {"images" if name == "yolov5s" else "input": _image(64)}
        outputs = _ort_model(path_model, feeds)
        probs = outputs[key][sl]
        assert 0.0 < probs.min() and probs.max() < 1.0
        saturated = np.mean((probs < 1e-4) | (probs > 1 - 1e-4))
        assert saturated < 0.01, f"{name}: {saturated:.1%} of scores saturated"


def test_batchnorm_statistics_are_not_trivial() -> None:
    """Folding BN into a conv must be exercised: running mean != 0 and variance != 1."""
    model = build_model("resnet18", resolution=32)
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    bns = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == 20  # stem + 16 block convs + 3 downsample
    for node in bns:
        mean, var = weights[node.input[3]], weights[node.input[4]]
        assert np.abs(mean).max() > 0.01 and np.abs(var - 1).max() > 0.05, node.name


def test_weights_are_seeded() -> None:
    a = build_model("mobilenetv2", resolution=32, seed=3).SerializeToString()
    b = build_model("mobilenetv2", resolution=32, seed=3).SerializeToString()
    c = build_model("mobilenetv2", resolution=32, seed=4).SerializeToString()
    assert a == b
    assert a != c


def test_parameter_counts_match_the_published_architectures() -> None:
    """Learnable parameters (BN running statistics excluded) vs torchvision / the papers."""
    published = {
        "resnet18": 11_689_512,
        "resnet50": 25_557_032,
        "mobilenetv2": 3_504_872,
        "mobilenetv3-small": 2_542_856,
        "vit-tiny": 5_717_416,
    }
    for name, count in published.items():
        model = build_model(name)  # default resolution: ViT's position embedding depends on it
        stats = {
            name
            for n in model.graph.node
            if n.op_type == "BatchNormalization"
            for name in n.input[3:5]
        }
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if t.name not in stats)
        ints = sum(
            int(np.prod(t.dims))
            for t in model.graph.initializer
            if t.data_type == onnx.TensorProto.INT64 or len(t.dims) == 0
        )
        assert params - ints == count, name


@pytest.mark.parametrize(
    ("name", "options", "native", "decomposed"),
    [
        ("mobilenetv3-small", {}, {"HardSwish"}, set()),
        ("vit-tiny", {"depth": 2}, {"LayerNormalization", "Gelu"}, {"Erf", "ReduceMean"}),
        ("yolov5s", {}, {"Resize", "Split"}, set()),
    ],
)
def test_opsets_11_to_21_compute_the_same_function(
    name: str, options: dict, native: set[str], decomposed: set[str], tmp_path: Path
) -> None:
    """Old opsets spell ops out (HardSwish, LayerNorm, Gelu) or move inputs to attributes; the
    numbers must not change, so the importer sees the same network in every form."""
    resolution = TEST_RESOLUTION[name]
    results = {}
    for opset in (11, 13, 17, 18, 21):
        model = build_model(name, resolution=resolution, opset=opset, **options)
        ops = {n.op_type for n in model.graph.node}
        if opset == 21:
            assert ops >= native
        if opset == 11:
            assert not ops & {"HardSwish", "LayerNormalization", "Gelu"}
            assert ops >= decomposed
        path = tmp_path / f"{opset}.onnx"
        onnx.save(model, str(path))
        results[opset] = ort_run(path, random_inputs(path, seed=2))
    for opset, outputs in results.items():
        for key, value in outputs.items():
            assert max_rel_error(value, results[21][key]) < 1e-5, (opset, key)


# ----- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("resnet", {}, "unknown zoo model 'resnet'; known models: resnet18"),
        ("yolov5s", {"resolution": 100}, "multiple of 32 (its total stride), got 100; try 96"),
        ("unet-small", {"resolution": 72}, "multiple of 16"),
        ("vit-tiny", {"resolution": 200}, "multiple of 16"),
        ("resnet18", {"resolution": 0}, "resolution must be an integer >= 32"),
        ("ssd-mobilenet", {"resolution": 48}, "resolution must be an integer >= 64"),
        ("resnet18", {"batch": 0}, "batch must be a positive integer"),
        ("resnet18", {"opset": 9}, "opset must be between 11 and 21, got 9"),
        ("resnet18", {"opset": 22}, "opset must be between 11 and 21"),
        ("resnet18", {"seed": -1}, "seed must be a non-negative integer"),
        ("resnet18", {"depth": 4}, "takes no option depth (only vit-tiny takes it)"),
        ("vit-tiny", {"depth": 0}, "depth must be a positive integer"),
    ],
)
def test_bad_requests_raise_zoo_error(name: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ZooError) as info:
        build_model(name, **kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# ----- the command -----------------------------------------------------------------------------
@pytest.fixture
def tandem(monkeypatch: pytest.MonkeyPatch):
    """Run ``tandem`` in-process; only the zoo command is registered (others may not exist)."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ["zoo"])
    return cli.main


def test_cli_writes_the_requested_shape(tandem, tmp_path: Path, capsys) -> None:
    out = tmp_path / "r.onnx"
    assert tandem(["zoo", "resnet18", "--batch", "3", "--resolution", "96", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [3, 3, 96, 96]
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [3, 1000]
    assert f"wrote {out}: resnet18, input input [3, 3, 96, 96], opset 17" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == ["r.onnx"]  # no temp file left behind


def test_cli_options_reach_the_model(tandem, tmp_path: Path) -> None:
    out = tmp_path / "v.onnx"
    argv = ["zoo", "vit-tiny", "--resolution", "32", "--depth", "1", "--opset", "20"]
    assert tandem([*argv, "--seed", "5", "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 20
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Gelu"] == 1 and ops["LayerNormalization"] == 3  # 1 block: 2 norms + final
    expected = build_model("vit-tiny", resolution=32, opset=20, seed=5, depth=1)
    assert model.SerializeToString() == expected.SerializeToString()


def test_cli_replaces_an_existing_file(tandem, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    out.write_bytes(b"old")
    assert tandem(["zoo", "unet-small", "--resolution", "32", "-o", str(out)]) == 0
    onnx.checker.check_model(onnx.load(str(out)))


def test_cli_list(tandem, capsys) -> None:
    assert tandem(["zoo", "--list"]) == 0
    text = capsys.readouterr().out
    for name, spec in ZOO_MODELS.items():
        assert any(
            line.startswith(name) and str(spec.resolution) in line for line in text.splitlines()
        )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["zoo", "nope", "-o", "{tmp}/x.onnx"], 1, "tandem: error: unknown zoo model 'nope'"),
        (["zoo", "yolov5s", "--resolution", "100", "-o", "{tmp}/x.onnx"], 1, "multiple of 32"),
        (["zoo", "resnet18", "-o", "{tmp}/missing/x.onnx"], 1, "folder '{tmp}/missing' does not"),
        (["zoo", "resnet18"], 2, "NAME and -o FILE.onnx are required"),
        (["zoo", "resnet18", "--batch", "two", "-o", "{tmp}/x.onnx"], 2, "invalid int value"),
    ],
)
def test_cli_errors_are_one_line(tandem, tmp_path: Path, capsys, argv, code, message) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if code == 2:
        with pytest.raises(SystemExit) as info:
            tandem(argv)
        assert info.value.code == 2
    else:
        assert tandem(argv) == code
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert "Traceback" not in err
    assert not (tmp_path / "x.onnx").exists()


# ----- helpers -------------------------------------------------------------------------------
def _image(resolution: int) -> np.ndarray:
    # a smooth image-like input (a gradient plus noise), not just white noise
    ramp = np.linspace(-1, 1, resolution, dtype=np.float32)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((1, 3, resolution, resolution)).astype(np.float32) * 0.3
    return ramp[None, None, :, None] + ramp[None, None, None, :] + noise


def _ort_model(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))
