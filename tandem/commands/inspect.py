"""``tandem inspect MODEL.onnx``: layers, parameters, FLOPs; placements with ``--target``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from devices.plan import read_plan
from devices.plan_header import SegmentRecord
from devices.timesource import predicted_source
from partitioner.analysis import LayerInfo, summarize
from partitioner.bindings import declared, dynamic_dims
from partitioner.errors import TandemError
from partitioner.report import format_text, to_dot, to_json
from tandem.commands._args import ModelArgs, add_build_args, build_request, is_plan
from tandem.commands._common import (
    add_json_arg,
    human,
    print_json,
    print_table,
    shape_text,
)
from tandem.svg import render_svg
from targets.build import place_for
from targets.gpu_code import NO_CUBINS_NOTE


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="show layers, parameters, FLOPs and placements of a model")
    p.add_argument("model", help="an ONNX model or a plan file")
    add_build_args(p)  # profiles too: --target places dynamic dims the way a build would
    p.add_argument("--svg", metavar="OUT.svg", help="draw the graph coloured by device (Graphviz)")
    p.add_argument(
        "--verbose", action="store_true", help="every layer in a table (default: a summary)"
    )
    add_json_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if is_plan(args.model):
        return inspect_plan(args)
    if args.target:
        return inspect_placement(args)
    if args.svg:
        raise TandemError("--svg draws placements: add --target T")
    graph = ModelArgs.load(args)
    summary = summarize(graph)
    if args.json:
        print_json(
            {
                "model": str(args.model),
                "inputs": [
                    {"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in graph.inputs
                ],
                "outputs": [
                    {"name": t.name, "shape": t.shape, "dtype": t.dtype} for t in graph.outputs
                ],
                "layers": [
                    {
                        "name": info.name,
                        "op": info.op,
                        "output_shapes": info.output_shapes,
                        "params": info.params,
                        "flops": info.flops,
                    }
                    for info in summary.layers
                ],
                "total_params": summary.total_params,
                "total_flops": summary.total_flops,
            }
        )
        return 0
    if args.verbose:
        rows = [
            (
                info.name,
                info.op,
                ", ".join(shape_text(s) for s in info.output_shapes),
                f"{info.params:,}",
                "?" if info.flops is None else human(info.flops),
            )
            for info in summary.layers
        ]
        print_table(("Layer", "Op", "Output shape", "Params", "FLOPs"), rows, right=(3, 4))
        print()
    for t in graph.inputs:
        dims = [s for name, _, s in dynamic_dims([t]) if name == t.name]
        dynamic = f" (dynamic: {', '.join(dims)}; bind with --dim/--shapes)" if dims else ""
        shown = declared(t) if t.shape is not None else "?"
        print(f"input  {t.name}: {shown} {t.dtype}{dynamic}")
    for t in graph.outputs:
        print(f"output {t.name}: {shape_text(t.shape)} {t.dtype}")
    unknown = (
        f" ({summary.unknown_flops} layers with symbolic shapes not counted)"
        if summary.unknown_flops
        else ""
    )
    print(
        f"{len(summary.layers)} layers, {summary.total_params:,} parameters, "
        f"{human(summary.total_flops, 'FLOPs')}{unknown}"
    )
    if not args.verbose:
        print(f"ops: {_op_mix(summary.layers)} (--verbose lists every layer)")
    return 0


#: what ``tandem inspect MODEL --target`` predicts from: placement's per-layer prices
PLACEMENT_BASIS = "placement's estimate: one kernel's fixed cost per unfused GPU layer"


def inspect_placement(args: argparse.Namespace) -> int:
    placement = place_for(build_request(args, placement_only=True))
    graph, part, target = placement.graph, placement.partition, placement.target
    if args.svg:
        render_svg(to_dot(graph, part), args.svg)
    if args.json:
        print_json(
            to_json(
                graph,
                part,
                model=str(args.model),
                target=target.name,
                power_mode=target.power_mode,
                policy=placement.policy.source,
                precision=placement.policy.precision,
                predicted_source=predicted_source(target.name, target.power_mode),
                predicted_basis=PLACEMENT_BASIS,
            )
        )
        return 0
    print(
        f"target {target.name} ({target.soc}), power mode {target.power_mode}, "
        f"policy {placement.policy.source}, strategy {part.strategy}"
    )
    foretold = predicted_source(target.name, target.power_mode)
    print(format_text(graph, part, predicted_for=foretold, layers=args.verbose), end="")
    if any(a.device == "gpu" for a in part.assignments.values()):
        print(f"({PLACEMENT_BASIS}; a built plan charges the kernels its GPU segments lower to: "
              "tandem build, then tandem inspect PLAN)")  # fmt: skip
    if args.svg:
        print(f"\nwrote {args.svg}")
    return 0


def board_backend(segment: SegmentRecord) -> str:
    """What runs a plan segment on its board: the GPU's CUDA kernels (cross-built, or compiled
    by NVRTC when the plan loads), the DLA loadable, or the CPU's numpy reference."""
    if segment.device.startswith("dla"):
        return "dla loadable"
    if segment.device != "gpu":
        return "cpu reference"
    cuda = segment.cuda
    if cuda is not None and cuda.error:  # a plan from a Tandem that recorded lowering failures
        return "none: the GPU lowering failed at build (rebuild the plan)"
    if cuda is not None and cuda.modules:
        return f"cuda kernels ({len(cuda.modules)} cubins for {cuda.arch})"
    return "cuda kernels (NVRTC compiles them at load)"


