"""The DLA latency model against every published figure in ``dla_sim/data/published.yaml``.

Usage: ``python bench/dla_latency.py [--only fit|validate] [--per-op ID]``. Prints one table row
per figure: published and predicted milliseconds (DLA time of the figure's batch on one DLA, or
the boundary / hybrid / contention quantity, or the difference between two builds; energy rows:
the unitless DLA-over-GPU perf/W ratio), the signed error, and whether the figure was used to
fit constants (``fit``) or only checks the model (``validate``); then the summary the acceptance
criteria of issue 17 read (max |error|, median |error|, signs). ``tests/dla_sim/test_published.py``
asserts the same numbers.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devices.cost import concurrent_slowdown, transition_seconds
from devices.cpu import evaluate_node
from dla_sim.latency import LoadableTiming, predict_graph
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from partitioner.subgraph import extract_between
from tandem.zoo import build_model
from targets.catalog import load_target

DATA = Path(__file__).resolve().parents[1] / "dla_sim" / "data" / "published.yaml"


@dataclass
class Row:
    """One figure: what was published, what the model says (both in ms), and its role."""

    id: str
    kind: str
    published_ms: float
    predicted_ms: float
    use: str
    what: str

    @property
    def error(self) -> float:
        return self.predicted_ms / self.published_ms - 1.0


def load() -> dict[str, Any]:
    with open(DATA) as f:
        return yaml.safe_load(f)


def published_ms(fig: dict[str, Any], batch: int = 1) -> float:
    """The figure as milliseconds on one DLA (see the units note in published.yaml)."""
    value, unit = float(fig["published"]), fig.get("unit", "ms")
    if unit == "img/s":
        return 1e3 * fig.get("dlas", 1) * batch / value
    if unit == "qps":
        return 1e3 / value
    return value


@functools.cache
def network(name: str, batch: int, height: int, width: int) -> Graph:
    """A figure's network: the YOLOv5s of cuDLA-samples from the zoo, the rest from dla_models."""
    if name == "yolov5s-trimmed":
        # cuDLA-samples deploys yolov5_trimmed_qat.onnx: cut after the three detection convs.
        g = simplify(import_onnx(build_model("yolov5s", batch=batch, resolution=height)),
                     evaluate_node)  # fmt: skip
        heads = [g.node(f"model.24.m.{i}").outputs[0].name for i in range(3)]
        return extract_between(g, [g.inputs[0].name], heads, "yolov5s_trimmed")
    from bench.dla_models import graph

    return graph(name, batch, height, width)


def clocks(fig: dict[str, Any]) -> tuple[float, float, int]:
    """(DLA clock Hz, DRAM bytes/s, DLA version) of a figure's board and mode."""
    if "dla_mhz" in fig:
        return float(fig["dla_mhz"]) * 1e6, float(fig["dram_gbps"]) * 1e9, 2
    target = load_target(fig["board"], fig.get("power_mode"))
    assert target.dla is not None and target.dla_clock_hz is not None
    return target.dla_clock_hz, target.dram_bytes_per_s, target.dla.version


def predict_network(fig: dict[str, Any], extra_fp16: tuple[str, ...] = ()) -> LoadableTiming:
    """The whole network as one loadable on one DLA, with the published I/O formats; DLAs that
    run copies at once share the DRAM. ``extra_fp16`` layers run in FP16 besides the figure's."""
    n, _, h, w = fig["input"]
    g = network(fig["model"], n, h, w)
    clock, dram, version = clocks(fig)
    io = fig.get("io", {})
    return predict_graph(
        g,
        fig["precision"],
        version,
        clock,
        dram,
        output_dtype={"int8": "int8", "fp16": "float16"}.get(io.get("output", "")),
        layer_precisions={x: "fp16" for x in [*fig.get("fp16_layers", []), *extra_fp16]} or None,
        input_format=io.get("input") if io.get("input") == "hwc4" else None,
        concurrent_dlas=int(fig.get("dlas", 1)),
    )


def network_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for fig in data["networks"]:
        t = predict_network(fig)
        what = f"{fig['model']} {'x'.join(map(str, fig['input']))} {fig['precision']}"
        where = fig.get("power_mode") or f"{fig['dla_mhz']} MHz"
        pub = published_ms(fig, fig["input"][0])
        what = f"{what}, {fig['board']} {where}"
        rows.append(Row(fig["id"], "network", pub, t.total_seconds * 1e3, fig["use"], what))
    return rows


def delta_rows(data: dict[str, Any]) -> list[Row]:
    """The same network built twice, the second with more layers in FP16: the difference."""
    networks = {f["id"]: f for f in data["networks"]}
    rows = []
    for fig in data.get("deltas", []):
        base = networks[fig["base"]]
        ms = (predict_network(base, tuple(fig["fp16_layers"])).total_seconds
              - predict_network(base).total_seconds) * 1e3  # fmt: skip
        what = f"{fig['base']} + {len(fig['fp16_layers'])} layers in FP16"
        rows.append(Row(fig["id"], "delta", float(fig["published"]), ms, fig["use"], what))
    return rows


