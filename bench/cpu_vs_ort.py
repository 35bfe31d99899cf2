"""The numpy CPU reference backend against ONNX Runtime on the same model, in the same run.

Usage::

    .venv/bin/python bench/cpu_vs_ort.py                       # resnet50 224x224 batch 1 FP32
    .venv/bin/python bench/cpu_vs_ort.py --model resnet18 --runs 20 --threads 2 --json

Both engines get the same thread count (``--threads``, default: every core):
``CpuRunner(threads=)`` (GEMMs and im2col split over that many threads, each with one OpenBLAS
thread; see ``devices/cpu/parallel.py``) and ONNX Runtime's ``intra_op_num_threads``. The
engines alternate, one inference each: ``--warmup`` untimed rounds, then ``--runs`` timed ones,
so both see the same background load on a shared machine. The report gives the median (and
min / max), the ratio Tandem / ORT, and the FP32 agreement of the outputs (max |a-b| / max |b|).
"""

from __future__ import annotations

import argparse
import os
import sys


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50", help="zoo name or a path to an .onnx file")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--pause", type=float, default=0.05, help="seconds of idle before each timed inference"
    )
    parser.add_argument(
        "--no-simplify",
        action="store_true",
        help="run the graph as imported (default: the import-time passes first, as `tandem run` "
        "does: constant folding, BatchNormalization folded into Conv, Identity/Dropout dropped)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # BLAS thread pools read these once, when numpy loads: set them first.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import json
    import platform
    import statistics
    import time
    from pathlib import Path

    import numpy as np
    import onnx
    import onnxruntime as ort

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from devices.cpu import CpuRunner
    from partitioner.onnx_import import import_onnx

    if Path(args.model).suffix == ".onnx":
        model = onnx.load(args.model)
        label = args.model
    else:
        from tandem.zoo import build_model

        model = build_model(args.model, batch=args.batch, resolution=args.resolution)
        label = f"{args.model} {args.resolution}x{args.resolution} batch {args.batch}"
    graph = import_onnx(model)
    if not args.no_simplify:
        from devices.cpu import evaluate_node
        from partitioner.passes.pipeline import simplify

        simplify(graph, evaluate_node)
    rng = np.random.default_rng(0)
    feeds = {}
    for t in graph.inputs:
        shape = [d if isinstance(d, int) else args.batch for d in t.static_shape()] if (
            t.is_static
        ) else [args.batch if not isinstance(d, int) else d for d in (t.shape or ())]
        feeds[t.name] = rng.standard_normal(shape).astype(t.dtype or "float32")

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    ort_times: list[float] = []
    cpu_times: list[float] = []
    with CpuRunner(graph, threads=args.threads) as runner:
        # interleaved, so that both engines see the same background load on a shared machine
        for i in range(args.warmup + args.runs):
            # the pause lets each engine's spinning worker threads (ORT spins by default,
            # OpenBLAS too) go idle before the other engine's timed run
            time.sleep(args.pause)
            start = time.perf_counter()
            ort_out = session.run(None, feeds)
            ort_time = time.perf_counter() - start
            time.sleep(args.pause)
            start = time.perf_counter()
            cpu_out = runner.infer(feeds)
            cpu_time = time.perf_counter() - start
            if i >= args.warmup:
                ort_times.append(ort_time)
                cpu_times.append(cpu_time)
        peak = runner.peak_bytes

    errors = {}
    for name, ref in zip([o.name for o in session.get_outputs()], ort_out):
        got = cpu_out[name]
        errors[name] = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
    cpu_ms = statistics.median(cpu_times) * 1e3
    ort_ms = statistics.median(ort_times) * 1e3
    result = {
        "model": label,
        "threads": args.threads,
        "simplified": not args.no_simplify,
        "layers": len(graph.nodes),
        "runs": args.runs,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {_cpu_name()}",
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "tandem_cpu_ms": {"median": cpu_ms, "min": min(cpu_times) * 1e3,
                          "max": max(cpu_times) * 1e3},
        "onnxruntime_ms": {"median": ort_ms, "min": min(ort_times) * 1e3,
                           "max": max(ort_times) * 1e3},
        "ratio": cpu_ms / ort_ms,
        "load_average_1min": os.getloadavg()[0],
        "peak_activation_mb": peak / 1e6,
        "max_rel_err": errors,
    }  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{label}, {len(graph.nodes)} layers{'' if args.no_simplify else ' (simplified)'}, "
              f"{args.threads} threads, median of {args.runs} runs ({result['machine']})")
        print(f"  tandem cpu  : {cpu_ms:8.1f} ms  (min {min(cpu_times) * 1e3:.1f})")
        print(f"  onnxruntime : {ort_ms:8.1f} ms  (min {min(ort_times) * 1e3:.1f})")
        print(f"  ratio       : {cpu_ms / ort_ms:8.2f} x  (median / median; "
              f"min / min {min(cpu_times) / min(ort_times):.2f} x)")
        print(f"  load average at the end: {os.getloadavg()[0]:.2f}")
        print(f"  peak activations: {peak / 1e6:.1f} MB; max rel err: "
              + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))  # fmt: skip
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    raise SystemExit(main())
