"""Layer-support tables: YAML data (``devices/tables/*.yaml``) and the code that evaluates it.

A table lists, per ONNX op, the precisions a device runs natively, the precision it silently
runs instead (``upgrade: {int8: fp16}``), a list of numeric *checks* and the TensorRT version an
op needs. Each check kind is a small function in ``devices/support_checks.py``: it returns
``None`` when the layer passes, a failure text (``kernel 33x33 > DLA max 32``) or a ``Note`` that
keeps the layer but tells the user something (``runs as Scale + Sum``). :func:`evaluate` applies,
in order: op known -> version -> precision -> static shapes -> batch/dim limits -> the checks.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.hardware import version_at_least
from devices.support_checks import (
    CHECKS,
    ConvGeometry,
    NodeView,
    Note,
    SupportEnv,
    conv_geometry,
)
from partitioner.capability import PRECISIONS, Verdict
from partitioner.dtypes import NARROW_FLOATS, SUB_BYTE_INTS
from partitioner.errors import ConfigError
from partitioner.ir import Constant, Graph, Node, Tensor
from partitioner.plugins import PLUGINS, Plugin
from partitioner.yaml_reader import YamlDoc, read_yaml, reject_unknown, require

TABLES_DIR = Path(__file__).with_name("tables")

__all__ = [
    "CHECKS", "ConvGeometry", "Note", "NodeView", "SupportEnv", "SupportResult", "SupportTable",
    "OpRule", "Check", "conv_geometry", "dla_table", "gpu_table",
    "evaluate", "load_table",
]  # fmt: skip

# ----- the table as data -------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    kind: str
    params: dict[str, Any]
    unconfirmed: bool = False
    source: str = ""


@dataclass(frozen=True)
class OpRule:
    op: str
    precisions: tuple[str, ...] = ()
    upgrade: dict[str, str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()
    unsupported: str | None = None
    requires: dict[str, str] = field(default_factory=dict)
    note: str | None = None
    unconfirmed: bool = False
    source: str = ""


@dataclass(frozen=True)
class SupportTable:
    """One device version's table (``dla`` v1/v2 or ``gpu``)."""

    device: str
    label: str
    version: int | None
    ops: dict[str, OpRule]
    max_batch: int | None = None
    max_dim: int | None = None
    static_shapes: bool = False
    # Per-segment (loadable) limits, checked by DlaCapability.segment_problems.
    max_loadables_per_core: int | None = None
    max_segment_weight_bytes: int | None = None
    max_segment_intermediate_bytes: int | None = None
    unlisted_reason: str = "{op} is not supported on {label}"
    source: str = ""


@dataclass(frozen=True)
class SupportResult:
    """The outcome before it is phrased for one layer: ``detail`` has no layer prefix."""

    ok: bool
    detail: str = ""
    notes: tuple[str, ...] = ()
    runs_as: str | None = None
    unconfirmed: bool = False

    def verdict(self, node: Node) -> Verdict:
        if not self.ok:
            return Verdict.no(f"{node.op} '{node.name}': {self.detail}")
        text = "; ".join(self.notes)
        return Verdict.yes(f"{node.op} '{node.name}': {text}" if text else "")


_TABLE_KEYS = {"device", "label", "version", "limits", "ops", "unlisted_reason", "source"}
_LIMIT_KEYS = {"max_batch", "max_dim", "static_shapes", "source", "max_loadables_per_core",
               "max_segment_weight_bytes", "max_segment_intermediate_bytes"}  # fmt: skip
_OP_KEYS = {"precisions", "upgrade", "checks", "unsupported", "requires", "note", "unconfirmed",
            "source", "like"}  # fmt: skip


