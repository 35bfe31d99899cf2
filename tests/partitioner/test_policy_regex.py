"""Rule regexes run on RE2: linear-time matching, and a one-line refusal naming file, line, rule."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from partitioner.errors import ConfigError
from partitioner.policy import MAX_PATTERN, MAX_RULES, Policy, Rule, load_policy, resolve_pins
from tests.partitioner.partition_fakes import chain


def _policy(pattern: str) -> str:
    return (
        "precision: fp16\nrules:\n  - op: Conv\n    device: gpu\n"
        f"  - regex: '{pattern}'\n    device: gpu\n"
    )


@pytest.mark.parametrize(
    "pattern, reason",
    [
        ("a{99999999999}", "repetition {99999999999}: counts above 1000 are not supported"),
        ("x{2,50000}", "repetition {2,50000}: counts above 1000 are not supported"),
        ("(a)\\1", "invalid escape sequence: \\1"),  # a backreference
        ("(?=head)", "invalid perl operator: (?="),  # lookahead
        ("(?<!x)y", "invalid perl operator: (?<"),  # lookbehind
        ("((a{100}){100}){100}", "invalid repetition size: {100}"),
        ("conv[0-9", "missing ]: [0-9"),
        ("x" * (MAX_PATTERN + 1), f"{MAX_PATTERN + 1} characters; at most {MAX_PATTERN}"),
    ],
)
def test_refused_patterns_name_file_line_and_rule(tmp_path: Path, pattern: str, reason: str):
    path = tmp_path / "p.yaml"
    path.write_text(_policy(pattern), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    message = str(info.value)
    prefix = (
        f"{path}:5: rules[2].regex: expected a regular expression RE2 accepts "
        "(no backreferences or lookaround): "
    )
    assert message.startswith(prefix), message
    assert reason in message and "\n" not in message, message


def test_name_globs_are_bounded_too() -> None:
    text = f"rules:\n  - name: '{'*a' * MAX_PATTERN}'\n    device: gpu\n"
    with pytest.raises(ConfigError, match=rf"^p\.yaml:2: rules\[1\]\.name: {2 * MAX_PATTERN} char"):
        Policy.from_yaml(text, "p.yaml")


def test_the_number_of_rules_is_bounded() -> None:
    text = "rules:\n" + "  - {op: Conv, device: gpu}\n" * (MAX_RULES + 1)
    with pytest.raises(
        ConfigError, match=rf"^p\.yaml:1: rules: {MAX_RULES + 1} rules; at most {MAX_RULES}$"
    ):
        Policy.from_yaml(text, "p.yaml")


def test_rules_built_in_code_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"^rule 3: regex: expected a regular expression RE2"):
        Rule(index=3, regex="x" * (MAX_PATTERN + 1), device="gpu")


def test_refusal_prints_nothing_of_its_own(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError):
        Policy.from_yaml(_policy("(a)\\1"), "p.yaml")
    assert capfd.readouterr().err == ""  # RE2 logs parse errors to stderr unless told not to


def test_catastrophic_pattern_matches_in_linear_time() -> None:
    # Python's re needs minutes for (.*)*x$ on a long name that does not end in x.
    names = [f"model.{i}." + "conv.bn.act." * 30 + "y" for i in range(300)]
    policy = Policy.from_yaml(_policy("(.*)*x$"), "p.yaml")
    started = time.perf_counter()
    pins = resolve_pins(policy, chain(*names).topological_order())
    assert time.perf_counter() - started < 2.0
    assert pins.device == {}  # nothing matched, and the rule says so
    assert any("rule 2" in w and "matches no layer" in w for w in pins.warnings)


def test_re2_rules_still_match() -> None:
    policy = Policy.from_yaml(_policy("^model\\.[0-9]+\\.head$"), "p.yaml")
    names = ["model.1.head", "model.1.headx", "model.22.head"]
    pins = resolve_pins(policy, chain(*names).topological_order())
    assert sorted(pins.device) == ["model.1.head", "model.22.head"]
