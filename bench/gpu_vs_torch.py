"""Tandem's GPU backend vs PyTorch (eager cuDNN channels_last, torch.compile) on one GPU.

The models: the six zoo models and conformance models at realistic inputs (ImageNet CNNs at
224, YOLO at 640, BERT at 128 tokens; bench/gpu_bench_models.py), each at every ``--batches``,
against the ``--peers`` eager, torch.compile reduce-overhead and max-autotune. One process, same
weights (the ONNX initializers drive both: bench/gpu_torch_interp.py), outputs
cross-checked. Both sides are timed the same way, with host clocks:
  * ``b2b_ms``: N calls back to back, one synchronize at the end, total / N;
  * ``p50_ms``: median over N of (call + synchronize), i.e. latency of one inference.
Inputs stay resident on the GPU (no host copies) for both, except where Tandem runs a plan with
host layers (BERT's integer mask math): that one is timed through ``infer`` with its copies, as
``tandem run --backend cuda`` runs it. Also measured: the mma.sync
register-only peaks (m16n8k16 FP16 and m16n8k32 INT8), cuBLAS's FP16 GEMM rate, and the
achieved TFLOPS of the main convolution tactics chosen by the autotuner.

Precisions (default fp16), run in this order whatever ``--precisions`` lists (so the FP16
acceptance rows come first when ``--budget-s`` runs out):
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

    python3 bench/gpu_vs_torch.py --out results.json [--models zoo,tv-swin_t,...]
        [--batches 1,32] [--peers eager,reduce-overhead,max-autotune] [--compile-cap-s 150]
        [--budget-s 480] [--cache build/gpu-bench] [--precisions fp16,int8,fp32]
        [--calib-batches 2] [--calib-cache DIR]

A device call is short (bench/gpu_device_run.sh ``gpubench``), so: conformance models are
exported once into ``--cache`` and found there by later calls; no row starts after
``--budget-s`` (those are written as not run), a torch.compile stops at ``--compile-cap-s`` (or
at the budget's end) and is recorded as over its cap, SIGTERM writes what was measured; every
row is written to ``--out`` as it ends, with one line printed. At the end, the tables and issue
#19's acceptance lines (bench/gpu_bench_report.py, which also merges several runs' JSON) go to
the console and to ``--out`` with ``.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import signal
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

import gpu_bench_calib  # noqa: E402 - bench/ is on sys.path from here on
import gpu_bench_models as gbm  # noqa: E402
import gpu_bench_report as report  # noqa: E402
import gpu_peaks  # noqa: E402

PRECISIONS = ("fp16", "int8", "fp32")  # the run order (see the module docstring)
PEERS = ("eager", "reduce-overhead", "max-autotune")


class CapExceeded(BaseException):
    """A torch.compile ran past its time cap. Not an Exception: torch.compile falls back on
    ``except Exception`` in many places (AOTAutogradCache.try_load turns any error into a
    cache bypass; torch/_inductor alone has 131 such handlers in 2.13), and a cap swallowed
    there let the compile run to its end (27-40 s for the 1 s cap of the CPU test)."""


class Stop(BaseException):
    """SIGTERM (the device call's ``timeout``): not an Exception, so no per-row handler keeps
    going; main writes what was measured."""


@contextlib.contextmanager
def time_cap(seconds: float) -> Iterator[None]:
    """Raise :class:`CapExceeded` in the main thread once ``seconds`` have passed (SIGALRM:
    torch.compile's Python-side work is interrupted between bytecodes, a wait on a compiler
    child or a worker's future too)."""
    if seconds <= 0:
        raise CapExceeded("no time left for it")

    def ring(signum: int, frame: Any) -> None:
        raise CapExceeded(f"over its cap of {seconds:g} s")

    old = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


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
    """Standard-normal float inputs; integer ones (token ids, attention masks, token types) in
    {0, 1}, valid for each of those."""
    rng = np.random.default_rng(0)
    return {t.name: (rng.integers(0, 2, size=t.static_shape()).astype(t.dtype)
                     if str(t.dtype).startswith(("int", "uint")) else
                     rng.standard_normal(t.static_shape()).astype(np.float32))
            for t in graph.inputs}  # fmt: skip


def torch_side(graph, feeds: dict[str, np.ndarray], dtype):
    """(module, resident inputs) of the eager PyTorch peer in ``dtype``, channels_last."""
    import torch
    from gpu_torch_interp import TorchGraph

    module = channels_last(TorchGraph(graph, dtype).cuda().eval())
    xs = []
    for n in module.in_names:
        x = torch.from_numpy(feeds[n]).cuda()
        x = x.to(dtype) if x.is_floating_point() else x
        xs.append(x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x)
    return module, xs


def torch_outputs(module, xs) -> list[np.ndarray]:
    import torch

    with torch.inference_mode():
        return [o.float().cpu().numpy() for o in module(*xs)]


def tandem_side(runner, feeds: dict[str, np.ndarray], row: dict, iters: int):
    """Time an activated runner into ``row``; return its outputs for ``feeds``. A plan with
    host layers (BERT's integer mask math) is timed as users run it, copies included."""
    from devices.gpu import GpuRunner

    got = runner.infer(feeds)
    if not isinstance(runner, GpuRunner):
        row["tandem"] = timed(functools.partial(runner.infer, feeds), lambda: None, iters)
        row["tandem_timing"] = "plan with host layers: infer() with its copies"
        return got
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
        "sum_ms": round(sum(r["ms"] for r in prof), 4), "by_kernel": by_kernel, "top": prof[:40]}


def stop_compile_threads() -> None:
    """After a capped compile, end inductor's C++ compile thread pool, which otherwise goes on
    with the abandoned graph's queued kernels while the next rows are timed and keeps the
    process from exiting: queued jobs are cancelled, running ones (a compiler child each) waited
    for; the next compile makes a new pool. Triton's subprocess pool is left as it is: before
    pytorch/pytorch#184038 (2026-05, after the GPU machine's torch 2.11) its shutdown can wait
    up to 300 s for the sidecar, which finishes its workers' jobs first (issue #162199)."""
    from torch._inductor.async_compile import AsyncCompile

    threads = AsyncCompile.pool  # functools.lru_cache(1) over a ThreadPoolExecutor
    if threads.cache_info().currsize:  # made by this compile or one before
        threads().shutdown(wait=True, cancel_futures=True)
        threads.cache_clear()


def compile_side(module, xs, ref: list[np.ndarray], mode: str, iters: int,
                 cap_s: float | None = None) -> dict:  # fmt: skip
    """torch.compile(``mode``) timed like Tandem; its compile (the first calls) stops after
    ``cap_s`` seconds (None: no cap), recorded as an error with the seconds it had."""
    import torch

    torch._dynamo.reset()
    t0 = time.time()
    try:
        cm = torch.compile(module, mode=mode)
        with torch.inference_mode():
            with time_cap(cap_s) if cap_s is not None else contextlib.nullcontext():
                for _ in range(3):
                    outs = cm(*xs)
            err = max(rel_err(o.float().cpu().numpy(), r) for o, r in zip(outs, ref))
            res = timed(lambda: cm(*xs), torch.cuda.synchronize, iters)
        res["compile_s"] = round(time.time() - t0, 1)
        res["max_rel_err_vs_eager"] = err
        return res
    except CapExceeded as exc:
        compile_s = round(time.time() - t0, 1)
        torch._dynamo.reset()  # drop the half-compiled graph before the next model
        stop_compile_threads()
        return {"error": f"compile {exc}", "compile_s": compile_s}
    except Exception as exc:  # report, keep benchmarking the rest
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}


