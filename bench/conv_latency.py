"""Where a batch-1 convolution's time goes: fixed cost per launch vs cost per k-tile.

One tensor-core tactic is launched ``--chain`` times back to back inside one CUDA graph (stream
order makes each launch wait for the previous one, as in a model), for a 1x1 convolution of
M = 14x14 output pixels and N = 256 output channels whose reduction K grows from one k-tile to
64. Per-launch time = graph time / chain; a straight-line fit gives the fixed cost (intercept)
and the cost of one k-tile (slope). An empty kernel's chain gives the graph's per-node floor.
Each configuration is timed with and without programmatic dependent launch (sm_90+).

    python bench/conv_latency.py --out conv_latency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def chain_us(ctx, launches, chain: int, pdl: bool, reps: int = 20) -> float:
    """Median per-launch microseconds of ``chain`` x ``launches`` captured in one graph."""
    ctx.synchronize()
    ctx.begin_capture()
    try:
        first = True
        for _ in range(chain):
            for func, grid, block, args, smem in launches:
                ctx.launch(func, grid, block, args, smem, pdl and not first)
                first = False
    finally:
        graph = ctx.end_capture()
    start, end = ctx.event(), ctx.event()
    graph.launch()
    times = []
    for _ in range(reps):
        ctx.record(start)
        graph.launch()
        ctx.record(end)
        times.append(ctx.elapsed_ms(start, end) * 1e3 / (chain * len(launches)))
    graph.destroy()
    return float(np.median(times))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="conv_latency.json")
    ap.add_argument("--chain", type=int, default=20)
    ap.add_argument("--tactics", default="mma_64x64_w2x2_s3_k1,mma_64x64_w2x2_s6_k1,"
                                         "mma_64x64_b64_w2x2_s4_k1,mma_128x64_w2x2_s3_k1,"
                                         "mma_32x64_w1x2_s4_k1,mma_32x64_w1x2_s6_k1")
    args = ap.parse_args()

    from gpu_kernels.driver import Context, KArgs
    from gpu_kernels.library import KernelLibrary
    from gpu_kernels.tactics import ConvProblem, ConvTactic

    ctx = Context()
    lib = KernelLibrary(ctx)
    pdl_modes = [False, True] if ctx.info.arch >= 90 else [False]
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "device": ctx.info.name, "chain": args.chain, "rows": []}
    h = w = 14
    n_out = 256
    c_max = 64 * 64
    rng = np.random.default_rng(0)
    x = ctx.alloc(h * w * c_max * 2)
    wt = ctx.alloc(n_out * c_max * 2)
    y = ctx.alloc(h * w * n_out * 2)
    ctx.upload(x, rng.standard_normal(h * w * c_max).astype(np.float16))
    ctx.upload(wt, (rng.standard_normal(n_out * c_max) * 0.02).astype(np.float16))

    empty = lib.function("copy_f16_f16")
    one = [1] + [1, 0, 0, 0, 0, 0] + [1, 0, 0, 0, 0, 0] + [1, 0, 0, 0, 0, 0]
    for pdl in pdl_modes:
        us = chain_us(ctx, [(empty, (1, 1, 1), 32, KArgs.make([x, y], one, [1.0]), 0)],
                      args.chain, pdl)
        doc["rows"].append({"kernel": "copy 1 element", "pdl": pdl, "us": round(us, 3)})
        print(doc["rows"][-1])
    for name in args.tactics.split(","):
        t = ConvTactic.from_name(name)
        func = lib.conv_mma(t)
        for pdl in pdl_modes:
            pts = []
            for c in (t.bk, 2 * t.bk, 4 * t.bk, 8 * t.bk, 16 * t.bk, 32 * t.bk, 64 * t.bk):
                if c > c_max:
                    break
                prob = ConvProblem(1, h, w, c, n_out, h, w, 1, 1)
                ints = prob.conv_ints() + prob.mma_ints(1)
                grid = (-(-h * w // t.bm), -(-n_out // t.bn), 1)
                a = KArgs.make([x, wt, 0, 0, y, 0, 0, 0], ints, [0.0, 0.0, 1.0, 1.0])
                us = chain_us(ctx, [(func, grid, t.threads, a, t.smem_bytes)], args.chain, pdl)
                pts.append((c // t.bk, us))
            kt, us = np.array(pts).T
            slope, icpt = np.polyfit(kt, us, 1)
            row = {"tactic": name, "pdl": pdl, "ctas": grid[0] * grid[1],
                   "points_ktiles_us": [(int(k), round(u, 3)) for k, u in pts],
                   "fixed_us": round(float(icpt), 3), "per_ktile_us": round(float(slope), 4)}
            doc["rows"].append(row)
            print(json.dumps(row))
    Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
