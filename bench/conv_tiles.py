"""How close the tensor-core convolution gets to the mma.sync peak on ResNet-50 at batch 32
(issue 19 item 3), tactic by tactic, against cuDNN on the same shapes in the same run.

For every distinct convolution of ResNet-50 v1.5 at 224 px (the stem aside: it runs as a
space-to-depth convolution of its own), FP16 and INT8, every tactic the autotuner may pick
(``gpu_kernels.tactics.candidates``) plus ``--extra`` tile configurations is launched on random
data, checked against PyTorch's convolution of the same data (a wrong tactic is reported and never
"best"), and timed with CUDA events (median of ``--reps`` launches after a warm-up). cuDNN's time
is torch's FP16 channels_last convolution with ``cudnn.benchmark``. The summary weighs each shape
by how often it occurs in the network: achieved TFLOPS of the best tactic per shape over the 3x3
convolutions and over all, as a fraction of the register-only mma.sync peak measured in the same
process (bench/gpu_peaks.py), and INT8's speed-up over FP16.

    python bench/conv_tiles.py --out conv_tiles.json [--batch 32] [--extra NAME,NAME]

``--network narrow`` sweeps instead every tensor-core convolution with at most 64 output channels
of the zoo's unet-small, yolov5s and mobilenetv2 (as the lowering emits them: stems after their
space-to-depth), with ``NARROW_TILES`` as the trial tiles: long, thin GEMMs of few k-tiles.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpu_kernels.tactics import ConvProblem, ConvTactic, candidates  # noqa: E402

# Tile configurations tried beside the shipped ones (FP16 names; INT8 runs each with k-tiles of
# the same bytes). Warp tiles of 64x64 halve the ldmatrix per mma.sync of the 64x32 ones.
EXTRA_TILES = (
    "mma_128x128_w2x4_s4_k1", "mma_128x128_w2x4_s3_k1_f2", "mma_128x128_w2x2_s3_k1",
    "mma_128x128_w2x2_s3_k1_f2", "mma_128x128_w2x2_s4_k1_f2", "mma_256x128_w4x2_s3_k1_f2",
    "mma_128x256_w2x4_s3_k1_f2", "mma_128x256_w2x4_s4_k1_f2", "mma_256x64_w4x1_s3_k1_f2",
    "mma_256x64_w4x1_s4_k1_f2", "mma_64x128_w1x2_s4_k1_f2", "mma_128x64_w2x1_s4_k1_f2",
    "mma_128x128_b64_w2x4_s3_k1_f2", "mma_128x128_b64_w2x2_s3_k1_f2", "mma_128x64_w2x2_s4_k1",
)

# Trial tiles for narrow layers (N <= 64 output channels, often <= 10 k-tiles): more warps,
# deeper pipelines, and 64-row warp tiles that halve the loader's work per mma.sync.
NARROW_TILES = (
    "mma_128x32_w4x1_s4_k1", "mma_64x32_w2x1_s6_k1", "mma_128x32_w2x1_s3_k1",
    "mma_256x32_w4x1_s3_k1", "mma_256x32_w4x1_s4_k1", "mma_128x64_w4x1_s3_k1",
    "mma_128x64_w4x1_s4_k1", "mma_256x64_w8x1_s3_k1", "mma_256x64_w4x1_s3_k1_f2",
    "mma_64x16_w2x1_s4_k1",
)


def narrow_convs(batch: int) -> list[tuple[ConvProblem, int]]:
    """Every tensor-core convolution of at most 64 output channels that the lowering emits
    for the zoo's unet-small, yolov5s and mobilenetv2 at ``batch``, with its count."""
    from gpu_kernels.lowering import lower
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    shapes: dict[ConvProblem, int] = {}
    for name in ("unet-small", "yolov5s", "mobilenetv2"):
        for ln in lower(graph_of(build_model(name, batch)), "fp16", 90).launches:
            if ln.kernel == "conv_mma_f16" and ln.problem.k <= 64:
                shapes[ln.problem] = shapes.get(ln.problem, 0) + 1
    return list(shapes.items())


