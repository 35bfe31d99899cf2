"""Device capabilities for the partitioner: support tables + cost models of one target.

``capabilities_for(target)`` gives ``{"gpu": ..., "dla": ..., "cpu": ...}`` — the mapping
``partitioner.assign.partition`` takes. Each object implements
``partitioner.capability.DeviceCapability``: ``supports(node, graph, precision) -> Verdict`` (the
reason names the layer and the limit) and ``cost(node, graph, precision) -> seconds`` at the
target's selected power mode. :func:`capability_report` rolls DLA verdicts up into the
``Operator | Count | Reason | Layers`` table that ``tandem inspect`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from devices.cost import cpu_layer_seconds, dla_layer_seconds, gpu_layer_seconds
from devices.hardware import TargetSpec
from devices.support import (
    SupportEnv,
    SupportResult,
    SupportTable,
    dla_table,
    evaluate,
    gpu_table,
    load_table,
)
from partitioner.capability import DeviceCapability, Precision, Verdict
from partitioner.errors import ConfigError
from partitioner.ir import Graph, Node


class _TableCapability:
    """Shared shape of the GPU and DLA capabilities: a support table and a cost function."""

    kind = ""
    device = ""

    def __init__(self, target: TargetSpec, table: SupportTable) -> None:
        self.target = target
        self.table = table
        self.env = SupportEnv(tensorrt=target.tensorrt, dla_sw=target.dla_sw)

    def explain(self, node: Node, graph: Graph, precision: Precision) -> SupportResult:
        """The structured answer behind :meth:`supports` (detail without the layer prefix)."""
        return evaluate(self.table, node, graph, precision, self.env)

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        return self.explain(node, graph, precision).verdict(node)

    def runs_as(self, node: Node, graph: Graph, precision: Precision) -> str:
        """The precision the device really uses for ``precision`` (INT8 may run as FP16).

        Read straight from the table's ``upgrade`` entry: ``cost`` calls this for every layer,
        so it must not re-run the checks."""
        rule = self.table.ops.get(node.op)
        if rule is None or precision in rule.precisions:
            return precision
        return rule.upgrade.get(precision, precision)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target.name!r}, {self.target.power_mode!r})"


class GpuCapability(_TableCapability):
    """The target's GPU: what Tandem's GPU backend runs, priced by the roofline model."""

    kind = "gpu"
    device = "gpu"

    def __init__(self, target: TargetSpec, table: SupportTable | None = None) -> None:
        if target.gpu is None:
            raise ConfigError(f"target '{target.name}' has no GPU")
        super().__init__(target, table or gpu_table())

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        return gpu_layer_seconds(node, graph, self.runs_as(node, graph, precision), self.target)


class DlaCapability(_TableCapability):
    """One DLA core of the target: its version's support table and the DLA latency model."""

    kind = "dla"

    def __init__(
        self, target: TargetSpec, core: int = 0, table: SupportTable | None = None
    ) -> None:
        """``table``: a user's support table (``load_table(path)``) instead of the packaged one
        for the target's DLA version."""
        if target.dla is None:
            raise ConfigError(f"target '{target.name}' has no DLA")
        if not 0 <= core < target.dla.cores:
            raise ConfigError(
                f"target '{target.name}' has {target.dla.cores} DLA core(s): "
                f"dla_core {core} does not exist (use 0..{target.dla.cores - 1})"
            )
        table = table or dla_table(target.dla.version)
        if table.device != "dla":
            raise ConfigError(f"{table.source}: a {table.device} table cannot describe a DLA")
        super().__init__(target, table)
        self.core = core
        self.device = f"dla{core}"

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        # FP32 has no DLA form; a caller pricing it anyway gets the FP16 time.
        runs = self.runs_as(node, graph, "fp16" if precision == "fp32" else precision)
        return dla_layer_seconds(node, graph, runs, self.target)


