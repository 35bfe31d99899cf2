"""Dynamic shapes: optimisation profiles at build time, in the plan, and at run time.

Models get symbolic input dims by editing an exported zoo model's input ``dim_param`` (the
weights and ops are unchanged), then run against ONNX Runtime at several shapes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from devices.cost import gpu_kernel_seconds
from devices.io import run_onnxruntime
from devices.plan import decode_plan, encode_plan
from devices.runtime import PlanRunner
from partitioner.errors import InputError, ShapeError
from partitioner.ir import Graph
from partitioner.profiles import (
    OptimizationProfile,
    check_shape,
    fixed_dims,
    parse_shape_list,
)
from targets.build import build_plan, place, resolve_policy, resolve_target
from tests.models import exported_model_path, zoo_model_path


def make_dynamic(src: Path, dst: Path, names: list[str]) -> Path:
    """Copy of ``src`` whose first input has ``names[i]`` as symbolic dim i ("" keeps it)."""
    model = onnx.load(str(src))
    for dim, name in zip(model.graph.input[0].type.tensor_type.shape.dim, names):
        if name:
            dim.ClearField("dim_value")
            dim.dim_param = name
    del model.graph.value_info[:]
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            dim.ClearField("dim_value")
            dim.dim_param = ""
    onnx.save(model, str(dst))
    return dst


def profile(name: str, lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]):
    p = OptimizationProfile()
    p.set_shape(name, lo, opt, hi)
    return p


def build(model: Path, profiles: list[OptimizationProfile], target: str = "orin-agx-64gb"):
    placement = place(model, resolve_target(target), resolve_policy(None, "fp16"),
                      profiles=profiles)
    plan = decode_plan(encode_plan(build_plan(placement)))  # through bytes, as a file would go
    return placement, plan


def max_rel(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(actual - expected).max() / max(np.abs(expected).max(), 1e-12))


# ----- profile objects -----------------------------------------------------------------------
def _graph(shape):
    g = Graph("g")
    g.add_input("x", shape)
    return g


@pytest.mark.parametrize(
    ("shape", "lo", "opt", "hi", "message"),
    [
        (("b", 3), (2, 3), (1, 3), (4, 3), "min <= opt <= max"),
        (("b", 3), (1, 3), (2, 3, 1), (4, 3), "same rank"),
        (("b", 3, 8), (1, 3), (2, 3), (4, 3), "rank 3"),
        (("b", 3), (1, 2), (1, 2), (1, 2), "fixed at 3"),
    ],
)
def test_profile_validation_names_the_problem(shape, lo, opt, hi, message):
    with pytest.raises(ShapeError, match=message):
        p = OptimizationProfile()
        p.set_shape("x", lo, opt, hi)
        p.validate(_graph(shape).inputs)


def test_profile_must_name_existing_inputs_and_cover_dynamic_ones():
    with pytest.raises(ShapeError, match="names input 'y'.*inputs are x"):
        profile("y", (1,), (1,), (1,)).validate(_graph(("b",)).inputs)
    with pytest.raises(ShapeError, match="no shapes for input 'x'"):
        OptimizationProfile().validate(_graph(("b", 3)).inputs)


def test_fixed_dims_only_when_every_profile_pins_one_value():
    inputs = _graph(("b", 3, "h")).inputs
    pin = profile("x", (1, 3, 8), (1, 3, 16), (1, 3, 32))
    assert fixed_dims([pin], inputs) == {"b": 1}
    other = profile("x", (2, 3, 8), (2, 3, 8), (2, 3, 8))
    assert fixed_dims([pin, other], inputs) == {}  # b is 1 in one profile, 2 in the other


def test_check_shape_picks_a_profile_or_names_input_shape_and_ranges():
    profiles = [profile("x", (1, 3), (1, 3), (2, 3)), profile("x", (4, 3), (4, 3), (8, 3))]
    assert check_shape(profiles, {"x": np.zeros((2, 3))}) == 0
    assert check_shape(profiles, {"x": np.zeros((5, 3))}) == 1
    assert check_shape([], {"x": np.zeros((5, 3))}) is None
    with pytest.raises(InputError) as err:
        check_shape(profiles, {"x": np.zeros((3, 3))})
    text = str(err.value)
    assert "'x'" in text and "3x3" in text and "1x3 .. 2x3" in text and "4x3 .. 8x3" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("input:1x3x224x224", {"input": (1, 3, 224, 224)}),
        ("a:1x2,b:3", {"a": (1, 2), "b": (3,)}),
        ("ns:in:0:1x8", {"ns:in:0": (1, 8)}),
        ("'x':2x2", {"x": (2, 2)}),
    ],
)
def test_parse_shape_list(text, expected):
    assert parse_shape_list(text) == expected


@pytest.mark.parametrize("text", ["input", "input:", "input:1xax3", ":1x3"])
def test_parse_shape_list_refuses(text):
    with pytest.raises(InputError, match="NAME:DIMS"):
        parse_shape_list(text)


# ----- build and run ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def resnet_dynamic(tmp_path_factory) -> Path:
    src = zoo_model_path("resnet18", resolution=32)
    dst = tmp_path_factory.mktemp("dyn") / "resnet18_dynamic.onnx"
    return make_dynamic(src, dst, ["batch", "", "height", "width"])


def test_two_profiles_run_inside_and_refuse_outside(resnet_dynamic):
    profiles = [
        profile("input", (1, 3, 32, 32), (1, 3, 32, 32), (2, 3, 64, 64)),
        profile("input", (3, 3, 64, 64), (4, 3, 64, 64), (4, 3, 96, 96)),
    ]
    placement, plan = build(resnet_dynamic, profiles)
    assert len(plan.header["profiles"]) == 2
    assert plan.header["profiles"][1]["inputs"]["input"]["max"] == [4, 3, 96, 96]
    assert plan.header["inputs"][0]["shape"] == ["batch", 3, "height", "width"]
    # every layer with a symbolic dim is on the GPU, and says why
    first = placement.partition.assignments["conv1"]
    assert first.device == "gpu" and "dynamic shape" in first.reason
    rng = np.random.default_rng(0)
    with PlanRunner(plan, "cpu") as runner:
        for shape, want in [((1, 3, 32, 32), 0), ((2, 3, 64, 32), 0), ((3, 3, 96, 64), 1)]:
            x = rng.standard_normal(shape).astype(np.float32)
            out = runner.infer({"input": x})
            ref = run_onnxruntime(resnet_dynamic, {"input": x})
            assert runner.active_profile == want
            assert out["logits"].shape == (shape[0], 1000)
            assert max_rel(out["logits"], ref["logits"]) < 1e-4
        for shape in [(3, 3, 32, 32), (1, 3, 128, 128), (5, 3, 64, 64)]:
            with pytest.raises(InputError, match=r"'input' has shape .*outside every"):
                runner.infer({"input": np.zeros(shape, np.float32)})


def test_min_equals_max_fixes_the_dim_and_lets_layers_onto_the_dla(resnet_dynamic):
    pinned = profile("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))
    placement, plan = build(resnet_dynamic, [pinned])
    assert plan.header["inputs"][0]["shape"] == [1, 3, 32, 32]
    devices = {a.device for a in placement.partition.assignments.values()}
    assert "dla0" in devices
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    with PlanRunner(plan, "cpu") as runner:
        out = runner.infer({"input": x})
    ref = run_onnxruntime(resnet_dynamic, {"input": x})
    assert max_rel(out["logits"], ref["logits"]) < 2e-2  # DLA FP16 numerics
    # only the batch pinned: H/W stay dynamic, so their layers stay on the GPU
    batch_only = profile("input", (1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 64, 64))
    placement, plan = build(resnet_dynamic, [batch_only])
    assert plan.header["inputs"][0]["shape"] == [1, 3, "height", "width"]
    assert placement.partition.assignments["conv1"].device == "gpu"


def test_ocr_style_dynamic_height_width(tmp_path):
    """A U-Net segmentation model (the shape of a DBNet text detector) at any H/W in range."""
    src = zoo_model_path("unet-small", resolution=32)
    model = make_dynamic(src, tmp_path / "unet_hw.onnx", ["", "", "height", "width"])
    _, plan = build(model, [profile("input", (1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 96, 128))])
    rng = np.random.default_rng(2)
    with PlanRunner(plan, "cpu") as runner:
        for shape in [(1, 3, 32, 32), (1, 3, 48, 96), (1, 3, 96, 128)]:
            x = rng.standard_normal(shape).astype(np.float32)
            out = runner.infer({"input": x})
            ref = run_onnxruntime(model, {"input": x})
            name = next(iter(ref))
            assert out[name].shape == ref[name].shape == (1, 3, *shape[2:])
            assert max_rel(out[name], ref[name]) < 1e-4
        with pytest.raises(InputError, match="1x3x128x128"):
            runner.infer({"input": np.zeros((1, 3, 128, 128), np.float32)})


@pytest.mark.parametrize(("name", "feed"), [("torch-yolo-lite-dynamic", "images"),
                                            ("paddle-ocr-det-lite", "x")])
def test_exported_dynamic_batch_models(name, feed):
    model = exported_model_path(name)
    hw = tuple(d.dim_value for d in onnx.load(str(model)).graph.input[0]
               .type.tensor_type.shape.dim[2:])
    profiles = [profile(feed, (1, 3, *hw), (1, 3, *hw), (2, 3, *hw)),
                profile(feed, (4, 3, *hw), (4, 3, *hw), (4, 3, *hw))]
    _, plan = build(model, profiles)
    rng = np.random.default_rng(3)
    with PlanRunner(plan, "cpu") as runner:
        for batch in (1, 2, 4):
            x = rng.standard_normal((batch, 3, *hw)).astype(np.float32)
            out = runner.infer({feed: x})
            ref = run_onnxruntime(model, {feed: x})
            for key, expected in ref.items():
                assert out[key].shape == expected.shape
                assert max_rel(out[key], expected) < 1e-3
        with pytest.raises(InputError, match="outside every optimization profile"):
            runner.infer({feed: np.zeros((3, 3, *hw), np.float32)})


def test_cli_build_with_profiles_and_run_at_chosen_shapes(resnet_dynamic, tmp_path, capsys):
    import json

    from tandem.cli import main

    plan = tmp_path / "dyn.plan"
    shapes = ["--min-shapes", "input:1x3x32x32", "--opt-shapes", "input:2x3x32x32",
              "--max-shapes", "input:2x3x64x64", "--min-shapes", "input:4x3x32x32",
              "--opt-shapes", "input:4x3x32x32", "--max-shapes", "input:4x3x32x32"]
    assert main(["build", str(resnet_dynamic), "--target", "orin-agx-64gb", "--fp16",
                 *shapes, "-o", str(plan), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["run", str(plan), "--backend", "cpu", "--json"]) == 0  # profile 0's opt
    assert json.loads(capsys.readouterr().out)["outputs"]["logits"]["shape"] == [2, 1000]
    assert main(["run", str(plan), "--backend", "cpu", "--shapes", "input:4x3x32x32",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"]["logits"]["shape"] == [4, 1000]
    assert main(["run", str(plan), "--backend", "cpu", "--shapes", "input:3x3x32x32"]) == 1
    assert "outside every optimization profile" in capsys.readouterr().err
    assert main(["build", str(resnet_dynamic), "--target", "orin-agx-64gb",
                 "--min-shapes", "input:1x3x32x32", "-o", str(plan)]) == 1
    assert "each profile needs all three" in capsys.readouterr().err


def test_dynamic_costs_are_priced_at_the_opt_shapes(resnet_dynamic):
    def predicted(opt_batch: int) -> float:
        """The plan's time less its kernels' fixed cost (the same at every batch)."""
        p = profile("input", (1, 3, 64, 64), (opt_batch, 3, 64, 64), (16, 3, 64, 64))
        _, plan = build(resnet_dynamic, [p])
        assert plan.header["predicted_at"] == "the opt shapes of profile 0"
        [gpu] = [s for s in plan.header["segments"] if s["device"] == "gpu"]
        fixed = gpu["cuda"]["kernels"] * gpu_kernel_seconds(plan.header["arch"]) * 1e3
        return plan.header["predicted_ms"]["total"] - fixed

    assert predicted(16) > 1.5 * predicted(1)


@pytest.mark.gpu
def test_dynamic_plan_on_cuda_compiles_per_shape(resnet_dynamic):
    """On a GPU: a host plan's dynamic GPU segment runs on CUDA at each shape in range."""
    p = profile("input", (1, 3, 32, 32), (2, 3, 32, 32), (4, 3, 64, 64))
    _, plan = build(resnet_dynamic, [p], target="host")
    rng = np.random.default_rng(4)
    with PlanRunner(plan, "cuda") as runner:
        for shape in [(1, 3, 32, 32), (4, 3, 64, 64), (1, 3, 32, 32)]:
            x = rng.standard_normal(shape).astype(np.float32)
            out = runner.infer({"input": x})
            ref = run_onnxruntime(resnet_dynamic, {"input": x})
            assert set(runner.backends().values()) == {"cuda"}
            assert max_rel(out["logits"], ref["logits"]) < 2e-2  # FP16 kernels
