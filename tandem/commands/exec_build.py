"""What ``tandem exec``'s build flags mean: trtexec's command line as a ``BuildRequest``.

The target (``--target``, else this Jetson, else the host) and its trtexec generation, the
precision (builder flags, or the model's own tensor types when strongly typed), the device
policy (``--useDLACore``, ``--allowGPUFallback``, ``--buildDLAStandalone``, per-layer rules),
memory pools, I/O formats and profiles; and what the plan records of them
(``metadata.trtexec``). The flag table itself is ``trtexec_flags``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from devices.calib_images import parse_preprocess
from devices.calibration import Calibration, RandomInputs, source_from_path
from devices.hardware import TargetSpec
from devices.plan import Plan
from partitioner.errors import InputError, TandemError
from partitioner.ir import Graph
from partitioner.passes.qdq import has_qdq
from partitioner.policy import Rule
from partitioner.profiles import OptimizationProfile, dims_text, parse_shape_list
from tandem.commands._args import timing_cache_at
from tandem.commands.trtexec_flags import (
    ExecOptions,
    UsageError,
    bind_io_formats,
    generation_of,
    parse_io_formats,
    parse_mem_pools,
    standalone_format_ok,
)
from tandem.engine import layer_info
from targets.board import BoardFacts, compare_facts
from targets.build import load_model, resolve_policy, resolve_target
from targets.catalog import load_target
from targets.local_board import local_board
from targets.request import BuildRequest


class Log(Protocol):
    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...


def exec_target(opts: ExecOptions, log: Log) -> TargetSpec:
    """``--target``; without it this board when run on a Jetson the catalog knows, else the
    host (whose missing DLA gives ``--useDLACore`` its clear error)."""
    name = opts.get("target")
    if name:
        return resolve_target(name)
    board = local_board()
    if board is not None:
        target = resolve_target(board.target)
        log.info(
            f"Target {board.target}: this board ('{board.model}', L4T {board.l4t or '?'}, "
            f"power mode {board.power_mode or '?'}); --target overrides"
        )
        # nvpmodel says MODE_30W where a board file may say 30W (targets.catalog reads both)
        modes = {m.name.removeprefix("MODE_"): m.name for m in target.power_modes}
        mode = modes.get((board.power_mode or "").removeprefix("MODE_"))
        if mode is not None:
            target = target.with_power_mode(mode)
        elif board.power_mode:
            log.warn(
                f"power mode {board.power_mode} is not one the {board.target} file "
                f"describes; predictions use {target.power_mode}"
            )
        facts = BoardFacts("this board", board.target, l4t=board.l4t)
        if board.l4t and not all(c.ok for c in compare_facts(facts, {"l4t": target.l4t})):
            log.warn(
                f"this board runs L4T {board.l4t}; the {board.target} file describes "
                f"{target.l4t} (its software versions are the file's)"
            )
        return target
    return resolve_target("host")


def plan_generation(plan: Plan) -> int:
    """The trtexec generation a plan was built under: recorded by ``tandem exec``, else its
    catalog board's TensorRT, else 10."""
    recorded = (plan.record.metadata.get("trtexec") or {}).get("generation")
    if recorded in (10, 11):
        return int(recorded)
    try:
        return generation_of(load_target(plan.target).tensorrt)
    except TandemError:  # a board file not on this machine, or the host
        return 10


def check_values(opts: ExecOptions) -> None:
    """Flags accepted with one value only: the others name what they would need."""
    only = {
        "useRuntime": "full",
        "sparsity": "disable",
        "hardwareCompatibilityLevel": "none",
        "runtimePlatform": "sameasbuild",
        "device": "0",
        "useProfile": "0",
    }
    for name, accepted in only.items():
        value = opts.get(name)
        if value is not None and value.lower() != accepted:
            raise UsageError(
                f"--{name}={value}: only {accepted} is supported here "
                f"(tandem exec --help-table: --{name})"
            )


