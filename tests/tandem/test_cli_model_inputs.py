"""Hostile models through the CLI (issue 16, model inputs): every command refuses each with exit 1
and one line naming the input or layer, writes no plan, and does so in bounded time and memory;
a run whose tensors would not fit the memory budget is refused before it allocates."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper, numpy_helper

from tandem.cli import main
from tests.partitioner.test_validate import (
    constant_with_short_data,
    conv,
    model,
    relu,
    resize,
)

BAD: list[tuple[str, Callable[[], onnx.ModelProto], list[str]]] = [
    ("negative input dim", lambda: relu([1, -3, 4]), ["input 'x'", "dim 1 is -3"]),
    ("input dim 1e12", lambda: relu([1, 10**12]), ["input 'x'", "dim 1 is 1000000000000"]),
    ("Constant 1e9 dims, 16 bytes", constant_with_short_data,
     ["layer 'bigconst' (Constant)", "raw_data size (16 bytes) is too small"]),
    ("Resize scale -2", lambda: resize([1, 1, -2, 2]), ["layer 'resize' (Resize)", "scales"]),
    ("Resize scales 1e30", lambda: resize([1, 1, 1e30, 1e30]), ["layer 'resize'", "1 TiB"]),
    ("negative pads", lambda: conv(pads=[-1, -1, -1, -1]), ["layer 'conv' (Conv)", "pads"]),
    ("empty input name", lambda: model([helper.make_node("Relu", [""], ["y"], name="relu")]),
     ["layer 'relu' (Relu)", "empty string"]),
    ("node without inputs", lambda: model([helper.make_node("Relu", ["x"], ["a"], name="r0"),
                                           helper.make_node("Add", [], ["y"], name="add")]),
     ["layer 'add' (Add)", "input size 0"]),
]  # fmt: skip

COMMANDS = {
    "inspect": [],
    "build": ["--target", "orin-agx-64gb", "--quiet", "-o", "{tmp}/out.plan"],
    "run": [],
    "compare": [],
}


def _save(tmp_path: Path, m: onnx.ModelProto, name: str = "bad.onnx") -> Path:
    path = tmp_path / name
    onnx.save(m, str(path))
    return path


def _argv(command: str, path: Path, tmp_path: Path) -> list[str]:
    return [command, str(path), *(a.format(tmp=tmp_path) for a in COMMANDS[command])]


@pytest.mark.parametrize("make, needles", [c[1:] for c in BAD], ids=[c[0] for c in BAD])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_hostile_model_is_one_line_in_every_command(tmp_path, capsys, command, make, needles):
    path = _save(tmp_path, make())
    code = main(_argv(command, path, tmp_path))
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    assert len(err.splitlines()) == 1 and err.startswith(f"tandem: error: {path}: "), err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not (tmp_path / "out.plan").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.onnx"]  # nothing half-written either


def _resize_from(shape: list[int], factor: float) -> onnx.ModelProto:
    """The issue's example is a 1x1x1x200 image resized x2000: a 3 GB output."""
    sc = numpy_helper.from_array(np.array([1, 1, factor, factor], np.float32), "scales")
    g = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", mode="nearest")],
        "m", [helper.make_tensor_value_info("x", TP.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TP.FLOAT, None)], [sc],
    )  # fmt: skip
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _outer_product(n: int) -> onnx.ModelProto:
    """A column times a row: n * 8 bytes of weights in the file, n * n floats if folded."""
    col = numpy_helper.from_array(np.ones((n, 1), np.float32), "col")
    row = numpy_helper.from_array(np.ones((1, n), np.float32), "row")
    return model([helper.make_node("MatMul", ["col", "row"], ["m"], name="outer"),
                  helper.make_node("Add", ["x", "m"], ["y"], name="add")], [col, row],
                 x=[1])  # fmt: skip


# Peak RSS from VmHWM: ru_maxrss would carry over the forking pytest process's own peak.
_MEASURED = (
    "import re, resource, sys\n"
    "from tandem.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "use = resource.getrusage(resource.RUSAGE_SELF)\n"
    "hwm = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)\n"
    "print(f'USAGE {hwm} {use.ru_utime + use.ru_stime}', file=sys.stderr)\n"
    "sys.exit(code)\n"
)
BOUNDED = [
    ("run", lambda: relu([1, 10**12]), {}, 1),
    ("compare", lambda: relu([1, 10**12]), {}, 1),
    ("inspect", constant_with_short_data, {}, 1),
    ("build", lambda: resize([1, 1, 1e30, 1e30]), {}, 1),
    ("run", lambda: _resize_from([1, 1, 1, 200], 2000), {"TANDEM_MEMORY_BUDGET": "1G"}, 1),
    ("compare", lambda: _resize_from([1, 1, 1, 200], 2000), {"TANDEM_MEMORY_BUDGET": "1G"}, 1),
    # valid, 160 KB: constant folding must not compute the 1.6 GB product at import
    ("inspect", lambda: _outer_product(20000), {}, 0),
]


@pytest.mark.parametrize("command, make, env, code", BOUNDED, ids=[f"{c[0]}-{i}" for i, c in
                                                                   enumerate(BOUNDED)])  # fmt: skip
