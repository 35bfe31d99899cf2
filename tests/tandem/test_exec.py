"""``tandem exec``: trtexec command lines, the performance summary, and the export layouts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from devices.calibration import Calibration, RandomInputs, calibrate
from devices.plan import read_plan
from devices.timesource import cpu_name
from dla_sim.calibration import write_cache
from tandem.cli import main
from tandem.commands.exec import parse_flags, percentile
from targets.build import load_model
from tests.models import zoo_model_path

FAST = ["--iterations=3", "--duration=0", "--warmUp=0"]
STAT_KEYS = ("min", "max", "mean", "median", "percentile(90%)", "percentile(95%)",
             "percentile(99%)")
TIME_KEYS = {"startEnqMs", "endEnqMs", "startComputeMs", "endComputeMs", "startH2DMs",
             "endH2DMs", "startD2HMs", "endD2HMs", "h2dMs", "computeMs", "d2hMs", "latencyMs",
             "enqueueMs"}


@pytest.fixture(scope="module")
def model() -> Path:
    return zoo_model_path("resnet18", resolution=32)


def run_exec(capsys, *flags: str) -> tuple[int, str, str]:
    code = main(["exec", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def summary(text: str) -> dict[str, dict[str, float] | float]:
    """Parse trtexec's summary lines back into numbers (what scripts scraping trtexec do)."""
    found: dict[str, dict[str, float] | float] = {}
    for label in ("Latency", "Enqueue Time", "H2D Latency", "GPU Compute Time", "D2H Latency"):
        m = re.search(rf"\[I\] {label}: (.*)$", text, re.M)
        assert m, f"no '{label}' line"
        pairs = dict(re.findall(r"([a-z]+(?:\(\d+%\))?) = ([-\d.e+]+) ms", m.group(1)))
        assert tuple(pairs) == STAT_KEYS, label
        found[label] = {k: float(v) for k, v in pairs.items()}
    found["qps"] = float(re.search(r"\[I\] Throughput: ([\d.e+-]+) qps", text).group(1))
    found["wall"] = float(re.search(r"Total Host Walltime: ([\d.e+-]+) s", text).group(1))
    found["gpu"] = float(re.search(r"Total GPU Compute Time: ([\d.e+-]+) s", text).group(1))
    return found


