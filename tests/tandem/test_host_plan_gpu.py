"""[plans-deploy] on a GPU machine: a `host` plan of each zoo model, built there, runs its GPU
segments on CUDA (the project's kernels) and matches ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tandem.cli import main
from tandem.metrics import closeness
from tests.models import ZOO_CASES, model_params, ort_run, random_inputs

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("case", model_params(ZOO_CASES))
@pytest.mark.parametrize("precision, min_cosine", [("--fp32", 0.99999), ("--fp16", 0.999)])
def test_host_plan_runs_on_cuda_and_matches(
    tmp_path, capsys, model_file, case, precision, min_cosine
):
    model = model_file(case)
    plan = tmp_path / "host.plan"
    assert (
        main(["build", str(model), "--target", "host", precision, "-o", str(plan), "--quiet"]) == 0
    )
    feeds = random_inputs(model)
    np.savez(tmp_path / "in.npz", **feeds)
    capsys.readouterr()
    code = main(
        [
            "run",
            str(plan),
            "--backend",
            "cuda",
            "--inputs",
            str(tmp_path / "in.npz"),
            "--save-outputs",
            str(tmp_path / "out.npz"),
            "--json",
            "--iterations",
            "3",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["backends"].values()) == {"cuda"}, doc["backends"]
    expected = ort_run(model, feeds)
    with np.load(tmp_path / "out.npz") as out:
        for name, ref in expected.items():
            c = closeness(out[name], ref)
            assert c.cosine >= min_cosine, (name, c)


def test_host_plan_loads_its_cross_built_cubins(tmp_path, zoo_model):
    from devices.plan import read_plan
    from devices.runtime import PlanRunner

    model = zoo_model("resnet18")
    plan_path = tmp_path / "host.plan"
    assert main(["build", str(model), "--target", "host", "--fp16", "-o", str(plan_path)]) == 0
    plan = read_plan(plan_path)
    assert all(rec["cuda"]["modules"] for rec in plan.header["segments"] if rec["device"] == "gpu")
    with PlanRunner(plan, "cuda") as runner:
        runner.infer(random_inputs(model))
        gpu_runners = [r for seg in runner.segments for r in seg.runner.runners.values()]
        assert gpu_runners and all(r.lib.prebuilt_loaded > 0 for r in gpu_runners)


def test_a_plan_without_cubins_compiles_its_kernels_when_it_loads(tmp_path, zoo_model, capsys):
    """--no-cubins: the plan holds no GPU code, as the build summary says; loaded on a GPU of
    its arch it runs on CUDA, NVRTC compiling the kernels at activation."""
    from devices.plan import read_plan
    from devices.runtime import PlanRunner

    model = zoo_model("resnet18")
    plan_path = tmp_path / "host.plan"
    argv = ["build", str(model), "--target", "host", "--fp16", "--no-cubins", "-o",
            str(plan_path), "--quiet"]
    assert main(argv) == 0
    assert "the plan holds no compiled GPU code" in capsys.readouterr().out
    plan = read_plan(plan_path)
    assert plan.header["cubins"] is False
    assert not any(b.kind == "cubin" for b in plan.blobs.values())
    feeds = random_inputs(model)
    with PlanRunner(plan, "cuda") as runner:
        got = runner.infer(feeds)
        assert set(runner.backends().values()) == {"cuda"}
        gpu_runners = [r for seg in runner.segments for r in seg.runner.runners.values()]
        # every kernel that ran came from NVRTC (or its disk cache) at activation
        assert gpu_runners and all(r.lib.prebuilt_loaded == 0 for r in gpu_runners)
    for out, ref in ort_run(model, feeds).items():
        assert closeness(got[out], ref).cosine >= 0.999


@pytest.mark.parametrize("name", ["resnet18", "yolov5s"])
def test_int8_host_plan_runs_int8_kernels_on_cuda(tmp_path, zoo_model, name):
    """--int8 on the host: calibrated scales go into the plan and its GPU segments run the INT8
    tensor-core convolutions; the result stays close to ONNX Runtime FP32."""
    from devices.plan import read_plan
    from devices.runtime import PlanRunner

    model = zoo_model(name)
    plan_path = tmp_path / "host.plan"
    argv = ["build", str(model), "--target", "host", "--int8", "--calib-random", "3",
            "-o", str(plan_path), "--quiet"]
    assert main(argv) == 0
    plan = read_plan(plan_path)
    feeds = random_inputs(model)
    with PlanRunner(plan, "cuda") as runner:
        got = runner.infer(feeds)
        gpu_runners = [r for seg in runner.segments for r in seg.runner.runners.values()]
    assert gpu_runners and all(r.precision == "int8" for r in gpu_runners)
    assert any(ln.kernel == "conv_mma_i8" for r in gpu_runners for ln in r.program.launches)
    for out, ref in ort_run(model, feeds).items():
        c = closeness(got[out], ref)
        print(f"{name} INT8 host plan {out}: {c}")
        assert c.cosine >= 0.98, (out, c)
