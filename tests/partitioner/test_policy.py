"""The YAML device policy: every field, every validation message (file:line: field: expected)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from partitioner.errors import ConfigError
from partitioner.policy import Policy, Rule, default_policy, load_policy, resolve_pins
from tests.partitioner.partition_fakes import chain


def _yaml(text: str) -> Policy:
    return Policy.from_yaml(textwrap.dedent(text), source="p.yaml")


def test_defaults_match_trtexec_dla_fp16_with_fallback() -> None:
    p = default_policy()
    assert (p.default_device, p.gpu_fallback, p.dla_core, p.precision) == ("dla", True, 0, "fp16")
    assert (p.objective, p.partition, p.max_dla_subgraphs, p.min_dla_segment_layers) == (
        "latency",
        "trt",
        None,  # the DLA's own limit (its support table)
        1,
    )
    assert p.rules == () and p.dla_device == "dla0"
    assert _yaml("") == Policy(source="p.yaml")  # an empty file is the default policy


def test_every_field_parses() -> None:
    p = _yaml(
        """
        default_device: gpu
        gpu_fallback: false
        dla_core: 1
        precision: INT8
        objective: throughput
        partition: cost
        max_dla_subgraphs: 8
        min_dla_segment_layers: 3
        rules:
          - name: "head.*"
            device: gpu
          - regex: "^backbone\\\\.conv[0-9]+$"
            precision: fp16
          - op: Resize
            device: gpu
          - op: [Sigmoid, Mul]
            range: [10, -1]
            device: dla
            precision: int8
            comment: SiLU in the neck
        """
    )
    assert (p.default_device, p.gpu_fallback, p.dla_core, p.precision) == ("gpu", False, 1, "int8")
    assert (p.objective, p.partition, p.max_dla_subgraphs, p.min_dla_segment_layers) == (
        "throughput",
        "cost",
        8,
        3,
    )
    assert p.dla_device == "dla1"
    r1, r2, r3, r4 = p.rules
    assert (r1.index, r1.name, r1.device, r1.line) == (1, "head.*", "gpu", 11)
    assert (r2.regex, r2.precision, r2.line) == ("^backbone\\.conv[0-9]+$", "fp16", 13)
    assert r3.op == ("Resize",)
    assert (r4.op, r4.range, r4.device, r4.precision) == (
        ("Sigmoid", "Mul"),
        (10, -1),
        "dla",
        "int8",
    )
    assert r3.describe() == "rule 3 (op: Resize)"
    assert r4.describe() == "rule 4 (op: Sigmoid, Mul; range: [10, -1])"


BAD = [
    # (yaml, expected message)
    ("default_device: cpu\n", "p.yaml:1: default_device: expected one of gpu, dla, got 'cpu'"),
    (
        "gpu_fallback: yes please\n",
        "p.yaml:1: gpu_fallback: expected true or false, got 'yes please'",
    ),
    ("dla_core: 2\n", "p.yaml:1: dla_core: expected one of 0, 1, any, got 2"),
    ("dla_core: true\n", "p.yaml:1: dla_core: expected one of 0, 1, any, got True"),
    ("precision: fp64\n", "p.yaml:1: precision: expected one of fp32, fp16, int8, got 'fp64'"),
    (
        "objective: speed\n",
        "p.yaml:1: objective: expected one of latency, throughput, energy, got 'speed'",
    ),
    ("partition: greedy\n", "p.yaml:1: partition: expected one of trt, cost, got 'greedy'"),
    ("max_dla_subgraphs: 0\n", "p.yaml:1: max_dla_subgraphs: expected an integer >= 1, got 0"),
    (
        "\nmin_dla_segment_layers: two\n",
        "p.yaml:2: min_dla_segment_layers: expected an integer >= 1, got 'two'",
    ),
    ("precision: [fp16]\n", "p.yaml:1: precision: expected a single value, got a list"),
    (
        "default_devise: gpu\n",
        "p.yaml:1: default_devise: unknown key (did you mean 'default_device'?)",
    ),
    ("- gpu\n", "p.yaml:1: <document>: expected a mapping, got a list"),
    ("precision: fp16\nprecision: int8\n", "p.yaml:2: precision: given twice"),
    ("rules: {op: Conv}\n", "p.yaml:1: rules: expected a list of rules, got a mapping"),
    (
        "rules:\n  - op: Conv\n    devize: gpu\n",
        "p.yaml:3: rules[1].devize: unknown key (did you mean 'device'?)",
    ),
    (
        "rules:\n  - device: gpu\n",
        "p.yaml:2: rules[1]: a rule needs at least one matcher: name, regex, op, range",
    ),
    (
        "rules:\n  - op: Conv\n    device: gpu\n  - op: Relu\n",
        "p.yaml:4: rules[2]: a rule must set 'device' and/or 'precision'",
    ),
    (
        "rules:\n  - op: Conv\n    device: dla\n    precision: fp32\n",
        "p.yaml:4: rules[1].precision: expected fp16 or int8 with device dla (the DLA has no FP32)",
    ),
    (
        "rules:\n  - op: Conv\n    device: tpu\n",
        "p.yaml:3: rules[1].device: expected one of gpu, dla, got 'tpu'",
    ),
    (
        "rules:\n  - op: Conv\n    precision: bf16\n",
        "p.yaml:3: rules[1].precision: expected one of fp32, fp16, int8, got 'bf16'",
    ),
    (
        "rules:\n  - regex: 'conv[0-9'\n    device: gpu\n",
        "p.yaml:2: rules[1].regex: expected a regular expression RE2 accepts (no backreferences "
        "or lookaround): missing ]",
    ),
    (
        "rules:\n  - name: 7\n    device: gpu\n",
        "p.yaml:2: rules[1].name: expected a non-empty string, got 7",
    ),
    (
        "rules:\n  - op: []\n    device: gpu\n",
        "p.yaml:2: rules[1].op: expected an op type or a non-empty list of op types",
    ),
    (
        "rules:\n  - range: [3]\n    device: gpu\n",
        "p.yaml:2: rules[1].range: expected [start, end]",
    ),
    (
        "rules:\n  - range: [a, 3]\n    device: gpu\n",
        "p.yaml:2: rules[1].range: expected [start, end]",
    ),
    (
        "rules:\n  - range: [5, 3]\n    device: gpu\n",
        "p.yaml:2: rules[1].range: expected start <= end, got [5, 3]",
    ),
    ("rules:\n  - gpu\n", "p.yaml:2: rules[1]: expected a mapping, got 'gpu'"),
    ("precision: [fp16\n", "p.yaml:2: invalid YAML"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_validation_names_file_line_and_field(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        Policy.from_yaml(text, source="p.yaml")
    assert str(err.value).startswith(message), str(err.value)


def test_load_policy_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("objective: latency\nprecision: int4\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"^{path}:2: precision: expected one of"):
        load_policy(path)
    path.write_text("precision: int8\n", encoding="utf-8")
    assert load_policy(path).precision == "int8"
    assert load_policy(path).source == str(path)
    with pytest.raises(ConfigError, match="cannot read policy file"):
        load_policy(tmp_path / "missing.yaml")


def test_from_dict_validates_without_lines() -> None:
    p = Policy.from_dict({"precision": "int8", "rules": [{"op": ["Resize"], "device": "gpu"}]})
    assert p.precision == "int8" and p.rules[0].op == ("Resize",) and p.rules[0].line is None
    with pytest.raises(ConfigError, match=r"^<dict>: rules\[1\]\.device: expected one of gpu, dla"):
        Policy.from_dict({"rules": [{"op": "Conv", "device": "npu"}]})
    with pytest.raises(
        ConfigError, match=r"^cfg: precison: unknown key \(did you mean 'precision'"
    ):
        Policy.from_dict({"precison": "fp16"}, source="cfg")


def test_with_overrides_validates() -> None:
    p = _yaml("rules:\n  - op: Conv\n    device: gpu\n")
    q = p.with_overrides(precision="int8", partition="cost")
    assert (q.precision, q.partition, q.rules, q.source) == ("int8", "cost", p.rules, "p.yaml")
    with pytest.raises(ConfigError, match="precision: expected one of"):
        p.with_overrides(precision="fp8")


# ----- matching ----------------------------------------------------------------------------------

NAMES = ("stem.conv", "backbone.conv1", "backbone.conv10", "neck.up", "head.conv", "head.sig")
OPS = {
    "stem.conv": "Conv",
    "backbone.conv1": "Conv",
    "backbone.conv10": "Conv",
    "neck.up": "Resize",
    "head.conv": "Conv",
    "head.sig": "Sigmoid",
}

MATCH_TABLE = [
    ({"name": "head.*"}, ["head.conv", "head.sig"]),
    ({"name": "*conv1"}, ["backbone.conv1"]),
    ({"regex": r"conv1"}, ["backbone.conv1", "backbone.conv10"]),  # re.search semantics
    ({"regex": r"conv1$"}, ["backbone.conv1"]),
    ({"op": "Resize"}, ["neck.up"]),
    ({"op": ["Resize", "Sigmoid"]}, ["neck.up", "head.sig"]),
    ({"range": [1, 2]}, ["backbone.conv1", "backbone.conv10"]),  # inclusive positions
    ({"range": [-2, -1]}, ["head.conv", "head.sig"]),  # negative counts from the end
    ({"range": [4, -1]}, ["head.conv", "head.sig"]),
    ({"op": "Conv", "name": "head.*"}, ["head.conv"]),  # matchers combine with AND
]


@pytest.mark.parametrize("matchers, expected", MATCH_TABLE)
def test_rule_matchers(matchers: dict[str, object], expected: list[str]) -> None:
    g = chain(*NAMES, ops=OPS)
    policy = Policy.from_dict({"rules": [{**matchers, "device": "gpu"}]})
    pins = resolve_pins(policy, g.topological_order())
    assert sorted(pins.device) == sorted(expected)


def test_first_matching_rule_wins_per_field() -> None:
    g = chain(*NAMES, ops=OPS)
    policy = _yaml(
        """
        rules:
          - name: "head.*"
            device: gpu
          - op: Conv
            device: dla
            precision: int8
          - name: "*"
            precision: fp16
        """
    )
    pins = resolve_pins(policy, g.topological_order())
    # head.conv: device from rule 1, precision from rule 2 (rule 1 sets no precision)
    assert (pins.device["head.conv"].rule.index, pins.device["head.conv"].value) == (1, "gpu")
    assert (pins.precision["head.conv"].rule.index, pins.precision["head.conv"].value) == (
        2,
        "int8",
    )
    assert pins.precision["neck.up"].rule.index == 3
    assert pins.device["stem.conv"].why("p.yaml") == "pinned by rule 2 (op: Conv) in p.yaml"
    assert pins.warnings == []


def test_rules_without_effect_are_warnings_not_errors() -> None:
    g = chain(*NAMES, ops=OPS)
    policy = _yaml(
        """
        rules:
          - op: Softmax
            device: gpu
          - op: Conv
            device: gpu
          - name: "head.conv"
            device: dla
        """
    )
    pins = resolve_pins(policy, g.topological_order())
    assert pins.warnings == [
        "p.yaml:3: rule 1 (op: Softmax) matches no layer",
        "p.yaml:7: rule 3 (name: head.conv) has no effect: earlier rules already decide every "
        "layer it matches",
    ]


def test_rule_compiles_its_regex() -> None:
    assert Rule(index=1, regex="a.c", device="gpu").matches(chain("abc").nodes[0], 0, 1)


# ----- the examples in docs/policy.md ------------------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def _doc_yaml_blocks() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    return [block.split("```", 1)[0] for block in text.split("```yaml\n")[1:]]


def test_every_yaml_example_in_the_docs_is_a_valid_policy() -> None:
    blocks = _doc_yaml_blocks()
    assert len(blocks) >= 6
    for i, block in enumerate(blocks):
        Policy.from_yaml(block, source=f"docs/policy.md example {i}")


def test_docs_yolo_example_pins_the_detect_decode_not_its_convs() -> None:
    from partitioner.onnx_import import import_onnx
    from tandem.zoo import build_model

    (yolo,) = [b for b in _doc_yaml_blocks() if "model.24" in b]
    graph = import_onnx(build_model("yolov5s", resolution=64))
    pins = resolve_pins(Policy.from_yaml(yolo, "yolo.yaml"), graph.topological_order())
    pinned = sorted(pins.device)
    assert "model.24.m.0.reshape" in pinned and "model.24.concat" in pinned
    assert "model.24.m.0" not in pinned and "model.23.cv3.conv" not in pinned
    assert len(pinned) == 3 * 12 + 1 and pins.warnings == []  # 12 decode layers per scale