def resnet50_convs(batch: int) -> list[tuple[ConvProblem, int]]:
    """ResNet-50 v1.5's convolutions after the stem and max-pool (stride in the 3x3), with how
    many times each shape occurs."""
    shapes: dict[ConvProblem, int] = {}

    def add(h: int, c: int, k: int, r: int, stride: int) -> int:
        pad = r // 2
        out = (h + 2 * pad - r) // stride + 1
        p = ConvProblem(batch, h, h, c, k, out, out, r, r, (stride, stride), (pad, pad))
        shapes[p] = shapes.get(p, 0) + 1
        return out

    h, c = 56, 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        mid = 64 << stage
        for b in range(blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            add(h, c, mid, 1, 1)
            h2 = add(h, mid, mid, 3, stride)
            add(h2, mid, 4 * mid, 1, 1)
            if b == 0:
                add(h, c, 4 * mid, 1, stride)  # the projection shortcut
            h, c = h2, 4 * mid
    return list(shapes.items())


class Sweep:
    """One problem's buffers, reference output and launches."""

    def __init__(self, ctx, lib, p: ConvProblem, rng, partial_floats: int) -> None:
        import torch

        self.ctx, self.lib, self.p = ctx, lib, p
        int8 = p.dtype == "int8"
        shape_x, shape_w = (p.n, p.h, p.w, p.c), (p.k, p.r, p.s, p.c)
        if int8:
            x = rng.integers(-32, 32, shape_x, dtype=np.int8)
            w = rng.integers(-32, 32, shape_w, dtype=np.int8)
            self.dq = np.full(p.k, 1.0 / (32 * 32 * p.gemm_k) ** 0.5, np.float32)
        else:
            x = rng.standard_normal(shape_x).astype(np.float16)
            w = (rng.standard_normal(shape_w) / p.gemm_k**0.5).astype(np.float16)
            self.dq = np.ones(p.k, np.float32)
        xt = torch.from_numpy(x.astype(np.float32)).cuda().permute(0, 3, 1, 2)
        wt = torch.from_numpy(w.astype(np.float32)).cuda().permute(0, 3, 1, 2)
        ref = torch.nn.functional.conv2d(xt.double(), wt.double(), stride=p.stride,
                                         padding=p.pad) * torch.from_numpy(
            self.dq.astype(np.float64)).cuda().view(1, -1, 1, 1)
        self.ref = ref.permute(0, 2, 3, 1).float().cpu().numpy()
        self.x_h, self.w_h = xt.half().contiguous(memory_format=torch.channels_last), \
            wt.half().contiguous(memory_format=torch.channels_last)
        self.bufs = [ctx.alloc(x.nbytes), ctx.alloc(w.nbytes), ctx.alloc(p.gemm_m * p.k * 2),
                     ctx.alloc(max(partial_floats, 1) * 4), ctx.alloc(1 << 20),
                     ctx.alloc(self.dq.nbytes)]
        ctx.upload(self.bufs[0], x.reshape(-1))
        ctx.upload(self.bufs[1], w.reshape(-1))
        ctx.upload(self.bufs[5], self.dq)
        ctx.memset(self.bufs[4], 0, 1 << 20)

    def close(self) -> None:
        self.ctx.synchronize()
        for b in self.bufs:
            self.ctx.free(b)

    def run(self, t: ConvTactic, reps: int, lib=None) -> tuple[float, float]:
        """(median ms, max abs error / max abs reference) of one tactic (compiled by ``lib``,
        else this sweep's library)."""
        from gpu_kernels.driver import KArgs

        ctx, p, b = self.ctx, self.p, self.bufs
        func = (lib or self.lib).conv_mma(t)
        grid = t.grid(p, ctx.info.sm_count)
        args = KArgs.make([b[0], b[1], 0, 0, b[2], b[3], b[4], b[5]],
                          p.conv_ints() + p.mma_ints(t.splits), [0.0, 0.0, 1.0, 1.0])
        ctx.memset(b[2], 0, p.gemm_m * p.k * 2)
        ctx.launch(func, grid, t.threads, args, t.smem_bytes)
        ctx.synchronize()
        y = ctx.download(b[2], (p.n, p.p, p.q, p.k), np.float16).astype(np.float32)
        err = float(np.abs(y - self.ref).max() / max(np.abs(self.ref).max(), 1e-30))
        start, end = ctx.event(), ctx.event()
        times = []
        for _ in range(reps):
            ctx.record(start)
            ctx.launch(func, grid, t.threads, args, t.smem_bytes)
            ctx.record(end)
            ctx.synchronize()
            times.append(ctx.elapsed_ms(start, end))
        return float(np.median(times)), err

    def cudnn_ms(self, reps: int) -> float:
        import torch

        p = self.p
        f = torch.nn.functional.conv2d
        for _ in range(3):
            f(self.x_h, self.w_h, stride=p.stride, padding=p.pad)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        times = []
        for _ in range(reps):
            start.record()
            f(self.x_h, self.w_h, stride=p.stride, padding=p.pad)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return float(np.median(times))


def ab_times(sweep: Sweep, t: ConvTactic, reps: int, baseline, rounds: int = 3) -> dict:
    """The tactic compiled from the current conv_mma.cu and from ``baseline``'s source,
    timed in alternating batches of ``reps`` launches (so drifting clocks hit both alike)."""
    cur, base, errs = [], [], []
    for _ in range(rounds):
        ms, err = sweep.run(t, reps)
        cur.append(ms)
        errs.append(err)
        ms, err = sweep.run(t, reps, baseline)
        base.append(ms)
        errs.append(err)
    ms, ms_base = float(np.median(cur)), float(np.median(base))
    return {"ms": round(ms, 4), "baseline_ms": round(ms_base, 4),
            "over_baseline": round(ms / ms_base, 3), "err": float(f"{max(errs):.2e}")}


def baseline_library(ctx, path: Path):
    """A KernelLibrary whose tensor-core convolutions compile from ``path`` (an earlier
    conv_mma.cu, same headers) instead of gpu_kernels/conv_mma.cu."""
    from gpu_kernels.catalog import mma_module
    from gpu_kernels.library import KernelLibrary

    text = path.read_text(encoding="utf-8")

    class Baseline(KernelLibrary):
        def conv_mma(self, tactic: ConvTactic):
            _, opts = mma_module(tactic)
            return self.module(text, opts).function(tactic.kernel, tactic.smem_bytes)

    return Baseline(ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="conv_tiles.json")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--network", choices=("resnet50", "narrow"), default="resnet50")
    ap.add_argument("--extra", default=None, help="trial tiles (default: the network's list)")
    ap.add_argument("--precisions", default="f16,i8")
    ap.add_argument("--shapes", default="",
                    help="comma list of substrings: only shapes whose signature holds one "
                         "(e.g. 'h28 w28 c128 k128' for a run under ncu)")
    ap.add_argument("--baseline", type=Path, default=None,
                    help="an earlier conv_mma.cu: every tactic is also compiled from it and "
                         "timed in alternation with the current one (over_baseline per tactic)")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="print each tactic before its launches (to match ncu's kernel order)")
    args = ap.parse_args()
    if args.baseline is not None and not args.baseline.is_file():
        ap.error(f"--baseline: no file {args.baseline} (an earlier conv_mma.cu)")

    import torch
    from gpu_peaks import mma_peak_tflops

    from gpu_kernels.driver import Context
    from gpu_kernels.library import KernelLibrary

    torch.backends.cudnn.benchmark = True
    ctx = Context()
    lib = KernelLibrary(ctx)
    arch = ctx.info.arch
    peaks = mma_peak_tflops()
    baseline = baseline_library(ctx, args.baseline) if args.baseline else None
    names = args.extra if args.extra is not None else ",".join(
        NARROW_TILES if args.network == "narrow" else EXTRA_TILES)
    extra = [ConvTactic.from_name(n) for n in names.split(",") if n]
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "device": ctx.info.name, "batch": args.batch, "network": args.network,
                 "peaks": peaks, "rows": []}
    print(json.dumps(doc["peaks"]), flush=True)
    rng = np.random.default_rng(0)
    shapes = narrow_convs if args.network == "narrow" else resnet50_convs
    wanted = [w for w in args.shapes.split(",") if w]
    for base, count in shapes(args.batch):
        if wanted and not any(w in base.signature() for w in wanted):
            continue
        for prec in args.precisions.split(","):
            p = base if prec == "f16" else replace(base, dtype="int8")
            listed = candidates(p, arch)  # what the autotuner may pick today
            shipped = {t.name for t in listed}
            trials = [t if prec == "f16" else replace(t, bk=2 * t.bk, dtype="i8") for t in extra]
            cands = listed + [t for t in trials if t.name not in shipped]  # adopted: once
            sweep = Sweep(ctx, lib, p, rng, max(t.workspace_floats(p, ctx.info.sm_count)
                                                for t in cands))
            row: dict = {"shape": p.signature(), "precision": prec, "count": count,
                         "gflop": round(p.flops / 1e9, 3), "r": p.r, "tactics": {}}
            try:
                for t in cands:
                    if args.verbose:
                        print(f"  launching {t.name} ({1 + args.reps} launches)", flush=True)
                    try:
                        if baseline is not None:
                            row["tactics"][t.name] = ab_times(sweep, t, args.reps, baseline)
                            continue
                        ms, err = sweep.run(t, args.reps)
                        row["tactics"][t.name] = {"ms": round(ms, 4), "err": float(f"{err:.2e}")}
                    except Exception as exc:  # a tile that cannot compile or launch: say which
                        row["tactics"][t.name] = {"error": f"{type(exc).__name__}: {exc}"[:160]}
                if prec == "f16":
                    row["cudnn_ms"] = round(sweep.cudnn_ms(args.reps), 4)
            finally:
                sweep.close()
            ok = {n: v["ms"] for n, v in row["tactics"].items()
                  if "ms" in v and v["err"] < (2e-2 if prec == "f16" else 1e-2)}
            wrong = [n for n, v in row["tactics"].items() if "ms" in v and n not in ok]
            best = min(ok, key=ok.__getitem__)
            row.update(best=best, best_ms=ok[best], wrong=wrong,
                       best_tflops=round(p.flops / ok[best] / 1e9, 1))
            best_shipped = min((n for n in ok if n in shipped), key=ok.__getitem__)
            row.update(best_shipped=best_shipped, best_shipped_ms=ok[best_shipped])
            doc["rows"].append(row)
            if baseline is not None:
                print("  over baseline: " + ", ".join(
                    f"{n} {v['over_baseline']}" for n, v in row["tactics"].items()
                    if "over_baseline" in v), flush=True)
            print(f"{row['shape']:<48} {prec} x{count} best {best} {ok[best]:.4f} ms "
                  f"({row['best_tflops']} TFLOPS) shipped {best_shipped} {ok[best_shipped]:.4f}"
                  f" cudnn {row.get('cudnn_ms', '-')} wrong {wrong}", flush=True)
    doc["summary"] = summarise(doc["rows"], peaks)
    print(json.dumps(doc["summary"], indent=1))
    Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


