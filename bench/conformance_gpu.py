"""The ``--gpu`` side of bench/conformance.py (a CUDA machine with torch in the same
interpreter): Tandem's GPU backend in FP32 (max rel err vs ONNX Runtime <= 1e-4) and FP16
(cosine >= 0.999, or both outputs below FP16's range), and FP16 latency against PyTorch eager and
``torch.compile(mode="reduce-overhead")`` on the module the export script's ``build(name)``
gives. Timing and parity are bench/gpu_vs_torch.py's (``timed``, ``rel_err``, ``cosine``,
``compile_side``), so both GPU benches measure alike.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import gpu_vs_torch as gt  # bench/ is on sys.path: bench/conformance.py put it there
import numpy as np
from conformance import (
    FP16_COSINE,
    Row,
    Source,
    _err,
    fp32_bound,
    gpu_only_policy,
    one_line,
)

from devices.io import run_onnxruntime
from partitioner.report import table
from targets.build import build, load_model, place, resolve_target
from targets.request import BuildRequest

FP16_TINY = 6.1e-5  # below FP16's smallest normal number nothing is representable as such


def check_gpu(row: Row, path: Path, source: Source, iters: int, with_compile: bool = True
              ) -> None:  # fmt: skip
    """Tandem's GPU backend (FP32, FP16) vs ONNX Runtime, and FP16 latency vs PyTorch."""
    import torch

    graph = load_model(path, json.loads(path.with_suffix(".json").read_text())["dims"] or {})
    with np.load(path.with_suffix(".npz")) as data:
        saved = {k: data[k] for k in data.files}
    names = [t.name for t in graph.outputs]
    feeds = {t.name: saved[t.name] for t in graph.inputs}
    ort_feeds = {k: v for k, v in saved.items() if k not in names}
    oracle = run_onnxruntime(path, ort_feeds)
    dims = json.loads(path.with_suffix(".json").read_text())["dims"] or {}
    host = host_layers(path, graph, dims)
    for precision in ("fp32", "fp16"):
        res: dict[str, Any] = {}
        if host:
            res["path"] = f"plan, {len(host)} host layer(s)"
        runner = tandem_runner(path, graph, dims, precision, host)
        try:
            runner.activate()
            got = runner.infer(feeds)
            if precision == "fp32":
                res["max_rel_err"] = max(gt.rel_err(got[n], oracle[n]) for n in names)
                bound = fp32_bound(row, path, ort_feeds, names, res["max_rel_err"])
                if res["max_rel_err"] > bound:
                    row.failures["gpu fp32"] = (f"FP32 max rel err {res['max_rel_err']:.2e} vs "
                                                f"ONNX Runtime > {bound:.2g}")  # fmt: skip
            else:
                res["cosine"] = min(gt.cosine(got[n], oracle[n]) for n in names)
                # outputs FP16 cannot represent (all below its smallest normal) have no cosine
                # worth the name: both sides tiny is a pass
                tiny = all(max(np.abs(got[n]).max(), np.abs(oracle[n]).max()) < FP16_TINY
                           for n in names)  # fmt: skip
                if not res["cosine"] >= FP16_COSINE and not tiny:  # NaN (overflow) fails
                    row.failures["gpu fp16"] = (f"FP16 cosine {res['cosine']:.5f} vs ONNX "
                                                f"Runtime < {FP16_COSINE}")  # fmt: skip
                res["tandem"] = (gt.timed(functools.partial(runner.infer, feeds), lambda: None,
                                          iters)
                                 if host else
                                 gt.timed(runner.run_device, runner.ctx.synchronize, iters))
        except Exception as err:
            row.failures[f"gpu {precision}"] = one_line(err)
            res["error"] = one_line(err)
        finally:
            runner.deactivate()
        row.gpu[precision] = res
    build_fn = getattr(_script(source), "build", None)
    if build_fn is None:
        row.gpu["torch_error"] = f"{source.script.name} has no build(name)"
        return
    try:  # the PyTorch peers in FP16, channels_last (cuDNN's fast path), as gpu_vs_torch.py
        module, inputs = build_fn(row.model)
        module = _Tupled(module).cuda().half().eval().to(memory_format=torch.channels_last)
        xs = [x.cuda().half() if x.is_floating_point() else x.cuda() for x in inputs]
        xs = [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x for x in xs]
        with torch.inference_mode():
            ref = [o.float().cpu().numpy() for o in module(*xs)]
            row.gpu["eager"] = gt.timed(lambda: module(*xs), torch.cuda.synchronize, iters)
        if with_compile:
            row.gpu["compile_reduce-overhead"] = gt.compile_side(module, xs, ref,
                                                                 "reduce-overhead", iters)
    except Exception as err:  # the PyTorch side is a reference, not a Tandem failure
        row.gpu["torch_error"] = one_line(err)
    finally:
        torch.cuda.empty_cache()


