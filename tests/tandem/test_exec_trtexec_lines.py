"""Real trtexec command lines, run by ``tandem exec`` unchanged but for ``--target`` and the model.

Each line is copied from NVIDIA's documentation and samples or from users' scripts and issues
(the source URL is beside it). What changes: the leading ``trtexec`` becomes ``tandem exec``,
the model path points at a test model of the same kind (a small ResNet-18 for ResNet-50 and
YOLOv8n, the DLA tutorial's ModelBN (rebuilt here) for it, MNIST and "model.onnx", a conv-only net
for cuDLA-samples' trimmed YOLOv5 backbone, a Q/DQ net for its QAT model and LightNet), input
names and sizes follow that model, output files go to a temporary
folder, and ``--target`` is added (a TensorRT 11 board file where the line is run against
trtexec 11's rules). Every other flag is as written, so the default run lengths apply. Each
line asserts what it must produce: a plan and its contents, an export's content, a note, an
exit code.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from devices.calibration import Calibration, RandomInputs, calibrate
from devices.plan import read_plan
from dla_sim.calibration import write_cache
from tandem.cli import main
from tandem.commands.exec_build import load_inputs
from tandem.commands.trtexec_flags import markdown_table
from targets.build import load_model
from targets.local_board import LocalBoard, local_board
from tests.models import zoo_model_path
from tests.tandem.test_qat import _qat_model
from tests.tandem.trtexec_models import conv_model, model_bn

ROOT = Path(__file__).resolve().parents[2]
AGX = "--target=orin-agx-64gb"


# ----- models of the same kind as the lines' ---------------------------------------------------
@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    resnet = zoo_model_path("resnet18", resolution=32)
    model_bn_path = folder / "model_bn.onnx"
    model_bn(model_bn_path)
    qat = folder / "qat.onnx"
    _qat_model(qat)
    conv = folder / "conv.onnx"
    conv_model(conv)
    cache = folder / "qat2ptq.cache"
    write_cache(cache, calibrate(load_model(qat), Calibration(RandomInputs(2))))
    trt11 = folder / "orin-agx-64gb-jp72.yaml"  # the same board on JetPack 7.2 / TensorRT 11.4
    text = (ROOT / "targets/boards/orin-agx-64gb.yaml").read_text(encoding="utf-8")
    text = re.sub(r'tensorrt: "10\.3"', 'tensorrt: "11.4.1"', text)
    trt11.write_text(text.replace("name: orin-agx-64gb", "name: orin-agx-64gb-jp72"), "utf-8")
    return {
        "resnet": resnet,
        "model_bn": model_bn_path,
        "qat": qat,
        "conv": conv,
        "cache": cache,
        "trt11": trt11,
    }


def run_line(
    capsys,
    line: str,
    tmp: Path,
    models: dict[str, Path],
    *extra: str,
) -> tuple[int, str, str]:
    """``trtexec ...`` as ``tandem exec ...``: {resnet}/{tmp}/... filled in, ``extra`` added."""
    argv = shlex.split(line.format(tmp=tmp, **{k: str(v) for k, v in models.items()}))
    assert argv[0].endswith("trtexec"), argv[0]
    code = main(["exec", *argv[1:], *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _summary_value(out: str, label: str, key: str) -> float:
    m = re.search(rf"\[I\] {label}: .*?{re.escape(key)} = ([-\d.e+]+) ms", out)
    assert m, f"no {label} {key} in the output"
    return float(m.group(1))


def _passed(code: int, out: str) -> None:
    assert code == 0, out[-2000:]
    assert "&&&& PASSED tandem exec" in out


def _devices(plan: Path) -> set[str]:
    return _devices_of(read_plan(plan))


def _layers(path: Path) -> list:  # type: ignore[type-arg]
    return json.loads(path.read_text(encoding="utf-8"))["Layers"]  # type: ignore[no-any-return]


# ----- the lines ---------------------------------------------------------------------------------
Check = Callable[[int, str, str, Path], None]


def _dla_fallback(core: str, precision: str) -> Check:
    def check(code: int, out: str, err: str, tmp: Path) -> None:
        _passed(code, out)
        assert f"default device dla core {core}" in out and f"precision {precision}" in out
        built = re.search(r"Engine built: (.*), (\d+) segments", out)
        assert built and f"on dla{core}" in built.group(1) and "on gpu" in built.group(1)
        assert _summary_value(out, "GPU Compute Time", "median") > 0

    return check


def _int8_dla(code: int, out: str, err: str, tmp: Path) -> None:
    _dla_fallback("1", "int8")(code, out, err, tmp)
    assert "INT8 without --calib: scales came from 2 random inputs" in out


def _shapes32(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "Performance summary" in out and "Dynamic dimensions required" not in out


def _min_opt_max(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert _summary_value(out, "Latency", "max") > 0


def _export_times(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    records = json.loads((tmp / "trace.json").read_text(encoding="utf-8"))
    assert len(records) >= 10 and all(r["latencyMs"] > 0 for r in records)  # --iterations=10


def _skip_inference(precision: str) -> Check:
    def check(code: int, out: str, err: str, tmp: Path) -> None:
        _passed(code, out)
        assert "Skipped inference phase since --skipInference is set." in out
        assert "Performance summary" not in out
        plan = read_plan(next(tmp.glob("g*.trt")))
        assert plan.header["precision"] == precision and _devices_of(plan) == {"gpu"}

    return check


def _devices_of(plan) -> set[str]:  # type: ignore[no-untyped-def]
    return {seg["device"] for seg in plan.header["segments"]}


def _strongly_typed_fp32(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "Strongly typed: precision fp32 from the model's tensor types" in out


def _dla_tutorial_build(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    for flag in ("useSpinWait", "separateProfileRun"):
        assert f"[W] --{flag} has no effect here:" in out
    assert "dla0" in _devices(tmp / "model_bn.engine")
    profile = json.loads((tmp / "model_bn.json").read_text(encoding="utf-8"))
    plan = read_plan(tmp / "model_bn.engine")
    assert profile[0]["split"] == "predicted-cost"
    assert {row["name"] for row in profile[1:]} == {
        entry["name"] for entry in plan.header["layers"]
    }
    assert plan.header["profiles"][0]["inputs"]["input"]["opt"] == [32, 3, 32, 32]


def _standalone_fp16(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "Skipped inference phase since --buildDLAStandalone is set." in out
    plan = read_plan(tmp / "yolov5.fp16.fp16chw16in.fp16chw16out.standalone.bin")
    assert _devices_of(plan) == {"dla0"} and plan.header["precision"] == "fp16"
    record = plan.header["metadata"]["trtexec"]
    assert record["dla_standalone"] is True
    assert record["io_formats"] == {"images": "fp16:chw16", "out": "fp16:chw16"}


def _standalone_int8(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    plan = read_plan(tmp / "yolov5.int8.int8hwc4in.fp16chw16out.standalone.bin")
    layers = {entry["name"]: entry for entry in plan.header["layers"]}
    assert _devices_of(plan) == {"dla0"}
    assert layers["conv1"]["precision"] == "int8" and layers["conv2"]["precision"] == "fp16"
    assert plan.header["metadata"]["trtexec"]["io_formats"] == {
        "x": "int8:dla_hwc4",
        "y": "fp16:chw16",
    }


def _standalone_lightnet(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    plan = read_plan(tmp / "lightnet.int8.int8chwin.fp16chwout.standalone.bin")
    assert _devices_of(plan) == {"dla0"}
    assert plan.header["metadata"]["trtexec"]["io_formats"]["x"] == "int8:dla_linear"


def _trt11_fp32_model(code: int, out: str, err: str, tmp: Path) -> None:
    # TensorRT 11: precision is the model's; an FP32 model has nothing the DLA runs (no FP32)
    _passed(code, out)
    assert "trtexec 11 rules" in out and "precision fp32" in out
    assert re.search(r"Engine built: \d+ layers on gpu, 1 segments", out)


def _trt11_refuses_int8(code: int, out: str, err: str, tmp: Path) -> None:
    assert code == 2 and "&&&& FAILED" in out
    assert "--int8: removed in trtexec 11 (networks are strongly typed)" in err
    assert "a Q/DQ model builds INT8 without the flag" in err


def _trt11_qat(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "[W] --stronglyTyped has no effect here: trtexec 11" in out
    assert "Strongly typed: precision int8" in out


def _no_fallback_fails(code: int, out: str, err: str, tmp: Path) -> None:
    assert code == 1 and "&&&& FAILED" in out
    assert "'avgpool'" in err and "add --allowGPUFallback" in err
    assert not (tmp / "yolov8n.engine").exists()


def _legacy_workspace(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "--workspace: trtexec 8.x: read as --memPoolSize=workspace:N (MiB)" in out
    assert "[W] --useCudaGraph has no effect here" in out
    plan = read_plan(tmp / "rtdetr_r18_B.trt")
    assert plan.header["metadata"]["trtexec"]["mem_pool_bytes"] == {"workspace": 20480 << 20}


def _mem_pool(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    plan = read_plan(tmp / "engine.trt")
    assert plan.header["metadata"]["trtexec"]["mem_pool_bytes"] == {"workspace": 1 << 30}
    assert "Memory pools (recorded in the plan" in out


def _explorer_build(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    layers = _layers(tmp / "e.plan.graph.json")
    conv1 = next(layer for layer in layers if layer["Name"] == "conv1")
    assert conv1["Device"] == "GPU" and conv1["LayerType"] == "Conv"
    assert "[V] Layer conv1: gpu fp32" in out  # --verbose
    assert read_plan(tmp / "e.plan").header["metadata"]["trtexec"]["profiling_verbosity"] == (
        "detailed"
    )


def _explorer_build_8x(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert "Skipped inference phase since --buildOnly is set." in out
    assert isinstance(_layers(tmp / "e.plan.graph.json")[0], dict)  # nvtxMode=verbose: detailed
    assert read_plan(tmp / "e.plan").header["metadata"]["trtexec"]["mem_pool_bytes"] == {
        "workspace": 8192 << 20
    }


def _explorer_profile(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert _summary_value(out, "H2D Latency", "max") == 0  # --noDataTransfers
    times = json.loads((tmp / "e.plan.timing.json").read_text(encoding="utf-8"))
    assert len(times) >= 10 and all(r["h2dMs"] == 0 for r in times)
    profile = json.loads((tmp / "e.plan.profile.json").read_text(encoding="utf-8"))
    assert profile[0]["count"] == len(times)
    assert {layer["Device"] for layer in _layers(tmp / "e.plan.graph.json")} == {"GPU"}


def _idle_time(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    wall = float(re.search(r"Total Host Walltime: ([\d.e+-]+) s", out).group(1))  # type: ignore[union-attr]
    assert wall >= 10 * 0.5 * 0.95  # ten inferences, each followed by a 500 ms idle


def _roberta_load(code: int, out: str, err: str, tmp: Path) -> None:
    _passed(code, out)
    assert _summary_value(out, "D2H Latency", "max") == 0
    assert "Loaded engine" in out and "[W] --useCudaGraph has no effect here" in out


def _layer_names_only(code: int, out: str, err: str, tmp: Path) -> None:
    # trtexec's default verbosity (layer_names_only): the dump names layers only
    _passed(code, out)
    assert "profiling verbosity layer_names_only" in out and "Layer: conv1" in out


BUILD_E = "trtexec --verbose --onnx={resnet} --saveEngine={tmp}/e.plan"
LINES: list[tuple[str, str, Check, tuple[str, ...]]] = [
    # https://github.com/NVIDIA/TensorRT/blob/release/10.3/samples/trtexec/README.md (Example 2)
    (
        "readme-dla1-fp16",
        "./trtexec --onnx={model_bn} --useDLACore=1 --fp16 --allowGPUFallback",
        _dla_fallback("1", "fp16"),
        (AGX,),
    ),
    (
        "readme-dla1-int8",
        "./trtexec --onnx={model_bn} --useDLACore=1 --int8 --allowGPUFallback",
        _int8_dla,
        (AGX,),
    ),
    (
        "readme-dla0-fp16",
        "./trtexec --onnx={model_bn} --useDLACore=0 --fp16 --allowGPUFallback",
        _dla_fallback("0", "fp16"),
        (AGX,),
    ),
    # same README, Example 3 (input sizes follow the 32x32 test model, the DLA tutorial's)
    ("readme-shapes", "./trtexec --onnx={model_bn} --shapes=input:32x3x32x32", _shapes32, (AGX,)),
    (
        "readme-min-opt-max",
        "./trtexec --onnx={model_bn} --minShapes=input:1x3x32x32 "
        "--optShapes=input:16x3x32x32 --maxShapes=input:32x3x32x32 --shapes=input:5x3x32x32",
        _min_opt_max,
        (AGX,),
    ),
    # same README, Example 4
    (
        "readme-export-times",
        "./trtexec --onnx={model_bn} --exportTimes={tmp}/trace.json",
        _export_times,
        (AGX,),
    ),
    # same README, Example 5
    (
        "readme-int8-skip",
        "trtexec --onnx={resnet} --saveEngine={tmp}/g1.trt --int8 --skipInference",
        _skip_inference("int8"),
        (AGX,),
    ),
    (
        "readme-best-skip",
        "trtexec --onnx={resnet} --saveEngine={tmp}/g2.trt --best --skipInference",
        _skip_inference("int8"),
        (AGX,),
    ),
    # same README, Example 6
    (
        "readme-strongly-typed",
        "./trtexec --onnx={resnet} --stronglyTyped",
        _strongly_typed_fp32,
        (AGX,),
    ),
    # https://github.com/NVIDIA-AI-IOT/jetson_dla_tutorial/blob/master/README.md (step 5)
    (
        "dla-tutorial-build",
        "trtexec --onnx={model_bn} --shapes=input:32x3x32x32 "
        "--saveEngine={tmp}/model_bn.engine --exportProfile={tmp}/model_bn.json --int8 "
        "--useDLACore=0 --allowGPUFallback --useSpinWait --separateProfileRun",
        _dla_tutorial_build,
        (AGX,),
    ),
    # https://github.com/NVIDIA-AI-IOT/cuDLA-samples/blob/main/data/model/build_dla_standalone_loadable.sh
    (
        "cudla-fp16-standalone",
        "/usr/src/tensorrt/bin/trtexec --onnx={conv} --verbose --fp16 "
        "--saveEngine={tmp}/yolov5.fp16.fp16chw16in.fp16chw16out.standalone.bin "
        "--inputIOFormats=fp16:chw16 --outputIOFormats=fp16:chw16 --buildDLAStandalone "
        "--useDLACore=0",
        _standalone_fp16,
        (AGX,),
    ),
    (
        "cudla-int8-standalone",
        "/usr/src/tensorrt/bin/trtexec --minShapes=x:1x3x16x16 "
        "--maxShapes=x:1x3x16x16 --optShapes=x:1x3x16x16 --shapes=x:1x3x16x16 --onnx={qat} "
        "--useDLACore=0 --buildDLAStandalone "
        "--saveEngine={tmp}/yolov5.int8.int8hwc4in.fp16chw16out.standalone.bin  "
        "--inputIOFormats=int8:dla_hwc4 --outputIOFormats=fp16:chw16 --int8 --fp16 "
        '--calib={cache} --precisionConstraints=obey --layerPrecisions="conv2":fp16',
        _standalone_int8,
        (AGX,),
    ),
    # https://github.com/angry-crab/cuDLA_Lightnet/blob/main/script/build_dla.sh
    (
        "lightnet-standalone",
        "/usr/src/tensorrt/bin/trtexec --onnx={qat} --useDLACore=0 "
        "--buildDLAStandalone --saveEngine={tmp}/lightnet.int8.int8chwin.fp16chwout.standalone.bin "
        " --inputIOFormats=int8:dla_linear --outputIOFormats=fp16:dla_linear --int8 --fp16 "
        '--calib={cache} --precisionConstraints=obey --layerPrecisions="conv2":fp16',
        _standalone_lightnet,
        (AGX,),
    ),
    # https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/dla-build-and-run.html
    (
        "docs-dla-resnet",
        "./trtexec --onnx={resnet} --useDLACore=0 --fp16 --allowGPUFallback",
        _dla_fallback("0", "fp16"),
        (AGX,),
    ),
    # https://docs.nvidia.com/deeplearning/tensorrt/11.4.0/inference-library/dla-build-and-run.html
    (
        "docs11-dla-resnet",
        "./trtexec --onnx={resnet} --useDLACore=0 --allowGPUFallback",
        _trt11_fp32_model,
        ("--target={trt11}",),
    ),
    # the README's Example 2 INT8 line against trtexec 11's rules
    (
        "readme-int8-on-trt11",
        "./trtexec --onnx={resnet} --useDLACore=1 --int8 --allowGPUFallback",
        _trt11_refuses_int8,
        ("--target={trt11}",),
    ),
    # the README's Example 6 on a Q/DQ model against trtexec 11's rules
    (
        "readme-typed-qat-trt11",
        "./trtexec --onnx={qat} --stronglyTyped",
        _trt11_qat,
        ("--target={trt11}",),
    ),
    # https://github.com/ultralytics/ultralytics/issues/14999
    (
        "ultralytics-dla-no-fallback",
        "/usr/src/tensorrt/bin/trtexec --onnx={resnet} "
        "--saveEngine={tmp}/yolov8n.engine --int8 --useDLACore=0",
        _no_fallback_fails,
        (AGX,),
    ),
    # https://github.com/labt1/GunDetection-RTDETR/blob/main/deployment/data/models/onnx_to_trt.sh
    (
        "rtdetr-workspace",
        "trtexec --onnx={resnet} --saveEngine={tmp}/rtdetr_r18_B.trt "
        "--shapes=input:1x3x32x32 --avgRuns=100 --fp16 --workspace=20480 --useCudaGraph",
        _legacy_workspace,
        (AGX,),
    ),
    # https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-8x-to-10x-trtexec.html
    (
        "migration-mempool",
        "trtexec --onnx={resnet} --saveEngine={tmp}/engine.trt "
        "--optShapes=input:1x3x32x32 --memPoolSize=workspace:1024 --skipInference",
        _mem_pool,
        (AGX,),
    ),
    # https://github.com/NVIDIA/TensorRT/blob/release/10.3/tools/experimental/trt-engine-explorer/utils/process_engine.py
    (
        "trex-build",
        BUILD_E + " --exportLayerInfo={tmp}/e.plan.graph.json "
        "--timingCacheFile={tmp}/timing.cache --profilingVerbosity=detailed --skipInference",
        _explorer_build,
        (AGX,),
    ),
    (
        "trex-build-8x",
        BUILD_E + " --exportLayerInfo={tmp}/e.plan.graph.json "
        "--timingCacheFile={tmp}/timing.cache --nvtxMode=verbose --buildOnly --workspace=8192",
        _explorer_build_8x,
        (AGX,),
    ),
]
# lines that load an engine: built first by the line named in the middle
LOAD_LINES: list[tuple[str, str, str, Check]] = [
    # trt-engine-explorer's profile command (process_engine.py, profile_engine_cmd)
    (
        "trex-profile",
        "trex-build",
        "trtexec --verbose --noDataTransfers --useCudaGraph "
        "--separateProfileRun --useSpinWait --loadEngine={tmp}/e.plan "
        "--exportTimes={tmp}/e.plan.timing.json --exportProfile={tmp}/e.plan.profile.json "
        "--exportLayerInfo={tmp}/e.plan.graph.json --timingCacheFile={tmp}/timing.cache "
        "--profilingVerbosity=detailed",
        _explorer_profile,
    ),
    # https://github.com/NVIDIA-AI-IOT/jetson_dla_tutorial/blob/master/README.md (step 4, nsys)
    (
        "dla-tutorial-nsys",
        "dla-tutorial-build",
        "/usr/src/tensorrt/bin/trtexec "
        "--loadEngine={tmp}/model_bn.engine --iterations=10 --idleTime=500 --duration=0 "
        "--useSpinWait",
        _idle_time,
    ),
    # https://github.com/apivovarov/kb/blob/master/Sagemaker/hf/roberta-large/build-trt-engine.sh
    (
        "roberta-load",
        "rtdetr-workspace",
        "trtexec --useCudaGraph "
        "--loadEngine={tmp}/rtdetr_r18_B.trt --shapes=input:1x3x32x32 --noDataTransfers "
        "--iterations=100 --avgRuns=100",
        _roberta_load,
    ),
]
BY_ID = {line_id: (line, extra) for line_id, line, _, extra in LINES}


@pytest.mark.parametrize(
    ("line", "check", "extra"), [pytest.param(*row[1:], id=row[0]) for row in LINES]
)
def test_trtexec_line(capsys, models, tmp_path, line, check, extra):
    extra = tuple(e.format(**{k: str(v) for k, v in models.items()}) for e in extra)
    code, out, err = run_line(capsys, line, tmp_path, models, *extra)
    check(code, out, err, tmp_path)


@pytest.mark.parametrize(
    ("first", "line", "check"), [pytest.param(*row[1:], id=row[0]) for row in LOAD_LINES]
)
def test_trtexec_load_line(capsys, models, tmp_path, first, line, check):
    build_line, extra = BY_ID[first]
    extra = tuple(e.format(**{k: str(v) for k, v in models.items()}) for e in extra)
    code, out, _ = run_line(capsys, build_line, tmp_path, models, *extra, "--skipInference")
    assert code == 0, out[-2000:]
    code, out, err = run_line(capsys, line, tmp_path, models)
    check(code, out, err, tmp_path)


def test_target_defaults_from_this_jetson(capsys, models, tmp_path, monkeypatch):
    """On a Jetson the README's DLA line runs with no --target at all."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"
    )
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    (root / "proc/meminfo").write_text("MemTotal:       65881860 kB\n")
    board = local_board(root, nvpmodel=lambda: "NV Power Mode: MODE_30W\n2\n")
    assert board == LocalBoard(
        "orin-agx-64gb",
        "NVIDIA Jetson AGX Orin Developer Kit",
        "R36.4.3",
        pytest.approx(62.83, abs=0.01),
        "MODE_30W",
    )
    monkeypatch.setattr("tandem.commands.exec_build.local_board", lambda: board)
    line = (
        "./trtexec --onnx={resnet} --useDLACore=0 --fp16 --allowGPUFallback "
        "--skipInference --dumpLayerInfo"
    )
    code, out, err = run_line(capsys, line, tmp_path, models)
    _passed(code, out)
    assert (
        "Target orin-agx-64gb: this board ('NVIDIA Jetson AGX Orin Developer Kit', "
        "L4T R36.4.3, power mode MODE_30W)" in out
    )
    assert "Building for orin-agx-64gb (30W," in out and "[W] this board runs L4T" not in out
    _layer_names_only(code, out, err, tmp_path)
    # an older L4T than the board file's: said, and the file's numbers are used
    (root / "etc/nv_tegra_release").write_text("# R35 (release), REVISION: 6.0, GCID: 1\n")
    monkeypatch.setattr("tandem.commands.exec_build.local_board", lambda: local_board(root))
    code, out, err = run_line(capsys, line, tmp_path, models)
    _passed(code, out)
    assert "[W] this board runs L4T R35.6.0; the orin-agx-64gb file describes R36.4.3" in out
    # a 32 GB module, and a machine that is no Jetson
    (root / "proc/meminfo").write_text("MemTotal:       30536436 kB\n")
    assert local_board(root, nvpmodel=lambda: None).target == "orin-agx-32gb"  # type: ignore[union-attr]
    assert local_board(tmp_path / "nowhere") is None


