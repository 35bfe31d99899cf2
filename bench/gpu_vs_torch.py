"""Tandem's GPU backend vs PyTorch (eager cuDNN channels_last, torch.compile) on one GPU.

One process, same weights (the ONNX initializers drive both: bench/gpu_torch_interp.py), outputs
cross-checked. Both sides are timed the same way, with host clocks:
  * ``b2b_ms``: N calls back to back, one synchronize at the end, total / N;
  * ``p50_ms``: median over N of (call + synchronize), i.e. latency of one inference.
Inputs stay resident on the GPU (no host copies) for both. Also measured: the mma.sync
m16n8k16 register-only peak, cuBLAS's FP16 GEMM rate, and the achieved TFLOPS of the main
convolution tactics chosen by the autotuner.

    python3 bench/gpu_vs_torch.py --out results.json [--models resnet50,...] [--batches 1,32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODELS = ["resnet18", "resnet50", "mobilenetv2", "yolov5s", "unet-small", "vit-tiny"]


def timed(call, sync, iters: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        call()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        call()
    sync()
    b2b = (time.perf_counter() - t0) / iters * 1e3
    lat = []
    for _ in range(iters):
        t = time.perf_counter()
        call()
        sync()
        lat.append((time.perf_counter() - t) * 1e3)
    return {"b2b_ms": round(b2b, 4), "p50_ms": round(statistics.median(lat), 4),
            "min_ms": round(min(lat), 4)}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    b64 = b.astype(np.float64)
    return float(np.max(np.abs(a.astype(np.float64) - b64)) / max(np.max(np.abs(b64)), 1e-30))


def mma_peak_tflops() -> dict[str, float]:
    import torch

    from gpu_kernels.compile import compile_kernel
    from gpu_kernels.driver import Context, KArgs

    ctx = Context()
    mod = ctx.load_module(compile_kernel("mma_peak.cu", f"sm_{ctx.info.arch}").cubin)
    f = mod.function("mma_peak")
    sink = ctx.alloc(4096)
    iters, blocks, threads = 4096, ctx.info.sm_count * 8, 256
    args = KArgs.make([sink], [iters])
    ctx.launch(f, (blocks, 1, 1), threads, args)
    ctx.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        ctx.launch(f, (blocks, 1, 1), threads, args)
    ctx.synchronize()
    dt = (time.perf_counter() - t0) / 5
    flops = blocks * threads / 32 * iters * 8 * 2 * 16 * 8 * 16
    ctx.free(sink)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    cublas = 2 * 8192**3 / ((time.perf_counter() - t0) / 10) / 1e12
    return {"mma_sync_peak_tflops": round(flops / dt / 1e12, 1),
            "cublas_fp16_8192_tflops": round(cublas, 1)}


def conv_tflops(runner, top: int = 8) -> list[dict]:
    """Achieved TFLOPS of the chosen tactic for the largest convolutions of a built runner."""
    out, seen = [], set()
    for ln in runner.program.launches:
        p = ln.problem
        if p is None or ln.tactic is None or ln.tactic.kind != "mma" or p.signature() in seen:
            continue
        seen.add(p.signature())
        times = runner.timing_cache.times(p.signature(), runner.arch_key)
        if ln.tactic.name not in times:
            continue
        ms = times[ln.tactic.name]
        out.append({"layer": ln.layer, "problem": p.signature(), "tactic": ln.tactic.name,
                    "gflop": round(p.flops / 1e9, 3), "ms": round(ms, 4),
                    "tflops": round(p.flops / (ms * 1e-3) / 1e12, 1)})
    return sorted(out, key=lambda r: -r["gflop"])[:top]


def channels_last(module):
    """4-D weights in channels_last (cuDNN's fast NHWC path); other buffers as they are."""
    import torch

    for key, buf in list(module._buffers.items()):
        if buf is not None and buf.dim() == 4:
            module._buffers[key] = buf.contiguous(memory_format=torch.channels_last)
    return module


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_vs_torch.json")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--compile", default="reduce-overhead",
                    help="comma list of torch.compile modes to run ('' for none)")
    ap.add_argument("--compile-batch32", default="resnet50,mobilenetv2",
                    help="models that also get torch.compile at batch > 1")
    ap.add_argument("--max-autotune", default="",
                    help="models (batch 1) that also get torch.compile max-autotune")
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--profile", default="resnet50,mobilenetv2",
                    help="models whose per-layer GPU times are recorded")
    args = ap.parse_args()
    start = time.time()

    import torch
    from gpu_torch_interp import TorchGraph

    from devices.gpu import GpuRunner
    from gpu_kernels.timing_cache import TimingCache
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    torch.backends.cudnn.benchmark = True
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "cudnn": torch.backends.cudnn.version(), "results": [], "conv_tactics": []}
    doc.update(mma_peak_tflops())
    print(json.dumps({k: v for k, v in doc.items() if k not in ("results", "conv_tactics")}))
    cache = TimingCache()
    modes = [m for m in args.compile.split(",") if m]
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            if time.time() - start > args.budget_s:
                print(f"budget exhausted: skipping {name} b{batch}")
                continue
            row: dict = {"model": name, "batch": batch}
            graph = graph_of(build_model(name, batch))
            rng = np.random.default_rng(0)
            feeds = {t.name: rng.standard_normal(t.static_shape()).astype(np.float32)
                     for t in graph.inputs}
            t0 = time.time()
            runner = GpuRunner(graph, "fp16", autotune=True, timing_cache=cache)
            runner.activate()
            row["tandem_build_s"] = round(time.time() - t0, 2)
            got = runner.infer(feeds)
            summ = runner.summary()
            row.update(kernels=summ["kernels"], peak_activation_mb=round(
                summ["peak_activation_bytes"] / 2**20, 2))
            row["tandem"] = timed(runner.run_device, runner.ctx.synchronize, args.iters)
            lat = []
            for _ in range(30):
                t = time.perf_counter()
                runner.infer(feeds)
                lat.append((time.perf_counter() - t) * 1e3)
            row["tandem"]["p50_with_copies_ms"] = round(statistics.median(lat), 4)
            if name == "resnet50" and batch == max(int(b) for b in args.batches.split(",")):
                doc["conv_tactics"] = conv_tflops(runner)
            if name in args.profile.split(","):
                prof = runner.profile()
                by_kernel: dict[str, float] = {}
                for r in prof:
                    by_kernel[r["kernel"]] = round(by_kernel.get(r["kernel"], 0.0) + r["ms"], 4)
                doc.setdefault("profiles", {})[f"{name}_b{batch}"] = {
                    "sum_ms": round(sum(r["ms"] for r in prof), 4), "by_kernel": by_kernel,
                    "top": prof[:12]}

            module = channels_last(TorchGraph(graph, torch.float16).cuda().eval())
            xs = []
            for n in module.in_names:
                x = torch.from_numpy(feeds[n]).cuda().half()
                xs.append(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
            with torch.inference_mode():
                ref = [o.float().cpu().numpy() for o in module(*xs)]
                row["eager"] = timed(lambda m=module, xs=xs: m(*xs), torch.cuda.synchronize,
                                     args.iters)
            row["max_rel_err_vs_torch"] = max(
                rel_err(got[n], r) for n, r in zip(module.out_names, ref))
            runner.deactivate()
            for mode in modes:
                if batch > 1 and name not in args.compile_batch32.split(","):
                    continue
                if time.time() - start > args.budget_s - 60:
                    print(f"budget: skipping torch.compile {mode} for {name} b{batch}")
                    continue
                torch._dynamo.reset()
                t0 = time.time()
                try:
                    cm = torch.compile(module, mode=mode)
                    with torch.inference_mode():
                        for _ in range(3):
                            outs = cm(*xs)
                        err = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(outs, ref))
                        res = timed(lambda cm=cm, xs=xs: cm(*xs), torch.cuda.synchronize,
                                    args.iters)
                    res["compile_s"] = round(time.time() - t0, 1)
                    res["max_rel_err_vs_eager"] = err
                    row[f"compile_{mode}"] = res
                except Exception as exc:  # report, keep benchmarking the rest
                    row[f"compile_{mode}"] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            doc["results"].append(row)
            print(json.dumps(row))
            Path(args.out).write_text(json.dumps(doc, indent=1))
    # max-autotune compiles for minutes per model: a last pass, only while the budget lasts
    for name in filter(None, args.max_autotune.split(",")):
        if time.time() - start > args.budget_s - 120:
            print(f"budget: skipping torch.compile max-autotune for {name}")
            continue
        row = next((r for r in doc["results"] if r["model"] == name and r["batch"] == 1), None)
        if row is None:
            continue
        graph = graph_of(build_model(name, 1))
        rng = np.random.default_rng(0)
        feeds = {t.name: rng.standard_normal(t.static_shape()).astype(np.float32)
                 for t in graph.inputs}
        module = channels_last(TorchGraph(graph, torch.float16).cuda().eval())
        xs = [torch.from_numpy(feeds[n]).cuda().half() for n in module.in_names]
        xs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
              for x in xs]
        torch._dynamo.reset()
        t0 = time.time()
        try:
            cm = torch.compile(module, mode="max-autotune")
            with torch.inference_mode():
                ref = [o.float().cpu().numpy() for o in module(*xs)]
                for _ in range(3):
                    outs = cm(*xs)
                err = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(outs, ref))
                res = timed(lambda cm=cm, xs=xs: cm(*xs), torch.cuda.synchronize, args.iters)
            res["compile_s"] = round(time.time() - t0, 1)
            res["max_rel_err_vs_eager"] = err
        except Exception as exc:
            res = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        row["compile_max-autotune"] = res
        print(json.dumps({"model": name, "max-autotune": res}))
        Path(args.out).write_text(json.dumps(doc, indent=1))
    print_table(doc)
    Path(args.out).write_text(json.dumps(doc, indent=1))
    return 0


