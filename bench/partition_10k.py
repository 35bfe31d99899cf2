"""Benchmark: partition a synthetic 10,000-layer graph with ``trt`` and with ``cost``.

The graph is a long ResNet-like chain: blocks of Conv -> Relu -> Conv -> Add(residual) -> Relu,
with a DLA-unsupported layer (a Resize the DLA refuses) every ~37 layers, so TensorRT's rules cut
it into hundreds of DLA segments and the loadable limit (16) binds. Device costs are seeded
pseudo-random per layer (the DLA is faster on most convolutions, slower on some); every
GPU<->DLA copy costs 0.05 ms (the published Xavier switch cost is 0.045-0.074 ms).

Capabilities are small fakes: this measures the partitioner's algorithms, not the support
tables. Run: ``.venv/bin/python bench/partition_10k.py [--layers N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

from partitioner.assign import partition
from partitioner.capability import Precision, Verdict
from partitioner.ir import Graph, Node, Tensor
from partitioner.policy import Policy


class BenchCap:
    def __init__(self, kind: str, costs: dict[str, float], refuse: set[str]) -> None:
        self.kind = kind
        self.costs = costs
        self.refuse = refuse

    def supports(self, node: Node, graph: Graph, precision: Precision) -> Verdict:
        if node.op in self.refuse:
            return Verdict.no(f"{node.op} '{node.name}': not supported on {self.kind}")
        if self.kind == "dla" and precision == "fp32":
            return Verdict.no("fp32")
        return Verdict.yes()

    def cost(self, node: Node, graph: Graph, precision: Precision) -> float:
        return self.costs[node.name]


def build(layers: int, seed: int = 0) -> tuple[Graph, dict[str, BenchCap]]:
    rnd = random.Random(seed)
    g = Graph("bench")
    x: Tensor = g.add_input("x", (1, 64, 56, 56), "float32")
    gpu_costs: dict[str, float] = {}
    dla_costs: dict[str, float] = {}
    count = 0

    def layer(op: str, ins: list[Tensor]) -> Tensor:
        nonlocal count
        name = f"l{count}"
        count += 1
        t = g.add_variable(f"{name}_out", (1, 64, 56, 56), "float32")
        g.add_node(op, ins, [t], name=name)
        base = rnd.uniform(0.02, 0.2) * 1e-3
        gpu_costs[name] = base
        dla_costs[name] = base * (
            rnd.uniform(0.4, 0.9) if rnd.random() < 0.8 else rnd.uniform(1.5, 4)
        )
        return t

    while count < layers:
        if rnd.random() < 0.027 and count + 1 <= layers:
            x = layer("Resize", [x])  # the DLA refuses it: a forced GPU layer mid-network
            continue
        if count + 5 > layers:
            x = layer("Relu", [x])
            continue
        a = layer("Conv", [x])
        b = layer("Relu", [a])
        c = layer("Conv", [b])
        d = layer("Add", [c, x])
        x = layer("Relu", [d])
    g.mark_output(x)
    caps = {
        "gpu": BenchCap("gpu", gpu_costs, set()),
        "dla": BenchCap("dla", dla_costs, {"Resize"}),
    }
    return g, caps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    g, caps = build(args.layers)

    def tc(t: Tensor, src: str, dst: str) -> float:
        return 0.05e-3

    print(
        f"graph: {len(g.nodes)} layers, {len(g.tensors)} tensors; {platform.machine()}"
    )
    for strategy in ("trt", "cost"):
        for objective in ("latency",) if strategy == "trt" else ("latency", "throughput"):
            policy = Policy.from_dict({"partition": strategy, "objective": objective})
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                part = partition(g, caps, policy, tc)
                times.append(time.perf_counter() - start)
            dla = sum(1 for s in part.segments if s.device.startswith("dla"))
            ms = part.predicted.as_ms()
            print(
                f"{strategy:4s} {objective:10s}: {statistics.median(times):6.2f} s median of "
                f"{args.repeat} (min {min(times):.2f}); segments {len(part.segments)} "
                f"(DLA {dla}), boundaries {part.boundary_count}, predicted total "
                f"{ms['total']:.2f} ms, period {ms['period']:.2f} ms, warnings {len(part.warnings)}"
            )


if __name__ == "__main__":
    main()
