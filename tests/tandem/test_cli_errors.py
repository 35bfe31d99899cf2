"""Bad input exits 1 with one line naming the thing and what was expected — never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from tandem.cli import main


def _tiny_model(path: Path, op: str = "Relu", opset: int = 17, nodes=None) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    nodes = nodes or [helper.make_node(op, ["x"], ["y"], name="layer0")]
    graph = helper.make_graph(nodes, "tiny", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def _unsupported_model(tmp_path: Path) -> Path:
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Shrink", ["a"], ["b"], name="hm1"),
        helper.make_node("Shrink", ["b"], ["c"], name="hm2"),
        helper.make_node("Unique", ["c"], ["y"], name="uniq"),
    ]
    return _tiny_model(tmp_path / "unsupported.onnx", nodes=nodes)


def _cyclic_model(tmp_path: Path) -> Path:
    nodes = [
        helper.make_node("Add", ["x", "b"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("Neg", ["a"], ["y"], name="neg"),
    ]
    return _tiny_model(tmp_path / "cyclic.onnx", nodes=nodes)


def _truncated(tmp_path: Path) -> Path:
    good = _tiny_model(tmp_path / "good.onnx")
    data = good.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _not_onnx(tmp_path: Path) -> Path:
    p = tmp_path / "notes.onnx"
    p.write_text("this is a text file, not a protobuf\n" * 20, encoding="utf-8")
    return p


CASES = [
    ("missing file", lambda t: t / "nope.onnx", ["nope.onnx"]),
    ("not onnx", _not_onnx, ["notes.onnx"]),
    ("truncated protobuf", _truncated, ["truncated.onnx"]),
    ("unsupported ops", _unsupported_model, ["Shrink", "hm1", "hm2", "Unique", "uniq"]),
    ("opset out of range", lambda t: _tiny_model(t / "old.onnx", opset=6), ["opset 6", "7"]),
    ("cyclic graph", _cyclic_model, ["cycle", "add", "relu"]),
]


@pytest.mark.parametrize("make, needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
@pytest.mark.parametrize("command", ["inspect", "run", "compare"])
def test_bad_model_is_one_clear_line(tmp_path, capsys, command, make, needles):
    path = make(tmp_path)
    code, err = _run(capsys, command, str(path))
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert err.startswith("tandem: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


@pytest.fixture()
def relu_model(tmp_path) -> Path:
    return _tiny_model(tmp_path / "relu.onnx")


NPZ_CASES = [
    (
        "missing input",
        {"other": np.zeros((1, 3, 4, 4), np.float32)},
        ["missing input 'x'", "other"],
    ),
    ("wrong shape", {"x": np.zeros((1, 3, 5, 4), np.float32)}, ["'x'", "1x3x5x4", "1x3x4x4"]),
    ("wrong dtype", {"x": np.zeros((1, 3, 4, 4), np.float64)}, ["'x'", "float64", "float32"]),
]


@pytest.mark.parametrize(
    "arrays, needles", [c[1:] for c in NPZ_CASES], ids=[c[0] for c in NPZ_CASES]
)
@pytest.mark.parametrize("command", ["run", "compare"])
def test_bad_npz_is_one_clear_line(tmp_path, capsys, relu_model, command, arrays, needles):
    npz = tmp_path / "in.npz"
    np.savez(npz, **arrays)
    code, err = _run(capsys, command, str(relu_model), "--inputs", str(npz))
    assert code == 1
    assert len(err.splitlines()) == 1, err
    assert "in.npz" in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"


def test_console_script_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "inspect", str(tmp_path / "absent.onnx")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "absent.onnx" in proc.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "--debug", "inspect", str(tmp_path / "absent.onnx")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr


def test_compare_exits_3_on_mismatch(tmp_path, capsys, relu_model):
    code = main(["compare", str(relu_model), "--atol", "-1", "--rtol", "-1"])
    out = capsys.readouterr().out
    assert code == 3
    assert "MISMATCH" in out


def test_run_saves_outputs_and_json(tmp_path, capsys, relu_model):
    import json

    out_npz = tmp_path / "out.npz"
    code = main(
        ["run", str(relu_model), "--save-outputs", str(out_npz), "--json", "--iterations", "2"]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["outputs"]["y"]["shape"] == [1, 3, 4, 4]
    assert doc["latency_ms"]["iterations"] == 2
    with np.load(out_npz) as saved:
        assert saved["y"].shape == (1, 3, 4, 4)
        assert saved["y"].min() >= 0


@pytest.mark.parametrize("flag", ["--profile", "--save-outputs"])
def test_unwritable_output_is_one_clear_line_and_leaves_nothing(tmp_path, capsys, relu_model, flag):
    target = tmp_path / "missing-folder" / "out.json"
    if flag == "--save-outputs":
        (tmp_path / "missing-folder").write_text("a folder should be here", encoding="utf-8")
    code = main(["run", str(relu_model), "--target", "orin-agx-64gb", "--fp16", flag, str(target)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "cannot write" in err or "missing-folder" in err
    assert not target.exists()


@pytest.mark.parametrize(
    "env",
    [{"PYTHONIOENCODING": "utf-8"}, {"PYTHONIOENCODING": "ascii"}, {"LANG": "C", "LC_ALL": "C"}],
    ids=["utf-8", "ascii", "C-locale"],
)
def test_any_text_prints_whatever_the_output_encoding(tmp_path, env):
    """A file name that is not UTF-8 reaches Python as a lone surrogate, which no encoding
    can write; "é" has no ASCII form. Both print as backslash escapes instead of ending in
    UnicodeEncodeError. (A surrogate escape inside a YAML file is refused by the reader.)"""
    import os

    model = _tiny_model(tmp_path / "tiny.onnx")
    policy = tmp_path / "odd.yaml"
    policy.write_text('rules:\n  - name: "caf\\xe9*"\n    device: gpu\n', encoding="ascii")
    odd_plan = os.fsencode(tmp_path) + b"/plan\xff.plan"  # not UTF-8: argv holds "\udcff"
    proc = subprocess.run(
        [os.fsencode(sys.executable), b"-m", b"tandem", b"build", os.fsencode(model), b"--target",
         b"orin-agx-64gb", b"--policy", os.fsencode(policy), b"-o", odd_plan],
        capture_output=True,
        env={**os.environ, **env},
    )  # fmt: skip
    out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, out
    assert "Traceback" not in out and "plan\\udcff.plan" in out and os.path.exists(odd_plan)
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "inspect", str(model), "--target", "orin-agx-64gb",
         "--policy", str(policy)],
        capture_output=True,
        env={**os.environ, **env},
    )  # fmt: skip
    out = proc.stdout.decode("utf-8", "replace") + proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in out, out
    assert ("caf\\xe9" if env.get("PYTHONIOENCODING") == "ascii" else "café") in out
    surrogate = tmp_path / "surrogate.yaml"
    surrogate.write_text('rules:\n  - name: "\\ud800"\n    device: gpu\n', encoding="ascii")
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", "inspect", str(model), "--target", "orin-agx-64gb",
         "--policy", str(surrogate)],
        capture_output=True,
        env={**os.environ, **env},
    )  # fmt: skip
    err = proc.stderr.decode("utf-8", "replace").strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and "surrogate.yaml:2" in err, err
