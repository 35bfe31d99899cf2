"""``tandem exec``'s trtexec grammar: sizes, I/O formats, per-generation rules, and what the
flags change in the plan (the boundary cost of DLA-native I/O, the layer-info verbosity)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from devices.cost import SWITCH_OVERHEAD_SECONDS, transition_seconds
from devices.plan import read_plan
from tandem.cli import main
from tandem.commands.trtexec_flags import (
    UsageError,
    check_flags,
    parse_flags,
    parse_mem_pools,
)
from targets.catalog import load_target
from tests.models import zoo_model_path
from tests.tandem.trtexec_models import conv_model

AGX = "--target=orin-agx-64gb"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("flags")
    conv = folder / "conv.onnx"
    conv_model(conv)
    trt11 = folder / "jp72.yaml"
    text = (ROOT / "targets/boards/orin-agx-64gb.yaml").read_text(encoding="utf-8")
    trt11.write_text(text.replace('tensorrt: "10.3"', 'tensorrt: "11.4.1"'), "utf-8")
    return {"resnet": zoo_model_path("resnet18", resolution=32), "conv": conv, "trt11": trt11}


def run_exec(capsys, *flags: str) -> tuple[int, str, str]:
    code = main(["exec", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_pool_sizes_read_trtexecs_units():
    pools = parse_mem_pools("workspace:1024MiB,dlaSRAM:1.5M,tacticSharedMem:64K,dlaLocalDRAM:2G")
    # dlaSRAM rounds down to a power of 2 (trtexec's help); no suffix means MiB
    assert pools == {"workspace": 1 << 30, "dlaSRAM": 1 << 20, "tacticSharedMem": 64 << 10,
                     "dlaLocalDRAM": 2 << 30}  # fmt: skip
    assert parse_mem_pools("workspace:0.25") == {"workspace": 1 << 18}
    assert parse_mem_pools("dlaGlobalDRAM:512B") == {"dlaGlobalDRAM": 512}
    with pytest.raises(UsageError, match="cannot read 'sram:1M'; expected POOL:SIZE"):
        parse_mem_pools("sram:1M")
    with pytest.raises(UsageError, match="cannot read size '1T'"):
        parse_mem_pools("workspace:1T")


def test_generation_rules_refuse_with_the_reason_and_note_the_no_ops():
    opts = parse_flags(["--onnx=m.onnx", "--useSpinWait", "--separateProfileRun", "--fp16"])
    notes = check_flags(opts, 10)
    assert [n.split(" has no effect")[0] for n in notes] == ["--separateProfileRun",
                                                             "--useSpinWait"]  # fmt: skip
    with pytest.raises(UsageError, match="--fp16: removed in trtexec 11"):
        check_flags(opts, 11)
    notes = check_flags(parse_flags(["--onnx=m.onnx", "--useCudaGraph"]), 11)
    assert notes == ["--useCudaGraph has no effect here: trtexec 11: CUDA graphs are the default"]
    with pytest.raises(UsageError, match=r"--noSpinWait exists only in trtexec 11 \(this "):
        check_flags(parse_flags(["--noSpinWait"]), 10)
    with pytest.raises(UsageError, match="--minShapesCalib exists only in trtexec 10"):
        check_flags(parse_flags(["--minShapesCalib=x:1x3"]), 11)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--safe"], "refused: --safe: safety-certified engines are out of scope"),
        (["--device=1"], "--device=1: only 0 is supported here"),
        (["--sparsity=enable"], "--sparsity=enable: only disable is supported here"),
        (["--profilingVerbosity=all"], "expected layer_names_only, detailed or none"),
        (["--memPoolSize=dlaSRAM:2M"],
         "--memPoolSize dlaSRAM:2097152 bytes exceeds the orin-agx-64gb DLA's 1048576 bytes"),
        (["--outputIOFormats=fp16:chw16"],
         "--outputIOFormats: 'logits' has rank 2; format chw16 needs at least 3 dimensions"),
        (["--inputIOFormats=fp32:chw16"],
         "--inputIOFormats: 'input' as fp32:chw16: format chw16 takes fp16/int8 only"),
        (["--inputIOFormats=fp16:chw16,fp16:chw16"],
         "--inputIOFormats: 2 formats for 1 tensors (input)"),
        (["--inputIOFormats=chw16"], "'chw16' needs a type in trtexec 10: TYPE:FORMAT"),
        (["--inputIOFormats=fp16:hwc4"], "unknown format 'hwc4' in 'fp16:hwc4'"),
        (["--useDLACore=0", "--buildDLAStandalone"], "--buildDLAStandalone needs --inputIOFormats"),
        (["--useDLACore=0", "--buildDLAStandalone", "--allowGPUFallback"],
         "GPU fallback (--allowGPUFallback) not allowed for DLA standalone mode"),
        (["--buildDLAStandalone", "--inputIOFormats=fp16:chw16"], "add --useDLACore=N"),
        (["--useDLACore=0", "--buildDLAStandalone", "--inputIOFormats=fp16:chw4",
          "--outputIOFormats=fp32:chw"],
         "'logits' as fp32:chw: I/O formats for DLA standalone are restricted to"),
        (["--getPlanVersionOnly"], "--getPlanVersionOnly reads a plan: give --loadEngine=PLAN"),
    ],
)  # fmt: skip
def test_bad_flag_values_exit_2_naming_the_flag(capsys, models, flags, message):
    code, out, err = run_exec(capsys, f"--onnx={models['resnet']}", "--fp16", AGX, *flags)
    assert code == 2, err
    assert message in err and err.count("\n") == 1


def test_dla_hwc4_takes_image_inputs_only(capsys, models):
    code, _, err = run_exec(capsys, f"--onnx={models['conv']}", "--fp16", AGX,
                            "--outputIOFormats=fp16:dla_hwc4")  # fmt: skip
    assert code == 2 and "'out' has 16 channels; dla_hwc4 takes 1, 3 or 4" in err


def test_standalone_names_the_first_layer_the_dla_cannot_run(capsys, models, tmp_path):
    code, out, err = run_exec(
        capsys, f"--onnx={models['resnet']}", "--fp16", AGX, "--useDLACore=0",
        "--buildDLAStandalone", "--inputIOFormats=fp16:chw16", "--outputIOFormats=fp16:dla_linear",
        f"--saveEngine={tmp_path / 'x.bin'}",
    )  # fmt: skip
    assert code == 2 and "'logits' has rank 2; format dla_linear needs at least 4" in err
    code, out, err = run_exec(
        capsys, f"--onnx={models['resnet']}", "--fp16", AGX, "--useDLACore=0",
        "--buildDLAStandalone", "--inputIOFormats=fp16:chw16", "--outputIOFormats=fp16:chw",
    )  # fmt: skip
    assert code == 2 and "restricted to" in err  # fp16:chw is no DLA format
    code, out, err = run_exec(
        capsys, f"--onnx={models['conv']}", "--fp16", AGX, "--useDLACore=0",
        "--buildDLAStandalone", "--inputIOFormats=fp16:chw16", "--outputIOFormats=fp16:chw16",
        "--layerDeviceTypes=relu1:GPU", f"--saveEngine={tmp_path / 'x.bin'}",
    )  # fmt: skip
    assert code == 1 and "&&&& FAILED" in out
    assert "--buildDLAStandalone: every layer must run on the DLA; layer 'relu1' runs on gpu" in err
    assert not (tmp_path / "x.bin").exists()


def test_dla_native_io_drops_the_reformat_from_the_boundary_cost(capsys, models, tmp_path):
    """The conv net on dla0 alone: its input (1x3x32x32) and output (1x16x16x16) cross GPU<->DLA;
    in fp16:chw16 they cross without the reformat kernel, the switch overhead stays."""
    predicted = []
    for formats in ([], ["--inputIOFormats=fp16:chw16", "--outputIOFormats=fp16:chw16"]):
        plan = tmp_path / f"p{len(formats)}.plan"
        code, out, _ = run_exec(
            capsys,
            f"--onnx={models['conv']}",
            "--fp16",
            "--useDLACore=0",
            AGX,
            "--skipInference",
            f"--saveEngine={plan}",
            *formats,
        )
        assert code == 0, out
        predicted.append(read_plan(plan).header["predicted_ms"]["transfer"])
    target = load_target("orin-agx-64gb")
    reformats = sum(transition_seconds(n * 2, target) - SWITCH_OVERHEAD_SECONDS
                    for n in (3 * 32 * 32, 16 * 16 * 16))  # fmt: skip
    assert predicted[0] - predicted[1] == pytest.approx(reformats * 1e3, rel=1e-6)
    assert predicted[1] == pytest.approx(2 * SWITCH_OVERHEAD_SECONDS * 1e3, rel=1e-6)


def test_layer_info_follows_the_profiling_verbosity(capsys, models, tmp_path):
    engine, info = tmp_path / "e.plan", tmp_path / "l.json"
    code, out, _ = run_exec(capsys, f"--onnx={models['conv']}", "--fp16", AGX, "--skipInference",
                            "--profilingVerbosity=none", f"--saveEngine={engine}")  # fmt: skip
    assert code == 0
    # a loaded plan keeps its build's verbosity (TensorRT decides it when building)
    code, out, _ = run_exec(capsys, f"--loadEngine={engine}", "--skipInference",
                            f"--exportLayerInfo={info}", "--dumpLayerInfo")  # fmt: skip
    assert code == 0 and "profiling verbosity none" in out
    doc = json.loads(info.read_text(encoding="utf-8"))
    assert doc == {"Layers": ["0", "1", "2"], "Bindings": ["images", "out"]}
    code, out, _ = run_exec(capsys, f"--loadEngine={engine}", "--getPlanVersionOnly")
    assert code == 0 and "Plan was created with Tandem " in out and "Performance" not in out


def test_strongly_typed_ignores_precision_flags_as_trtexec_10_does(capsys, models):
    code, out, _ = run_exec(capsys, f"--onnx={models['conv']}", "--fp16", "--stronglyTyped",
                            AGX, "--skipInference")  # fmt: skip
    assert code == 0
    assert "Invalid usage, setting fp16 mode is not allowed if graph is strongly typed" in out
    assert "precision fp32, default device gpu" in out


def test_trtexec_11_has_no_calibrator(capsys, models):
    code, out, err = run_exec(capsys, f"--onnx={models['conv']}", f"--target={models['trt11']}",
                              "--calib=qat2ptq.cache", "--skipInference")  # fmt: skip
    assert code == 2 and "&&&& FAILED" in out
    assert "--calib exists only in trtexec 10 (this target's TensorRT is 11.x)" in err


def test_trtexec_11_io_formats_keep_the_models_types(capsys, models):
    trt11 = f"--target={models['trt11']}"
    code, out, err = run_exec(capsys, f"--onnx={models['conv']}", trt11, "--skipInference",
                              "--inputIOFormats=fp32:chw", "--outputIOFormats=chw")  # fmt: skip
    assert code == 0 and "[W] --inputIOFormats=fp32:chw: trtexec 11 takes formats only" in out
    code, out, err = run_exec(capsys, f"--onnx={models['conv']}", trt11, "--skipInference",
                              "--inputIOFormats=fp16:chw")  # fmt: skip
    assert code == 2
    assert "'images' is fp32 in the model; a fp16 binding is not supported\n" in err


def test_a_loaded_plan_keeps_the_generation_it_was_built_under(capsys, models, tmp_path):
    engine = tmp_path / "conv11.plan"
    code, out, _ = run_exec(capsys, f"--onnx={models['conv']}", f"--target={models['trt11']}",
                            "--skipInference", f"--saveEngine={engine}")  # fmt: skip
    assert code == 0
    assert read_plan(engine).header["metadata"]["trtexec"]["generation"] == 11
    # trtexec 11 leaves copies out unless asked, and has no --noDataTransfers of its own
    code, out, err = run_exec(capsys, f"--loadEngine={engine}", "--noDataTransfers",
                              "--iterations=2", "--duration=0", "--warmUp=0")  # fmt: skip
    assert code == 0 and "[W] --noDataTransfers has no effect here: trtexec 11 leaves" in out
    assert "[I] H2D Latency: min = 0 ms, max = 0 ms" in out
    code, out, err = run_exec(capsys, f"--loadEngine={engine}", "--minShapesCalib=images:1x3")
    assert code == 2 and "--minShapesCalib exists only in trtexec 10" in err


def test_standalone_refuses_a_layer_the_dla_does_not_support(capsys, tmp_path):
    w = onnx.numpy_helper.from_array(np.full((4, 3, 1, 1), 0.1, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["c"], name="conv"),
         helper.make_node("GlobalAveragePool", ["c"], ["out"], name="avgpool")],
        "pooled",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 1, 1])],
        [w],
    )  # fmt: skip
    model = tmp_path / "pooled.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    code, out, err = run_exec(
        capsys, f"--onnx={model}", "--fp16", AGX, "--useDLACore=0", "--buildDLAStandalone",
        "--inputIOFormats=fp16:chw16", "--outputIOFormats=fp16:chw16",
    )  # fmt: skip
    assert code == 1 and "&&&& FAILED" in out
    assert err.startswith("tandem: error: --buildDLAStandalone: every layer must run on the DLA")
    assert "'avgpool'" in err and "'conv'" not in err  # the conv runs on the DLA
