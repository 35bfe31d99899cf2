"""The GPU cost model against every published figure in ``devices/data/gpu_published.yaml``.

Usage: ``python bench/gpu_latency.py [--only fit|validate] [--layers ID]``. Each figure's network
is placed all on the GPU at INT8 (``targets.build.place``, ``default_device: gpu``), and its
predicted GPU time (the sum of ``devices.cost.gpu_layer_seconds`` over its layers, what ``tandem
inspect`` reports per device) is compared with the published milliseconds of one batch. Prints
one row per figure (published, predicted, signed error, fit/validate) and the summary that
``tests/devices/test_gpu_published.py`` asserts; ``--layers ID`` prints the per-layer split of
one figure (GEMM shape, tile, waves, compute / memory / launch microseconds).
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devices.cost import gemm_shape, gpu_layer_seconds, layer_work, tensor_core_seconds
from devices.cpu import evaluate_node
from partitioner.ir import Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from partitioner.policy import default_policy
from tandem.zoo import build_model
from targets.build import place
from targets.catalog import load_target

DATA = Path(__file__).resolve().parents[1] / "devices" / "data" / "gpu_published.yaml"
PRECISION = "int8"  # every MLPerf Jetson figure is INT8


@dataclass
class Row:
    """One figure: published and predicted milliseconds of one batch, and its role."""

    id: str
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


def published_ms(fig: dict[str, Any]) -> float:
    """The figure as milliseconds per batch: qps counts samples, so a batch takes batch / qps."""
    value = float(fig["published"])
    if fig["unit"] == "qps":
        return 1e3 * fig["input"][0] / value
    return value


@functools.cache
def network(model: str, batch: int, height: int, width: int) -> Graph:
    """``zoo:NAME`` from tandem.zoo, anything else from bench/dla_models.py; simplified (BN
    folded, fusion marked) as ``tandem inspect`` sees it."""
    if model.startswith("zoo:"):
        onnx_model = build_model(model[4:], batch=batch, resolution=height)
        return simplify(import_onnx(onnx_model), evaluate_node)
    from bench.dla_models import graph

    return graph(model, batch, height, width)


def placed(fig: dict[str, Any]) -> Any:
    n, _, h, w = fig["input"]
    target = load_target(fig["board"], fig["power_mode"])
    policy = default_policy().with_overrides(default_device="gpu", precision=PRECISION)
    return place(fig["model"], target, policy, graph=network(fig["model"], n, h, w))


def predict_ms(fig: dict[str, Any]) -> float:
    return placed(fig).partition.predicted.per_device.get("gpu", 0.0) * 1e3


def all_rows() -> list[Row]:
    rows = []
    for fig in load()["figures"]:
        what = (f"{fig['model']} {'x'.join(map(str, fig['input']))}, {fig['board']} "
                f"{fig['power_mode']}")  # fmt: skip
        rows.append(Row(fig["id"], published_ms(fig), predict_ms(fig), fig["use"], what))
    return rows


def summary(rows: list[Row]) -> str:
    errs = [r.error for r in rows]
    if not errs:
        return "no rows"
    high = sum(e > 0 for e in errs)
    return (
        f"{len(rows)} figures: max |error| {max(abs(e) for e in errs):.1%}, median |error| "
        f"{statistics.median(abs(e) for e in errs):.1%}, {high} high / {len(errs) - high} low"
    )


def print_layers(fig: dict[str, Any]) -> None:
    placement = placed(fig)
    graph, target = placement.graph, placement.target
    for node in graph.nodes:
        seconds = gpu_layer_seconds(node, graph, PRECISION, target)
        if seconds == 0.0:
            continue
        shape, tc = gemm_shape(node), layer_work(node, PRECISION).tensor_cores
        detail = ""
        if shape is not None and tc:
            t, tile, waves = tensor_core_seconds(shape, PRECISION, target)
            detail = f"gemm {shape} tile {tile[0]}x{tile[1]} waves {waves} mma {t * 1e6:8.1f} us"
        print(f"{node.op:18s} {node.name[:40]:40s} {seconds * 1e6:9.1f} us  {detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("fit", "validate"))
    parser.add_argument("--layers", metavar="ID", help="per-layer split of figure ID")
    args = parser.parse_args()
    if args.layers:
        print_layers(next(f for f in load()["figures"] if f["id"] == args.layers))
        return
    rows = [r for r in all_rows() if args.only in (None, r.use)]
    print("| figure | what | published ms | predicted ms | error | use |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.id} | {r.what} | {r.published_ms:.3f} | {r.predicted_ms:.3f} | "
              f"{r.error:+.1%} | {r.use} |")  # fmt: skip
    print()
    for use in ("fit", "validate"):
        chosen = [r for r in rows if r.use == use]
        if chosen:
            print(f"{use}: {summary(chosen)}")


if __name__ == "__main__":
    main()
