"""The YAML device policy: where layers should run, at which precision, and how to partition.

A policy file looks like this (every key optional; ``docs/policy.md`` has the full reference)::

    default_device: dla        # gpu | dla
    gpu_fallback: true         # layers the DLA cannot run go to the GPU (else: build error)
    dla_core: 0                # 0 | 1
    precision: fp16            # fp32 | fp16 | int8
    objective: latency         # latency | throughput
    partition: trt             # trt | cost
    max_dla_subgraphs: 16      # DLA loadables per core
    min_dla_segment_layers: 1  # shorter DLA segments go to the GPU
    rules:
      - op: [Resize, Sigmoid]
        device: gpu
      - name: "head.*"
        precision: fp16

Rules are ordered; for each field (``device``, ``precision``) the first rule that matches a layer
and sets that field wins. A rule's matchers (``name`` glob, ``regex``, ``op``, ``range``) must all
match. Validation reports ``FILE:LINE: FIELD: what was expected`` using the YAML composer's marks.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from partitioner.capability import PRECISIONS, Precision
from partitioner.errors import ConfigError
from partitioner.ir import Node

PolicyDevice = Literal["gpu", "dla"]
Objective = Literal["latency", "throughput"]
Strategy = Literal["trt", "cost"]

DEVICES: tuple[PolicyDevice, ...] = ("gpu", "dla")
OBJECTIVES: tuple[Objective, ...] = ("latency", "throughput")
STRATEGIES: tuple[Strategy, ...] = ("trt", "cost")

TOP_KEYS = (
    "default_device",
    "gpu_fallback",
    "dla_core",
    "precision",
    "objective",
    "partition",
    "max_dla_subgraphs",
    "min_dla_segment_layers",
    "rules",
)
RULE_MATCHERS = ("name", "regex", "op", "range")
RULE_KEYS = (*RULE_MATCHERS, "device", "precision", "comment")


@dataclass(frozen=True)
class Rule:
    """One ordered rule: matchers (all must hold) and the fields it pins."""

    index: int  # 1-based position in ``rules:``, as users count
    name: str | None = None
    regex: str | None = None
    op: tuple[str, ...] | None = None
    range: tuple[int, int] | None = None  # inclusive; negative counts from the end
    device: PolicyDevice | None = None
    precision: Precision | None = None
    line: int | None = None  # 1-based line in the policy file
    comment: str | None = None
    _compiled: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.regex is not None and self._compiled is None:
            object.__setattr__(self, "_compiled", re.compile(self.regex))

    def matches(self, node: Node, position: int, count: int) -> bool:
        """Does this rule select ``node`` at topological ``position`` of ``count`` layers?"""
        if self.name is not None and not fnmatch.fnmatchcase(node.name, self.name):
            return False
        if self._compiled is not None and self._compiled.search(node.name) is None:
            return False
        if self.op is not None and node.op not in self.op:
            return False
        if self.range is not None:
            start, end = (i + count if i < 0 else i for i in self.range)
            if not start <= position <= end:
                return False
        return True

    def describe(self) -> str:
        """``rule 2 (op: Resize)`` — how reasons and warnings name a rule."""
        parts = []
        if self.name is not None:
            parts.append(f"name: {self.name}")
        if self.regex is not None:
            parts.append(f"regex: {self.regex}")
        if self.op is not None:
            parts.append("op: " + ", ".join(self.op))
        if self.range is not None:
            parts.append(f"range: [{self.range[0]}, {self.range[1]}]")
        return f"rule {self.index} ({'; '.join(parts)})"


@dataclass(frozen=True)
class Policy:
    """A validated device policy. Defaults are what ``trtexec --useDLACore=0 --fp16
    --allowGPUFallback`` does, so a model without a policy file shows its GPU/DLA split."""

    default_device: PolicyDevice = "dla"
    gpu_fallback: bool = True
    dla_core: int = 0
    precision: Precision = "fp16"
    objective: Objective = "latency"
    partition: Strategy = "trt"
    max_dla_subgraphs: int = 16
    min_dla_segment_layers: int = 1
    rules: tuple[Rule, ...] = ()
    source: str = "<default policy>"  # file name used in reasons and messages

    @property
    def dla_device(self) -> str:
        """The device string of the DLA core this policy targets (``dla0`` / ``dla1``)."""
        return f"dla{self.dla_core}"

    def with_overrides(self, **changes: Any) -> Policy:
        """A copy with some top-level fields changed (CLI flags such as ``--int8``), validated."""
        data: dict[str, Any] = {k: getattr(self, k) for k in TOP_KEYS if k != "rules"}
        data.update(changes)
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise ConfigError(f"{self.source}: unknown policy field '{unknown[0]}'")
        checked = Policy.from_dict(data, source=self.source)
        return replace(checked, rules=self.rules)

    @staticmethod
    def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Policy:
        """Validate a plain mapping (no line numbers in messages)."""
        node = yaml.SafeDumper(None).represent_data(_plain(data))  # type: ignore[arg-type]
        return _build(node, source, with_lines=False)

    @staticmethod
    def from_yaml(text: str, source: str = "<string>") -> Policy:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as err:
            line = err.problem_mark.line + 1 if err.problem_mark else "?"
            raise ConfigError(f"{source}:{line}: not valid YAML: {err.problem}") from None
        except (yaml.YAMLError, RecursionError) as err:  # e.g. a control character
            detail = " ".join(str(err).split())
            raise ConfigError(f"{source}: not valid YAML: {detail}") from None
        if node is None:  # an empty file is the default policy
            return replace(default_policy(), source=source)
        return _build(node, source, with_lines=True)


def default_policy() -> Policy:
    return Policy()


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file, the line and the field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read policy file '{p}': {err.strerror or err}") from None
    return Policy.from_yaml(text, source=str(p))


# ----- validation --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples to lists so the YAML representer emits plain sequences."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class _Checker:
    def __init__(self, source: str, with_lines: bool) -> None:
        self.source = source
        self.with_lines = with_lines

    def fail(self, node: yaml.Node, fieldname: str, message: str) -> ConfigError:
        where = self.source
        if self.with_lines:
            where += f":{node.start_mark.line + 1}"
        prefix = f"{fieldname}: " if fieldname else ""
        return ConfigError(f"{where}: {prefix}{message}")

    def line(self, node: yaml.Node) -> int | None:
        return node.start_mark.line + 1 if self.with_lines else None

    def mapping(self, node: yaml.Node, fieldname: str, allowed: Sequence[str]) -> dict[str, Any]:
        """``{key: (key_node, value_node)}``; unknown and repeated keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, fieldname, f"expected a mapping, got {_kind(node)}")
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            where = f"{fieldname}.{key}" if fieldname else str(key)
            if key not in allowed:
                hint = difflib.get_close_matches(str(key), allowed, n=1)
                tip = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise self.fail(
                    key_node, where, f"unknown key{tip}; expected one of: {', '.join(allowed)}"
                )
            if key in out:
                raise self.fail(key_node, where, "given twice")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node: yaml.Node, fieldname: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, fieldname, f"expected a single value, got {_kind(node)}")
        return yaml.SafeLoader("").construct_object(node)  # type: ignore[no-untyped-call]

    def choice(self, node: yaml.Node, fieldname: str, options: Sequence[Any]) -> Any:
        value = self.scalar(node, fieldname)
        if isinstance(value, str):
            value = value.lower()
        if value not in options or isinstance(value, bool) != isinstance(options[0], bool):
            shown = ", ".join(str(o) for o in options)
            raise self.fail(node, fieldname, f"expected one of {shown}; got {value!r}")
        return value

    def boolean(self, node: yaml.Node, fieldname: str) -> bool:
        value = self.scalar(node, fieldname)
        if not isinstance(value, bool):
            raise self.fail(node, fieldname, f"expected true or false; got {value!r}")
        return value

    def integer(self, node: yaml.Node, fieldname: str, minimum: int) -> int:
        value = self.scalar(node, fieldname)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(node, fieldname, f"expected an integer >= {minimum}; got {value!r}")
        return value

    def text(self, node: yaml.Node, fieldname: str) -> str:
        value = self.scalar(node, fieldname)
        if not isinstance(value, str) or not value:
            raise self.fail(node, fieldname, f"expected a non-empty string; got {value!r}")
        return value


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}"


