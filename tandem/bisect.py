"""``compare --bisect``: which layer first leaves tolerance, on which device, at which precision.

Both sides expose every intermediate tensor (Polygraphy's "mark all"): ONNX Runtime gets each
layer output appended to the model's outputs; Tandem captures tensors as its backends run them.
Layers are visited in topological order and the first whose output is out of tolerance is
named. Tensors that a backend fused away (inside a DLA engine op) have no value to compare and
are listed as skipped rather than guessed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from devices.cpu import CpuRunner
from devices.io import run_onnxruntime_model
from devices.plan import Plan
from devices.runtime import PlanRunner
from partitioner.ir import Graph
from tandem.metrics import Closeness, closeness


@dataclass(frozen=True)
class LayerCheck:
    layer: str
    op: str
    tensor: str
    device: str
    precision: str
    result: Closeness
    ok: bool


@dataclass
class BisectResult:
    checks: list[LayerCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    atol: float = 0.0
    rtol: float = 0.0

    @property
    def first_bad(self) -> LayerCheck | None:
        return next((c for c in self.checks if not c.ok), None)

    def as_dict(self) -> dict[str, Any]:
        bad = self.first_bad
        return {
            "first_bad": None if bad is None else _check_dict(bad),
            "checked": len(self.checks),
            "skipped": self.skipped,
            "atol": self.atol,
            "rtol": self.rtol,
            "layers": [_check_dict(c) for c in self.checks],
        }

    def describe(self) -> str:
        bad = self.first_bad
        lines = [
            f"compared {len(self.checks)} layer outputs with ONNX Runtime "
            f"(atol {self.atol:g}, rtol {self.rtol:g}); {len(self.skipped)} fused away, skipped"
        ]
        if bad is None:
            lines.append("every layer output is within tolerance")
            return "\n".join(lines)
        r = bad.result
        lines.append(
            f"first layer out of tolerance: '{bad.layer}' ({bad.op}) on {bad.device} at "
            f"{bad.precision}: tensor '{bad.tensor}' max abs {r.max_abs:.3e}, max rel "
            f"{r.max_rel:.3e}, cosine {r.cosine:.6f}"
        )
        index = self.checks.index(bad)
        if index:
            prev = self.checks[index - 1]
            lines.append(
                f"the layer before it, '{prev.layer}' ({prev.op}, {prev.device}), is within "
                f"tolerance (max rel {prev.result.max_rel:.3e})"
            )
        return "\n".join(lines)


def _check_dict(c: LayerCheck) -> dict[str, Any]:
    return {
        "layer": c.layer,
        "op": c.op,
        "tensor": c.tensor,
        "device": c.device,
        "precision": c.precision,
        "ok": c.ok,
        **c.result.as_dict(),
    }


def bisect(
    model: str | os.PathLike[str],
    graph: Graph,
    feeds: dict[str, np.ndarray],
    plan: Plan | None,
    backend: str,
    atol: float,
    rtol: float,
) -> BisectResult:
    import onnx

    proto = onnx.load(str(model))
    onnx_tensors = {out for node in proto.graph.node for out in node.output if out}
    order = graph.topological_order()
    wanted = [t.name for n in order for t in n.outputs if t.name in onnx_tensors]
    existing = {o.name for o in proto.graph.output}
    for name in wanted:
        if name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    reference = run_onnxruntime_model(proto, feeds, str(model))
    if plan is not None:
        with PlanRunner(plan, backend, capture=True) as runner:
            runner.infer(feeds)
            actual = dict(runner.captured)
        placed: dict[str, tuple[str, Any]] = {
            r.name: (r.device, r.precision) for r in plan.record.layers
        }
    else:
        with CpuRunner(graph, capture=True) as cpu:
            outputs = cpu.infer(feeds)
            actual = {**cpu.captured, **outputs}
        placed = {}
    result = BisectResult(atol=atol, rtol=rtol)
    for node in order:
        device, precision = placed.get(node.name, ("cpu", "fp32"))
        for t in node.outputs:
            if t.name not in reference:
                continue
            if t.name not in actual:
                result.skipped.append(t.name)
                continue
            c = closeness(np.asarray(actual[t.name]), reference[t.name])
            result.checks.append(
                LayerCheck(node.name, node.op, t.name, device, precision, c, c.within(atol, rtol))
            )
    return result
