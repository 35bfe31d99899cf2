"""The YAML device policy: where layers should run, at which precision, and how to partition.

A policy file looks like this (every key optional; ``docs/policy.md`` has the full reference)::

    default_device: dla        # gpu | dla
    gpu_fallback: true         # layers the DLA cannot run go to the GPU (else: build error)
    cpu_fallback: true         # layers neither can run go to the board's CPU (else: build error)
    dla_core: 0                # 0 | 1 | any (concurrent plans: the planner picks the cores)
    precision: fp16            # fp32 | fp16 | int8
    objective: latency         # latency | throughput | energy (joules per inference)
    partition: trt             # trt | cost
    max_dla_subgraphs: 16      # DLA loadables per core
    min_dla_segment_layers: 1  # shorter DLA segments go to the GPU
    energy_budget_mj: 50       # cost strategy: best objective within 50 mJ per inference
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

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast

import re2

from partitioner.capability import PRECISIONS, Precision
from partitioner.errors import ConfigError
from partitioner.ir import Node
from partitioner.yaml_reader import (
    PathKey,
    YamlDoc,
    kind,
    lookup,
    parse_yaml,
    read_yaml,
    reject_unknown,
)

PolicyDevice = Literal["gpu", "dla"]
Objective = Literal["latency", "throughput", "energy"]
Strategy = Literal["trt", "cost"]

DEVICES: tuple[PolicyDevice, ...] = ("gpu", "dla")
OBJECTIVES: tuple[Objective, ...] = ("latency", "throughput", "energy")
STRATEGIES: tuple[Strategy, ...] = ("trt", "cost")

TOP_KEYS = (
    "default_device",
    "gpu_fallback",
    "cpu_fallback",
    "dla_core",
    "precision",
    "objective",
    "partition",
    "max_dla_subgraphs",
    "min_dla_segment_layers",
    "energy_budget_mj",
    "rules",
)
RULE_MATCHERS = ("name", "regex", "op", "range")
RULE_KEYS = (*RULE_MATCHERS, "device", "precision", "comment")
MAX_PATTERN = 1000  # characters of a rule's regex or name glob; layer names are far shorter
MAX_RULES = 1000

_REPEAT = re.compile(r"(?<!\\)\{(\d+)(?:,(\d*))?\}")  # x{n}, x{n,}, x{n,m}; fixed and linear
_RE2_EXPECTED = "expected a regular expression RE2 accepts (no backreferences or lookaround)"
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # RE2 would print its own lines on stderr


def compile_regex(pattern: str) -> Any:
    """A rule's regex as RE2, which matches in time linear in the layer name: a policy cannot
    make placement backtrack for minutes, as ``(.*)*x$`` does in Python's ``re``.

    Raises ValueError with the reason when RE2 refuses the pattern.
    """
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"{len(pattern)} characters; at most {MAX_PATTERN}")
    for m in _REPEAT.finditer(pattern):
        if any(n and int(n) > 1000 for n in m.groups()):
            # RE2 refuses most such counts, but reads one too long to parse as literal text.
            raise ValueError(f"repetition {m.group()}: counts above 1000 are not supported")
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as err:
        detail = err.args[0] if err.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None
    except UnicodeEncodeError:
        raise ValueError("not UTF-8 text (a lone surrogate?)") from None


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
    _compiled: Any = field(default=None, compare=False, repr=False)  # an RE2 pattern

    def __post_init__(self) -> None:
        if self.regex is not None and self._compiled is None:
            try:
                object.__setattr__(self, "_compiled", compile_regex(self.regex))
            except ValueError as err:
                raise ConfigError(f"rule {self.index}: regex: {_RE2_EXPECTED}: {err}") from None

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
    #: layers that neither the GPU (its lowering, for the target's arch) nor the DLA can run
    #: go to the board's CPU (the numpy reference), each with its reason; false: the build fails
    cpu_fallback: bool = True
    dla_core: int = 0
    precision: Precision = "fp16"
    objective: Objective = "latency"
    partition: Strategy = "trt"
    # None: the DLA's own limit (max_loadables_per_core in its support table: 16)
    max_dla_subgraphs: int | None = None
    min_dla_segment_layers: int = 1
    # ``partition: cost`` keeps predicted joules per inference at or under this (millijoules)
    energy_budget_mj: float | None = None
    rules: tuple[Rule, ...] = ()
    source: str = "<default policy>"  # file name used in reasons and messages
    #: ``dla_core: any``: a concurrent plan (targets.concurrency) may use every DLA core; a
    #: single-engine build uses ``dla_core`` (0)
    dla_any: bool = False
    #: 2: the DLA layers are cut into a stage on ``dla_core`` and one on the other core, a
    #: GPU/DLA0/DLA1 pipeline (``partitioner.dla_stages``). Set by the concurrency planner for
    #: its 3-stage lane, not a policy-file key; 1: one core, as a TensorRT engine
    dla_stages: int = 1

    @property
    def dla_device(self) -> str:
        """The device string of the DLA core this policy targets (``dla0`` / ``dla1``)."""
        return f"dla{self.dla_core}"

    def with_overrides(self, **changes: Any) -> Policy:
        """A copy with some top-level fields changed (CLI flags such as ``--int8``), validated;
        ``dla_stages`` (1 or 2, not a file key) may be changed too."""
        stages = changes.pop("dla_stages", self.dla_stages)
        if stages not in (1, 2):
            raise ConfigError(f"{self.source}: dla_stages must be 1 or 2, got {stages!r}")
        data: dict[str, Any] = {k: getattr(self, k) for k in TOP_KEYS if k != "rules"}
        data.update(changes)
        unknown = sorted(set(data) - set(TOP_KEYS))
        if unknown:
            raise ConfigError(f"{self.source}: unknown policy field '{unknown[0]}'")
        checked = Policy.from_dict(data, source=self.source)
        dla_any = checked.dla_any or (self.dla_any and "dla_core" not in changes)
        return replace(checked, rules=self.rules, dla_any=dla_any, dla_stages=stages)

    @property
    def second_dla_device(self) -> str:
        """The other core of a 2-core DLA (``dla_stages: 2``'s second stage)."""
        return f"dla{1 - self.dla_core}"

    @staticmethod
    def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Policy:
        """Validate a plain mapping (no line numbers in messages)."""
        return _build(YamlDoc(source, _plain(data)))

    @staticmethod
    def from_yaml(text: str, source: str = "<string>") -> Policy:
        return _build(parse_yaml(text, source))


def default_policy() -> Policy:
    return Policy()


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file; errors name the file, the line and the field."""
    return _build(read_yaml(path, "policy file"))


# ----- validation --------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Tuples to lists, as YAML would give them."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _mapping(doc: YamlDoc, path: PathKey, allowed: Sequence[str]) -> dict[str, Any]:
    value = lookup(doc.data, path)
    if not isinstance(value, dict):
        raise doc.error(path, "a mapping", value)
    reject_unknown(doc, path, allowed)
    return value


def _scalar(doc: YamlDoc, path: PathKey) -> Any:
    value = lookup(doc.data, path)
    if isinstance(value, (dict, list)):
        raise doc.error(path, "a single value", value)
    return value


def _choice(doc: YamlDoc, path: PathKey, options: Sequence[Any]) -> Any:
    value = _scalar(doc, path)
    if isinstance(value, str):
        value = value.lower()
    if value not in options or isinstance(value, bool) != isinstance(options[0], bool):
        raise doc.error(path, f"one of {', '.join(str(o) for o in options)}", value)
    return value


def _boolean(doc: YamlDoc, path: PathKey) -> bool:
    value = _scalar(doc, path)
    if not isinstance(value, bool):
        raise doc.error(path, "true or false", value)
    return value


def _integer(doc: YamlDoc, path: PathKey, minimum: int) -> int:
    value = _scalar(doc, path)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise doc.error(path, f"an integer >= {minimum}", value)
    return value


def _budget(doc: YamlDoc, path: PathKey) -> float | None:
    value = _scalar(doc, path)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise doc.error(path, "a positive number of millijoules per inference, or null", value)
    return float(value)


def _text(doc: YamlDoc, path: PathKey) -> str:
    value = _scalar(doc, path)
    if not isinstance(value, str) or not value:
        raise doc.error(path, "a non-empty string", value)
    return value


def _build(doc: YamlDoc) -> Policy:
    if doc.data is None:  # an empty file is the default policy
        return replace(default_policy(), source=doc.source)
    fields = _mapping(doc, (), TOP_KEYS)
    kw: dict[str, Any] = {"source": doc.source}
    for key in fields:
        path = (key,)
        if key == "default_device":
            kw[key] = _choice(doc, path, DEVICES)
        elif key in ("gpu_fallback", "cpu_fallback"):
            kw[key] = _boolean(doc, path)
        elif key == "dla_core":
            core = _choice(doc, path, (0, 1, "any"))
            kw[key], kw["dla_any"] = (0, True) if core == "any" else (core, False)
        elif key == "precision":
            kw[key] = _choice(doc, path, PRECISIONS)
        elif key == "objective":
            kw[key] = _choice(doc, path, OBJECTIVES)
        elif key == "partition":
            kw[key] = _choice(doc, path, STRATEGIES)
        elif key == "max_dla_subgraphs" and _scalar(doc, path) is None:
            kw[key] = None  # the DLA's own limit
        elif key in ("max_dla_subgraphs", "min_dla_segment_layers"):
            kw[key] = _integer(doc, path, 1)
        elif key == "energy_budget_mj":
            kw[key] = _budget(doc, path)
        elif key == "rules":
            kw[key] = _rules(doc)
    return Policy(**kw)


def _rules(doc: YamlDoc) -> tuple[Rule, ...]:
    rules = doc.data["rules"]
    if rules is None:
        return ()
    if not isinstance(rules, list):
        raise doc.error(("rules",), "a list of rules", rules)
    if len(rules) > MAX_RULES:  # each rule is tried on every layer
        raise doc.fail(("rules",), f"{len(rules)} rules; at most {MAX_RULES}")
    return tuple(_rule(doc, ("rules", i)) for i in range(len(rules)))


def _rule(doc: YamlDoc, path: PathKey) -> Rule:
    fields = _mapping(doc, path, RULE_KEYS)
    index = cast(int, path[-1]) + 1
    kw: dict[str, Any] = {"index": index, "line": doc.line(path)}
    for key in fields:
        where = path + (key,)
        if key in ("name", "comment"):
            kw[key] = _text(doc, where)
            if key == "name" and len(kw[key]) > MAX_PATTERN:  # a glob is matched in O(len**2)
                raise doc.fail(where, f"{len(kw[key])} characters; at most {MAX_PATTERN}")
        elif key == "regex":
            kw[key] = _text(doc, where)
            try:
                kw["_compiled"] = compile_regex(kw[key])
            except ValueError as err:
                raise doc.fail(where, f"{_RE2_EXPECTED}: {err}") from None
        elif key == "op":
            kw[key] = _ops(doc, where)
        elif key == "range":
            kw[key] = _range(doc, where)
        elif key == "device":
            kw[key] = _choice(doc, where, DEVICES)
        elif key == "precision":
            kw[key] = _choice(doc, where, PRECISIONS)
    if not any(m in fields for m in RULE_MATCHERS):
        raise doc.fail(path, f"a rule needs at least one matcher: {', '.join(RULE_MATCHERS)}")
    if "device" not in fields and "precision" not in fields:
        raise doc.fail(path, "a rule must set 'device' and/or 'precision'")
    if kw.get("device") == "dla" and kw.get("precision") == "fp32":
        raise doc.fail(
            path + ("precision",), "expected fp16 or int8 with device dla (the DLA has no FP32)"
        )
    return Rule(**kw)


def _ops(doc: YamlDoc, path: PathKey) -> tuple[str, ...]:
    value = lookup(doc.data, path)
    if not isinstance(value, list):
        return (_text(doc, path),)
    if not value:
        raise doc.fail(path, "expected an op type or a non-empty list of op types")
    return tuple(_text(doc, path + (i,)) for i in range(len(value)))


def _range(doc: YamlDoc, path: PathKey) -> tuple[int, int]:
    expected = "[start, end]: two layer positions (inclusive; negative counts from the end)"
    value = lookup(doc.data, path)
    if not isinstance(value, list) or len(value) != 2:
        raise doc.error(path, expected, value)
    start, end = value
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)):
        raise doc.fail(path, f"expected {expected}, got [{kind(start)}, {kind(end)}]")
    if (start < 0) == (end < 0) and start > end:
        raise doc.fail(path, f"expected start <= end, got [{start}, {end}]")
    return start, end


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
