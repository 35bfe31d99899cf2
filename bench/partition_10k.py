"""Benchmark: partition a synthetic 10,000-layer graph with ``trt`` and with ``cost``.

The graph is a long ResNet-like chain: blocks of Conv -> Relu -> Conv -> Add(residual) -> Relu,
with a DLA-unsupported layer (a Resize the DLA refuses) every ~37 layers, so TensorRT's rules cut
it into hundreds of DLA segments and the loadable limit (16) binds. Device costs are seeded
pseudo-random per layer (the DLA is faster on most convolutions, slower on some); every
GPU<->DLA copy costs 0.05 ms (the published Xavier switch cost is 0.045-0.074 ms).

Two variants:

- ``--caps fake`` (default): small fake capabilities with seeded per-layer costs; measures the
  partitioner's algorithms alone.
- ``--caps real --target xavier-agx``: the same shape of network as an ONNX model (8 channels,
  32x32, HardSwish as the layer the DLA refuses), imported with ``partitioner.onnx_import`` and
  partitioned with the target's real support tables, cost models and transition cost
  (``devices.capability.capabilities_for``, ``devices.cost.transition_cost_for``); the time
  includes every ``supports``/``cost`` call.

Run: ``.venv/bin/python bench/partition_10k.py [--caps fake|real] [--layers N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from collections.abc import Callable, Mapping

from partitioner.assign import analyse, place_cost, place_trt
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


def build_onnx_graph(layers: int, seed: int = 0) -> Graph:
    """The same block structure as an ONNX model, imported (shapes inferred) by Tandem."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from partitioner.onnx_import import import_onnx

    rnd = random.Random(seed)
    c = 8
    w = numpy_helper.from_array(np.full((c, c, 3, 3), 0.01, np.float32), "w")
    b = numpy_helper.from_array(np.zeros(c, np.float32), "b")
    nodes = []
    x = "x"

    def layer(op: str, ins: list[str], **attrs: object) -> str:
        name = f"l{len(nodes)}"
        nodes.append(helper.make_node(op, ins, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    def conv(inp: str) -> str:
        return layer("Conv", [inp, "w", "b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])

    while len(nodes) < layers:
        if rnd.random() < 0.027:
            x = layer("HardSwish", [x])  # the DLA refuses it: a forced GPU layer mid-network
            continue
        if len(nodes) + 5 > layers:
            x = layer("Relu", [x])
            continue
        y = conv(x)
        y = layer("Relu", [y])
        y = conv(y)
        y = layer("Add", [y, x])
        x = layer("Relu", [y])
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 32, 32])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return import_onnx(onnx.ModelProto.FromString(model.SerializeToString()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--caps", choices=("fake", "real"), default="fake")
    parser.add_argument("--target", default="xavier-agx")
    args = parser.parse_args()
    tc: Callable[[Tensor, str, str], float]
    caps: Mapping[str, object]
    if args.caps == "real":
        from devices.capability import capabilities_for
        from devices.cost import transition_cost_for
        from targets.catalog import load_target

        start = time.perf_counter()
        g = build_onnx_graph(args.layers)
        print(f"ONNX build + import: {time.perf_counter() - start:.2f} s")
        target = load_target(args.target)
        caps, tc = capabilities_for(target), transition_cost_for(target)
        print(f"real capabilities of {args.target} ({target.power_mode})")
    else:
        g, caps = build(args.layers)

        def tc(t: Tensor, src: str, dst: str) -> float:
            return 0.05e-3

    print(f"graph: {len(g.nodes)} layers, {len(g.tensors)} tensors; {platform.machine()}")
    # partition() = analyse (one supports/cost query per layer and device: the capabilities'
    # time) + place_trt (+ place_cost). The algorithms are timed on a shared analysis so the
    # numbers say what the partitioner costs, apart from the cost models it calls.
    for objective in ("latency", "throughput"):
        policy = Policy.from_dict({"partition": "cost", "objective": objective})
        rows: dict[str, list[float]] = {
            "analyse": [],
            "trt": [],
            "cost": [],
            "partition": [],
            "cpu": [],
        }
        for _ in range(args.repeat):
            c0 = time.process_time()
            t0 = time.perf_counter()
            a = analyse(g, caps, policy)  # type: ignore[arg-type]
            for f in a.layers.values():  # costs are lazy: ask every one now, timed apart
                for device in f.costs:
                    f.costs[device]
            t1 = time.perf_counter()
            trt = place_trt(a, tc)
            t2 = time.perf_counter()
            cost = place_cost(a, tc, trt)
            t3 = time.perf_counter()
            rows["analyse"].append(t1 - t0)
            rows["trt"].append(t2 - t1)
            rows["cost"].append(t3 - t1)  # cost needs the trt placement (never-worse guarantee)
            rows["partition"].append(t3 - t0)
            rows["cpu"].append(time.process_time() - c0)
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(
            f"{objective}: capability queries {med['analyse']:.2f} s | trt {med['trt']:.2f} s | "
            f"cost (incl. trt) {med['cost']:.2f} s | partition() end to end "
            f"{med['partition']:.2f} s wall, {med['cpu']:.2f} s CPU  (medians of {args.repeat})"
        )
        for name, part in (("trt", trt), ("cost", cost)):
            dla = sum(1 for s in part.segments if s.device.startswith("dla"))
            ms = part.predicted.as_ms()
            print(
                f"  {name:4s}: segments {len(part.segments)} (DLA {dla}), boundaries "
                f"{part.boundary_count}, predicted total {ms['total']:.2f} ms, period "
                f"{ms['period']:.2f} ms, warnings {len(part.warnings)}"
            )


if __name__ == "__main__":
    main()