def test_without_a_jetson_dla_lines_keep_the_clear_error(capsys, models, tmp_path, monkeypatch):
    monkeypatch.setattr("tandem.commands.exec_build.local_board", lambda: None)
    code, out, err = run_line(
        capsys,
        "./trtexec --onnx={resnet} --useDLACore=1 --fp16 --allowGPUFallback",
        tmp_path,
        models,
    )
    assert code == 1 and "target host has no DLA; pass --target=<a Jetson board>" in err


def test_committed_compatibility_table_is_the_generated_one():
    assert (ROOT / "docs/trtexec.md").read_text(encoding="utf-8") == markdown_table()
    assert len(LINES) + len(LOAD_LINES) >= 20


def test_readme_custom_input_data(capsys, models, tmp_path):
    """README 'Using custom input data' (https://github.com/NVIDIA/TensorRT/blob/release/10.3/
    samples/trtexec/README.md): numpy writes the file, --loadInputs feeds it."""
    data = np.ones((1, 3, 32, 32), dtype=np.float32)
    data.tofile(tmp_path / "data.bin")
    line = './trtexec --onnx={model_bn} --loadInputs="input":{tmp}/data.bin'
    code, out, err = run_line(capsys, line, tmp_path, models, AGX)
    _passed(code, out)
    assert "Input input: 12288 bytes from --loadInputs" in out
    zeros = {"input": np.zeros((1, 3, 32, 32), np.float32)}
    loaded = load_inputs(f"'input':{tmp_path / 'data.bin'}", zeros)
    np.testing.assert_array_equal(loaded["input"], data)
    data[:, :2].tofile(tmp_path / "data.bin")  # two channels only: the size is wrong
    code, out, err = run_line(capsys, line, tmp_path, models, AGX)
    assert (
        code == 1
        and f"--loadInputs {tmp_path / 'data.bin'}: 8192 bytes; input 'input' "
        "(1x3x32x32 float32) needs 12288"
        in err
    )


def test_sleep_time_is_a_gap_before_each_compute(capsys, models, tmp_path):
    # https://github.com/NVIDIA/TensorRT/blob/release/10.3/samples/trtexec/README.md lists
    # --sleepTime; its gap lies outside the compute time and inside the end-to-end time
    code, out, err = run_line(
        capsys,
        "trtexec --onnx={conv} --iterations=5 --duration=0 --warmUp=0 --sleepTime=100 "
        "--exportTimes={tmp}/t.json",
        tmp_path,
        models,
        AGX,
    )
    _passed(code, out)
    records = json.loads((tmp_path / "t.json").read_text(encoding="utf-8"))
    assert len(records) == 5
    assert all(r["endToEndMs"] - r["latencyMs"] >= 100 * 0.95 for r in records)
    assert all(r["computeMs"] < 100 for r in records)