def host_layers(path: Path, graph: Any, dims: dict[str, int]) -> list[str]:
    """The layers of ``graph`` that a GPU-only placement leaves on the host (integer mask math:
    devices.capability.host_values)."""
    placed = place(path, resolve_target("host"), gpu_only_policy(), dims, graph=graph.clone())
    return [n for n, a in placed.partition.assignments.items() if a.device != "gpu"]


def tandem_runner(path: Path, graph: Any, dims: dict[str, int], precision: str,
                  host: list[str], timing_cache: Any = None) -> Any:  # fmt: skip
    """The runner a user gets for ``graph`` on the GPU (not activated): one ``GpuRunner``
    segment (device time alone, as gpu_vs_torch.py times it) when every layer is the GPU's, else
    the plan with its ``host`` layers (``tandem run --backend cuda``)."""
    from devices.gpu import GpuRunner
    from devices.runtime import PlanRunner

    if not host:
        return GpuRunner(graph.clone(), precision, autotune=True, timing_cache=timing_cache)
    request = BuildRequest(model=str(path), target=resolve_target("host"),
                           policy=gpu_only_policy(precision), graph=graph.clone(),
                           fixed_dims=dims)  # fmt: skip
    return PlanRunner(build(request).plan, "cuda")


@functools.cache
def _script(source: Source) -> Any:
    """The source's export script as a module (for its ``build(name)``), loaded once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"conformance_{source.name}", source.script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _Tupled(module: Any) -> Any:  # noqa: N802 - a module class built on demand (torch is lazy)
    """``module`` returning a flat tuple of tensors, whatever it returns (a tensor, a dict, a
    model-output object): gpu_vs_torch.compile_side zips outputs with the reference's."""
    import torch

    def flat(out: Any) -> list[Any]:
        if isinstance(out, torch.Tensor):
            return [out]
        if isinstance(out, dict):
            return [t for v in out.values() for t in flat(v)]
        if isinstance(out, list | tuple):
            return [t for v in out for t in flat(v)]
        return []

    class Tupled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *xs: Any) -> tuple[Any, ...]:
            return tuple(flat(self.inner(*xs)))

    return Tupled()


GPU_HEADERS = ["model", "FP32 rel err", "FP16 cosine", "Tandem FP16 p50 ms", "eager FP16 p50 ms",
               "reduce-overhead p50 ms", "failures"]  # fmt: skip


def _gpu_cells(row: Row) -> list[str]:
    def ms(res: Any) -> str:
        return f"{res['p50_ms']:.3f}" if isinstance(res, dict) and "p50_ms" in res else "-"

    fp32, fp16 = row.gpu.get("fp32", {}), row.gpu.get("fp16", {})
    cosine = fp16.get("cosine")
    gpu_failures = [f"{k}: {v}" for k, v in row.failures.items() if k.startswith("gpu")]
    return [row.model, _err(fp32.get("max_rel_err")), "-" if cosine is None else f"{cosine:.5f}",
            ms(fp16.get("tandem")), ms(row.gpu.get("eager")),
            ms(row.gpu.get("compile_reduce-overhead")), "; ".join(gpu_failures)[:200]]


def gpu_table(rows: list[Row]) -> str:
    return "\n".join(table(GPU_HEADERS, [_gpu_cells(r) for r in rows]))


def gpu_report(paths: list[Path]) -> str:
    """Markdown of device runs' JSON files (``--out-json`` of ``--gpu``), newest row per model
    (a later run of a model replaces an earlier one, by the runs' dates, whatever the order of
    ``paths``), with each run's command and date."""
    rows: dict[str, Row] = {}
    runs = []
    docs = [json.loads(path.read_text(encoding="utf-8")) for path in paths]
    for doc in sorted(docs, key=lambda d: d["date"]):  # "YYYY-MM-DD HH:MM UTC": sorts as text
        runs.append(f"- `{doc['command']}` ({doc['date']})")
        for d in doc["rows"]:
            d = {k: v for k, v in d.items() if k != "inspect_s"}
            rows[d["model"]] = Row(**d)
    passed = sum(not r.failures for r in rows.values())
    return "\n".join([f"{passed}/{len(rows)} models pass FP32 and FP16 on the GPU.", "",
                      *gpu_table(list(rows.values())).splitlines(), "", "Runs:", *runs])
