"""Issue 18: nothing prints a time without its source. ``run``, ``exec``, ``inspect``,
``compare`` and ``deploy --bench`` (over a real sshd on loopback, the board running this
checkout) run on a zoo model; every number followed by a time unit in their output, and every
row of a table with a time column, must say ``measured on``, ``emulated on`` or ``predicted
for``. JSON documents and Chrome traces carry the same labels."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.timesource import cpu_name
from tests.models import zoo_model_path
from tests.sshd import REPO, Fleet, fleet_of_boards

TARGET = "orin-agx-64gb"
LABELS = ("measured on ", "emulated on ", "predicted for ")
# a number, then a unit of time or a rate: "12.5 ms", "3 s", "0.62 qps", "40us"
TIME = re.compile(r"(?<![\w.])\d[\d.,]*(?:e[+-]?\d+)?\s?(?:ms|us|µs|s|sec|qps)\b")
TIME_HEADER = re.compile(r"\((?:ms|us|s)\)|\b(?:ms|MS)\b")
RULE = re.compile(r"^[-\s]+$")


def unlabelled(text: str) -> list[str]:
    """Lines that show a time without saying what produced it. A table (a header line, a rule
    of dashes, rows up to a blank line) whose header names a time unit needs the label in each
    row, in the header, or in the caption line just above the header."""
    lines = text.splitlines()
    bad = [line for line in lines if TIME.search(line) and not _labelled(line)]
    for i, line in enumerate(lines[1:], 1):
        header = lines[i - 1]
        if not (RULE.match(_body(line)) and "-" in line and TIME_HEADER.search(header)):
            continue
        caption = lines[i - 2] if i >= 2 else ""
        if _labelled(header) or _labelled(caption):
            continue
        for row in lines[i + 1 :]:
            if not _body(row).strip():
                break
            if not _labelled(row):
                bad.append(row)
    return bad


def _body(line: str) -> str:
    """The line without trtexec's ``[date-time] [I]`` prefix."""
    return re.sub(r"^\[[^\]]*\] \[[A-Z]\] ", "", line)


def _labelled(line: str) -> bool:
    return any(label in line.lower() for label in LABELS)


def test_the_check_finds_unlabelled_times() -> None:
    """The grep itself: it must catch a bare time, a bare table, and pass labelled ones."""
    assert unlabelled("GPU Compute Time: min = 1510 ms") == ["GPU Compute Time: min = 1510 ms"]
    assert unlabelled("Throughput: 0.62 qps") and unlabelled("MEDIAN_MS 1268 took 3 s")
    table = "Board  Median (ms)\n------ -----------\nnx          1268.0\n"
    assert unlabelled(table) == ["nx          1268.0"]
    assert not unlabelled("Throughput: 0.62 qps [emulated on x86_64 CPU]")
    assert not unlabelled("x: 1x3x32x32, 12 segments, 44.48 MB, 3 iterations, sm_87")
    assert not unlabelled("predicted for orin-agx-64gb MAXN: 5.1 ms end to end")


def tandem(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "tandem", *argv], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, f"tandem {' '.join(argv)}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + "\n" + proc.stderr  # a blank line ends a table


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return zoo_model_path("mobilenetv3-small", resolution=32)


@pytest.fixture(scope="module")
def plan(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plan") / "m.plan"
    tandem("build", str(model), "--target", TARGET, "--fp16", "-o", str(path))
    return path


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    yield from fleet_of_boards(tmp_path)


def test_run_exec_inspect_compare_label_every_time(model: Path, plan: Path, tmp_path: Path):
    outputs = {
        "run plan": tandem("run", str(plan), "--iterations", "3", "--backend", "cpu"),
        "run model": tandem("run", str(model), "--iterations", "2"),
        "inspect model": tandem("inspect", str(model)),
        "inspect placement": tandem("inspect", str(model), "--target", TARGET, "--fp16"),
        "inspect plan": tandem("inspect", str(plan)),
        "compare": tandem("compare", str(model), "--plan", str(plan), "--rtol", "1e-2"),
    }
    outputs["exec"] = tandem(  # trtexec's flags, with its performance summary and profile
        "exec", f"--onnx={model}", f"--target={TARGET}", "--useDLACore=0", "--allowGPUFallback",
        "--fp16", "--iterations=3", "--duration=0", "--warmUp=0", "--dumpProfile", "--verbose",
    )  # fmt: skip
    for name, text in outputs.items():
        assert not unlabelled(text), f"{name}: times without a source:\n" + "\n".join(
            unlabelled(text)
        )
    # the labels are the real ones: this host's CPU ran it, the board was predicted
    here = f"emulated on {cpu_name()}"
    assert here in outputs["run plan"] and f"predicted for {TARGET} MAXN" in outputs["run plan"]
    assert re.search(r"GPU Compute Time: min = .* ms \[emulated on ", outputs["exec"])
    assert re.search(r"Throughput: [\d.]+ qps \[emulated on ", outputs["exec"])
    assert f"Predicted for {TARGET} MAXN by the cost model" in outputs["exec"]


def test_json_and_trace_name_their_sources(plan: Path, tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    doc = json.loads(
        subprocess.run(
            [sys.executable, "-m", "tandem", "run", str(plan), "--json", "--backend", "cpu",
             "--profile", str(trace)],
            cwd=REPO, capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    here = f"emulated on {cpu_name()}"
    assert doc["latency_ms"]["source"] == here
    assert doc["predicted_source"] == f"predicted for {TARGET} MAXN"
    assert set(doc["segment_sources"]) == set(doc["segment_ms"])
    assert set(doc["segment_sources"].values()) == {here}
    events = json.loads(trace.read_text())["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert processes == {1: f"ran here: {here}", 2: f"predicted for {TARGET} MAXN"}
    spans = [e for e in events if e["ph"] == "X"]
    predicted = {e["pid"] for e in spans if e["args"].get("predicted")}
    ran = {e["pid"] for e in spans if not e["args"].get("predicted")}
    assert predicted == {2} and ran == {1}  # never one process holding both kinds of time


def test_deploy_bench_names_the_backend_of_its_median(
    fleet: Fleet, plan: Path, tmp_path: Path
) -> None:
    fleet.add("x86host").install_tandem_shim()
    out = tandem(
        "deploy", str(plan), "--board", "x86host", "--inventory", str(fleet.inventory()),
        "--bench", "--backend", "cpu", "--iterations", "2", "--results", str(tmp_path / "r"),
    )  # fmt: skip
    assert not unlabelled(out), "\n".join(unlabelled(out))
    row = next(line for line in out.splitlines() if line.startswith("x86host"))
    assert f"emulated on {cpu_name()}" in row  # the "board" is this x86 host's CPU
