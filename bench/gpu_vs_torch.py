"""Tandem's GPU backend vs PyTorch (eager cuDNN channels_last, torch.compile) on one GPU.

One process, same weights (the ONNX initializers drive both: bench/gpu_torch_interp.py), outputs
cross-checked. Both sides are timed the same way, with host clocks:
  * ``b2b_ms``: N calls back to back, one synchronize at the end, total / N;
  * ``p50_ms``: median over N of (call + synchronize), i.e. latency of one inference.
Inputs stay resident on the GPU (no host copies) for both. Also measured: the mma.sync
register-only peaks (m16n8k16 FP16 and m16n8k32 INT8), cuBLAS's FP16 GEMM rate, and the
achieved TFLOPS of the main convolution tactics chosen by the autotuner.

Precisions, run in this order whatever ``--precisions`` lists (so the FP16 acceptance rows come
first when ``--budget-s`` runs out):
  * ``fp16``: Tandem FP16 vs eager FP16 and torch.compile;
  * ``int8``: Tandem INT8, per-tensor scales (threshold / 127) from the project's entropy
    calibrator run on the CPU reference over a few standard-normal batch-1 inputs (seed 1; the
    timed inputs use seed 0), reused at batch 32. PyTorch has no general INT8 convolution on
    CUDA, so the peers are eager FP16 and Tandem FP16 of the same model and batch (speed-ups),
    and accuracy is cosine similarity and max|delta| / max|ref| against eager **FP32**;
  * ``fp32``: Tandem FP32 (SIMT FP32 kernels) vs eager FP32 with TF32 **off**
    (``torch.backends.cuda.matmul.allow_tf32`` and ``torch.backends.cudnn.allow_tf32`` set to
    False for the FP32 peers, their defaults recorded in the JSON), so both sides do true FP32
    arithmetic. torch.compile only with ``--compile-fp32``.

    python3 bench/gpu_vs_torch.py --out results.json [--models resnet50,...] [--batches 1,32]
        [--precisions fp16,int8,fp32] [--calib-batches 2] [--calib-cache DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

MODELS = ["resnet18", "resnet50", "mobilenetv2", "yolov5s", "unet-small", "vit-tiny"]
PRECISIONS = ("fp16", "int8", "fp32")  # the run order (see the module docstring)


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


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-300))


def _register_peak(ctx, mod, kernel: str, ops_per_mma: int) -> float:
    """Tera-ops/s of a register-only mma.sync loop kernel (8 chains per warp, see mma_peak.cu)."""
    from gpu_kernels.driver import KArgs

    f = mod.function(kernel)
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
    ctx.free(sink)
    return blocks * threads / 32 * iters * 8 * ops_per_mma / dt / 1e12


def mma_peak_tflops() -> dict[str, float]:
    import torch

    from gpu_kernels.compile import compile_kernel
    from gpu_kernels.driver import Context

    ctx = Context()
    mod = ctx.load_module(compile_kernel("mma_peak.cu", f"sm_{ctx.info.arch}").cubin)
    peaks = {"mma_sync_peak_tflops": round(_register_peak(ctx, mod, "mma_peak", 2 * 16 * 8 * 16),
                                           1)}
    try:  # m16n8k32 s8: 2 * 16 * 8 * 32 integer ops per instruction
        peaks["mma_sync_int8_peak_tops"] = round(
            _register_peak(ctx, mod, "mma_peak_int8", 2 * 16 * 8 * 32), 1)
    except Exception as exc:  # report, keep benchmarking the rest
        peaks["mma_sync_int8_peak_tops"] = f"error: {type(exc).__name__}: {exc}"[:200]
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    peaks["cublas_fp16_8192_tflops"] = round(
        2 * 8192**3 / ((time.perf_counter() - t0) / 10) / 1e12, 1)
    return peaks


def conv_tflops(runner, top: int = 8) -> list[dict]:
    """Achieved T(FL)OPS of the chosen tactic for the largest convolutions of a built runner."""
    out, seen = [], set()
    for ln in runner.program.launches:
        p = ln.problem
        # "mma" in kind: the FP16 tactics and the INT8 ones, whatever suffix their kind has
        if p is None or ln.tactic is None or "mma" not in str(ln.tactic.kind) \
                or p.signature() in seen:
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


def tf32_flags() -> dict[str, Any]:
    import torch

    flags: dict[str, Any] = {"cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                             "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
    for key, obj in (("cuda_matmul_fp32_precision", torch.backends.cuda.matmul),
                     ("cudnn_fp32_precision", torch.backends.cudnn)):
        if hasattr(obj, "fp32_precision"):  # torch >= 2.9's replacement API, for the record
            flags[key] = obj.fp32_precision
    return flags


@contextlib.contextmanager
def true_fp32() -> Iterator[None]:
    """TF32 off for cuBLAS and cuDNN: the FP32 peers do FP32 arithmetic like Tandem's kernels."""
    import torch

    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def feeds_of(graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {t.name: rng.standard_normal(t.static_shape()).astype(np.float32)
            for t in graph.inputs}


def torch_side(graph, feeds: dict[str, np.ndarray], dtype):
    """(module, resident inputs) of the eager PyTorch peer in ``dtype``, channels_last."""
    import torch
    from gpu_torch_interp import TorchGraph

    module = channels_last(TorchGraph(graph, dtype).cuda().eval())
    xs = []
    for n in module.in_names:
        x = torch.from_numpy(feeds[n]).cuda().to(dtype)
        xs.append(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
    return module, xs


def torch_outputs(module, xs) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        return [o.float().cpu().numpy() for o in module(*xs)]


def tandem_side(runner, feeds: dict[str, np.ndarray], row: dict, iters: int):
    """Time an activated runner into ``row``; return its outputs for ``feeds``."""
    got = runner.infer(feeds)
    summ = runner.summary()
    row.update(kernels=summ["kernels"],
               peak_activation_mb=round(summ["peak_activation_bytes"] / 2**20, 2))
    row["tandem"] = timed(runner.run_device, runner.ctx.synchronize, iters)
    if runner.pdl:  # the same graph without programmatic dependent launch, for the ratio
        runner.pdl = False
        runner.capture()
        row["tandem_no_pdl"] = timed(runner.run_device, runner.ctx.synchronize, iters)
        runner.pdl = True
        runner.capture()
    lat = []
    for _ in range(30):
        t = time.perf_counter()
        runner.infer(feeds)
        lat.append((time.perf_counter() - t) * 1e3)
    row["tandem"]["p50_with_copies_ms"] = round(statistics.median(lat), 4)
    return got


def record_profile(runner, doc: dict, key: str) -> None:
    prof = runner.profile()
    by_kernel: dict[str, float] = {}
    for r in prof:
        by_kernel[r["kernel"]] = round(by_kernel.get(r["kernel"], 0.0) + r["ms"], 4)
    doc.setdefault("profiles", {})[key] = {
        "sum_ms": round(sum(r["ms"] for r in prof), 4), "by_kernel": by_kernel, "top": prof[:12]}


def compile_side(module, xs, ref: list[np.ndarray], mode: str, iters: int) -> dict:
    import torch

    torch._dynamo.reset()
    t0 = time.time()
    try:
        cm = torch.compile(module, mode=mode)
        with torch.inference_mode():
            for _ in range(3):
                outs = cm(*xs)
            err = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(outs, ref))
            res = timed(lambda: cm(*xs), torch.cuda.synchronize, iters)
        res["compile_s"] = round(time.time() - t0, 1)
        res["max_rel_err_vs_eager"] = err
        return res
    except Exception as exc:  # report, keep benchmarking the rest
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def calibrate_all(models: list[str], batches: int, cache_dir: str,
                  workers: int) -> dict[str, tuple[dict[str, float] | None, float | None, str]]:
    """``calibration_scales`` of every model in parallel processes (CPU work: the H100 host has
    16 cores), run between GPU phases so it perturbs no timing. ``{model: (scales or None,
    seconds, error)}``; falls back to one model after the other if the pool cannot start."""
    import concurrent.futures as cf
    import multiprocessing
    import os

    out: dict[str, tuple[dict[str, float] | None, float | None, str]] = {}
    workers = max(1, min(workers, len(models)))
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in env_keys}
    try:
        # spawn, not fork: this process holds a CUDA context; the children inherit the thread
        # caps from the environment before they import numpy
        os.environ.update({k: threads for k in env_keys})
        with cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) \
                as pool:
            futs = {pool.submit(calibration_scales, m, batches, cache_dir): m for m in models}
            for fut in cf.as_completed(futs):
                try:
                    scales, secs = fut.result()
                    out[futs[fut]] = (scales, secs, "")
                except Exception as exc:
                    out[futs[fut]] = (None, None, f"{type(exc).__name__}: {exc}"[:300])
    except Exception as exc:  # no process pool here: one after the other
        print(f"calibration pool failed ({type(exc).__name__}: {exc}); calibrating serially")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    for m in models:
        if m not in out or out[m][0] is None:
            try:
                scales, secs = calibration_scales(m, batches, cache_dir)
                out[m] = (scales, secs, "")
            except Exception as exc:
                out[m] = (None, None, f"{type(exc).__name__}: {exc}"[:300])
    return out