class CpuCapability:
    """The host CPU (numpy reference backend): every imported op, in FP32."""

    kind = "cpu"
    device = "cpu"

    def __init__(self, target: TargetSpec) -> None:
        self.target = target
        self.table = gpu_table()  # the importer's op set; the CPU backend runs all of it

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        if node.op not in self.table.ops or node.domain not in ("", "ai.onnx"):
            return Verdict.no(f"{node.op} '{node.name}': no CPU implementation of {node.op}")
        if precision != "fp32":
            return Verdict.yes(f"{node.op} '{node.name}': runs in FP32 on the CPU")
        return Verdict.yes()

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        return cpu_layer_seconds(node, graph, "fp32", self.target)


def capabilities_for(
    target: TargetSpec,
    dla_core: int = 0,
    dla_table_path: str | Path | None = None,
) -> dict[str, DeviceCapability]:
    """``{"gpu", "dla", "cpu"}`` capabilities of ``target`` (``dla`` only where it has one;
    ``gpu`` only where it has one — the CPU-only host gets just ``cpu``). ``dla_table_path``
    replaces the packaged DLA support table (e.g. to relax an unconfirmed rule)."""
    caps: dict[str, DeviceCapability] = {}
    if target.gpu is not None:
        caps["gpu"] = GpuCapability(target)
    if target.dla is not None:
        table = load_table(dla_table_path) if dla_table_path is not None else None
        caps["dla"] = DlaCapability(target, dla_core, table)
    caps["cpu"] = CpuCapability(target)
    return caps


# ----- capability report --------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportRow:
    """One line of ``Operator | Count | Reason | Layers``."""

    operator: str
    count: int
    reason: str
    layers: tuple[str, ...]


def capability_report(
    graph: Graph,
    dla: DlaCapability,
    precision: Precision | Mapping[str, Precision] = "fp16",
    extra: Mapping[str, str] | None = None,
) -> list[ReportRow]:
    """Why layers left the DLA, grouped by operator and reason, most frequent first.

    ``precision`` is one precision or a per-layer mapping (missing layers: fp16). ``extra`` maps
    layer names to reasons from elsewhere (a policy pin, the loadable limit) for layers the DLA
    could run but that were placed off it anyway; those rows use the reason as given.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    extra = dict(extra or {})
    for node in graph.topological_order():
        p = precision.get(node.name, "fp16") if isinstance(precision, Mapping) else precision
        if p == "fp32":
            detail = "FP32 requested (DLA runs FP16/INT8 only)"
        else:
            result = dla.explain(node, graph, p)
            if result.ok:
                if node.name not in extra:
                    continue
                detail = _strip_layer(node, extra.pop(node.name))
            else:
                detail = result.detail
        groups.setdefault((node.op, detail), []).append(node.name)
    rows = [
        ReportRow(op, len(names), reason, tuple(names)) for (op, reason), names in groups.items()
    ]
    rows.sort(key=lambda r: (-r.count, r.operator, r.reason))
    return rows


def _strip_layer(node: Node, reason: str) -> str:
    prefix = f"{node.op} '{node.name}': "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


def format_report(rows: Iterable[ReportRow], max_layers: int = 5) -> str:
    """The rows as a plain-text table (Polygraphy's ``inspect capability`` layout)."""
    lines = [("Operator", "Count", "Reason", "Layers")]
    for r in rows:
        shown = ", ".join(r.layers[:max_layers])
        if len(r.layers) > max_layers:
            shown += f", ... (+{len(r.layers) - max_layers})"
        lines.append((r.operator, str(r.count), r.reason, shown))
    widths = [max(len(row[i]) for row in lines) for i in range(3)]
    out = []
    for i, row in enumerate(lines):
        cells = [row[j].ljust(widths[j]) for j in range(3)] + [row[3]]
        out.append(" | ".join(cells).rstrip())
        if i == 0:
            out.append("-+-".join("-" * w for w in widths) + "-+-" + "-" * 6)
    return "\n".join(out)