def print_table(doc: dict) -> None:
    print(f"\n{doc['date']}  {doc['device']}  torch {doc['torch']}  cuDNN {doc['cudnn']}")
    print(f"mma.sync peak {doc['mma_sync_peak_tflops']} TFLOPS, cuBLAS FP16 "
          f"{doc['cublas_fp16_8192_tflops']} TFLOPS")
    print("| model | batch | Tandem b2b / p50 ms | eager b2b / p50 ms | reduce-overhead b2b / p50 "
          "ms | max-autotune b2b / p50 ms | kernels | rel err vs torch |")
    print("|---|---|---|---|---|---|---|---|")

    def cell(r: dict | None) -> str:
        if not r:
            return "-"
        if "error" in r:
            return "error"
        return f"{r['b2b_ms']:.3f} / {r['p50_ms']:.3f}"

    for r in doc["results"]:
        print(f"| {r['model']} | {r['batch']} | {cell(r.get('tandem'))} | {cell(r.get('eager'))} "
              f"| {cell(r.get('compile_reduce-overhead'))} | "
              f"{cell(r.get('compile_max-autotune'))} | {r['kernels']} | "
              f"{r['max_rel_err_vs_torch']:.1e} |")
    for key, prof in doc.get("profiles", {}).items():
        print(f"profile {key}: sum {prof['sum_ms']} ms by kernel {prof['by_kernel']}")
        for r in prof["top"][:6]:
            print(f"   {r['layer']} {r['kernel']} {r['tactic']} {r['ms']} ms")
    for c in doc["conv_tactics"]:
        print(f"conv {c['layer']}: {c['tactic']} {c['gflop']} GFLOP {c['ms']} ms "
              f"= {c['tflops']} TFLOPS")


if __name__ == "__main__":
    raise SystemExit(main())