def tandem_runner_of(model: gbm.BenchModel, graph, batch: int, precision: str, args, cache,
                     row: dict):  # fmt: skip
    """Tandem's runner for ``graph`` (not activated): a zoo model is one GPU segment; a
    conformance model gets what ``tandem run --backend cuda`` runs (conformance_gpu)."""
    from devices.gpu import GpuRunner

    if model.source == "zoo":
        return GpuRunner(graph, precision, autotune=True, timing_cache=cache)
    from conformance_gpu import host_layers, tandem_runner

    path, dims = gbm.model_file(model, batch, args.cache)
    host = host_layers(path, graph, dims)
    if host:
        row["path"] = f"plan, {len(host)} host layer(s)"
    return tandem_runner(path, graph, dims, precision, host, cache)


MIN_COMPILE_S = 20.0  # a torch.compile given less than this is not started (none finishes)


def peers_side(graph, feeds, got: dict, row: dict, dtype, args) -> None:
    """The PyTorch peers of one row (eager, then each torch.compile mode, each capped at
    ``--compile-cap-s`` and at what is left of ``--budget-s``), and Tandem's error against
    eager."""
    import torch

    module, xs = torch_side(graph, feeds, dtype)
    ref = torch_outputs(module, xs)
    if "eager" in args.peer_list:
        with torch.inference_mode():
            row["eager"] = timed(lambda: module(*xs), torch.cuda.synchronize, args.iters)
    row["max_rel_err_vs_torch"] = max(rel_err(got[n], r) for n, r in zip(module.out_names, ref))
    if row["precision"] == "fp32" and not args.compile_fp32:
        return
    for mode in args.modes:
        left = args.budget_s - (time.time() - args.start)
        cap = min(args.compile_cap_s, left)
        if cap < MIN_COMPILE_S:
            row[f"compile_{mode}"] = {"error": f"not run: {max(left, 0):.0f} s of --budget-s left"}
            continue
        row[f"compile_{mode}"] = compile_side(module, xs, ref, mode, args.iters, cap)


