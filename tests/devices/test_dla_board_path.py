"""The real-DLA path, tested up to the TensorRT call: every DLA segment of a plan exports as a
standalone ONNX model at the opset JetPack 5's TensorRT reads, which ONNX Runtime runs to the
same values as the reference; off a board the runtime says it used the emulator."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from devices.cpu import CpuRunner
from devices.dla import DlaEmulatorRunner
from devices.plan import read_plan
from devices.runtime import PlanRunner
from partitioner.onnx_export import export_onnx
from tandem.cli import main
from tests.models import random_inputs


def _plan(tmp_path, model):
    plan_path = tmp_path / "m.plan"
    argv = ["build", str(model), "--target", "orin-agx-64gb", "--fp16", "-o", str(plan_path)]
    assert main([*argv, "--quiet"]) == 0
    return read_plan(plan_path)


@pytest.mark.parametrize("name", ["resnet18", "yolov5s"])
def test_dla_segments_export_for_tensorrt(tmp_path, zoo_model, name):
    model = zoo_model(name)
    plan = _plan(tmp_path, model)
    with PlanRunner(plan, "cpu") as runner:
        runner.infer(random_inputs(model))
        # each segment runs through its device's BaseRunner: the emulator's for DLA segments
        runners = {seg.backend: type(seg.runner) for seg in runner.segments}
        assert runners == {"dla-emulator": DlaEmulatorRunner, "cpu": CpuRunner}
        dla = [rec for rec in plan.header["segments"] if rec["device"].startswith("dla")]
        assert dla
        for rec in dla:
            graph = plan.segment_graph(plan.record.segment(rec["name"]))
            exported = export_onnx(graph, opset=17)
            onnx.checker.check_model(exported, full_check=True)
            assert exported.opset_import[0].version == 17
            rng = np.random.default_rng(0)
            feeds = {
                t.name: rng.uniform(-1, 1, t.static_shape()).astype(np.float32)
                for t in graph.inputs
            }
            session = ort.InferenceSession(
                exported.SerializeToString(), providers=["CPUExecutionProvider"]
            )
            got = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
            with CpuRunner(graph) as cpu:
                want = cpu.infer(feeds)
            for key, ref in want.items():
                scale = float(np.max(np.abs(ref))) or 1.0
                assert float(np.max(np.abs(got[key] - ref))) / scale <= 1e-4


def test_off_a_board_dla_segments_run_on_the_emulator_and_say_why(tmp_path, zoo_model):
    model = zoo_model("resnet18")
    with PlanRunner(_plan(tmp_path, model), "auto") as runner:
        runner.infer(random_inputs(model))
        backends = set(runner.backends().values())
    assert "dla-emulator" in backends and "dla-trt" not in backends
    assert any("TensorRT" in note and "emulator" in note for note in runner.notes)