def load_table(path: str | Path) -> SupportTable:
    """Parse and validate a support table; errors name file, line and field."""
    doc = read_yaml(path, "support table")
    if not isinstance(doc.data, dict):
        raise doc.error((), "a mapping with device, label, ops", doc.data)
    reject_unknown(doc, (), _TABLE_KEYS)
    reject_unknown(doc, ("limits",), _LIMIT_KEYS)
    device = require(doc, ("device",), "'dla' or 'gpu'", lambda v: v in ("dla", "gpu"))
    label = require(doc, ("label",), "a device label such as DLA", lambda v: isinstance(v, str))
    version = require(doc, ("version",), "an integer", lambda v: isinstance(v, int), default=None)
    raw_ops = require(doc, ("ops",), "a mapping of op name to rule", lambda v: isinstance(v, dict))
    ops: dict[str, OpRule] = {}
    for op in raw_ops:
        ops[op] = _parse_op(doc, op, raw_ops)
    for op, rule in ops.items():
        _check_check_kinds(doc, op, rule)
    positive = lambda v: isinstance(v, int) and v > 0  # noqa: E731
    return SupportTable(
        device=device,
        label=label,
        version=version,
        ops=ops,
        max_batch=require(doc, ("limits", "max_batch"), "a positive int", positive, None),
        max_dim=require(doc, ("limits", "max_dim"), "a positive int", positive, None),
        max_loadables_per_core=require(
            doc, ("limits", "max_loadables_per_core"), "a positive int", positive, None
        ),
        max_segment_weight_bytes=require(
            doc, ("limits", "max_segment_weight_bytes"), "a positive int", positive, None
        ),
        max_segment_intermediate_bytes=require(
            doc, ("limits", "max_segment_intermediate_bytes"), "a positive int", positive, None
        ),
        static_shapes=require(
            doc, ("limits", "static_shapes"), "true or false", lambda v: isinstance(v, bool), False
        ),  # fmt: skip
        unlisted_reason=require(
            doc,
            ("unlisted_reason",),
            "a string with {op}",
            lambda v: isinstance(v, str),
            SupportTable.unlisted_reason,
        ),  # fmt: skip
        source=doc.source,
    )


def _parse_op(doc: YamlDoc, op: str, raw_ops: dict[str, Any], depth: int = 0) -> OpRule:
    p: tuple[str | int, ...] = ("ops", op)
    require(doc, p, "a mapping (precisions, checks, ...)", lambda v: isinstance(v, dict))
    reject_unknown(doc, p, _OP_KEYS)
    entry = raw_ops[op]
    if "like" in entry:
        base_name = require(doc, p + ("like",), "the name of another op in this table",
                            lambda v: v in raw_ops and v != op)  # fmt: skip
        if depth > 4:
            raise doc.error(p + ("like",), "a chain of 'like' without cycles", base_name)
        base = _parse_op(doc, base_name, raw_ops, depth + 1)
        merged = {**_rule_to_raw(base), **{k: v for k, v in entry.items() if k != "like"}}
        return _rule_from_raw(doc, op, merged)
    return _rule_from_raw(doc, op, entry)


def _rule_to_raw(rule: OpRule) -> dict[str, Any]:
    return {
        "precisions": list(rule.precisions),
        "upgrade": dict(rule.upgrade),
        "checks": [
            {"check": c.kind, **c.params, "unconfirmed": c.unconfirmed, "source": c.source}
            for c in rule.checks
        ],  # fmt: skip
        "unsupported": rule.unsupported,
        "requires": dict(rule.requires),
        "note": rule.note,
        "unconfirmed": rule.unconfirmed,
        "source": rule.source,
    }