def calibration_scales(name: str, batches: int, cache_dir: str) -> tuple[dict[str, float], float]:
    """Per-tensor INT8 scales of zoo model ``name`` at batch 1, and the seconds they took.

    The project's calibrator (EntropyCalibrator2 over the CPU reference's activations) on
    ``batches`` standard-normal inputs, the distribution the benchmark feeds. Read from / written
    to ``cache_dir/<name>.calib`` (TensorRT's cache format) when a folder is given.
    """
    from devices.calibration import activations
    from dla_sim.calibration import calibrate, random_batches, read_cache, write_cache
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    t0 = time.time()
    path = Path(cache_dir) / f"{name}.calib" if cache_dir else None
    if path is not None and path.is_file():
        return read_cache(path), round(time.time() - t0, 2)
    graph = graph_of(build_model(name, 1))
    inputs = {t.name: (t.static_shape(), "float32") for t in graph.inputs}
    scales = calibrate(activations(graph, random_batches(inputs, batches, seed=1)), "entropy")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_cache(path, scales)
    return scales, round(time.time() - t0, 2)


def bench_float(name: str, batch: int, precision: str, args, cache, doc: dict) -> dict:
    """One FP16 or FP32 row: Tandem vs eager (and torch.compile where asked)."""
    import torch

    from devices.gpu import GpuRunner
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    row: dict = {"model": name, "batch": batch, "precision": precision}
    graph = graph_of(build_model(name, batch))
    feeds = feeds_of(graph)
    t0 = time.time()
    runner = GpuRunner(graph, precision, autotune=True, timing_cache=cache)
    try:
        runner.activate()
        row["tandem_build_s"] = round(time.time() - t0, 2)
        got = tandem_side(runner, feeds, row, args.iters)
        if precision == "fp16" and name == "resnet50" and batch == max(args.batch_list):
            doc["conv_tactics"] = conv_tflops(runner)
        if name in args.profile.split(","):
            suffix = "" if precision == "fp16" else f"_{precision}"  # FP16 keys as before
            record_profile(runner, doc, f"{name}_b{batch}{suffix}")
    finally:
        runner.deactivate()

    dtype = torch.float16 if precision == "fp16" else torch.float32
    fp_mode = contextlib.nullcontext() if precision == "fp16" else true_fp32()
    with fp_mode:
        if precision == "fp32":
            row["tf32"] = False
        module, xs = torch_side(graph, feeds, dtype)
        ref = torch_outputs(module, xs)
        with torch.inference_mode():
            row["eager"] = timed(lambda: module(*xs), torch.cuda.synchronize, args.iters)
        row["max_rel_err_vs_torch"] = max(
            rel_err(got[n], r) for n, r in zip(module.out_names, ref))
        if precision == "fp16" or args.compile_fp32:
            for mode in args.modes:
                if batch > 1 and name not in args.compile_batch32.split(","):
                    continue
                if time.time() - args.start > args.budget_s - 60:
                    print(f"budget: skipping torch.compile {mode} for {name} b{batch} "
                          f"{precision}")
                    continue
                row[f"compile_{mode}"] = compile_side(module, xs, ref, mode, args.iters)
    return row