def test_hostile_models_take_under_10_s_and_1_gb(tmp_path, command, make, env, code, monkeypatch):
    """Time is the child's CPU time (user + system): what it costs, whatever else this machine
    runs meanwhile; the wall clock only has to stay under the subprocess timeout."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = _save(tmp_path, make())
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURED, *_argv(command, path, tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    _, rss_kb, cpu_s = lines.pop().split()
    assert proc.returncode == code and len(lines) == code and "Traceback" not in proc.stderr, lines
    assert float(cpu_s) < 10, f"{float(cpu_s):.1f} s of CPU"
    assert int(rss_kb) < 1024 * 1024, f"{int(rss_kb) / 1024:.0f} MiB"


@pytest.mark.parametrize("command", ["run", "compare"])
def test_memory_budget_refuses_before_allocating_and_names_the_largest_tensor(
    tmp_path, capsys, monkeypatch, command
):
    path = _save(tmp_path, _resize_from([1, 1, 1, 200], 20), "up.onnx")  # y: 1x1x20x4000, 312.5 KiB
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "100K")
    code = main([command, str(path)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    for needle in (str(path), "'y' (1x1x20x4000 float32, 312 KiB)", "after layer 'resize'",
                   "the memory budget is 100 KiB (TANDEM_MEMORY_BUDGET=100K)"):  # fmt: skip
        assert needle in err, f"{needle!r} not in {err!r}"
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "1M")
    assert main([command, str(path)]) == 0


def test_memory_budget_applies_to_plans_and_in_memory_builds(tmp_path, capsys, monkeypatch):
    path = _save(tmp_path, _resize_from([1, 1, 1, 200], 20), "up.onnx")
    plan = tmp_path / "up.plan"
    assert main(["build", str(path), "--target", "orin-agx-64gb", "-o", str(plan)]) == 0
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "100K")
    for argv in (["run", str(plan)], ["run", str(path), "--target", "orin-agx-64gb"]):
        capsys.readouterr()
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert "'y' (1x1x20x4000 float32" in err and "memory budget" in err, err


@pytest.mark.parametrize("value", ["lots", "-1G", "5 parsecs"])
def test_a_malformed_budget_is_one_line(tmp_path, capsys, monkeypatch, value):
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", value)
    assert main(["run", str(_save(tmp_path, relu([1, 3, 4])))]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"TANDEM_MEMORY_BUDGET='{value}'" in err, err


def test_a_budget_as_a_share_of_available_memory(tmp_path, capsys, monkeypatch):
    path = _save(tmp_path, _resize_from([1, 1, 1, 200], 20))
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "0.000001%")  # well under 312 KiB anywhere
    assert main(["run", str(path)]) == 1
    assert "(TANDEM_MEMORY_BUDGET=0.000001%)" in capsys.readouterr().err
    monkeypatch.setenv("TANDEM_MEMORY_BUDGET", "50%")
    assert main(["run", str(path)]) == 0


def test_run_summarises_big_outputs_without_a_float64_copy(tmp_path, capsys):
    """run's table and --json give min / max / mean of each output; computing them must not
    copy a gigabyte output to float64 (the issue's 5.7 GiB temporary for a 3 GB output)."""
    path = _save(tmp_path, _resize_from([1, 1, 1, 200], 100))  # y: 1x1x100x20000 float32, 8 MB
    out_bytes = 100 * 20000 * 4
    assert main(["run", str(path), "--json"]) == 0  # warm: imports and caches are not counted
    capsys.readouterr()
    for argv in (["run", str(path), "--json"], ["run", str(path)]):
        tracemalloc.start()
        try:
            assert main(argv) == 0
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 1.5 * out_bytes, f"{argv}: peak {peak / 1e6:.1f} MB, output 8 MB"
        out = capsys.readouterr().out
        if "--json" in argv:
            y = json.loads(out)["outputs"]["y"]
            assert y["shape"] == [1, 1, 100, 20000] and -1 <= y["min"] <= y["mean"] <= y["max"] <= 1


@pytest.mark.parametrize("command", ["inspect", "run", "compare"])
def test_a_dim_bound_on_the_command_line_is_checked(tmp_path, capsys, command):
    path = _save(tmp_path, relu(["n", 3, 4]))
    assert main([command, str(path), "--dim", f"n={10**12}"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "input 'x': dim 0 is 1000000000000" in err, err


def test_a_name_that_is_not_utf8_is_one_line(tmp_path):
    """protobuf hands a string field that is not UTF-8 back as bytes (found by the fuzzer)."""
    x = helper.make_tensor_value_info("x", TP.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TP.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="LAYERNAME")], "g",
                              [x], [y])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    # same length, so the protobuf stays well-formed: only the name is no longer UTF-8
    data = model.SerializeToString().replace(b"LAYERNAME", b"\xc3(\xc3(\xc3(\xc3(\xc3")
    path = tmp_path / "bad.onnx"
    path.write_bytes(data)
    for command in (["inspect", str(path), "--target", "orin-agx-64gb"], ["run", str(path)]):
        proc = subprocess.run([sys.executable, "-m", "tandem", *command], capture_output=True,
                              text=True, timeout=120)  # fmt: skip
        err = proc.stderr.strip()
        assert proc.returncode == 1 and "\n" not in err and "Traceback" not in err, err
        assert "node #0: its name is not UTF-8" in err, err


def test_onnx_runtime_errors_are_tandems_one_line(tmp_path):
    """ONNX Runtime refuses an empty convolution input at run time; its own log lines must not
    reach stderr beside Tandem's error (found by the fuzzer)."""
    x = helper.make_tensor_value_info("x", TP.FLOAT, [1, 1, 0, 4])
    y = helper.make_tensor_value_info("y", TP.FLOAT, None)
    w = numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "g", [x], [y], [w])
    path = _save(tmp_path, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    proc = subprocess.run([sys.executable, "-m", "tandem", "compare", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    err = proc.stderr.strip()
    assert proc.returncode == 1 and "\n" not in err and "Traceback" not in err, err
    assert "ONNX Runtime could not run the model" in err, err
