"""Run a model with every DLA-eligible layer on the DLA emulator and the rest on the CPU.

Eligibility comes from the DLA support table (``devices.support``); DLA layers are grouped into
segments as maximal runs of consecutive layers in topological order (such a run is always
convex, so it is a valid segment), each compiled into its own loadable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from devices.cpu import evaluate_node
from devices.support import dla_table, evaluate
from dla_sim.compiler import compile_loadable
from dla_sim.execute import run_loadable
from dla_sim.loadable import Loadable
from partitioner.ir import Constant, Graph, Node
from partitioner.subgraph import extract_subgraph


@dataclass
class HybridPlan:
    steps: list[tuple[str, list[Node], Loadable | None]] = field(default_factory=list)

    @property
    def dla_layers(self) -> int:
        return sum(len(nodes) for kind, nodes, _ in self.steps if kind == "dla")

    @property
    def loadables(self) -> list[Loadable]:
        return [lo for kind, _, lo in self.steps if lo is not None]


def plan(
    graph: Graph,
    precision: str,
    scales: Mapping[str, float] | None = None,
    dla_version: int = 2,
) -> HybridPlan:
    table = dla_table(dla_version)
    order = graph.topological_order()
    runs: list[tuple[bool, list[Node]]] = []
    for node in order:
        ok = evaluate(table, node, graph, precision).ok
        if runs and runs[-1][0] == ok:
            runs[-1][1].append(node)
        else:
            runs.append((ok, [node]))
    result = HybridPlan()
    for index, (ok, nodes) in enumerate(runs):
        if not ok:
            result.steps.append(("cpu", nodes, None))
            continue
        sub = extract_subgraph(graph, [n.name for n in nodes], f"dla_seg{index}")
        lo = compile_loadable(sub, precision, dla_version, dict(scales or {}), name=sub.name)
        result.steps.append(("dla", nodes, lo))
    return result


def run(graph: Graph, hybrid: HybridPlan, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    env: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in feeds.items()}
    for _kind, nodes, lo in hybrid.steps:
        if lo is not None:
            env.update(run_loadable(lo, {n: env[n] for n in lo.inputs}))
            continue
        for node in nodes:
            args = [
                None if t is None else (t.values if isinstance(t, Constant) else env[t.name])
                for t in node.inputs
            ]
            for t, v in zip(node.outputs, evaluate_node(node, args)):
                env[t.name] = v
    return {t.name: env[t.name] for t in graph.outputs}