def build_request(
    onnx: str, target: TargetSpec, generation: int, opts: ExecOptions, log: Log
) -> tuple[BuildRequest, dict[str, Any]]:
    """trtexec's flags as a BuildRequest (without --useDLACore everything is on the GPU), and
    the build options the plan records (``metadata.trtexec``)."""
    graph = load_model(onnx)  # read here: a dynamic input without shapes gets a profile
    typed = generation == 11 or opts.on("stronglyTyped")
    precision = typed_precision(graph) if typed else flag_precision(opts)
    if typed and generation == 10:
        for flag in ("fp16", "int8", "best"):
            if opts.on(flag):  # trtexec 10.3 BuildOptions::parse does the same
                log.warn(
                    f"Invalid usage, setting {flag} mode is not allowed if graph is "
                    f"strongly typed. Ignoring --{flag}."
                )
    if typed:
        log.info(f"Strongly typed: precision {precision} from the model's tensor types")
    policy = replace(resolve_policy(None, precision=precision), source="trtexec flags")
    dla_core = opts.get("useDLACore")
    standalone = opts.on("buildDLAStandalone")
    if standalone and dla_core is None:
        raise UsageError("--buildDLAStandalone builds a DLA loadable: add --useDLACore=N")
    if standalone and opts.on("allowGPUFallback"):
        raise UsageError("GPU fallback (--allowGPUFallback) not allowed for DLA standalone mode")
    if dla_core is not None:
        if dla_core not in ("0", "1"):
            raise UsageError(f"--useDLACore={dla_core}: expected 0 or 1")
        if target.dla is None:
            raise InputError(
                f"--useDLACore={dla_core}: target {target.name} has no DLA; pass "
                "--target=<a Jetson board> (e.g. --target=orin-agx-64gb) to build for one"
            )
        if policy.precision == "fp32" and not typed:
            log.warn(
                "--useDLACore without --fp16/--int8/--best: enabling FP16 (the DLA has no FP32)"
            )
            policy = policy.with_overrides(precision="fp16")
        policy = policy.with_overrides(
            default_device="dla",
            dla_core=int(dla_core),
            gpu_fallback=opts.on("allowGPUFallback"),
        )
    else:
        policy = policy.with_overrides(default_device="gpu")
    rules = layer_rules(opts)
    if rules:
        policy = replace(policy, rules=tuple(rules))
    record: dict[str, Any] = {
        "generation": generation,
        "strongly_typed": typed,
        "profiling_verbosity": profiling_verbosity(opts, None),
    }
    pools = mem_pools(opts, target, log)
    if pools:
        record["mem_pool_bytes"] = pools
    native, formats = io_formats(opts, graph, generation, standalone, log)
    if formats:
        record["io_formats"] = formats
    if standalone:
        record["dla_standalone"] = True
    calib = opts.get("calib")
    spec = opts.get("calibPreprocess")
    if spec and not calib:
        raise InputError("--calibPreprocess: give --calib=DIR (a folder of images) too")
    if calib:
        preprocess = parse_preprocess(spec) if spec else None
        source: Any = source_from_path(calib, f"--calib={calib}", preprocess)
    elif typed:
        source = None  # strongly typed: INT8 only from the model's own Q/DQ scales
    else:
        # trtexec calibrates INT8 without data on arbitrary ranges; two random inputs stand in
        source = RandomInputs(2)
    request = BuildRequest(
        model=onnx,
        target=target,
        policy=policy,
        graph=graph,
        profiles=tuple(build_profiles(opts, graph, log)),
        calibration=Calibration(source),
        timing_cache=timing_cache_at(opts.get("timingCacheFile")),  # trtexec builds with it
        native_io=frozenset(native),
    )
    return request, record


def flag_precision(opts: ExecOptions) -> str:
    if opts.on("best") or opts.on("int8"):
        return "int8"
    return "fp16" if opts.on("fp16") else "fp32"


def typed_precision(graph: Graph) -> str:
    """A strongly typed network's precision: INT8 where Q/DQ nodes say so, FP16 where its
    float tensors are FP16 (an exported-with-casts model), else FP32."""
    if has_qdq(graph):
        return "int8"
    floats = [
        t.dtype
        for t in list(graph.inputs) + list(graph.tensors.values())
        if t.dtype in ("float16", "float32")
    ]
    return "fp16" if floats and floats.count("float16") * 2 >= len(floats) else "fp32"


