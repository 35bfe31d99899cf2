"""INT8 scales for bench/gpu_vs_torch.py's models: the project's entropy calibrator over the CPU
reference's activations, one process per model, with a TensorRT-format cache per model."""

from __future__ import annotations

import time
from pathlib import Path

import gpu_bench_models as gbm

Scales = tuple[dict[str, float] | None, float | None, str]  # (scales or None, seconds, error)


def calibrate_all(models: list[gbm.BenchModel], batches: int, cache_dir: str, workers: int,
                  export_cache: Path) -> dict[str, Scales]:  # fmt: skip
    """``calibration_scales`` of every model in parallel processes (CPU work: the H100 host has
    16 cores), run between GPU phases so it perturbs no timing. ``{model: (scales or None,
    seconds, error)}``; falls back to one model after the other if the pool cannot start."""
    import concurrent.futures as cf
    import multiprocessing
    import os

    out: dict[str, Scales] = {}
    workers = max(1, min(workers, len(models)))
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    env_keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in env_keys}
    try:
        # spawn, not fork: this process holds a CUDA context; the children inherit the thread
        # caps from the environment before they import numpy
        os.environ.update({k: threads for k in env_keys})
        with cf.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn")
        ) as pool:
            futs = {pool.submit(calibration_scales, m, batches, cache_dir, export_cache): m.name
                    for m in models}  # fmt: skip
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
        if m.name not in out or out[m.name][0] is None:
            try:
                scales, secs = calibration_scales(m, batches, cache_dir, export_cache)
                out[m.name] = (scales, secs, "")
            except Exception as exc:
                out[m.name] = (None, None, f"{type(exc).__name__}: {exc}"[:300])
    return out


def calibration_scales(model: gbm.BenchModel, batches: int, cache_dir: str, export_cache: Path
                       ) -> tuple[dict[str, float], float]:  # fmt: skip
    """Per-tensor INT8 scales of ``model`` at batch 1, and the seconds they took.

    The project's calibrator (EntropyCalibrator2 over the CPU reference's activations) on
    ``batches`` standard-normal inputs, the distribution the benchmark feeds. Read from / written
    to ``cache_dir/<name>.calib`` (TensorRT's cache format) when a folder is given.
    """
    from devices.calibration import activations
    from dla_sim.calibration import calibrate, random_batches, read_cache, write_cache

    t0 = time.time()
    path = Path(cache_dir) / f"{model.name}.calib" if cache_dir else None
    if path is not None and path.is_file():
        return read_cache(path), round(time.time() - t0, 2)
    graph = gbm.load_graph(model, 1, export_cache)
    inputs = {t.name: (t.static_shape(), "float32") for t in graph.inputs}
    scales = calibrate(activations(graph, random_batches(inputs, batches, seed=1)), "entropy")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_cache(path, scales)
    return scales, round(time.time() - t0, 2)
