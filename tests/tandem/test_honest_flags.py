"""Issue 18: no silent degradation. ``--fp16``/``--int8`` where nothing can honour them is an
error naming the flag (``compare MODEL --fp16`` used to run FP32 on the CPU and report a match),
and a DLA build of a dynamic-batch model that places no layer on the DLA says why, without
``--verbose``."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from devices.runtime import cuda_arch_here
from tandem.cli import main
from tests.models import zoo_model_path


@pytest.fixture(scope="module")
def model() -> Path:
    return zoo_model_path("resnet18", resolution=32)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["compare", "{model}", "--fp16"], "--fp16 needs --target T"),
        (["compare", "{model}", "--int8"], "--int8 needs --target T"),
        (["run", "{model}", "--fp16"], "--fp16 needs --target T"),
    ],
)
def test_precision_without_a_target_is_refused(model, argv, message, capsys) -> None:
    code = main([a.format(model=model) for a in argv])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "FP32 numpy reference" in err
    assert len(err.strip().splitlines()) == 1  # one line, no traceback


def test_precision_beside_a_plan_is_refused(model, tmp_path, capsys) -> None:
    plan = tmp_path / "m.plan"
    assert main(["build", str(model), "--target", "host", "-o", str(plan), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(model), "--plan", str(plan), "--fp16"]) == 1
    assert "--fp16 with a plan: the plan's precision was fixed" in capsys.readouterr().err


def test_dynamic_batch_build_says_why_nothing_is_on_the_dla(model, tmp_path, capsys) -> None:
    m = onnx.load(str(model))
    for vi in [*m.graph.input, *m.graph.output]:
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    dynamic = tmp_path / "dyn.onnx"
    onnx.save(m, str(dynamic))
    argv = ["build", str(dynamic), "--target", "orin-agx-64gb", "--fp16", "--quiet",
            "--min-shapes", "input:1x3x32x32", "--opt-shapes", "input:2x3x32x32",
            "--max-shapes", "input:4x3x32x32", "-o", str(tmp_path / "dyn.plan")]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no layer runs on the DLA; why, most layers first:" in out
    assert "dynamic shape (input dim 0 is 'batch'): DLA needs static shapes" in out
    # the static model builds with DLA layers and no such note
    assert main([*argv[:1], str(model), *argv[2:6], "-o", str(tmp_path / "s.plan")]) == 0
    assert "no layer runs on the DLA" not in capsys.readouterr().out


def test_a_match_of_segments_run_in_fp32_says_so(model, capsys) -> None:
    """``compare --target host --fp16`` where no GPU runs the FP16 code: the CPU reference
    computes those segments in FP32, and a match must not read as an FP16 result."""
    if cuda_arch_here() is not None:
        pytest.skip("a CUDA GPU is here: the host plan's FP16 segments run on it")
    assert main(["compare", str(model), "--target", "host", "--fp16", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["match"] and any("FP16/INT8 numerics of" in n for n in doc["notes"])
    assert main(["compare", str(model), "--target", "host", "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "ran on the CPU reference in FP32" in out
    assert "fp16 plan" in out and "not emulated" in out