def test_dla_build_prints_summary_and_writes_trtexec_exports(capsys, model, tmp_path):
    times, prof, info, engine = (tmp_path / n for n in ("t.json", "p.json", "l.json", "e.plan"))
    code, out, _ = run_exec(
        capsys, f"--onnx={model}", "--fp16", "--useDLACore=0", "--allowGPUFallback",
        "--target=orin-agx-64gb", *FAST, "--dumpProfile", f"--exportTimes={times}",
        f"--exportProfile={prof}", f"--exportLayerInfo={info}", f"--saveEngine={engine}",
        "--profilingVerbosity=detailed",
    )
    assert code == 0
    assert out.startswith("&&&& RUNNING tandem exec") and "&&&& PASSED" in out
    s = summary(out)
    for label in ("Latency", "GPU Compute Time"):
        stats = s[label]
        assert stats["min"] <= stats["median"] <= stats["max"]
        assert stats["min"] <= stats["percentile(90%)"] <= stats["percentile(99%)"] <= stats["max"]
    assert s["qps"] > 0 and s["wall"] > 0 and 0 < s["gpu"] <= s["wall"]
    assert "Predicted for orin-agx-64gb MAXN by the cost model (not measured)" in out
    assert "=== Profile (3 iterations ) ===" in out

    records = json.loads(times.read_text(encoding="utf-8"))
    assert len(records) == 3 and all(TIME_KEYS <= set(r) for r in records)
    assert {r["source"] for r in records} == {f"emulated on {cpu_name()}"}  # no GPU ran them
    for r in records:
        assert r["latencyMs"] == pytest.approx(r["h2dMs"] + r["computeMs"] + r["d2hMs"])
        assert r["startH2DMs"] <= r["endH2DMs"] <= r["startComputeMs"] <= r["endComputeMs"]
    # the compute in the summary is the same numbers as in the export
    assert s["GPU Compute Time"]["max"] == pytest.approx(max(r["computeMs"] for r in records),
                                                         rel=1e-5)

    profile = json.loads(prof.read_text(encoding="utf-8"))
    assert profile[0]["count"] == 3 and profile[0]["split"] == "predicted-cost"
    assert profile[0]["source"] == f"emulated on {cpu_name()}"
    layers = profile[1:]
    assert {"name", "timeMs", "averageMs", "medianMs", "percentage"} <= set(layers[0])
    assert sum(r["percentage"] for r in layers) == pytest.approx(100.0)
    # layer times split the measured segment times; the runtime's bookkeeping between
    # segments (a few microseconds, milliseconds on a loaded CI machine) belongs to no layer
    # and is exported beside them, so the two add up to the compute time
    layer_total = sum(r["timeMs"] for r in layers)
    between = profile[0]["betweenSegmentsMs"]
    assert 0 < layer_total and 0 <= between
    assert layer_total + between == pytest.approx(sum(r["computeMs"] for r in records), rel=1e-9)
    assert layer_total + between == pytest.approx(1e3 * s["gpu"], rel=1e-5)

    doc = json.loads(info.read_text(encoding="utf-8"))
    assert set(doc) == {"Layers", "Bindings"}
    assert doc["Bindings"] == ["input", "logits"]
    by_name = {layer["Name"]: layer for layer in doc["Layers"]}
    assert by_name["conv1"]["Device"] == "DLA0" and by_name["conv1"]["LayerType"] == "Conv"
    assert {layer["Precision"] for layer in doc["Layers"]} <= {"fp16", "fp32"}
    assert read_plan(engine).target == "orin-agx-64gb"


def test_without_dla_core_everything_runs_on_the_gpu(capsys, model, tmp_path):
    info = tmp_path / "l.json"
    code, out, _ = run_exec(capsys, f"--onnx={model}", "--fp16", "--target=orin-agx-64gb",
                            *FAST, f"--exportLayerInfo={info}", "--profilingVerbosity=detailed")
    assert code == 0
    assert {layer["Device"] for layer in _layers(info)} == {"GPU"}


def test_space_separated_values_and_load_engine(capsys, model, tmp_path):
    engine = tmp_path / "e.plan"
    code, _, _ = run_exec(capsys, "--onnx", str(model), "--saveEngine", str(engine),
                          "--target", "orin-agx-64gb", "--useDLACore", "1", "--allowGPUFallback",
                          "--iterations", "1", "--duration", "0", "--warmUp", "0")
    assert code == 0
    assert any(s["device"] == "dla1" for s in read_plan(engine).header["segments"])
    code, out, _ = run_exec(capsys, f"--loadEngine={engine}", *FAST, "--verbose", "--avgRuns=2")
    assert code == 0 and "Loaded engine" in out and "Average on 2 runs" in out


def test_layer_device_types_and_precisions(capsys, model, tmp_path):
    info = tmp_path / "l.json"
    code, _, _ = run_exec(
        capsys, f"--onnx={model}", "--fp16", "--useDLACore=0", "--allowGPUFallback",
        "--target=orin-agx-64gb", "--layerDeviceTypes=layer1.0.conv1:GPU",
        "--layerPrecisions=layer4.*:fp32", *FAST, f"--exportLayerInfo={info}",
        "--profilingVerbosity=detailed",
    )
    assert code == 0
    layers = {layer["Name"]: layer for layer in _layers(info)}
    assert layers["layer1.0.conv1"]["Device"] == "GPU"
    assert layers["layer1.0.conv2"]["Device"] == "DLA0"
    assert layers["layer4.0.conv1"]["Precision"] == "fp32"
    assert layers["layer4.0.conv1"]["Device"] == "GPU"  # the DLA has no FP32