def profiling_verbosity(opts: ExecOptions, plan: Plan | None) -> str:
    """--profilingVerbosity (or trtexec 8.x's --nvtxMode); a loaded plan keeps the one it was
    built with (TensorRT decides it at build), and plans built elsewhere are detailed."""
    text = opts.get("profilingVerbosity")
    legacy = opts.get("nvtxMode")
    if text is None and legacy is not None:
        modes = {"verbose": "detailed", "default": "layer_names_only", "none": "none"}
        if legacy not in modes:
            raise UsageError(f"--nvtxMode={legacy}: expected verbose, default or none")
        text = modes[legacy]
    if text is not None:
        if text not in ("layer_names_only", "detailed", "none"):
            raise UsageError(
                f"--profilingVerbosity={text}: expected layer_names_only, detailed or none"
            )
        return text
    if plan is not None:
        recorded = plan.record.metadata.get("trtexec", {})
        return str(recorded.get("profiling_verbosity", "detailed"))
    return "layer_names_only"  # trtexec's default


def mem_pools(opts: ExecOptions, target: TargetSpec, log: Log) -> dict[str, int]:
    pools: dict[str, int] = {}
    legacy = opts.get("workspace")
    if legacy is not None:
        pools.update(parse_mem_pools(f"workspace:{legacy}"))
    if opts.get("memPoolSize"):
        pools.update(parse_mem_pools(str(opts.get("memPoolSize"))))
    dla_pools = sorted(p for p in pools if p.startswith("dla"))
    sram = pools.get("dlaSRAM")
    if sram is not None and target.dla is not None and sram > target.dla.sram_bytes:
        raise UsageError(
            f"--memPoolSize dlaSRAM:{sram} bytes exceeds the {target.name} DLA's "
            f"{target.dla.sram_bytes} bytes of SRAM (targets/boards)"
        )
    if dla_pools and target.dla is None:
        log.warn(
            f"--memPoolSize {', '.join(dla_pools)}: target {target.name} has no DLA; recorded only"
        )
    if pools:
        log.info(
            "Memory pools (recorded in the plan; the DLA latency model does not model pool "
            "capacities, so placement is unchanged): "
            + ", ".join(f"{k}: {v} bytes" for k, v in pools.items())
        )
    return pools


def io_formats(
    opts: ExecOptions, graph: Graph, generation: int, standalone: bool, log: Log
) -> tuple[set[str], dict[str, str]]:
    """Bind --inputIOFormats/--outputIOFormats to the model's tensors (checked against rank and
    type); return the DLA-native ones (no reformat at their boundary) and the record."""
    native: set[str] = set()
    record: dict[str, str] = {}
    for flag, tensors, is_input in (
        ("inputIOFormats", graph.inputs, True),
        ("outputIOFormats", graph.outputs, False),
    ):
        text = opts.get(flag)
        if text is None:
            if standalone:  # trtexec refuses an empty list in DLA standalone mode
                raise UsageError(
                    f"--buildDLAStandalone needs --{flag}: the loadable's I/O is in "
                    "a DLA format (fp16:chw16, int8:chw32, fp16/int8:dla_linear, "
                    "inputs also fp16/int8:dla_hwc4)"
                )
            continue
        formats = parse_io_formats(text, f"--{flag}", generation)
        if generation == 11 and any(f.dtype for f in formats):
            # trtexec 11 reads formats only ("Invalid TensorFormat fp16:chw16"); a 10.x script
            # keeps working here, its types checked against the model's instead
            log.warn(
                f"--{flag}={text}: trtexec 11 takes formats only (chw16, not fp16:chw16): the "
                "tensor's type is the model's; the types given are checked against it"
            )
        bound = bind_io_formats(
            formats,
            [(t.name, t.shape, t.dtype or "float32") for t in tensors],
            f"--{flag}",
            typed=generation == 11,
        )
        for name, fmt in bound.items():
            if standalone and not standalone_format_ok(fmt, is_input, generation):
                raise UsageError(
                    f"--{flag}: '{name}' as {fmt.text()}: I/O formats for DLA "
                    "standalone are restricted to fp16/int8:dla_linear, "
                    "fp16/int8:hwc4 (inputs), fp16:chw16 or int8:chw32"
                )
            if fmt.dla_native:
                native.add(name)
            record[name] = fmt.text()
    return native, record


