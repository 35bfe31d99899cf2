"""Ctrl-C at any moment of a real ``python -m tandem`` process: exit 130, one line, no traceback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import yaml

from tests.sshd import REPO, interrupt, with_ctrl_c
from tests.targets.test_deploy import make_plan

# Measured from the moment ``tandem.cli`` is imported (``-X importtime`` says when): before that
# the signal can land in the interpreter's own start-up (site.py and the venv's .pth files, 0.1
# to 0.3 s here with an editable install), before any line of Tandem runs. After it Tandem
# imports its commands (seconds on a loaded machine), then waits on a board that never answers.
# (Between that import and ``main``'s first line lie a few bytecodes nothing can guard.)
DELAYS = [0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.0]


@pytest.fixture(scope="module")
def hung_deploy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """argv of a deploy that never ends by itself: its board accepts TCP and stays silent."""
    tmp = tmp_path_factory.mktemp("hung")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    board = {"host": "127.0.0.1", "port": listener.getsockname()[1], "target": "orin-agx-64gb"}
    inventory = tmp / "inv.yaml"
    inventory.write_text(yaml.safe_dump({"boards": {"hung": board}}), encoding="utf-8")
    plan = make_plan(tmp / "m.plan")
    yield ["deploy", str(plan), "--board", "hung", "--inventory", str(inventory)] + [
        "--connect-timeout",
        "120",
    ]
    listener.close()


@pytest.mark.parametrize("delay", DELAYS)
def test_ctrl_c_at_any_moment_is_exit_130_and_one_line(hung_deploy: list[str], delay: float):
    proc = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "tandem", *hung_deploy],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=with_ctrl_c,
    )
    try:
        for line in proc.stderr:
            if line.rstrip().endswith("| tandem.cli"):
                break
        time.sleep(delay)
        out, err = interrupt(proc, 30)
    finally:
        proc.kill()
    err = "".join(line + "\n" for line in err.splitlines() if not line.startswith("import time:"))
    lines = err.strip().splitlines()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and lines[-1] == "tandem: interrupted", err
    assert all(line.startswith("hung: ") for line in lines[:-1]), err  # progress lines only
    assert out == ""


def test_the_cli_module_imports_no_command_at_load() -> None:
    """What ``tandem.cli`` imports before ``main`` runs is outside its Ctrl-C handling: keep it
    to the standard library and the tiny ``partitioner.errors``."""
    code = (
        "import json, sys; before = set(sys.modules); import tandem.cli; "
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    loaded = json.loads(proc.stdout)
    heavy = [m for m in loaded if m.split(".")[0] in {"numpy", "onnx", "yaml", "paramiko"}]
    assert heavy == [] and "tandem.commands" not in loaded and "tandem.cli" in loaded, loaded