def summarise(rows: list[dict], peaks: dict) -> dict:
    """Network-weighted TFLOPS of the best tactic (and of the best shipped one) per shape."""
    out: dict = {}
    for prec in ("f16", "i8"):
        for label, pick in (("3x3", lambda r: r["r"] == 3), ("all", lambda r: True)):
            sel = [r for r in rows if r["precision"] == prec and pick(r)]
            if not sel:
                continue
            flop = sum(r["gflop"] * r["count"] for r in sel)
            best = sum(r["best_ms"] * r["count"] for r in sel)
            shipped = sum(r["best_shipped_ms"] * r["count"] for r in sel)
            key = f"{prec}_{label}"
            out[key] = {"gflop": round(flop, 1), "best_ms": round(best, 3),
                        "best_tflops": round(flop / best, 1),
                        "shipped_ms": round(shipped, 3),
                        "shipped_tflops": round(flop / shipped, 1)}
            if prec == "f16":
                cud = sum(r["cudnn_ms"] * r["count"] for r in sel)
                peak = peaks.get("mma_sync_peak_tflops")
                out[key].update(cudnn_ms=round(cud, 3), cudnn_tflops=round(flop / cud, 1),
                                best_over_cudnn=round(best / cud, 3))
                if isinstance(peak, float):
                    out[key]["best_fraction_of_mma_peak"] = round(flop / best / peak, 3)
    for label in ("3x3", "all"):
        f, i = out.get(f"f16_{label}"), out.get(f"i8_{label}")
        if f and i:
            out[f"int8_speedup_{label}"] = round(f["best_ms"] / i["best_ms"], 2)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
