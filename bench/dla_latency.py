"""The DLA latency model against published DLA figures (dla.md §3), with per-op detail.

Usage: ``python bench/dla_latency.py [--per-op]``. Clocks and DRAM bandwidth: AGX Orin from the
target catalog (both DLAs share the DRAM), DRIVE Orin-X from the cuDLA-samples README
(DLA 1331 MHz, 3200 MHz LPDDR5 = 204.8 GB/s).
"""

from __future__ import annotations

import argparse
from collections import Counter

from devices.cpu import evaluate_node
from dla_sim.latency import LoadableTiming, predict_graph
from partitioner.onnx_import import import_onnx
from partitioner.passes.pipeline import simplify
from partitioner.subgraph import extract_between
from tandem.zoo import build_model
from targets.catalog import load_target


def summary(t: LoadableTiming) -> str:
    bounds = Counter(o.bound for o in t.ops)
    return ", ".join(f"{k} {v}" for k, v in bounds.most_common())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-op", action="store_true", help="print every engine op")
    args = parser.parse_args()
    rows = []
    r50 = simplify(import_onnx(build_model("resnet50", batch=2, resolution=224)), evaluate_node)
    for mode, published in (("MAXN", 2037.0), ("15W", 1072.0)):
        target = load_target("orin-agx-64gb", mode)
        assert target.dla is not None and target.dla_clock_hz is not None
        bw = target.dram_bytes_per_s / target.dla.cores
        t = predict_graph(
            r50, "int8", 2, target.dla_clock_hz, bw, output_dtype="int8", input_format="hwc4"
        )
        pred = target.dla.cores * 2 / t.total_seconds
        rows.append((f"ResNet-50 INT8 bs2, 2 DLAs, AGX Orin {mode}", f"{published:.0f} img/s",
                     f"{pred:.0f} img/s", pred / published, summary(t), t))  # fmt: skip
    y = simplify(import_onnx(build_model("yolov5s", batch=1, resolution=672)), evaluate_node)
    heads = [y.node(f"model.24.m.{i}").outputs[0].name for i in range(3)]
    y = extract_between(y, [y.inputs[0].name], heads, "yolov5s_trimmed")
    for out, prec, published in (("int8", "int8", 2.4), ("float16", "fp16", 3.82)):
        pins = {f"model.24.m.{i}": prec for i in range(3)}
        t = predict_graph(
            y,
            "int8",
            2,
            1331e6,
            204.8e9,
            output_dtype=out,
            layer_precisions=pins,
            input_format="hwc4",
        )
        ms = t.total_seconds * 1e3
        rows.append((f"YOLOv5s 672 INT8 bs1, 1 DLA @1331 MHz, {out} out, heads {prec}",
                     f"{published} ms", f"{ms:.2f} ms", published / ms, summary(t), t))  # fmt: skip
    print("| case | published | predicted | speed ratio pred/pub | ops bound by |")
    print("|---|---|---|---|---|")
    for case, pub, pred, ratio, bounds, _ in rows:
        print(f"| {case} | {pub} | {pred} | {ratio:.2f} | {bounds} |")
    if args.per_op:
        for case, *_, t in rows:
            print(f"\n{case}")
            for o in t.ops:
                print(
                    f"  {o.op:16s} {o.layers[0][:40]:40s} {o.seconds * 1e6:8.1f} us  "
                    f"{o.bound:6s} {o.macs / 1e6:8.1f} MMAC {o.dram_bytes / 1e6:6.2f} MB"
                )


if __name__ == "__main__":
    main()