def layer_rules(opts: ExecOptions) -> list[Rule]:
    rules: list[Rule] = []
    for flag, kind in (("layerPrecisions", "precision"), ("layerDeviceTypes", "device")):
        text = opts.get(flag)
        if not text:
            continue
        for item in filter(None, (s.strip() for s in text.split(","))):
            name, sep, value = item.rpartition(":")
            name, value = name.strip().strip("\"'"), value.strip().lower()
            allowed = ("fp32", "fp16", "int8") if kind == "precision" else ("gpu", "dla")
            if not sep or not name or value not in allowed:
                raise UsageError(
                    f"--{flag}: cannot read '{item}'; expected LAYER:"
                    + ("fp32|fp16|int8" if kind == "precision" else "GPU|DLA")
                )
            rules.append(Rule(index=len(rules) + 1, name=name, **{kind: value}))  # type: ignore[arg-type]
    return rules


def build_profiles(opts: ExecOptions, graph: Graph, log: Log) -> list[OptimizationProfile]:
    lo = parse_shape_list(opts.get("minShapes") or "", "--minShapes")
    mid = parse_shape_list(opts.get("optShapes") or "", "--optShapes")
    hi = parse_shape_list(opts.get("maxShapes") or "", "--maxShapes")
    run_shapes = parse_shape_list(opts.get("shapes") or "", "--shapes")
    dynamic = [t for t in graph.inputs if not t.is_static]
    if not (lo or mid or hi or run_shapes):
        if not dynamic:
            return []
        profile = OptimizationProfile()
        for t in dynamic:
            shape = tuple(d if isinstance(d, int) else 1 for d in (t.shape or ()))
            log.warn(
                f"Dynamic dimensions required for input: {t.name}, but no shapes were "
                f"provided. Automatically overriding shape to: {dims_text(shape)}"
            )
            profile.set_shape(t.name, shape, shape, shape)
        return [profile]
    if mid and not lo and not hi:  # trtexec: opt shapes alone set min and max to them too
        lo, hi = mid, mid
    if (lo or mid or hi) and not (set(lo) == set(mid) == set(hi)):
        raise UsageError("--minShapes, --optShapes and --maxShapes must name the same inputs")
    profile = OptimizationProfile()
    for name in lo:
        profile.set_shape(name, lo[name], mid[name], hi[name])
    for name, shape in run_shapes.items():
        if name not in profile.shapes:  # trtexec: --shapes alone means min = opt = max
            profile.set_shape(name, shape, shape, shape)
    return [profile]


def exported_layer_info(plan: Plan, verbosity: str) -> dict[str, Any]:
    """trtexec's --exportLayerInfo per profiling verbosity: detailed: every layer's record;
    layer_names_only: names; none: layer indices (TensorRT's IProfiler names layers so)."""
    doc = layer_info(plan)
    if verbosity == "layer_names_only":
        doc["Layers"] = [layer["Name"] for layer in doc["Layers"]]
    elif verbosity == "none":
        doc["Layers"] = [str(i) for i in range(len(doc["Layers"]))]
    return doc


def load_inputs(spec: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """trtexec's ``--loadInputs=name:file.bin,...``: raw little-endian data of each input's
    dtype and shape (as ``numpy.ndarray.tofile`` writes it); ``feeds`` gives both."""
    loaded: dict[str, np.ndarray] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, sep, file = item.rpartition(":")
        name = name.strip().strip("'\"")
        if not sep or not name or not file:
            raise UsageError(f"--loadInputs: cannot read '{item}'; expected INPUT:FILE")
        if name not in feeds:
            raise InputError(
                f"--loadInputs names '{name}', which the model does not have (its "
                f"inputs: {', '.join(feeds)})"
            )
        want = feeds[name]
        try:
            data = Path(file).read_bytes()
        except OSError as err:
            raise InputError(f"--loadInputs {file}: {err.strerror}") from None
        if len(data) != want.nbytes:
            raise InputError(
                f"--loadInputs {file}: {len(data)} bytes; input '{name}' "
                f"({dims_text(want.shape)} {want.dtype}) needs {want.nbytes}"
            )
        dtype = want.dtype.newbyteorder("<")
        loaded[name] = np.frombuffer(data, dtype=dtype).reshape(want.shape).astype(want.dtype)
    return loaded
