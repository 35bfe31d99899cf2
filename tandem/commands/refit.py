"""``tandem refit PLAN --weights NEW.onnx -o OUT.plan``: new weights, same partition.

The model must have the plan's structure (same layers, ops and weight shapes; weights matched
by name after the import passes). GPU segment weights are replaced, DLA loadables recompiled with
the plan's INT8 scales. Nothing is re-partitioned or re-calibrated.
"""

from __future__ import annotations

import argparse
import time

from devices.plan import read_plan, write_plan
from tandem.commands._common import add_json_arg, human, print_json
from targets.refit import Refitter


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refit", help="put new weights (an ONNX model of the same structure) into a plan"
    )
    p.add_argument("plan", help="a plan built by `tandem build`")
    p.add_argument(
        "--weights", required=True, metavar="NEW.onnx", help="model with the new weights"
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.plan", help="plan to write")
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    refitter = Refitter(read_plan(args.plan))
    refitter.refit_from_onnx(args.weights)
    plan = refitter.refit_cuda_engine()
    plan.header["metadata"]["refit"]["weights_from"] = str(args.weights)
    path = write_plan(plan, args.output)
    info = plan.record.metadata["refit"]
    if args.json:
        print_json({"plan": str(path), "bytes": path.stat().st_size, **info})
        return 0
    recompiled = ", ".join(info["recompiled"]) or "none"
    print(
        f"wrote {path}: {info['weights_set']} weights set, {info['weights_changed']} changed, "
        f"DLA loadables recompiled: {recompiled}; {human(path.stat().st_size, 'B')}; "
        f"refitted in {time.perf_counter() - start:.1f} s"
    )
    return 0
