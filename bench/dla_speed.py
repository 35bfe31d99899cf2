"""How fast the DLA emulator runs ResNet-50 (batch 1, 224x224) on this machine.

INT8 convolutions multiply int8 by int8 exactly through float64 BLAS GEMMs (every partial sum
is an integer below 2**53, so float64 is exact); FP16 ones through float32 GEMMs (the DLA's
FP32 accumulation). Usage: ``python bench/dla_speed.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from devices.cpu import CpuRunner, evaluate_node
from dla_sim.compiler import compile_loadable
from dla_sim.execute import run_loadable
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from tandem.zoo import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--resolution", type=int, default=224)
    args = parser.parse_args()
    graph = simplify(
        import_onnx(build_model(args.model, batch=1, resolution=args.resolution)), evaluate_node
    )
    x = np.random.default_rng(0).standard_normal(graph.inputs[0].static_shape()).astype(np.float32)
    feeds = {graph.inputs[0].name: x}
    with CpuRunner(graph, capture=True) as cpu:
        cpu.infer(feeds)
        acts = {**cpu.captured, **feeds}
    scales = {k: float(np.abs(v).max()) / 127 for k, v in acts.items() if np.abs(v).max() > 0}
    print(f"{args.model} {args.resolution}x{args.resolution} batch 1, DLA 2 emulator")
    for precision in ("int8", "fp16"):
        start = time.perf_counter()
        loadable = compile_loadable(graph, precision, 2, scales)
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            run_loadable(loadable, feeds)
            times.append(time.perf_counter() - start)
        print(
            f"  {precision}: run median {statistics.median(times):.3f} s "
            f"(min {min(times):.3f}, max {max(times):.3f}, {args.repeat} runs); "
            f"compile {compile_s:.2f} s; {len(loadable.ops)} engine ops, "
            f"{loadable.weight_bytes / 1e6:.1f} MB of blobs"
        )


if __name__ == "__main__":
    main()