def _build(node: yaml.Node, source: str, with_lines: bool) -> Policy:
    c = _Checker(source, with_lines)
    fields = c.mapping(node, "", TOP_KEYS)
    kw: dict[str, Any] = {"source": source}
    for key, (_, value) in fields.items():
        if key == "default_device":
            kw[key] = c.choice(value, key, DEVICES)
        elif key == "gpu_fallback":
            kw[key] = c.boolean(value, key)
        elif key == "dla_core":
            kw[key] = c.choice(value, key, (0, 1))
        elif key == "precision":
            kw[key] = c.choice(value, key, PRECISIONS)
        elif key == "objective":
            kw[key] = c.choice(value, key, OBJECTIVES)
        elif key == "partition":
            kw[key] = c.choice(value, key, STRATEGIES)
        elif key in ("max_dla_subgraphs", "min_dla_segment_layers"):
            kw[key] = c.integer(value, key, 1)
        elif key == "rules":
            kw[key] = _rules(c, value)
    return Policy(**kw)


def _rules(c: _Checker, node: yaml.Node) -> tuple[Rule, ...]:
    if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise c.fail(node, "rules", f"expected a list of rules, got {_kind(node)}")
    return tuple(_rule(c, item, i) for i, item in enumerate(node.value, start=1))


