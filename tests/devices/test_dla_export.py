"""The board side of a DLA segment for TensorRT 10 (JetPack 6) and TensorRT 11 (JetPack 7.2),
tested up to the TensorRT call: the files it would receive (devices/dla_export.py), for every
zoo model that gets a DLA segment, at FP16 and INT8."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from devices.dla_export import TRT8, TRT10, TRT11, export_plan, generation_for
from devices.plan import Plan, read_plan
from partitioner.errors import InputError
from tandem.cli import main
from targets.board import BoardFacts
from tests.devices.dla_export_checks import check_plan

# every zoo model, at its test resolution: each places layers on the DLA of orin-agx-64gb
ZOO = ["resnet18", "resnet50", "mobilenetv2", "mobilenetv3-small", "yolov5s", "ssd-mobilenet",
       "unet-small", "vit-tiny"]  # fmt: skip


def _plan(tmp_path: Path, model: Path, precision: str) -> Plan:
    out = tmp_path / f"{model.stem}-{precision}.plan"
    argv = ["build", str(model), "--target", "orin-agx-64gb", f"--{precision}", "-o", str(out)]
    calib = ["--calib-random", "2"] if precision == "int8" else []
    assert main([*argv, *calib, "--quiet"]) == 0
    return read_plan(out)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
@pytest.mark.parametrize("name", ZOO)
def test_zoo_dla_segments_export_for_both_generations(tmp_path, zoo_model, name, precision):
    options = {"depth": 4} if name == "vit-tiny" else {}
    checked = check_plan(_plan(tmp_path, zoo_model(name, **options), precision))
    assert {c.generation for c in checked} == {"trt10", "trt11"}
    if precision == "int8":  # the strongly typed INT8 export carries its precision in Q/DQ
        assert any(c.qdq_pairs for c in checked if c.generation == "trt11")
    for c in checked:
        print(
            f"{name} {c.segment} {c.generation} {c.precision}: max rel err {c.error:.2e}, "
            f"cosine {c.cosine:.5f}, "
            f"{c.qdq_pairs} Q/DQ pairs"
        )


def test_exports_are_written_as_files(tmp_path, zoo_model):
    plan = _plan(tmp_path, zoo_model("resnet18"), "int8")
    for generation in (TRT10, TRT11):
        folder = tmp_path / generation.name
        written = {p.name for ex in export_plan(plan, generation) for p in ex.write(folder)}
        segment = export_plan(plan, generation)[0].segment
        doc = json.loads((folder / f"{segment}.json").read_text(encoding="utf-8"))
        onnx.checker.check_model(str(folder / f"{segment}.onnx"), full_check=True)
        assert doc["tensorrt"] == generation.tensorrt and doc["precision"] == "int8"
        if generation is TRT10:
            assert f"{segment}.cache" in written and doc["builder"]["flags"][:2] == ["FP16", "INT8"]
            assert (
                (folder / f"{segment}.cache")
                .read_text()
                .startswith("TRT-100300-EntropyCalibration2\n")
            )
        else:
            assert not any(n.endswith(".cache") for n in written) and doc["qdq_scales"]
            assert doc["builder"]["network_flags"] == ["STRONGLY_TYPED"]


def test_board_facts_pick_the_generation():
    facts = BoardFacts("orin", "orin-agx-64gb", jetpack="6.2+b77")  # `tandem board facts`
    assert facts.dla_export == "trt10" and facts.to_json()["dla_export"] == "trt10"
    assert BoardFacts("orin", "orin-agx-64gb", jetpack="7.2.2").dla_export == "trt11"
    assert BoardFacts("pc", "orin-agx-64gb").dla_export is None  # not a Jetson: no JetPack
    assert generation_for(jetpack="6.2+b77") is TRT10
    assert generation_for(jetpack="7.2.2") is TRT11
    assert generation_for(jetpack="5.1.3-b29") is TRT8
    # on the board, TensorRT's own version wins, and its cache header carries it exactly
    assert generation_for(jetpack="6.0", tensorrt="8.6.2").cache_version == "8602"
    assert generation_for(tensorrt="10.3.0.30").cache_version == "100300"
    assert generation_for(tensorrt="11.4.1").strongly_typed
    assert generation_for(tensorrt="12.0").strongly_typed  # newer keeps the typed rules
    with pytest.raises(InputError, match=r"^JetPack 4\.6: no DLA export for it; expected major"):
        generation_for(jetpack="4.6")
    with pytest.raises(InputError, match="no TensorRT or JetPack version"):
        generation_for()