def bench_float(model: gbm.BenchModel, batch: int, precision: str, args, cache, doc: dict
                ) -> dict:  # fmt: skip
    """One FP16 or FP32 row: Tandem vs the peers."""
    import torch

    row: dict = {"model": model.name, "source": model.source, "input": model.input_note,
                 "batch": batch, "precision": precision}  # fmt: skip
    graph = gbm.load_graph(model, batch, args.cache)
    feeds = feeds_of(graph)
    t0 = time.time()
    runner = tandem_runner_of(model, graph, batch, precision, args, cache, row)
    try:
        runner.activate()
        row["tandem_build_s"] = round(time.time() - t0, 2)
        got = tandem_side(runner, feeds, row, args.iters)
        if "path" not in row:  # one GPU segment (not a plan): its tactics and profile
            if precision == "fp16" and model.name == "resnet50" and batch == max(args.batch_list):
                doc["conv_tactics"] = gpu_peaks.conv_tflops(runner)
            if model.name in args.profile.split(","):
                suffix = "" if precision == "fp16" else f"_{precision}"  # FP16 keys as before
                record_profile(runner, doc, f"{model.name}_b{batch}{suffix}")
    finally:
        runner.deactivate()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    with contextlib.nullcontext() if precision == "fp16" else true_fp32():
        if precision == "fp32":
            row["tf32"] = False
        try:
            peers_side(graph, feeds, got, row, dtype, args)
        except Exception as exc:  # the peers are references: Tandem's numbers stay in the row
            row["torch_error"] = f"{type(exc).__name__}: {exc}"[:300]
    torch.cuda.empty_cache()  # the peer's module and inputs are gone: the next model's room
    return row


