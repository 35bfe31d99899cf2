"""The GPU cost model against every published figure in ``devices/data/gpu_published.yaml``.

Usage: ``python bench/gpu_latency.py [--only fit|validate] [--layers ID]``. Each figure's network
is placed all on the GPU at INT8 (``targets.build.place``, ``default_device: gpu``) and built
into a plan without cubins (``targets.build.build_plan``: every GPU segment is lowered). Two
predictions of one batch per figure:

- ``predicted ms``: placement's price, each layer's roofline plus one kernel's fixed cost per
  layer the per-layer model charges (``devices.cost.gpu_layer_seconds``: none for views and
  epilogue-fused layers), the kernel count of a TensorRT-like engine. The published figures are
  TensorRT engines, so this is the column the constants are fitted on and validated against
  (its error, and the summary ``tests/devices/test_gpu_published.py`` asserts).
- ``plan ms``: what the built plan reports (header ``predicted_ms.gpu``), the same rooflines
  plus the fixed cost of every kernel Tandem's lowering emitted (``kernels``; ``priced``: the
  per-layer count): Tandem's own kernels on that board. Its error is printed for information.

``--layers ID`` prints the per-layer split of one figure (GEMM shape, tile, waves, roofline and
plan microseconds).

INT8 plans need calibration scales. The lowering's INT8 decisions depend on which tensors have a
scale and whether two scales are equal, not on their values, so every tensor gets its own
stand-in scale (as calibration gives each its own); calibrating these networks with the numpy
reference would take minutes each on the CPU.
"""

from __future__ import annotations

import argparse
import functools
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devices.cost import (
    gemm_shape,
    gpu_priced_kernels,
    gpu_roofline_seconds,
    layer_work,
    tensor_core_seconds,
)
from devices.cpu import evaluate_node
from devices.plan import Plan
from partitioner.ir import Constant, Graph
from partitioner.onnx_import import import_onnx
from partitioner.passes import HOST_SHAPE
from partitioner.passes.pipeline import simplify
from partitioner.policy import default_policy
from tandem.zoo import build_model
from targets.build import Placement, build_plan, place
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
    #: what the built plan reports: the same rooflines, the fixed cost of the lowered kernels
    plan_ms: float = 0.0
    #: kernels the plan's GPU segments lowered to, and kernels placement's per-layer price
    #: charges (``devices.cost.gpu_priced_kernels``)
    kernels: int = 0
    priced_kernels: int = 0

    @property
    def error(self) -> float:
        return self.predicted_ms / self.published_ms - 1.0

    @property
    def plan_error(self) -> float:
        return self.plan_ms / self.published_ms - 1.0


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


def placed(fig: dict[str, Any]) -> Placement:
    n, _, h, w = fig["input"]
    target = load_target(fig["board"], fig["power_mode"])
    policy = default_policy().with_overrides(default_device="gpu", precision=PRECISION)
    return place(fig["model"], target, policy, graph=network(fig["model"], n, h, w))


def stand_in_scales(graph: Graph) -> dict[str, float]:
    """A distinct positive scale for every activation tensor (see the module's docstring)."""
    names = sorted(t.name for t in graph.tensors.values() if not isinstance(t, Constant))
    return {name: 0.01 * (1.0 + i / len(names)) for i, name in enumerate(names)}


def built(fig: dict[str, Any]) -> tuple[Placement, Plan]:
    """The figure's network placed and built into a plan (lowered, no cubins)."""
    placement = placed(fig)
    return placement, build_plan(placement, stand_in_scales(placement.graph), cubins=False)


def all_rows() -> list[Row]:
    rows = []
    for fig in load()["figures"]:
        what = (f"{fig['model']} {'x'.join(map(str, fig['input']))}, {fig['board']} "
                f"{fig['power_mode']}")  # fmt: skip
        placement, plan = built(fig)
        kernels = sum(s["cuda"]["kernels"] for s in plan.header["segments"] if "cuda" in s)
        priced = sum(gpu_priced_kernels(n) for n in placement.graph.nodes
                     if not n.meta.get(HOST_SHAPE))  # fmt: skip
        ms = placement.partition.predicted.per_device.get("gpu", 0.0) * 1e3
        plan_ms = plan.header["predicted_ms"].get("gpu", 0.0)
        rows.append(Row(fig["id"], published_ms(fig), ms, fig["use"], what, plan_ms, kernels,
                        priced))  # fmt: skip
    return rows


def summary(rows: list[Row], plan: bool = False) -> str:
    """Max and median |error| of ``rows`` (of the plan's figure with ``plan``)."""
    errs = [r.plan_error if plan else r.error for r in rows]
    if not errs:
        return "no rows"
    high = sum(e > 0 for e in errs)
    return (
        f"{len(rows)} figures: max |error| {max(abs(e) for e in errs):.1%}, median |error| "
        f"{statistics.median(abs(e) for e in errs):.1%}, {high} high / {len(errs) - high} low"
    )


def print_layers(fig: dict[str, Any]) -> None:
    """Per layer: its roofline and its time in the built plan (the roofline plus its lowered
    kernels' fixed cost), and the GEMM tiling of a tensor-core layer."""
    placement, plan = built(fig)
    graph, target = placement.graph, placement.target
    in_plan = {k: v for s in plan.header["segments"] for k, v in s["predicted_layer_ms"].items()}
    for node in graph.nodes:
        roofline = gpu_roofline_seconds(node, graph, PRECISION, target)
        ms = in_plan.get(node.name, 0.0)
        if ms == 0.0:
            continue
        shape, tc = gemm_shape(node), layer_work(node, PRECISION).tensor_cores
        detail = ""
        if shape is not None and tc:
            t, tile, waves = tensor_core_seconds(shape, PRECISION, target)
            detail = f"gemm {shape} tile {tile[0]}x{tile[1]} waves {waves} mma {t * 1e6:8.1f} us"
        print(f"{node.op:18s} {node.name[:40]:40s} roofline {roofline * 1e6:9.1f} us  "
              f"plan {ms * 1e3:9.1f} us  {detail}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=("fit", "validate"))
    parser.add_argument("--layers", metavar="ID", help="per-layer split of figure ID")
    args = parser.parse_args()
    if args.layers:
        print_layers(next(f for f in load()["figures"] if f["id"] == args.layers))
        return
    rows = [r for r in all_rows() if args.only in (None, r.use)]
    print("| figure | what | published ms | predicted ms | error | use | plan ms | plan error "
          "| kernels (priced) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.id} | {r.what} | {r.published_ms:.3f} | {r.predicted_ms:.3f} | "
              f"{r.error:+.1%} | {r.use} | {r.plan_ms:.3f} | {r.plan_error:+.1%} | "
              f"{r.kernels} ({r.priced_kernels}) |")  # fmt: skip
    print()
    for use in ("fit", "validate"):
        chosen = [r for r in rows if r.use == use]
        if chosen:
            print(f"{use}: {summary(chosen)}")
    for use in ("fit", "validate"):
        chosen = [r for r in rows if r.use == use]
        if chosen:
            print(f"{use}, plan (lowered kernels): {summary(chosen, plan=True)}")


if __name__ == "__main__":
    main()
