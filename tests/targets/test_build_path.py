"""One build path: each front end turns its own arguments into a BuildRequest for
``targets.build.build``, so the same request gives the same plan and ``--calib`` means the
same thing in every command."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import tandem
from devices.calibration import Calibration, NpzFolder, RandomInputs
from devices.plan import encode_plan, read_plan
from gpu_kernels.timing_cache import TimingCache
from partitioner.errors import InputError
from tandem.cli import build_parser, main
from tandem.commands._args import build_request
from targets.build import build, resolve_policy, resolve_target
from targets.request import BuildRequest
from tests.models import zoo_model_path
from tests.tandem.test_qat import _qat_model

FAST_EXEC = ["--iterations=1", "--duration=0", "--warmUp=0", "--backend=cpu"]


@pytest.fixture(scope="module")
def model() -> Path:
    return zoo_model_path("resnet18", resolution=32)


@pytest.fixture
def npz_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(4)
    for i in range(2):
        np.savez(folder / f"{i}.npz", input=rng.uniform(-1, 1, (1, 3, 32, 32)).astype(np.float32))
    return folder


def test_the_cli_decodes_its_flags_into_typed_values(model: Path, tmp_path: Path) -> None:
    args = build_parser().parse_args([
        "build", str(model), "--target", "xavier-agx", "--fp16", "--dla-core", "1",
        "--partition", "cost", "--calib-random", "3", "--timing-cache", str(tmp_path / "t.json"),
        "--min-shapes", "input:1x3x32x32", "--opt-shapes", "input:1x3x32x32",
        "--max-shapes", "input:1x3x32x32", "--dim", "batch=1", "-o", str(tmp_path / "x.plan"),
    ])  # fmt: skip
    request = build_request(args)
    assert request.target.name == "xavier-agx"
    assert (request.policy.precision, request.policy.dla_core) == ("fp16", 1)
    assert request.policy.partition == "cost"
    assert request.calibration == Calibration(RandomInputs(3), None, request.calibration.hint)
    assert isinstance(request.timing_cache, TimingCache) and len(request.timing_cache) == 0
    assert [p.shapes["input"].opt for p in request.profiles] == [(1, 3, 32, 32)]
    assert dict(request.fixed_dims) == {"batch": 1}


def test_tandem_build_writes_what_build_of_the_same_request_returns(
    model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cli.plan"
    argv = ["build", str(model), "--target", "xavier-agx", "--int8", "--calib-random", "2",
            "--dla-core", "1", "-o", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    request = BuildRequest(
        model=str(model),
        target=resolve_target("xavier-agx"),
        policy=resolve_policy(None, precision="int8", dla_core=1),
        calibration=Calibration(RandomInputs(2)),
    )
    assert encode_plan(build(request).plan) == out.read_bytes()


def test_calib_is_a_folder_or_a_cache_in_build_and_in_exec(
    model: Path, npz_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = [str(model), "--target", "orin-agx-64gb", "--int8", "--quiet"]
    cache = tmp_path / "r18.cache"
    from_folder, from_cache = tmp_path / "folder.plan", tmp_path / "cache.plan"
    assert main(["build", *common, "--calib", str(npz_folder), "--calib-cache", str(cache),
                 "-o", str(from_folder)]) == 0  # fmt: skip
    assert cache.read_text(encoding="utf-8").startswith("TRT-")
    assert main(["build", *common, "--calib", str(cache), "-o", str(from_cache)]) == 0
    assert from_cache.read_bytes() == from_folder.read_bytes()
    scales = read_plan(from_folder).header["calibration"]
    for calib in (npz_folder, cache):  # exec took only a cache before; a folder now too
        engine = tmp_path / "exec.plan"
        assert main(["exec", f"--onnx={model}", "--int8", f"--calib={calib}", "--useDLACore=0",
                     "--allowGPUFallback", "--target=orin-agx-64gb", f"--saveEngine={engine}",
                     *FAST_EXEC]) == 0  # fmt: skip
        assert read_plan(engine).header["calibration"] == scales
    capsys.readouterr()


def test_a_bad_calib_is_one_line_naming_the_flag(
    model: Path, npz_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = ["-o", str(tmp_path / "x.plan")]
    build = ["build", str(model), "--target", "orin-agx-64gb", "--int8", "--quiet"]
    cases = [
        ([*build, "--calib", str(tmp_path / "nope"), *out],
         f"--calib {tmp_path / 'nope'}: no such file or folder; expected a folder of .npz "
         "files, a folder of .jpg/.png images or a TensorRT calibration cache file"),
        ([*build, "--calib", str(npz_folder / "0.npz"), *out],
         f"--calib {npz_folder / '0.npz'}: a single .npz file"),
        ([*build, "--calib", str(npz_folder), "--calib-random", "2", *out],
         "--calib and --calib-random: give one calibration source, not both"),
        ([*build, *out], "an INT8 build needs calibration data: pass --calib DIR|FILE"),
        (["exec", f"--onnx={model}", "--int8", "--calib=nope.cache"],
         "--calib=nope.cache: no such file or folder"),
    ]  # fmt: skip
    for argv, message in cases:
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith(f"tandem: error: {message}") and err.count("\n") == 1, err


def test_the_builder_takes_a_qat_models_own_scales(tmp_path: Path) -> None:
    """The CLI always did; the Python Builder now shares its build path and does too."""
    path = tmp_path / "qat.onnx"
    _qat_model(path)
    builder = tandem.Builder()
    network = builder.create_network()
    assert tandem.OnnxParser(network).parse_from_file(str(path))
    config = builder.create_builder_config()
    config.target = "orin-agx-64gb"
    config.set_flag(tandem.BuilderFlag.INT8)
    config.default_device_type = tandem.DeviceType.DLA
    engine = tandem.Runtime().deserialize_cuda_engine(
        builder.build_serialized_network(network, config)
    )
    assert engine.plan.header["calibration"] == {
        "x": pytest.approx(2.0 / 127),
        "r1": pytest.approx(4.0 / 127),
    }


def test_calibration_runs_at_profile_zero_opt_shapes(npz_folder: Path, tmp_path: Path) -> None:
    """A dynamic batch calibrates on feeds of profile 0's opt shape (TensorRT's rule)."""
    import onnx

    model = onnx.load(zoo_model_path("resnet18", resolution=32))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    dynamic = tmp_path / "dynamic.onnx"
    onnx.save(model, str(dynamic))
    profile = tandem.OptimizationProfile()
    profile.set_shape("input", (1, 3, 32, 32), (1, 3, 32, 32), (4, 3, 32, 32))
    request = BuildRequest(
        model=str(dynamic),
        target=resolve_target("orin-agx-64gb"),
        policy=resolve_policy(None, precision="int8"),
        profiles=(profile,),
        calibration=Calibration(NpzFolder(npz_folder)),  # feeds of batch 1 = the opt shape
    )
    plan = build(request).plan
    assert plan.header["calibration"] and plan.header["profiles"]
    batch2 = tmp_path / "batch2"
    batch2.mkdir()
    np.savez(batch2 / "0.npz", input=np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(InputError, match="has shape 2x3x32x32, expected 1x3x32x32"):
        build(replace(request, calibration=Calibration(NpzFolder(batch2))))