def inspect_plan(args: argparse.Namespace) -> int:
    plan = read_plan(args.model)
    h = plan.record
    blob_bytes = {name: len(b.data) for name, b in plan.blobs.items()}
    backends = {s.name: board_backend(s) for s in h.segments}
    # a segment's blobs are "<segment>/..."; in a concurrent plan "<lane>/<segment>/..."
    # for segment "<lane>.<segment>" (targets.concurrency.merge_lanes)
    seg_bytes = {
        s.name: sum(
            v for k, v in blob_bytes.items() if k.startswith(s.name.replace(".", "/", 1) + "/")
        )
        for s in h.segments
    }
    backend_of = {name: backends[s.name] for s in h.segments for name in s.layers}
    if args.json:
        stored = plan.header  # the sections --json shows as the plan file stores them
        segments = [
            {
                "name": s.name,
                "device": s.device,
                "backend": backends[s.name],
                "precision": s.precision,
                "layers": s.layers,
                "inputs": s.inputs,
                "outputs": s.outputs,
                "bytes": seg_bytes[s.name],
            }
            for s in h.segments
        ]
        print_json(
            {
                "plan": str(args.model),
                "target": h.target,
                "power_mode": h.power_mode,
                "precision": h.precision,
                "tandem_version": h.tandem_version,
                "format_version": h.format_version,
                "inputs": stored["inputs"],
                "outputs": stored["outputs"],
                "layers": [
                    {**r, "backend": backend_of.get(r["name"], "")}
                    for r in stored.get("layers", [])
                ],
                "segments": segments,
                "cubins": h.cubins,
                "capability": stored["capability"],
                "predicted_ms": h.predicted_ms,
                "placement_predicted_ms": stored.get("placement_predicted_ms"),
                "predicted_source": predicted_source(h.target, h.power_mode),
                "predicted_at": h.predicted_at,
                "profiles": stored["profiles"],
                "plugins": stored.get("plugins", []),
                "lanes": stored.get("lanes", []),
                "file_bytes": plan.path.stat().st_size if plan.path else None,
            }
        )
        return 0
    print(
        f"plan {args.model}: target {h.target} ({h.power_mode}), precision "
        f"{h.precision}, built by tandem {h.tandem_version}, format {h.format_version}"
    )
    print(f"model {h.model}, strategy {h.strategy}")
    print()
    if args.verbose:
        print_table(
            ("Layer", "Op", "Device", "Runs on", "Precision", "Reason"),
            [
                (r.name, r.op, r.device, backend_of.get(r.name, ""), r.precision, r.reason)
                for r in h.layers
            ],
        )
        print()
    print_table(
        ("Segment", "Device", "Runs on", "Precision", "Layers", "Size"),
        [
            (
                s.name,
                s.device,
                backends[s.name],
                s.precision or "mixed",
                len(s.layers),
                human(seg_bytes[s.name], "B"),
            )
            for s in h.segments
        ],
        right=(4, 5),
    )
    if not args.verbose:
        print(f"({len(h.layers)} layers; --verbose lists each with its device and reason)")
    if h.lanes:  # a concurrent plan (docs/concurrency.md): its lanes run at once
        print(f"\n{len(h.lanes)} concurrent lane(s), {h.lanes_fps:.1f} frames/s planned:")
        for lane in h.lanes:
            print(f"  {lane.name} [{', '.join(lane.segments)}]: {lane.reason}")
    cpu = [r.name for r in h.layers if r.device == "cpu"]
    if cpu:
        print(f"\n{len(cpu)} layer(s) run on the board's CPU (numpy reference): "
              + ", ".join(cpu))
    if not h.cubins:
        print(f"\n{NO_CUBINS_NOTE}")
    for i, prof in enumerate(h.profiles):
        shapes = "; ".join(
            f"{name}: {_dims(r.min)} .. {_dims(r.max)} (opt {_dims(r.opt)})"
            for name, r in prof.inputs.items()
        )
        print(f"profile {i}: {shapes}")
    for plugin in h.plugins:
        layers = ", ".join(plugin.layers)
        print(f"needs plugin {plugin.key} version {plugin.version} ({layers})")
    pred = h.predicted_ms
    if pred and not h.lanes:  # a concurrent plan's figure is its lanes' rate (above)
        parts = ", ".join(f"{k} {v:.3f} ms" for k, v in pred.items() if k != "total")
        foretold = predicted_source(h.target, h.power_mode)
        print(f"\n{foretold}: {pred.get('total', 0):.3f} ms end to end ({parts}; cost model)")
    return 0


def _op_mix(layers: Sequence[LayerInfo]) -> str:
    """``Conv 60, Mul 69, ...``: the layers per op type, most first (the model in one line)."""
    counts: dict[str, int] = {}
    for info in layers:
        counts[info.op] = counts.get(info.op, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{op} {n}" for op, n in ranked)


def _dims(shape: object) -> str:
    return "x".join(str(d) for d in shape) if isinstance(shape, list | tuple) else "?"
