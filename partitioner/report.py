"""What ``tandem inspect`` shows about a partition, as plain data (no printing here).

- :func:`layer_rows` — layer, op, device, precision, reason (topological order)
- :func:`capability_rows` — ``Operator | Count | Reason | Layers`` for every layer not on the DLA,
  grouped by op and reason (the reason with the layer's own name taken out), like Polygraphy's
  ``inspect capability``
- :func:`to_json` — one document with at least the keys DESIGN.md fixes
  (``layers``, ``segments``, ``predicted_ms``)
- :func:`to_dot` — Graphviz text: layers coloured by device, each segment boxed as a cluster
- :func:`format_text` — the same tables as aligned text, for a terminal
- the tables are drawn by :func:`partitioner.tables.table`, the one renderer (re-exported here for
  the bench reports)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from partitioner.ir import Graph, Tensor
from partitioner.segments import Partition
from partitioner.tables import table

COLOURS = {"gpu": "#b7e07a", "dla": "#8ec5f0", "cpu": "#d9d9d9"}
BORDERS = {"gpu": "#4e7a0e", "dla": "#1f5f99", "cpu": "#666666"}


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    device: str
    precision: str
    reason: str


@dataclass(frozen=True)
class CapabilityRow:
    operator: str
    count: int
    reason: str
    layers: tuple[str, ...]


def layer_rows(graph: Graph, part: Partition) -> list[LayerRow]:
    ops = {n.name: n.op for n in graph.nodes}
    return [
        LayerRow(name, ops[name], a.device, a.precision, a.reason)
        for name, a in part.assignments.items()
    ]


_DEVICE_PREFIX = re.compile(r"^(GPU|CPU|DLA)\s*:\s*")
_SEGMENT_INDEX = re.compile(r"\s*\(segment \d+ of \d+\)")


def _generic_reason(reason: str, op: str, name: str) -> str:
    """The reason without the layer's own name, so equal reasons group in one row."""
    text = _DEVICE_PREFIX.sub("", reason)
    text = text.replace(f"{op} '{name}': ", "")
    if text.startswith("cost model"):  # per-layer numbers differ; the verdict is the same
        return "cost model: faster off the DLA, counting layer and transition costs"
    return _SEGMENT_INDEX.sub("", text)


def capability_rows(graph: Graph, part: Partition) -> list[CapabilityRow]:
    """Why layers left the DLA: one row per (op, reason), most frequent first."""
    ops = {n.name: n.op for n in graph.nodes}
    groups: dict[tuple[str, str], list[str]] = {}
    for name, a in part.assignments.items():
        if a.device.startswith("dla"):
            continue
        key = (ops[name], _generic_reason(a.reason, ops[name], name))
        groups.setdefault(key, []).append(name)
    rows = [
        CapabilityRow(op, len(names), reason, tuple(names))
        for (op, reason), names in groups.items()
    ]
    rows.sort(key=lambda r: (-r.count, r.operator, r.reason))
    return rows


def to_json(graph: Graph, part: Partition, **extra: Any) -> dict[str, Any]:
    """The ``inspect --json`` document; ``extra`` adds keys such as ``target``, ``power_mode``."""
    doc: dict[str, Any] = {
        "strategy": part.strategy,
        "objective": part.objective,
        "layers": [
            {
                "name": r.name,
                "op": r.op,
                "device": r.device,
                "precision": r.precision,
                "reason": r.reason,
            }
            for r in layer_rows(graph, part)
        ],
        "segments": [
            {
                "name": s.name,
                "device": s.device,
                "layers": list(s.nodes),
                "inputs": list(s.inputs),
                "outputs": list(s.outputs),
                "precision": s.precision,
            }
            for s in part.segments
        ],
        "capability": [
            {"operator": r.operator, "count": r.count, "reason": r.reason, "layers": list(r.layers)}
            for r in capability_rows(graph, part)
        ],
        "boundaries": part.boundary_count,
        "predicted_ms": part.predicted.as_ms(),
        "predicted_mj": part.predicted.as_mj(),  # per inference per device; null: no power data
        "warnings": list(part.warnings),
        "notes": list(part.debug),  # refused merges, which placement the cost strategy kept
    }
    doc.update(extra)
    return doc