def per_layer_rows(data: dict[str, Any]) -> list[Row]:
    spec = data["per_layer"]
    fig = {**spec, "dlas": 1}
    t = predict_network(fig)
    by_anchor = {o.layers[0]: o for o in t.ops}
    return [
        Row(
            layer["id"],
            "layer",
            float(layer["published"]),
            by_anchor[layer["layer"]].seconds * 1e3,
            layer["use"],
            f"ResNet-34 1280x768 INT8 @{spec['dla_mhz']} MHz",
        )  # fmt: skip
        for layer in spec["layers"]
    ]


def transition_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for fig in data["transitions"]:
        target = load_target(fig["board"], fig.get("power_mode"))
        c, h, w = fig["tensor"]
        ms = transition_seconds(c * h * w * 2, target, "gpu", "dla") * 1e3
        rows.append(Row(fig["id"], "transition", float(fig["published"]), ms, fig["use"],
                        f"FP16 {c}x{h}x{w} GPU->DLA, {fig['board']}"))  # fmt: skip
    return rows


def contention_rows(data: dict[str, Any]) -> list[Row]:
    rows = []
    for fig in data["contention"]:
        others = list(fig["running"])
        others.remove(fig["device"])
        ms = fig["alone_ms"] * concurrent_slowdown(fig["device"], others)
        what = f"{fig['device']} alone {fig['alone_ms']} ms, with {'+'.join(others)}"
        rows.append(Row(fig["id"], "contention", float(fig["together_ms"]), ms, fig["use"], what))
    return rows


def hybrid_rows(data: dict[str, Any]) -> list[Row]:
    """Whole GPU+DLA pipelines as the partitioner places and prices them (what ``tandem inspect``
    reports as ``predicted_ms.total``): DLA segments, GPU layers and the boundaries between."""
    from partitioner.policy import default_policy
    from targets.build import place

    rows = []
    for fig in data["hybrid"]:
        n, _, h, w = fig["input"]
        target = load_target(fig["board"], fig.get("power_mode"))
        policy = default_policy().with_overrides(default_device="dla", precision=fig["precision"])
        placed = place(fig["model"], target, policy, graph=network(fig["model"], n, h, w))
        pred = placed.partition.predicted
        what = f"{fig['model']} bs{n} {fig['precision']}, {len(placed.partition.segments)} segments"
        rows.append(Row(fig["id"], "hybrid", published_ms(fig), pred.total * 1e3, fig["use"], what))
    return rows


def energy_rows(data: dict[str, Any]) -> list[Row]:
    """DLA-over-GPU perf/W ratios (unitless, in the ms columns): published per network and
    mode, and the one devices/energy.py assumes for the mode (geometric mean of the fit rows)."""
    from devices.energy import device_watts, perf_per_watt_ratio

    rows = []
    for fig in data["energy"]:
        target = load_target(fig["board"], fig["power_mode"])
        model = perf_per_watt_ratio(target)
        watts = device_watts(target) or {}
        what = (f"perf/W DLA / GPU, {fig['network']} {fig['power_mode']} (model: GPU "
                f"{watts.get('gpu', 0):.1f} W, DLA {watts.get('dla0', 0):.2f} W)")  # fmt: skip
        rows.append(Row(fig["id"], "energy", float(fig["dla_over_gpu"]), model or 0.0,
                        fig["use"], what))  # fmt: skip
    return rows


def all_rows() -> list[Row]:
    data = load()
    return (
        network_rows(data)
        + delta_rows(data)
        + per_layer_rows(data)
        + transition_rows(data)
        + hybrid_rows(data)
        + contention_rows(data)
        + energy_rows(data)
    )


def summary(rows: list[Row]) -> str:
    errs = [r.error for r in rows]
    if not errs:
        return "no rows"
    high = sum(e > 0 for e in errs)
    return (
        f"{len(rows)} figures: max |error| {max(abs(e) for e in errs):.1%}, median |error| "
        f"{statistics.median(abs(e) for e in errs):.1%}, {high} high / {len(errs) - high} low"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("fit", "validate"))
    parser.add_argument("--per-op", metavar="ID", help="print every engine op of network ID")
    args = parser.parse_args()
    data = load()
    if args.per_op:
        fig = next(f for f in data["networks"] if f["id"] == args.per_op)
        for o in predict_network(fig).ops:
            print(f"{o.op:16s} {o.layers[0][:48]:48s} {o.seconds * 1e6:9.1f} us {o.bound:6s} "
                  f"{o.macs / 1e6:9.1f} MMAC {o.dram_bytes / 1e6:7.2f} MB")  # fmt: skip
        return
    rows = [r for r in all_rows() if args.only in (None, r.use)]
    print("| figure | kind | what | published ms | predicted ms | error | use |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.id} | {r.kind} | {r.what} | {r.published_ms:.3f} | {r.predicted_ms:.3f} | "
              f"{r.error:+.1%} | {r.use} |")  # fmt: skip
    print()
    for kind in ("network", "delta", "layer", "transition", "hybrid", "contention", "energy"):
        for use in ("fit", "validate"):
            chosen = [r for r in rows if r.use == use and r.kind == kind]
            if chosen:
                print(f"{kind} {use}: {summary(chosen)}")
    layers = [r for r in rows if r.kind == "layer"]
    if layers:
        pub, pred = sum(r.published_ms for r in layers), sum(r.predicted_ms for r in layers)
        print(f"ResNet-34 per-layer sum: published {pub:.3f} ms, predicted {pred:.3f} ms "
              f"({pred / pub - 1:+.1%})")  # fmt: skip


if __name__ == "__main__":
    main()