def bench_int8(name: str, batch: int, scales: dict[str, float], args, cache, doc: dict,
               fp16_row: dict | None) -> dict:
    """One INT8 row: Tandem INT8 timed; speed-ups over eager FP16 and Tandem FP16; accuracy
    against eager FP32 (TF32 off)."""
    import torch

    from devices.gpu import GpuRunner
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    row: dict = {"model": name, "batch": batch, "precision": "int8", "n_scales": len(scales)}
    graph = graph_of(build_model(name, batch))
    feeds = feeds_of(graph)
    out_names = [t.name for t in graph.outputs]
    with true_fp32():  # the reference first: the INT8 lowering gets the graph afterwards
        module, xs = torch_side(graph, feeds, torch.float32)
        ref = torch_outputs(module, xs)
    del module, xs
    runner = None
    try:
        t0 = time.time()
        runner = GpuRunner(graph, "int8", scales=scales, autotune=True, timing_cache=cache)
        runner.activate()
        row["tandem_build_s"] = round(time.time() - t0, 2)
        got = tandem_side(runner, feeds, row, args.iters)
        try:  # reports only: a failure here must not hide the timed result
            if name == "resnet50" and batch == max(args.batch_list):
                doc["conv_tactics_int8"] = conv_tflops(runner)
            if name in args.profile.split(","):
                record_profile(runner, doc, f"{name}_b{batch}_int8")
        except Exception as exc:
            row["report_error"] = f"{type(exc).__name__}: {exc}"[:300]
    except Exception as exc:  # the INT8 path may refuse a model: record it, go on
        row["error"] = f"{type(exc).__name__}: {exc}"[:500]
        return row
    finally:
        if runner is not None:
            runner.deactivate()

    row["cosine_vs_torch_fp32"] = min(cosine(got[n], r) for n, r in zip(out_names, ref))
    row["max_rel_err_vs_torch_fp32"] = max(rel_err(got[n], r) for n, r in zip(out_names, ref))

    if fp16_row is not None and "eager" in fp16_row:
        row["eager_fp16"] = fp16_row["eager"]
        row["tandem_fp16"] = fp16_row.get("tandem")
    else:  # no FP16 row this run: time the eager FP16 peer here
        module, xs = torch_side(graph, feeds, torch.float16)
        with torch.inference_mode():
            row["eager_fp16"] = timed(lambda: module(*xs), torch.cuda.synchronize, args.iters)
        row["tandem_fp16"] = None
    for peer in ("eager_fp16", "tandem_fp16"):
        if row.get(peer):
            row[f"speedup_vs_{peer}"] = {
                k: round(row[peer][k] / row["tandem"][k], 3) for k in ("b2b_ms", "p50_ms")}
    return row


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="gpu_vs_torch.json")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--precisions", default=",".join(PRECISIONS),
                    help="comma list of fp16, int8, fp32 (always run in that order)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--compile", default="reduce-overhead",
                    help="comma list of torch.compile modes to run ('' or none for none)")
    ap.add_argument("--compile-batch32", default="resnet50,mobilenetv2",
                    help="models that also get torch.compile at batch > 1")
    ap.add_argument("--compile-fp32", action="store_true",
                    help="also torch.compile the FP32 peers (same modes and models)")
    ap.add_argument("--max-autotune", default="",
                    help="models (batch 1, FP16) that also get torch.compile max-autotune")
    ap.add_argument("--calib-batches", type=int, default=2,
                    help="random batch-1 inputs for the INT8 calibration of each model")
    ap.add_argument("--calib-workers", type=int, default=6,
                    help="processes calibrating the models in parallel (CPU)")
    ap.add_argument("--calib-cache", default="",
                    help="folder of <model>.calib scale caches (read if there, else written)")
    ap.add_argument("--budget-s", type=float, default=480.0)
    ap.add_argument("--profile", default="resnet50,mobilenetv2",
                    help="models whose per-layer GPU times are recorded")
    args = ap.parse_args()
    args.start = time.time()
    args.batch_list = [int(b) for b in args.batches.split(",")]
    args.modes = [m for m in args.compile.split(",") if m and m != "none"]
    wanted = set(filter(None, args.precisions.split(",")))
    if wanted - set(PRECISIONS):
        ap.error(f"--precisions: unknown {sorted(wanted - set(PRECISIONS))}; use "
                 f"{','.join(PRECISIONS)}")
    models = args.models.split(",")

    import torch

    from gpu_kernels.timing_cache import TimingCache
    from tandem.zoo import build_model
    from tests.devices.gpu_cases import graph_of

    torch.backends.cudnn.benchmark = True
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
                 "cudnn": torch.backends.cudnn.version(), "tf32_defaults": tf32_flags(),
                 "fp32_peers_tf32": False, "precisions": [p for p in PRECISIONS if p in wanted],
                 "results": [], "conv_tactics": []}
    doc.update(mma_peak_tflops())
    print(json.dumps({k: v for k, v in doc.items() if k not in ("results", "conv_tactics")}))
    cache = TimingCache()

    def over_budget(what: str) -> bool:
        if time.time() - args.start > args.budget_s:
            print(f"budget exhausted: skipping {what}")
            return True
        return False

    def emit(row: dict) -> None:
        doc["results"].append(row)
        print(json.dumps(row))
        Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")

    calib: dict[str, tuple[dict[str, float] | None, float | None, str]] | None = None
    for precision in PRECISIONS:
        if precision not in wanted:
            continue
        for name in models:
            for batch in args.batch_list:
                if over_budget(f"{name} b{batch} {precision}"):
                    continue
                if precision != "int8":
                    try:
                        emit(bench_float(name, batch, precision, args, cache, doc))
                    except Exception as exc:  # record it, benchmark the rest
                        emit({"model": name, "batch": batch, "precision": precision,
                              "error": f"{type(exc).__name__}: {exc}"[:500]})
                    continue
                if calib is None:  # once per run, at batch 1, reused for every batch
                    t0 = time.time()
                    calib = calibrate_all(models, args.calib_batches, args.calib_cache,
                                          args.calib_workers)
                    doc["calibration_wall_s"] = round(time.time() - t0, 2)
                    doc["calibration_s"] = {m: c[1] for m, c in calib.items()}
                    for m, c in calib.items():
                        if c[2]:
                            print(f"calibration of {m} failed: {c[2]}")
                scales, _, calib_err = calib[name]
                fp16_row = next((r for r in doc["results"] if r["model"] == name
                                 and r["batch"] == batch and r["precision"] == "fp16"), None)
                if not scales:
                    emit({"model": name, "batch": batch, "precision": "int8",
                          "error": f"calibration failed: {calib_err or 'no scales'}"})
                    continue
                emit(bench_int8(name, batch, scales, args, cache, doc, fp16_row))

    # max-autotune compiles for minutes per model: a last pass, only while the budget lasts
    for name in filter(None, args.max_autotune.split(",")):
        if time.time() - args.start > args.budget_s - 120:
            print(f"budget: skipping torch.compile max-autotune for {name}")
            continue
        row = next((r for r in doc["results"] if r["model"] == name and r["batch"] == 1
                    and r["precision"] == "fp16"), None)
        if row is None:
            continue
        graph = graph_of(build_model(name, 1))
        module, xs = torch_side(graph, feeds_of(graph), torch.float16)
        ref = torch_outputs(module, xs)
        res = compile_side(module, xs, ref, "max-autotune", args.iters)
        row["compile_max-autotune"] = res
        print(json.dumps({"model": name, "max-autotune": res}))
        Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    print_table(doc)
    Path(args.out).write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return 0


