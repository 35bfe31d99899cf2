"""The config-file examples of issue 16 through the CLI: exit 1, one line naming the file and
the line or byte, no traceback; a YAML bomb as a target costs under 10 s and 1 GB."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from tandem.cli import main

REPO = Path(__file__).resolve().parents[2]
BOARD = (REPO / "targets" / "boards" / "orin-agx-64gb.yaml").read_text(encoding="utf-8")


def _model(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="layer0")]
    model = helper.make_model(
        helper.make_graph(nodes, "tiny", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


def _bomb() -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]")
    return "\n".join(lines) + "\nnotes: *a9\n"


POLICIES = [
    ("tag", b"dla_core: !!int abc\n", ":1: dla_core: YAML tags are not allowed"),
    ("latin-1", "# café\nprecision: fp16\n".encode("latin-1"), ": byte 5: not UTF-8 text"),
    ("utf-16", "precision: fp16\n".encode("utf-16"), ": byte 0: UTF-16 text (byte-order mark)"),
    ("utf-16le", "precision: fp16\n".encode("utf-16-le"), ": byte 1: control character U+0000"),
    ("repeat", b'rules:\n  - regex: "a{99999999999}"\n    device: gpu\n', ":2: rules[1].regex"),
    ("lookbehind", b'rules:\n  - regex: "(?<=a)b"\n    device: gpu\n', ":2: rules[1].regex"),
]


@pytest.mark.parametrize("data, fragment", [p[1:] for p in POLICIES], ids=[p[0] for p in POLICIES])
def test_bad_policies(tmp_path: Path, capsys, data: bytes, fragment: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_bytes(data)
    model = _model(tmp_path)
    code = main(["inspect", str(model), "--target", "orin-agx-64gb", "--policy", str(policy)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err, err
    assert f"{policy}{fragment}" in err, err


def test_catastrophic_rule_regex_is_valid_and_fast(tmp_path: Path, capsys) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text('rules:\n  - regex: "(.*)*x$"\n    device: gpu\n', encoding="utf-8")
    started = time.perf_counter()
    code = main(["inspect", str(_model(tmp_path)), "--target", "orin-agx-64gb",
                 "--policy", str(policy)])  # fmt: skip
    assert code == 0 and time.perf_counter() - started < 10
    assert "Traceback" not in capsys.readouterr().err


TARGETS = [
    ("tag", BOARD.replace("  sms: 16", "  sms: !!int x", 1), "gpu.sms: YAML tags are not allowed"),
    ("bomb", BOARD + _bomb(), "values (aliases that repeat too much?)"),
]


@pytest.mark.parametrize("text, fragment", [t[1:] for t in TARGETS], ids=[t[0] for t in TARGETS])
def test_bad_targets_in_a_fresh_process(tmp_path: Path, text: str, fragment: str) -> None:
    """Measured in its own process: CPU time (robust to a busy machine) and peak RSS."""
    target = tmp_path / "bomb.yaml"
    target.write_text(text, encoding="utf-8")
    script = (
        "import resource, sys\n"
        "from tandem.cli import main\n"
        "code = main(sys.argv[1:])\n"
        "use = resource.getrusage(resource.RUSAGE_SELF)\n"
        # VmHWM, not ru_maxrss: Linux carries the forking pytest process's peak into the latter
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(use.ru_utime + use.ru_stime, hwm)\n"
        "sys.exit(code)\n"
    )
    argv = ["inspect", str(_model(tmp_path)), "--target", str(target)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-c", script, *argv], capture_output=True, text=True, env=env, timeout=60
    )
    err = proc.stderr.strip()
    assert proc.returncode == 1 and "\n" not in err and "Traceback" not in err, err
    assert err.startswith("tandem: error: ") and f"{target}:" in err and fragment in err, err
    cpu_s, peak_kib = proc.stdout.split()[-2:]
    assert float(cpu_s) < 10, f"{cpu_s} s of CPU"
    assert int(peak_kib) < 1 << 20, f"peak RSS {peak_kib} KiB"


INVENTORIES = [
    ("range", "[j]\norin[0:9999999999] tandem_target=t\n", ":2: host orin[0:9999999999]"),
    (
        "3000 groups",
        "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(3000)),
        ":1996: group g998",
    ),
    (
        "40 deep",
        "".join(f"[g{i}:children]\ng{i + 1}\n" for i in range(40)),
        ":66: group g33: children nested more than 32 deep",
    ),
    ("3000 deep", "all: " + "{children: {g: " * 3000 + "{}" + "}}" * 3000, ":1: all.children..."),
    ("host", "[j]\norin1 ansible_host=../../etc tandem_target=t\n", ":2: host orin1: ansible_host"),
]


@pytest.mark.parametrize(
    "text, fragment", [i[1:] for i in INVENTORIES], ids=[i[0] for i in INVENTORIES]
)
def test_bad_inventories(tmp_path: Path, capsys, text: str, fragment: str) -> None:
    inventory = tmp_path / "hosts"
    inventory.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    code = main(["board", "facts", "orin1", "--inventory", str(inventory)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "Traceback" not in err, err
    assert f"{inventory}{fragment}" in err, err
    assert time.perf_counter() - started < 10