def test_int8_with_a_calibration_cache(capsys, model, tmp_path):
    cache = tmp_path / "calib.cache"
    write_cache(cache, calibrate(load_model(model), Calibration(RandomInputs(2))))
    assert cache.read_text(encoding="utf-8").startswith("TRT-")
    info = tmp_path / "l.json"
    code, out, _ = run_exec(capsys, f"--onnx={model}", "--int8", f"--calib={cache}",
                            "--useDLACore=0", "--allowGPUFallback", "--target=orin-agx-64gb",
                            *FAST, f"--exportLayerInfo={info}", "--profilingVerbosity=detailed")
    assert code == 0 and "INT8 without --calib" not in out
    precisions = {layer["Precision"] for layer in _layers(info)}
    assert "int8" in precisions


def test_dynamic_shapes_from_min_opt_max(capsys, model, tmp_path):
    dynamic = tmp_path / "dyn.onnx"
    m = onnx.load(str(model))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    onnx.save(m, str(dynamic))
    engine = tmp_path / "e.plan"
    shapes = ["--minShapes=input:1x3x32x32", "--optShapes=input:2x3x32x32",
              "--maxShapes=input:4x3x32x32"]
    code, _, _ = run_exec(capsys, f"--onnx={dynamic}", *shapes, "--shapes=input:3x3x32x32",
                          f"--saveEngine={engine}", *FAST)
    assert code == 0
    assert read_plan(engine).header["profiles"][0]["inputs"]["input"]["max"] == [4, 3, 32, 32]
    code, out, err = run_exec(capsys, f"--loadEngine={engine}", "--shapes=input:8x3x32x32",
                              *FAST)
    assert code == 1 and "&&&& FAILED" in out
    assert "'input' has shape 8x3x32x32, outside every optimization profile" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--onnx=m.onnx", "--uff=m.uff", "--foo"],
         "removed in trtexec 10 (Caffe/UFF/implicit batch): --uff; unknown flag(s): --foo"),
        (["--onnx=m.onnx", "--fp16=1"], "--fp16 takes no value"),
        (["--onnx"], "--onnx needs a value"),
        (["model.onnx"], "unexpected argument 'model.onnx'"),
        (["--fp16"], "exactly one model"),
        (["--onnx=m.onnx", "--loadEngine=e.plan"], "exactly one model"),
        (["--onnx=m.onnx", "--useDLACore=3", "--target=orin-agx-64gb"], "expected 0 or 1"),
        (["--onnx=m.onnx", "--iterations=x"], "expected a number"),
        (["--onnx=m.onnx", "--layerPrecisions=conv1:fp8"], "LAYER:fp32|fp16|int8"),
    ],
)
def test_usage_errors_exit_2_and_name_the_flag(capsys, model, flags, message):
    flags = [f.replace("m.onnx", str(model)) for f in flags]
    code, _, err = run_exec(capsys, *flags)
    assert code == 2, err
    assert message in err


def test_dla_without_fallback_fails_like_trtexec(capsys, model):
    code, _, err = run_exec(capsys, f"--onnx={model}", "--fp16", "--useDLACore=0",
                            "--target=orin-agx-64gb", *FAST)
    assert code == 1
    assert "add --allowGPUFallback" in err and "'avgpool'" in err


def test_parser_and_percentile():
    opts = parse_flags(["--onnx", "a.onnx", "--fp16", "--shapes=x:1x2", "--dumpProfile"])
    assert opts.values == {"onnx": "a.onnx", "shapes": "x:1x2"}
    assert opts.switches == {"fp16", "dumpProfile"}
    values = list(np.arange(1.0, 101.0))
    assert (percentile(values, 90), percentile(values, 99), percentile(values, 100)) == (
        90.0, 99.0, 100.0)
    assert percentile([5.0], 99) == 5.0


def _layers(info: Path) -> list[dict]:  # type: ignore[type-arg]
    """The layers of an --exportLayerInfo file."""
    return json.loads(info.read_text(encoding="utf-8"))["Layers"]  # type: ignore[no-any-return]