def bench_int8(model: gbm.BenchModel, batch: int, scales: dict[str, float], args, cache,
               doc: dict, fp16_row: dict | None) -> dict:  # fmt: skip
    """One INT8 row: Tandem INT8 timed; speed-ups over eager FP16 and Tandem FP16; accuracy
    against eager FP32 (TF32 off)."""
    import torch

    from devices.gpu import GpuRunner

    name = model.name
    row: dict = {"model": name, "source": model.source, "input": model.input_note, "batch": batch,
                 "precision": "int8", "n_scales": len(scales)}  # fmt: skip
    graph = gbm.load_graph(model, batch, args.cache)
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
                doc["conv_tactics_int8"] = gpu_peaks.conv_tflops(runner)
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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, checked: ``model_list``, ``batch_list``, ``peer_list``, ``modes`` (the
    torch.compile peers) and ``precision_list`` added; a bad value is one argparse error."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu_vs_torch.json", help="JSON; the Markdown goes to .md")
    ap.add_argument("--models", default="all",
                    help="comma list of names, zoo, conformance or all (bench/gpu_bench_models.py)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"comma list of {', '.join(PEERS)}")
    ap.add_argument("--compile-cap-s", type=float, default=150.0,
                    help="seconds one torch.compile may take before it is given up")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="no row starts after this many seconds; the rest are written as not run")
    ap.add_argument("--cache", type=Path, default=gbm.DEFAULT_CACHE,
                    help="folder of the conformance exports, kept between calls")
    ap.add_argument("--export-only", action="store_true",
                    help="export the conformance models into --cache and stop")
    ap.add_argument("--precisions", default="fp16",
                    help="comma list of fp16, int8, fp32 (always run in that order)")
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--compile-fp32", action="store_true",
                    help="also torch.compile the FP32 peers (same modes)")
    ap.add_argument("--calib-batches", type=int, default=2,
                    help="random batch-1 inputs for the INT8 calibration of each model")
    ap.add_argument("--calib-workers", type=int, default=6,
                    help="processes calibrating the models in parallel (CPU)")
    ap.add_argument("--calib-cache", default="",
                    help="folder of <model>.calib scale caches (read if there, else written)")
    ap.add_argument("--profile", default="resnet50,mobilenetv2",
                    help="models whose per-layer GPU times are recorded")
    args = ap.parse_args(argv)
    try:
        args.model_list = gbm.resolve(args.models)
    except gbm.ModelListError as err:
        ap.error(str(err))
    try:
        args.batch_list = [int(b) for b in args.batches.split(",")]
        if not args.batch_list or min(args.batch_list) < 1:
            raise ValueError
    except ValueError:
        ap.error(f"--batches: expected a comma list of positive integers, got {args.batches!r}")
    args.peer_list = [p for p in args.peers.split(",") if p and p != "none"]
    unknown = sorted(set(args.peer_list) - set(PEERS))
    if unknown:
        ap.error(f"--peers: unknown {', '.join(unknown)}; use {', '.join(PEERS)} (or none)")
    args.modes = [p for p in args.peer_list if p != "eager"]
    wanted = set(filter(None, args.precisions.split(",")))
    if not wanted or wanted - set(PRECISIONS):
        ap.error(f"--precisions: unknown {sorted(wanted - set(PRECISIONS)) or 'empty list'}; "
                 f"use {','.join(PRECISIONS)}")
    args.precision_list = [p for p in PRECISIONS if p in wanted]
    if args.budget_s < 0 or args.compile_cap_s <= 0 or args.iters < 1:
        ap.error("--budget-s must be >= 0, --compile-cap-s and --iters > 0")
    return args


