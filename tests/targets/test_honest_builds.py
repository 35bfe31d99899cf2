"""Honest builds: a plan never holds a segment that cannot run where its placement says.

- a layer whose attributes the GPU lowering refuses (Resize in 'cubic' mode: the GPU table
  lists Resize, the lowering runs nearest / linear only) goes to the CPU with the lowering's
  reason in ``inspect``'s layer table and capability report and in the build summary; with
  ``cpu_fallback: false`` the build exits 1 naming it;
- without an NVRTC for the target's CUDA major the build exits 1 with the install command and
  writes nothing; ``--no-cubins`` builds and says so;
- ``tandem inspect PLAN`` shows what runs each layer on the board.

Everything goes through the real command line (``tandem.cli.main``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import gpu_kernels.compile as nvrtc
from devices.plan import read_plan
from partitioner.assign import partition
from partitioner.capability import Verdict
from tandem.cli import main
from targets.build import build, build_plan, place_for, resolve_policy, resolve_target
from targets.gpu_code import BuildError
from targets.request import BuildRequest
from tests.models import ModelCase, model_params

GPU_POLICY = "default_device: gpu\n"
CUBIC = "mode 'cubic' unsupported (nearest or linear)"


@pytest.fixture(scope="module")
def cubic_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """conv -> Resize(cubic, x2) -> conv: the Resize is one the GPU lowering refuses."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype("f4") * 0.1, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype("f4") * 0.1, "w2")
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], "f4"), "scales")
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], "conv1", **conv),
        helper.make_node("Resize", ["a", "", "scales"], ["b"], "up", mode="cubic"),
        helper.make_node("Conv", ["b", "w2"], ["y"], "conv2", **conv),
    ]
    graph = helper.make_graph(
        nodes,
        "cubic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])],
        [w1, w2, scales],
    )
    path = tmp_path_factory.mktemp("honest") / "cubic.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _policy(tmp_path: Path, text: str) -> str:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_layer_the_gpu_lowering_refuses_goes_to_the_cpu_with_its_reason(
    cubic_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path, GPU_POLICY)
    args = ["inspect", str(cubic_model), "--target", "orin-agx-64gb", "--policy", policy]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    layers = {r["name"]: r for r in doc["layers"]}
    assert [layers[n]["device"] for n in ("conv1", "up", "conv2")] == ["gpu", "cpu", "gpu"]
    assert layers["up"]["reason"].startswith("CPU: GPU cannot run it: Resize 'up': ")
    assert CUBIC in layers["up"]["reason"]
    (row,) = [r for r in doc["capability"] if r["layers"] == ["up"]]
    assert row["operator"] == "Resize" and CUBIC in row["reason"]
    assert main([*args, "--verbose"]) == 0  # the text tables carry the same reason
    text = capsys.readouterr().out
    assert sum(CUBIC in line and line.startswith("up ") for line in text.splitlines()) == 1

    plan = tmp_path / "cubic.plan"
    assert main(["build", str(cubic_model), "--target", "orin-agx-64gb", "--policy", policy,
                 "-o", str(plan), "--quiet"]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    at = out.index("1 layer(s) will run on the board's CPU (numpy reference):")
    assert out[at + 1].startswith("  up: GPU cannot run it: ") and CUBIC in out[at + 1]
    segments = read_plan(plan).header["segments"]
    assert [s["device"] for s in segments] == ["gpu", "cpu", "gpu"]
    assert all(s["cuda"]["modules"] for s in segments if s["device"] == "gpu")


def test_with_cpu_fallback_off_the_build_fails_naming_the_layer(
    cubic_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path, GPU_POLICY + "cpu_fallback: false\n")
    plan = tmp_path / "cubic.plan"
    rc = main(["build", str(cubic_model), "--target", "orin-agx-64gb", "--policy", policy,
               "-o", str(plan), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("tandem: error: 1 layer(s) can run neither on the GPU nor on the DLA")
    assert "'up' (GPU cannot run it: Resize 'up': " in err and CUBIC in err
    assert "set cpu_fallback: true" in err
    assert not plan.exists()


@pytest.fixture
def no_nvrtc(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process finds no NVRTC at all, as on a machine without the 'cuda' extra: the search
    path is empty and cuda-bindings has none loaded."""
    monkeypatch.setattr(nvrtc, "_candidate_paths", lambda major: [])
    monkeypatch.setattr(nvrtc, "cuda_core_nvrtc", lambda: None)
    nvrtc.load_nvrtc.cache_clear()
    yield
    nvrtc.load_nvrtc.cache_clear()


def _cuda13_target(tmp_path: Path) -> Path:
    """The catalog's Orin AGX on JetPack 7 (CUDA 13), as a user's target file would say."""
    src = Path(__file__).resolve().parents[2] / "targets" / "boards" / "orin-agx-64gb.yaml"
    text = src.read_text(encoding="utf-8")
    lines = [
        '  cuda: "13.0"' if line.strip().startswith("cuda:") else line
        for line in text.splitlines()
    ]
    assert lines != text.splitlines()
    path = tmp_path / "orin-cuda13.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _build_without_nvrtc(
    model: Path, target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], major: int
) -> None:
    plan = tmp_path / "r.plan"
    args = ["build", str(model), "--target", target, "--policy", _policy(tmp_path, GPU_POLICY),
            "-o", str(plan), "--quiet"]  # fmt: skip
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("tandem: error: cannot cross-compile GPU code for sm_87")
    assert f"no NVRTC for CUDA {major} found; install 'nvidia-cuda-nvrtc-cu{major}'" in err
    if major == 12:
        assert "the 'cuda' extra: pip install 'tandem-rt[cuda]'" in err
    assert "--no-cubins" in err
    assert not plan.exists() and not list(tmp_path.glob(".r.plan*"))

    assert main([*args, "--no-cubins"]) == 0
    out = capsys.readouterr().out
    assert ("the plan holds no compiled GPU code: the board compiles the GPU kernels with NVRTC "
            "when the plan loads") in out
    header = read_plan(plan).header
    assert header["cubins"] is False
    gpu = [s for s in header["segments"] if s["device"] == "gpu"]
    assert gpu and all(s["cuda"]["modules"] == [] and s["cuda"]["kernels"] for s in gpu)
    assert main(["inspect", str(plan)]) == 0
    text = capsys.readouterr().out
    assert "cuda kernels (NVRTC compiles them at load)" in text
    assert "the plan holds no compiled GPU code" in text


def test_no_nvrtc_for_the_targets_cuda_fails_with_the_install_command(
    cubic_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], no_nvrtc: None
) -> None:
    _build_without_nvrtc(cubic_model, "orin-agx-64gb", tmp_path, capsys, 12)


def test_a_user_target_on_cuda_13_needs_nvrtc_13(
    cubic_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real way to meet it: a target file for a CUDA this machine has no NVRTC of."""
    if 13 in nvrtc.available_majors():
        pytest.skip("this machine has NVRTC 13")
    _build_without_nvrtc(cubic_model, str(_cuda13_target(tmp_path)), tmp_path, capsys, 13)


def test_inspect_plan_shows_what_runs_each_layer_on_the_board(
    cubic_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "cubic.plan"
    assert main(["build", str(cubic_model), "--target", "orin-agx-64gb", "-o", str(plan),
                 "--quiet"]) == 0  # fmt: skip  (default policy: the DLA first)
    capsys.readouterr()
    assert main(["inspect", str(plan), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    backends = {r["name"]: (r["device"], r["backend"]) for r in doc["layers"]}
    assert backends["conv1"] == ("dla0", "dla loadable")
    assert backends["up"] == ("cpu", "cpu reference")
    assert doc["cubins"] is True
    assert main(["inspect", str(plan), "--verbose"]) == 0  # every layer
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.startswith("up "))
    assert row[:5] == ["up", "Resize", "cpu", "cpu", "reference"]
    assert "1 layer(s) run on the board's CPU (numpy reference): up" in lines


@pytest.mark.parametrize("case", model_params())
def test_every_model_builds_with_every_gpu_segment_lowered_and_compiled(
    case: ModelCase, model_file: Callable[[ModelCase], Path]
) -> None:
    """Every zoo model and every exported model (where its exporter is installed), the GPU as
    default device so every layer meets its lowering: the build succeeds, each GPU segment
    holds its cubins, and each layer on the CPU says why."""
    path = model_file(case)
    dims = {d: 1 for t in onnx.load(str(path)).graph.input
            for d in (x.dim_param for x in t.type.tensor_type.shape.dim) if d}  # fmt: skip
    request = BuildRequest(
        str(path),
        resolve_target("orin-agx-64gb"),
        resolve_policy(None, "fp16").with_overrides(default_device="gpu"),
        fixed_dims=dims,
    )
    placement, plan = build(request)
    gpu = [s for s in plan.header["segments"] if s["device"] == "gpu"]
    assert gpu, "no GPU segment"
    for seg in gpu:
        assert seg["cuda"]["modules"] and "error" not in seg["cuda"], seg["name"]
    for name, a in placement.partition.assignments.items():
        assert a.device in ("gpu", "cpu"), name
        assert a.device == "gpu" or a.reason.startswith("CPU: GPU cannot run it: "), a.reason


class _AcceptsAll:
    """A GPU capability that says yes to every layer: a table/lowering disagreement, as a bug
    would make one, which the build must still catch."""

    kind = "gpu"

    def supports(self, node: Any, graph: Any, precision: Any) -> Verdict:
        return Verdict.yes()

    def cost(self, node: Any, graph: Any, precision: Any) -> float:
        return 1e-6


def test_a_gpu_segment_that_does_not_lower_fails_the_build_and_names_it(
    cubic_model: Path,
) -> None:
    request = BuildRequest(
        str(cubic_model),
        resolve_target("orin-agx-64gb"),
        resolve_policy(None, "fp16").with_overrides(default_device="gpu"),
    )
    placement = place_for(request)
    caps = dict(placement.capabilities)
    caps["gpu"] = _AcceptsAll()
    placement.partition = partition(placement.graph, caps, placement.policy)
    assert [s.device for s in placement.partition.segments] == ["gpu"]
    with pytest.raises(BuildError) as err:
        build_plan(placement)
    lines = str(err.value).splitlines()
    assert lines[0] == "1 GPU segment(s) cannot be built for orin-agx-64gb; no plan written:"
    assert lines[1].startswith("  segment gpu_0 does not lower for sm_87: ")
    assert "'up'" in lines[1] and CUBIC in lines[1] and len(lines) == 2