# ----- Graphviz ------------------------------------------------------------------------------


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(graph: Graph, part: Partition) -> str:
    """DOT text: one cluster per segment (coloured by device), edges labelled at boundaries."""
    seg_of = {name: s for s in part.segments for name in s.nodes}
    lines = [
        f"digraph {_quote(graph.name)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
        '  edge [fontname="Helvetica", fontsize=8];',
    ]
    ops = {n.name: n.op for n in graph.nodes}
    for i, s in enumerate(part.segments):
        kind = "dla" if s.device.startswith("dla") else s.device
        lines.append(f"  subgraph cluster_{i} {{")
        label = f"{s.name} ({s.device}, {len(s.nodes)} layer{'s' * (len(s.nodes) != 1)})"
        border = _quote(BORDERS.get(kind, "#000000"))
        lines.append(f"    label={_quote(label)}; style=rounded; color={border};")
        for name in s.nodes:
            a = part.assignments[name]
            text = f"{name}\n{ops[name]} {a.precision}"
            tip = f"{name} ({ops[name]}): {a.device} {a.precision}\n{a.reason}"
            lines.append(
                f"    {_quote('L:' + name)} [label={_quote(text)}, tooltip={_quote(tip)}, "
                f"fillcolor={_quote(COLOURS.get(kind, '#ffffff'))}];"
            )
        lines.append("  }")
    for t in list[Tensor](graph.inputs):
        lines.append(
            f"  {_quote('T:' + t.name)} [label={_quote(t.name)}, shape=ellipse, style=solid];"
        )
        for c in t.consumers:
            lines.append(f"  {_quote('T:' + t.name)} -> {_quote('L:' + c.name)};")
    for n in graph.nodes:
        for t in n.outputs:
            for c in dict.fromkeys(t.consumers):
                cross = seg_of[n.name].device != seg_of[c.name].device
                style = f' [label={_quote(t.name)}, color="#c0392b", penwidth=2]' if cross else ""
                lines.append(f"  {_quote('L:' + n.name)} -> {_quote('L:' + c.name)}{style};")
    for out in graph.outputs:
        lines.append(
            f"  {_quote('O:' + out.name)} [label={_quote(out.name)}, shape=ellipse, style=solid];"
        )
        if out.producer is not None:
            lines.append(f"  {_quote('L:' + out.producer.name)} -> {_quote('O:' + out.name)};")
    lines += _legend(part)
    lines.append("}")
    return "\n".join(lines) + "\n"


_MEANING = {
    "gpu": "GPU layer",
    "dla": "DLA layer",
    "cpu": "CPU layer (numpy reference)",
}


def _legend(part: Partition) -> list[str]:
    """A boxed key: the fill of each device kind the plan uses, and the red edge of a tensor
    crossing devices (each layer's tooltip holds its device, precision and placement reason)."""
    kinds = sorted({"dla" if s.device.startswith("dla") else s.device for s in part.segments})
    lines = [
        "  subgraph cluster_legend {",
        '    label="Legend (hover a layer for its placement reason)"; style=dashed; '
        'color="#888888";',
    ]
    for kind in kinds:
        lines.append(
            f"    {_quote('legend:' + kind)} [label={_quote(_MEANING.get(kind, kind))}, "
            f"fillcolor={_quote(COLOURS.get(kind, '#ffffff'))}];"
        )
    lines += [
        '    "legend:from" [label="", shape=point, width=0.05];',
        '    "legend:to" [label="device boundary (copy + reformat)", shape=plaintext, style=""];',
        '    "legend:from" -> "legend:to" [color="#c0392b", penwidth=2];',
        "  }",
    ]
    return lines


# ----- text ----------------------------------------------------------------------------------


def _abbreviate(names: Sequence[str], limit: int = 8) -> str:
    return ", ".join(names[:limit]) + (f", ... ({len(names)} total)" if len(names) > limit else "")


def format_text(
    graph: Graph, part: Partition, *, predicted_for: str = "", layers: bool = True
) -> str:
    """Layers, capability report, segments and predicted times as aligned text tables.

    ``predicted_for``: the board and power mode the cost model predicted for (every time printed
    names its source); ``layers=False``: one line of counts instead of the per-layer table (the
    summary a user reads in one screen)."""
    rows = layer_rows(graph, part)
    shown = 8 if layers else 2  # names per cell before "... (N total)"
    if layers:
        lines = ["Layers:"]
        lines += table(
            ("Layer", "Op", "Device", "Precision", "Reason"),
            [(r.name, r.op, r.device, r.precision, r.reason) for r in rows],
        )
    else:
        counts: dict[str, int] = {}
        for r in rows:
            counts[r.device] = counts.get(r.device, 0) + 1
        placed = ", ".join(f"{n} on {d}" for d, n in sorted(counts.items()))
        lines = [f"Layers: {len(rows)} ({placed}); --verbose lists each with its reason"]
    caps = capability_rows(graph, part)
    if caps:
        lines += ["", "Layers not on the DLA:"]
        lines += table(
            ("Operator", "Count", "Reason", "Layers"),
            [(r.operator, str(r.count), r.reason, _abbreviate(r.layers, shown)) for r in caps],
        )
    lines += ["", f"Segments ({part.boundary_count} boundaries):"]
    lines += table(
        ("Segment", "Device", "Layers", "Inputs", "Outputs"),
        [
            (
                s.name,
                s.device,
                _abbreviate(s.nodes, shown // 2),
                _abbreviate(s.inputs, shown // 2),
                _abbreviate(s.outputs, shown // 2),
            )
            for s in part.segments
        ],
    )
    ms = part.predicted.as_ms()
    times = ", ".join(f"{k} {v:.3f} ms" for k, v in ms.items())
    source = predicted_for or "predicted by the cost model"
    lines += ["", f"{source[0].upper()}{source[1:]} ({part.strategy}): {times}"]
    p = part.predicted
    if p.period > 0 and len([t for t in p.per_device.values() if t > 0]) > 1:
        ideal = p.ideal_period if p.ideal_period is not None else p.period
        lines.append(
            f"Pipelined: {1 / p.period:.1f} inferences/s, {source} (period "
            f"{p.period * 1e3:.3f} ms with the devices sharing the DRAM, {ideal * 1e3:.3f} ms "
            "without)"
        )
    mj = p.as_mj()
    if mj is not None:
        parts = ", ".join(f"{d} {v:.2f} mJ" for d, v in mj.items() if d != "total")
        lines.append(f"Energy per inference: {mj['total']:.2f} mJ ({parts})")
    lines += [f"warning: {w}" for w in part.warnings]
    return "\n".join(lines) + "\n"
