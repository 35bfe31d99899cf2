"""The CLI fuzzer in CI: a fixed campaign (seed 0, the same cases every run) of mutated ONNX
models, policies, targets, inventories, plans and .npz inputs through the real ``tandem``
commands, none of which may break the CLI's contract (tests/fuzz/harness.py says what that is).

Each kind's first cases are the classes issue 16 found failing, so this is also their
regression test. ``bench/fuzz.py --budget N`` runs the same campaign for longer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fuzz.campaign import KINDS, run_campaign
from tests.fuzz.harness import Expect, Limits, Result, check, stderr_problem

# Each kind's first four mutations are issue 16's classes. About 2 minutes on the 2-core CI
# machine (a run takes ~6 s, two at a time), more while hangs still run into the timeout.
CASES_PER_KIND = 4


def test_cli_fuzz_campaign_keeps_the_contract(tmp_path: Path) -> None:
    summary = run_campaign(
        budget_s=600,  # a bound, not the plan: the campaign is the fixed number of cases below
        seed=0,
        jobs=2,
        max_cases=CASES_PER_KIND * len(KINDS),
        limits=Limits(timeout_s=30, rss_bytes=1 << 30),
        work=tmp_path,
        repro=tmp_path / "repro",
    )
    assert sum(summary.tried.values()) == CASES_PER_KIND * len(KINDS)
    assert set(summary.tried) == set(KINDS)
    broken = [
        f"[{c.kind}] {c.rule}: {c.key} ({c.cases} runs), e.g. {c.example.op}: "
        f"tandem {' '.join(c.example.argv)} -> exit {c.example.exit}; reproducer {c.reproducer}"
        for c in summary.classes.values()
        if c.example is not None
    ]
    assert not broken, "\n".join(broken)


# ----- the harness's own checks: each must be able to fail ------------------------------------
def _result(code: int, stderr: str = "", stdout: str = "", **kw: object) -> Result:
    fields = {"wall_s": 1.0, "peak_rss": 100 << 20, "timed_out": False, **kw}
    return Result(["x"], code, stdout, stderr, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "stderr", "problem"),
    [
        (1, "tandem: error: x.yaml:3: dla_core: expected 0 or 1\n", ""),
        (1, "", "no message"),
        (1, "tandem: error: a\nand more\n", "2 lines"),
        (1, "KeyError: 'x'\n", "without the 'tandem: ' prefix"),
        (2, "usage: tandem build [-h]\n       MODEL\ntandem build: error: bad\n", ""),
        (2, "usage: tandem build\nsomething else\n", "not in argparse's form"),
    ],
)
def test_stderr_rule(code: int, stderr: str, problem: str) -> None:
    found = stderr_problem(stderr, code)
    assert (problem in found and found) if problem else found == ""


def test_check_names_every_broken_promise(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".model.plan.123.tmp").write_bytes(b"half")
    canary = tmp_path / "CANARY"
    canary.write_text("", encoding="utf-8")
    trace = 'Traceback (most recent call last):\n  File "/x/y.py", line 3, in f\nKeyError: 1\n'
    result = _result(-9, trace, "{not json", peak_rss=3 << 30, timed_out=True)
    expect = Expect(outputs=("model.plan",), json_stdout=True, canary=canary)
    rules = {v.rule for v in check(result, expect, out, Limits())}
    assert rules == {"hang", "traceback", "rss", "code-executed"}  # killed: a temp file may stay
    (out / "model.plan").write_bytes(b"plan")
    assert "partial-file" in {v.rule for v in check(result, expect, out, Limits())}
    ok = _result(0, "", json.dumps({"a": 1}))
    (out / ".model.plan.123.tmp").unlink()
    assert [v.rule for v in check(ok, expect, out, Limits())] == ["code-executed"]
    canary.unlink()
    assert check(ok, expect, out, Limits()) == []
    bad_json = _result(0, "", "{")
    assert [v.rule for v in check(bad_json, expect, out, Limits())] == ["json"]
    assert [v.rule for v in check(_result(3, ""), Expect(), out, Limits())] == [
        "exit-code",
        "partial-file",
    ]
