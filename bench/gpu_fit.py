"""The grid fit of the GPU model's fitted constants on the ``fit`` rows of
``devices/data/gpu_published.yaml`` (``bench/gpu_latency.py`` prints every row).

Usage: ``python bench/gpu_fit.py [--kernels priced|lowered] [--fraction-step S]``. Per arch, the
grid of ``GPU_KERNEL_SECONDS`` (0-30 us, step 1 us), ``TC_SUSTAINED`` (0.40-0.90, step 0.02) and
the INT8 depthwise / grouped conv fractions (0.05-0.60, step ``--fraction-step``) that minimises
the sum of squared log errors of that arch's fit rows, each row priced as the sum of its layers'
rooflines plus its kernel count x the kernel cost, the count being

- ``priced`` (default): one per layer the per-layer model charges (placement's price, the count
  of a TensorRT-like engine: what the published TensorRT figures ran), or
- ``lowered``: the kernels Tandem's lowering emits for the network (what its plans charge).

Kernel counts do not depend on the constants (the lowering's tactics come from
``gpu_kernels.tactics.heuristic``), so each network is built once; a depthwise / grouped conv's
roofline is its roofline at fraction 1 divided by the fraction. Prints the best point per arch,
its errors, and the objective at the constants in ``devices/cost.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import devices.cost as cost  # noqa: E402
from bench.gpu_latency import built, load, published_ms  # noqa: E402
from partitioner.passes import HOST_SHAPE  # noqa: E402


@dataclass
class Figure:
    id: str
    arch: str
    published_ms: float
    kernels: int
    placement: Any

    def rooflines(self) -> tuple[float, float, float]:
        """(other, depthwise at fraction 1, grouped at fraction 1) roofline seconds."""
        cap, graph = self.placement.capabilities["gpu"], self.placement.graph
        assigned = self.placement.partition.assignments
        nodes = [n for n in graph.nodes if assigned[n.name].device == "gpu"]

        def each(depthwise: float, grouped: float) -> dict[str, float]:
            cost.DEPTHWISE_CONV_EFFICIENCY, cost.GROUPED_CONV_EFFICIENCY = depthwise, grouped
            return {n.name: cap.roofline(n, graph, assigned[n.name].precision) for n in nodes}

        saved = cost.DEPTHWISE_CONV_EFFICIENCY, cost.GROUPED_CONV_EFFICIENCY
        try:
            base, dw_half, grp_half = each(1.0, 1.0), each(0.5, 1.0), each(1.0, 0.5)
        finally:
            cost.DEPTHWISE_CONV_EFFICIENCY, cost.GROUPED_CONV_EFFICIENCY = saved
        dw = {k for k, v in base.items() if v and dw_half[k] > 1.5 * v}
        grp = {k for k, v in base.items() if v and grp_half[k] > 1.5 * v}
        other = sum(v for k, v in base.items() if k not in dw | grp)
        return other, sum(base[k] for k in dw), sum(base[k] for k in grp)


def figures(kernels: str) -> list[Figure]:
    out = []
    for fig in load()["figures"]:
        if fig["use"] != "fit":
            continue
        placement, plan = built(fig)
        if kernels == "lowered":
            count = sum(s["cuda"]["kernels"] for s in plan.header["segments"] if "cuda" in s)
        else:
            count = sum(cost.gpu_priced_kernels(n) for n in placement.graph.nodes
                        if not n.meta.get(HOST_SHAPE))  # fmt: skip
        assert placement.target.gpu is not None
        out.append(Figure(fig["id"], placement.target.gpu.arch, published_ms(fig), count,
                          placement))  # fmt: skip
    return out


def log_error(parts: tuple[float, float, float], fig: Figure, dw: float, grp: float,
              kernel: float) -> float:  # fmt: skip
    other, depthwise, grouped = parts
    seconds = other + depthwise / dw + grouped / grp + fig.kernels * kernel
    return math.log(seconds * 1e3 / fig.published_ms)


def fit(rows: list[Figure], arch: str, fraction_step: float) -> dict[str, Any]:
    kernels = [k * 1e-6 for k in range(31)]
    sustained = [round(0.40 + 0.02 * i, 2) for i in range(26)]
    n = round((0.60 - 0.05) / fraction_step) + 1
    fractions = [round(0.05 + fraction_step * i, 4) for i in range(n)]
    saved = dict(cost.TC_SUSTAINED)
    first = [fig.rooflines() for fig in rows]
    uses_dw, uses_grp = any(p[1] for p in first), any(p[2] for p in first)
    best: tuple[float, ...] | None = None
    try:
        for tc in sustained:
            cost.TC_SUSTAINED[arch] = tc
            parts = [fig.rooflines() for fig in rows]
            for dw in fractions if uses_dw else [cost.DEPTHWISE_CONV_EFFICIENCY]:
                for grp in fractions if uses_grp else [cost.GROUPED_CONV_EFFICIENCY]:
                    for kernel in kernels:
                        err = sum(log_error(p, f, dw, grp, kernel) ** 2
                                  for p, f in zip(parts, rows))  # fmt: skip
                        if best is None or err < best[0] - 1e-15:
                            best = (err, tc, dw, grp, kernel)
    finally:
        cost.TC_SUSTAINED.clear()
        cost.TC_SUSTAINED.update(saved)
    assert best is not None
    err, tc, dw, grp, kernel = best
    cost.TC_SUSTAINED[arch] = tc
    try:
        errors = {f.id: math.exp(log_error(f.rooflines(), f, dw, grp, kernel)) - 1 for f in rows}
    finally:
        cost.TC_SUSTAINED.clear()
        cost.TC_SUSTAINED.update(saved)
    return {"objective": round(err, 5), "kernel_us": round(kernel * 1e6), "TC_SUSTAINED": tc,
            "DEPTHWISE_CONV_EFFICIENCY": dw if uses_dw else None,
            "GROUPED_CONV_EFFICIENCY": grp if uses_grp else None, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernels", choices=("priced", "lowered"), default="priced")
    parser.add_argument("--fraction-step", type=float, default=0.01)
    args = parser.parse_args()
    rows = figures(args.kernels)
    for arch in sorted({f.arch for f in rows}):
        mine = [f for f in rows if f.arch == arch]
        best = fit(mine, arch, args.fraction_step)
        now = sum(
            log_error(f.rooflines(), f, cost.DEPTHWISE_CONV_EFFICIENCY,
                      cost.GROUPED_CONV_EFFICIENCY, cost.gpu_kernel_seconds(arch)) ** 2
            for f in mine
        )  # fmt: skip
        errors = ", ".join(f"{k} {v:+.1%}" for k, v in best.pop("errors").items())
        print(f"{arch} ({args.kernels} kernels, fractions step {args.fraction_step}): "
              f"best {best}; errors {errors}; objective at devices/cost.py's constants "
              f"{now:.5f}")  # fmt: skip


if __name__ == "__main__":
    main()
