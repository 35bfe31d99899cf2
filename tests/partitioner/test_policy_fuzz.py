"""Fuzz the policy loader: mutated and random YAML never escapes as anything but TandemError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from partitioner.errors import TandemError
from partitioner.policy import Policy

VALID = """\
default_device: dla
gpu_fallback: true
dla_core: 1
precision: int8
objective: throughput
partition: cost
max_dla_subgraphs: 8
min_dla_segment_layers: 2
rules:
  - name: "model.24.*"
    device: gpu
  - regex: "^layer[0-9]+\\\\.conv"
    precision: fp16
  - op: [Resize, Concat]
    device: gpu
    precision: fp16
  - range: [0, 3]
    device: dla
"""

FUZZ = settings(
    max_examples=700,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


def _load(text: str) -> None:
    try:
        Policy.from_yaml(text, source="fuzz.yaml")
    except TandemError as err:
        message = str(err)
        assert message and "\n" not in message.strip(), message
        assert "fuzz.yaml" in message, message


def test_the_seed_policy_is_valid():
    policy = Policy.from_yaml(VALID, source="fuzz.yaml")
    assert policy.dla_core == 1 and len(policy.rules) == 4


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.characters()), min_size=1, max_size=6))
def test_mutated_characters(edits):
    text = list(VALID)
    for index, char in edits:
        text[index] = char
    _load("".join(text))


@FUZZ
@given(st.data())
def test_dropped_and_duplicated_lines(data):
    lines = VALID.splitlines()
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(lines) - 1))
        if data.draw(st.booleans()):
            del lines[i]
        else:
            lines.insert(i, lines[i])
        if not lines:
            break
    _load("\n".join(lines))


yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
)
yaml_values = st.recursive(
    yaml_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(["name", "op", "device", "precision", "range", "regex", "x"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "default_device",
                "gpu_fallback",
                "dla_core",
                "precision",
                "objective",
                "partition",
                "max_dla_subgraphs",
                "min_dla_segment_layers",
                "rules",
                "unknown",
            ]
        ),
        yaml_values,
        max_size=6,
    )
)
def test_random_documents(doc):
    import yaml

    _load(yaml.safe_dump(doc))