def _rule(c: _Checker, node: yaml.Node, index: int) -> Rule:
    where = f"rules[{index}]"
    fields = c.mapping(node, where, RULE_KEYS)
    kw: dict[str, Any] = {"index": index, "line": c.line(node)}
    for key, (_, value) in fields.items():
        fname = f"{where}.{key}"
        if key in ("name", "comment"):
            kw[key] = c.text(value, fname)
        elif key == "regex":
            pattern = c.text(value, fname)
            try:
                kw["_compiled"] = re.compile(pattern)
            except re.error as err:
                raise c.fail(value, fname, f"expected a Python regular expression: {err}") from None
            kw[key] = pattern
        elif key == "op":
            kw[key] = _ops(c, value, fname)
        elif key == "range":
            kw[key] = _range(c, value, fname)
        elif key == "device":
            kw[key] = c.choice(value, fname, DEVICES)
        elif key == "precision":
            kw[key] = c.choice(value, fname, PRECISIONS)
    if not any(m in fields for m in RULE_MATCHERS):
        raise c.fail(node, where, f"a rule needs at least one matcher: {', '.join(RULE_MATCHERS)}")
    if "device" not in fields and "precision" not in fields:
        raise c.fail(node, where, "a rule must set 'device' and/or 'precision'")
    if kw.get("device") == "dla" and kw.get("precision") == "fp32":
        raise c.fail(
            fields["precision"][1],
            f"{where}.precision",
            "expected fp16 or int8 with device dla (the DLA has no FP32)",
        )
    return Rule(**kw)


def _ops(c: _Checker, node: yaml.Node, fname: str) -> tuple[str, ...]:
    items = node.value if isinstance(node, yaml.SequenceNode) else [node]
    ops = tuple(c.text(item, fname) for item in items)
    if not ops:
        raise c.fail(node, fname, "expected an op type or a non-empty list of op types")
    return ops


def _range(c: _Checker, node: yaml.Node, fname: str) -> tuple[int, int]:
    expected = (
        "expected [start, end]: two layer positions (inclusive; negative counts from the end)"
    )
    if not isinstance(node, yaml.SequenceNode) or len(node.value) != 2:
        raise c.fail(node, fname, expected)
    start, end = (c.scalar(item, fname) for item in node.value)
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)):
        raise c.fail(node, fname, f"{expected}; got [{start!r}, {end!r}]")
    if (start < 0) == (end < 0) and start > end:
        raise c.fail(node, fname, f"expected start <= end; got [{start}, {end}]")
    return cast(int, start), cast(int, end)


# ----- applying rules to a graph -----------------------------------------------------------


@dataclass(frozen=True)
class Pin:
    """A per-layer decision taken from a rule."""

    value: str
    rule: Rule

    def why(self, source: str) -> str:
        return f"pinned by {self.rule.describe()} in {source}"


@dataclass
class Pins:
    device: dict[str, Pin] = field(default_factory=dict)
    precision: dict[str, Pin] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def resolve_pins(policy: Policy, order: Sequence[Node]) -> Pins:
    """Apply the ordered rules to layers in topological ``order``; first match wins per field.

    A rule that matches no layer, or whose every match was already decided by earlier rules,
    gives a warning (it has no effect, which is rarely what its author meant).
    """
    pins = Pins()
    count = len(order)
    effective: set[int] = set()
    matched: set[int] = set()
    for position, node in enumerate(order):
        for rule in policy.rules:
            if not rule.matches(node, position, count):
                continue
            matched.add(rule.index)
            if rule.device is not None and node.name not in pins.device:
                pins.device[node.name] = Pin(rule.device, rule)
                effective.add(rule.index)
            if rule.precision is not None and node.name not in pins.precision:
                pins.precision[node.name] = Pin(rule.precision, rule)
                effective.add(rule.index)
    for rule in policy.rules:
        where = f"{policy.source}:{rule.line}" if rule.line else policy.source
        if rule.index not in matched:
            pins.warnings.append(f"{where}: {rule.describe()} matches no layer")
        elif rule.index not in effective:
            pins.warnings.append(
                f"{where}: {rule.describe()} has no effect: earlier rules already decide "
                "every layer it matches"
            )
    return pins