def _rule_from_raw(doc: YamlDoc, op: str, entry: dict[str, Any]) -> OpRule:
    p: tuple[str | int, ...] = ("ops", op)
    precisions = entry.get("precisions") or []
    if not isinstance(precisions, list) or any(x not in PRECISIONS for x in precisions):
        raise doc.error(p + ("precisions",), "a list of fp32 / fp16 / int8", precisions)
    upgrade = entry.get("upgrade") or {}
    if not isinstance(upgrade, dict) or any(
        k not in PRECISIONS or v not in precisions for k, v in upgrade.items()
    ):
        raise doc.error(p + ("upgrade",), "a mapping like {int8: fp16} onto listed precisions",
                        upgrade)  # fmt: skip
    unsupported = entry.get("unsupported")
    if unsupported is not None and not isinstance(unsupported, str):
        raise doc.error(p + ("unsupported",), "a reason string", unsupported)
    if unsupported is None and not precisions:
        raise ConfigError(
            f"{doc.where(p)}: op '{op}' needs 'precisions' (or 'unsupported: <reason>')"
        )
    requires = entry.get("requires") or {}
    if not isinstance(requires, dict) or any(k not in ("tensorrt", "dla_sw") for k in requires):
        raise doc.error(p + ("requires",), "a mapping like {tensorrt: '8.6.12'}", requires)
    raw_checks = entry.get("checks") or []
    if not isinstance(raw_checks, list):
        raise doc.error(p + ("checks",), "a list of {check: KIND, ...} mappings", raw_checks)
    checks = []
    for i, c in enumerate(raw_checks):
        if not isinstance(c, dict) or not isinstance(c.get("check"), str):
            raise doc.error(p + ("checks", i), "a mapping with 'check: KIND'", c)
        params = {k: v for k, v in c.items() if k not in ("check", "unconfirmed", "source")}
        checks.append(Check(c["check"], params, bool(c.get("unconfirmed", False)),
                            str(c.get("source", ""))))  # fmt: skip
    return OpRule(
        op=op,
        precisions=tuple(precisions),
        upgrade={str(k): str(v) for k, v in upgrade.items()},
        checks=tuple(checks),
        unsupported=unsupported,
        requires={k: str(v) for k, v in requires.items()},
        note=entry.get("note"),
        unconfirmed=bool(entry.get("unconfirmed", False)),
        source=str(entry.get("source", "")),
    )


def _check_check_kinds(doc: YamlDoc, op: str, rule: OpRule) -> None:
    for i, c in enumerate(rule.checks):
        if c.kind not in CHECKS:
            raise doc.error(
                ("ops", op, "checks", i, "check"),
                f"a known check kind ({', '.join(sorted(CHECKS))})",
                c.kind,
            )


@functools.cache
def dla_table(version: int) -> SupportTable:
    """The packaged table for DLA ``version`` (1 = Xavier, 2 = Orin)."""
    path = TABLES_DIR / f"dla{version}.yaml"
    if not path.exists():
        raise ConfigError(f"no DLA support table for DLA version {version} ({path.name})")
    return load_table(path)


@functools.cache
def gpu_table() -> SupportTable:
    return load_table(TABLES_DIR / "gpu.yaml")


# ----- evaluation ---------------------------------------------------------------------------------


def evaluate(
    table: SupportTable, node: Node, graph: Graph, precision: str, env: SupportEnv | None = None
) -> SupportResult:
    """Can the table's device run ``node`` at ``precision``? The result says why (not)."""
    env = env or SupportEnv()
    label = table.label
    rule = table.ops.get(node.op)
    plugin = PLUGINS.find(node) if rule is None or node.domain not in ("", "ai.onnx") else None
    if plugin is not None:
        return plugin_support(plugin, table.device, label, precision)
    if node.domain not in ("", "ai.onnx"):
        custom = f"{node.domain}::{node.op}"
        return SupportResult(False, f"custom-domain op '{custom}' is not supported on {label}")
    if rule is None:
        return SupportResult(False, table.unlisted_reason.format(op=node.op, label=label))
    if rule.unsupported is not None:
        text = rule.unsupported.format(op=node.op, label=label)
        return SupportResult(False, _flag(text, rule.unconfirmed), unconfirmed=rule.unconfirmed)
    training = _training_only(node)
    if training is not None:
        return SupportResult(False, f"{training} is not supported on {label}")
    for software, need in rule.requires.items():
        have = getattr(env, software)
        if not version_at_least(have, need):
            name = "TensorRT" if software == "tensorrt" else "DLA software"
            return SupportResult(
                False,
                f"{node.op} needs {name} >= {need} on {label} (target has {have})",
                unconfirmed=rule.unconfirmed,
            )
    notes: list[str] = []
    runs_as = precision
    if precision not in rule.precisions:
        if precision in rule.upgrade:
            runs_as = rule.upgrade[precision]
            notes.append(f"runs in {runs_as.upper()} ({precision.upper()} not supported for "
                         f"{node.op} on {label})")  # fmt: skip
        else:
            listed = " and ".join(p.upper() for p in rule.precisions)
            return SupportResult(
                False, f"{precision.upper()} not supported on {label} ({node.op}: {listed} only)"
            )
    view = NodeView(node, graph, runs_as, label, env)
    failure = _shape_limits(table, view)
    if failure:
        return SupportResult(False, failure)
    unconfirmed = rule.unconfirmed
    for check in rule.checks:
        outcome = CHECKS[check.kind](view, check.params)
        if outcome is None:
            continue
        if isinstance(outcome, Note):
            notes.append(str(outcome))
            unconfirmed = unconfirmed or check.unconfirmed
            continue
        doubtful = check.unconfirmed or rule.unconfirmed
        return SupportResult(False, _flag(outcome, doubtful), unconfirmed=doubtful)
    if rule.note:
        notes.append(rule.note)
    return SupportResult(True, "", tuple(notes), runs_as, unconfirmed)