def _cell(r: dict | None) -> str:
    if not r:
        return "-"
    if "error" in r:
        return "error"
    return f"{r['b2b_ms']:.3f} / {r['p50_ms']:.3f}"


def print_int8_table(doc: dict, sel: list[dict]) -> None:
    if not sel:
        return
    print(f"\nINT8 (calibration: {doc.get('calibration_wall_s')} s wall, per model "
          f"{doc.get('calibration_s')})")
    print("| model | batch | Tandem INT8 b2b / p50 ms | Tandem FP16 b2b / p50 ms | eager FP16 "
          "b2b / p50 ms | x Tandem FP16 (b2b) | x eager FP16 (b2b) | cosine vs FP32 | "
          "rel err vs FP32 | kernels |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sel:
        if "error" in r:
            print(f"| {r['model']} | {r['batch']} | error: {r['error'][:120]} | | | | | | | |")
            continue
        sp = [r.get(f"speedup_vs_{p}", {}).get("b2b_ms", "-")
              for p in ("tandem_fp16", "eager_fp16")]
        print(f"| {r['model']} | {r['batch']} | {_cell(r.get('tandem'))} | "
              f"{_cell(r.get('tandem_fp16'))} | {_cell(r.get('eager_fp16'))} | {sp[0]} | "
              f"{sp[1]} | {r['cosine_vs_torch_fp32']:.5f} | "
              f"{r['max_rel_err_vs_torch_fp32']:.1e} | {r['kernels']} |")


def print_table(doc: dict) -> None:
    print(f"\n{doc['date']}  {doc['device']}  torch {doc['torch']}  cuDNN {doc['cudnn']}")
    print(f"mma.sync peak FP16 {doc['mma_sync_peak_tflops']} TFLOPS, INT8 "
          f"{doc.get('mma_sync_int8_peak_tops', '-')} TOPS; cuBLAS FP16 "
          f"{doc['cublas_fp16_8192_tflops']} TFLOPS")
    rows = doc["results"]
    for precision in PRECISIONS:
        sel = [r for r in rows if r.get("precision", "fp16") == precision]
        if precision == "int8":
            print_int8_table(doc, sel)
        if precision == "int8" or not sel:
            continue
        note = " (eager and compile with TF32 off)" if precision == "fp32" else ""
        print(f"\n{precision.upper()}{note}")
        print("| model | batch | Tandem b2b / p50 ms | eager b2b / p50 ms | reduce-overhead b2b "
              "/ p50 ms | max-autotune b2b / p50 ms | kernels | rel err vs torch |")
        print("|---|---|---|---|---|---|---|---|")
        for r in sel:
            if "error" in r:
                print(f"| {r['model']} | {r['batch']} | error: {r['error'][:120]} | | | | | |")
                continue
            print(f"| {r['model']} | {r['batch']} | {_cell(r.get('tandem'))} | "
                  f"{_cell(r.get('eager'))} | {_cell(r.get('compile_reduce-overhead'))} | "
                  f"{_cell(r.get('compile_max-autotune'))} | {r['kernels']} | "
                  f"{r['max_rel_err_vs_torch']:.1e} |")
    for key, prof in doc.get("profiles", {}).items():
        print(f"profile {key}: sum {prof['sum_ms']} ms by kernel {prof['by_kernel']}")
        for r in prof["top"][:6]:
            print(f"   {r['layer']} {r['kernel']} {r['tactic']} {r['ms']} ms")
    for key, unit in (("conv_tactics", "TFLOPS"), ("conv_tactics_int8", "TOPS")):
        for c in doc.get(key, []):
            print(f"conv {c['layer']}: {c['tactic']} {c['gflop']} G(FL)OP {c['ms']} ms "
                  f"= {c['tflops']} {unit}")


if __name__ == "__main__":
    raise SystemExit(main())
