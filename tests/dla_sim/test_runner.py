"""The DLA device backends: the emulator runner and the real-DLA (TensorRT) path."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from devices.calibration import Calibration, calibrate, source_from_path
from devices.cpu import run_graph
from devices.dla import DlaEmulatorRunner, DlaHardwareBackend, DlaUnavailableError
from dla_sim.compiler import compile_loadable
from dla_sim.loadable import Loadable
from partitioner.errors import InputError
from tests.dla_sim.graphs import Builder


def _graph():  # type: ignore[no-untyped-def]
    b = Builder("seg")
    x = b.input("x", (1, 4, 6, 6))
    y = b.conv(x, np.random.default_rng(0).standard_normal((8, 4, 3, 3)) * 0.2, pads=(1,) * 4)
    r = b.op("Relu", [y], (1, 8, 6, 6))
    return b.output(r)


def test_emulator_runner_runs_a_segment_like_the_reference() -> None:
    g = _graph()
    x = np.random.default_rng(1).standard_normal((1, 4, 6, 6)).astype(np.float32)
    want = run_graph(g, {"x": x})[g.outputs[0].name]
    with DlaEmulatorRunner(g, precision="fp16") as runner:
        got = runner.infer({"x": x})[g.outputs[0].name]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())
        with pytest.raises(InputError, match="input 'x'"):
            runner.infer({"x": x[..., :5]})
        timing = runner.predicted_timing(1.6e9, 100e9)
        assert [o.engine for o in timing.ops] == ["conv"] and timing.total_seconds > 0


def test_emulator_runner_takes_a_serialised_loadable() -> None:
    g = _graph()
    blob = compile_loadable(g, "fp16", 2).to_bytes()
    runner = DlaEmulatorRunner(loadable=Loadable.from_bytes(blob))
    assert runner.input_metadata() == {"x": (None, (1, 4, 6, 6))}
    with runner:
        out = runner.infer({"x": np.zeros((1, 4, 6, 6), np.float32)})
    assert list(out) == [g.outputs[0].name]


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_real_dla_path_says_plainly_that_it_is_unavailable() -> None:
    backend = DlaHardwareBackend()
    ok, reason = backend.available()
    assert not ok and "TensorRT" in reason and "emulator" in reason
    with pytest.raises(DlaUnavailableError, match="no real DLA here"):
        backend.build(_graph(), "fp16")


def test_calibrated_scales_drive_an_int8_emulator_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    g = _graph()
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "a.npz", x=rng.standard_normal((1, 4, 6, 6)).astype(np.float32))
    from_dir = calibrate(g, Calibration(source_from_path(tmp_path)), method="minmax")
    with DlaEmulatorRunner(g, precision="int8", scales=from_dir) as runner:
        out = runner.infer({"x": np.zeros((1, 4, 6, 6), np.float32)})
    assert runner.loadable is not None and runner.loadable.tensors["x"].dtype == "int8"
    assert np.isfinite(out[g.outputs[0].name]).all()
