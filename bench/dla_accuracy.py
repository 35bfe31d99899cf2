"""Zoo models with every DLA-eligible layer on the DLA emulator vs the FP32 CPU reference.

Prints the FP16 and INT8 (entropy-calibrated, 32 random inputs) cosine per output -- the
acceptance numbers of tests/dla_sim/test_acceptance.py. Usage:
``python bench/dla_accuracy.py [--resolution 64] [MODEL ...]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.dla_sim.acceptance import measure  # noqa: E402

MODELS = ["resnet18", "resnet50", "mobilenetv2", "yolov5s", "unet-small"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", default=MODELS)
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    print("| model | DLA layers | loadables | FP16 cosine | INT8 cosine | seconds |")
    print("|---|---|---|---|---|---|")
    for model in args.models:
        start = time.perf_counter()
        acc = measure(model, args.resolution)
        fp16 = min(acc.fp16.values())
        int8 = min(acc.int8.values())
        print(f"| {model} | {acc.dla_layers}/{acc.layers} | {acc.loadables} | {fp16:.7f} | "
              f"{int8:.5f} | {time.perf_counter() - start:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
