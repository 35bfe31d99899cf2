"""Fuzz the inventory loader: mutated inventories of every flavour raise only TandemError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioner.errors import TandemError
from targets.inventory import parse_inventory
from tests.targets.test_inventory import ANSIBLE_INI, ANSIBLE_YAML, TANDEM_YAML

SEEDS = [TANDEM_YAML, ANSIBLE_INI, ANSIBLE_YAML]
FUZZ = settings(
    max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
# Characters that matter to YAML and INI syntax, so mutations hit the parsers' edges.
SYNTAX = st.sampled_from(list(":[]{},-=#&*!|>'\"%@`\n \t\\?") + ["0x", "~", "null", "yes", "1e9"])


def _load(text: str) -> None:
    try:
        inv = parse_inventory(text, Path("/fuzz/inventory"))
        for name in inv.boards:
            try:
                inv.board(name)
            except TandemError as err:
                assert str(err)
        for group in inv.groups:
            try:
                inv.group(group)
            except TandemError as err:
                assert str(err)
    except TandemError as err:
        assert str(err)


@FUZZ
@given(
    st.sampled_from(SEEDS),
    st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 3), SYNTAX | st.text(max_size=3)),
        min_size=1,
        max_size=8,
    ),
)
def test_mutated_inventories(seed: str, edits) -> None:
    text = seed
    for where, drop, insert in edits:
        pos = int(where * len(text))
        text = text[:pos] + insert + text[pos + drop :]
    _load(text)


@FUZZ
@given(st.text(alphabet=st.sampled_from(list("ab:[]{}-=, \n#&*!'\"0123456789")), max_size=120))
def test_random_syntax(text: str) -> None:
    _load(text)


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(10))}]")
    lines.append("all:\n  vars:\n    big: *a8\n  hosts:\n    h: {tandem_target: t}")
    _load("\n".join(lines))