# Outputs that only the CPU reference computes: TensorRT builds inference layers, which have no
# Dropout mask, no MaxPool argmax and no batch statistics. The importer keeps a second output
# only when something reads it (or it is a graph output).
_EXTRA_OUTPUTS = {
    "Dropout": "Dropout's mask output",
    "MaxPool": "MaxPool's Indices output",
    "BatchNormalization": "BatchNormalization's running mean / var outputs",
}


def _training_only(node: Node) -> str | None:
    """What makes ``node`` a layer that only the CPU reference runs, if anything: training-time
    outputs, or tensors of the narrow element types (bfloat16, float8, int4, strings...) that
    Tandem's GPU kernels and the DLA do not take."""
    for t in [t for t in node.inputs if t is not None] + list(node.outputs):
        dtype = t.dtype
        if dtype in NARROW_FLOATS or dtype in SUB_BYTE_INTS or dtype == "object":
            return f"{node.op} on a {'string' if dtype == 'object' else dtype} tensor"
    if node.op == "BatchNormalization" and int(node.attrs.get("training_mode", 0)):
        return "BatchNormalization in training mode (normalising by batch statistics)"
    if len(node.outputs) > 1 and node.op in _EXTRA_OUTPUTS:
        return _EXTRA_OUTPUTS[node.op]
    return None


def plugin_support(plugin: Plugin, device: str, label: str, precision: str) -> SupportResult:
    """A plugin's own support declaration stands in for the table's rule."""
    have = plugin.precisions(device)
    if not have:
        return SupportResult(False, f"{plugin.label} declares no {label} support")
    if precision in have:
        return SupportResult(True, "", (f"{plugin.label}",), precision)
    listed = " and ".join(p.upper() for p in have)
    return SupportResult(
        False, f"{precision.upper()} not supported on {label} ({plugin.label}: {listed} only)"
    )


def _flag(detail: str, unconfirmed: bool) -> str:
    """Mark reasons that rest on an unconfirmed rule, so users know they may override it."""
    return f"{detail} [unconfirmed rule]" if unconfirmed else detail


def _data_tensors(node: Node) -> list[tuple[str, Tensor]]:
    """Run-time tensors a device must hold: variable inputs, then outputs."""
    out = [("input", t) for t in node.inputs if t is not None and not isinstance(t, Constant)]
    return out + [("output", t) for t in node.outputs]


def _shape_limits(table: SupportTable, v: NodeView) -> str | None:
    # Messages leave tensor names out so that the capability report groups equal reasons.
    for role, t in _data_tensors(v.node):
        if t.shape is None:
            if role == "output":
                continue  # not inferred yet: judged by its inputs
            if table.static_shapes:
                return f"{role} shape unknown: {v.label} needs static shapes"
            continue
        if table.static_shapes:
            for i, d in enumerate(t.shape):
                if not isinstance(d, int):
                    return f"dynamic shape ({role} dim {i} is {d!r}): {v.label} needs static shapes"
        dims = [d for d in t.shape if isinstance(d, int)]
        if len(dims) != len(t.shape):
            continue
        batch_dims, rest = dims[:-3], dims[-3:]
        batch = math.prod(batch_dims) if batch_dims else 1
        if table.max_batch is not None and batch > table.max_batch:
            return (f"{role} batch {batch} > {v.label} max {table.max_batch} "
                    "(batch = product of all dims but the last 3)")  # fmt: skip
        if table.max_dim is not None:
            for d in rest:
                if d > table.max_dim:
                    return f"{role} dim {d} > {v.label} max {table.max_dim}"
    return None