def _stop(signum: int, frame: Any) -> None:
    raise Stop(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.start = time.time()

    import torch

    from partitioner.files import write_atomic

    cuda = torch.cuda.is_available()
    command = " ".join(["python bench/gpu_vs_torch.py", *(sys.argv[1:] if argv is None else argv)])
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": command,
                 "device": torch.cuda.get_device_name(0) if cuda else "no CUDA device",
                 "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
                 "tf32_defaults": tf32_flags(), "fp32_peers_tf32": False,
                 "precisions": args.precision_list, "peers": args.peer_list,
                 "compile_cap_s": args.compile_cap_s, "budget_s": args.budget_s,
                 "results": [], "conv_tactics": []}  # fmt: skip
    out = Path(args.out)

    def left() -> float:
        return args.budget_s - (time.time() - args.start)

    def write() -> None:  # never a half-written file under the name (SIGTERM may come at any time)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, json.dumps(doc, indent=1).encode())

    def emit(row: dict) -> None:
        doc["results"].append(row)
        print(report.row_line(row), flush=True)
        write()

    plan = [(p, m, b) for p in args.precision_list for m in args.model_list
            for b in args.batch_list]  # fmt: skip
    old_term = signal.signal(signal.SIGTERM, _stop)
    try:
        if cuda and left() > 0 and not args.export_only:
            doc.update(gpu_peaks.mma_peak_tflops())
            print({k: v for k, v in doc.items() if "peak" in k or "cublas" in k}, flush=True)
        failed: dict[tuple[str, int], str] = {}
        if left() > 0:
            t0 = time.time()
            failed = gbm.prepare(args.model_list, args.batch_list, args.cache, left())
            doc["export_s"] = round(time.time() - t0, 1)
            doc["export_failed"] = {f"{n} b{b}": why for (n, b), why in failed.items()}
            print(f"exports in {args.cache}: {doc['export_s']} s, {len(failed)} failed "
                  f"{sorted(doc['export_failed'])}", flush=True)  # fmt: skip
        if args.export_only:
            plan = []
        if plan and left() > 0:
            from gpu_kernels.timing_cache import TimingCache

            torch.backends.cudnn.benchmark = True
            cache = TimingCache()
        calib: dict[str, gpu_bench_calib.Scales] | None = None
        for precision, model, batch in plan:
            if left() <= 0:
                break
            head = {"model": model.name, "source": model.source, "input": model.input_note,
                    "batch": batch, "precision": precision}  # fmt: skip
            if (model.name, batch) in failed:
                emit({**head, "error": failed[model.name, batch]})
            elif precision != "int8":
                try:
                    emit(bench_float(model, batch, precision, args, cache, doc))
                except Exception as exc:  # record it, benchmark the rest
                    emit({**head, "error": f"{type(exc).__name__}: {exc}"[:500]})
            else:
                if calib is None:  # once per run, at batch 1, reused for every batch
                    t0 = time.time()
                    calib = gpu_bench_calib.calibrate_all(
                        args.model_list, args.calib_batches, args.calib_cache,
                        args.calib_workers, args.cache)  # fmt: skip
                    doc["calibration_wall_s"] = round(time.time() - t0, 2)
                    doc["calibration_s"] = {m: c[1] for m, c in calib.items()}
                scales, _, calib_err = calib[model.name]
                fp16_row = next((r for r in doc["results"] if r["model"] == model.name
                                 and r["batch"] == batch and r["precision"] == "fp16"
                                 and "tandem" in r), None)  # fmt: skip
                if scales:
                    emit(bench_int8(model, batch, scales, args, cache, doc, fp16_row))
                else:
                    emit({**head, "error": f"calibration failed: {calib_err or 'no scales'}"})
    except Stop as why:
        doc["stopped"] = f"{why} after {time.time() - args.start:.0f} s"
    finally:
        signal.signal(signal.SIGTERM, old_term)
    written = {(r["model"], r["batch"], r["precision"]) for r in doc["results"]}
    rest = [(p, m, b) for p, m, b in plan if (m.name, b, p) not in written]
    if rest:
        doc.setdefault("stopped", f"--budget-s {args.budget_s:g} spent")
        for precision, model, batch in rest:
            doc["results"].append({"model": model.name, "source": model.source,
                                   "input": model.input_note, "batch": batch,
                                   "precision": precision, "not_run": doc["stopped"]})  # fmt: skip
    write()
    report.print_table(doc)
    text = report.markdown([doc])
    write_atomic(out.with_suffix(".md"), text.encode())
    print(f"\n{text}\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
