"""GPU code for a plan: lower each GPU segment for the target's arch and cross-compile its kernels.

A build never writes a plan holding a GPU segment it could not lower or compile:
:func:`check_nvrtc` fails first when no NVRTC of the target's CUDA major is installed here (unless
the user asked for a plan without cubins), and :func:`cross_compile` returns the problem of a
segment that does not lower or compile, which the build reports with every other one and fails.

Without cubins (``--no-cubins``) every GPU segment is still lowered (so placement's promise is
checked), but no kernel is compiled: the runtime compiles the segment's kernels with NVRTC when
the plan loads on the board (``gpu_kernels.library.KernelLibrary`` compiles whatever a plan does
not carry), which needs the ``cuda`` extra there (``xavier`` for CUDA 11).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from devices.hardware import TargetSpec
from devices.plan import Plan
from gpu_kernels.catalog import mma_module, source_of
from gpu_kernels.compile import arch_number, compile_kernel, nvrtc_version
from gpu_kernels.lowering import describe, kernels_by_layer, lower, segment_precision
from gpu_kernels.tactics import candidates, heuristic
from partitioner.errors import TandemError
from partitioner.ir import Graph
from partitioner.segments import Segment

NO_CUBINS_FLAG = "--no-cubins"
#: what a plan without cubins means on the board, in the words the build summary uses
NO_CUBINS_NOTE = (
    "the plan holds no compiled GPU code: the board compiles the GPU kernels with NVRTC when "
    "the plan loads, which needs the 'cuda' extra installed there (pip install "
    "'tandem-rt[cuda]'; 'tandem-rt[xavier]' for CUDA 11)"
)


class GpuCode(NamedTuple):
    """A lowered (and, with cubins, compiled) GPU segment."""

    #: the segment's ``cuda`` record in the plan
    record: dict[str, Any]
    #: launches per layer of the lowered program (``kernels_by_layer``): what the plan's
    #: prediction charges the per-kernel cost for
    kernels: dict[str, int]


class BuildError(TandemError):
    """The build cannot produce a plan that runs as placed; the message has one line per
    problem and what to do."""


def check_nvrtc(target: TargetSpec) -> None:
    """Raise :class:`BuildError` with the install command when this machine has no NVRTC that
    compiles for ``target``'s GPU at its CUDA major."""
    assert target.gpu is not None
    try:
        nvrtc_version(target.gpu.arch, target.nvrtc_major)
    except TandemError as err:
        cuda = f", CUDA {target.cuda}" if target.cuda else ""
        raise BuildError(
            f"cannot cross-compile GPU code for {target.gpu.arch} ({target.name}{cuda}): {err}; "
            f"or pass {NO_CUBINS_FLAG} to write a plan without GPU code, which the board "
            "compiles with NVRTC when the plan loads"
        ) from None


def cross_compile(
    plan: Plan,
    sub: Graph,
    seg: Segment,
    target: TargetSpec,
    timing_cache: Any = None,
    scales: dict[str, float] | None = None,
    cubins: bool = True,
) -> GpuCode | str:
    """Lower a GPU segment to kernel launches for the target's arch and NVRTC-compile every
    module they use into the plan (the target's CUDA major picks the NVRTC: CUDA 13 dropped
    sm_72). Tactics come from the cost model here; a board may re-tune (``--timing-cache``).

    Returns the segment's ``cuda`` record and its launches per layer, or the problem (one
    line) when it does not lower or compile: placement asked the lowering about every layer, so
    what remains are whole-segment rules (INT8 scales, Q/DQ pairs) and Tandem bugs."""
    assert target.gpu is not None
    gpu = target.gpu
    wanted = {row["name"]: row["precision"] for row in plan.header.get("layers", [])}
    precision = segment_precision((wanted.get(n) for n in seg.nodes), bool(scales))
    arch = arch_number(gpu.arch)
    sources: dict[str, str] = {}

    def choose(problem: Any) -> Any:
        # measured on this arch (a board's timing cache) beats the cost model
        names = {t.name: t for t in candidates(problem, arch)}
        best = timing_cache.best(problem.signature(), gpu.arch) if timing_cache else None
        sources[problem.signature()] = "timing-cache" if best in names else "cost-model"
        return names[best] if best in names else heuristic(problem, arch, gpu.sm_count)

    try:
        program = lower(sub, precision, arch, choose, gpu.sm_count, scales)
    except TandemError as err:
        return (
            f"segment {seg.name} does not lower for {gpu.arch}: {_first_line(err)} — pin its "
            "layers to another device with a policy rule, and report it: placement accepted "
            "each of them"
        )
    modules: dict[tuple[str, tuple[str, ...]], None] = {}
    tactics: dict[str, str] = {}
    for launch in program.launches:
        if launch.tactic is not None and launch.kernel.startswith("conv_mma"):
            modules.setdefault(mma_module(launch.tactic))
            tactics[launch.layer] = launch.tactic.name
        elif launch.kernel != "memset":
            modules.setdefault((source_of(launch.kernel), ()))
    compiled = []
    for i, (source, options) in enumerate(modules if cubins else ()):
        try:
            module = compile_kernel(source, gpu.arch, options, target.nvrtc_major)
        except TandemError as err:
            return (
                f"segment {seg.name}: {source} does not compile for {gpu.arch}: "
                f"{_first_line(err)} (run with --debug for the whole NVRTC log)"
            )
        key = f"{seg.name}/cubin/{i}"
        plan.add_bytes(key, module.cubin, "cubin")
        compiled.append(
            {
                "source": source,
                "options": list(options),
                "blob": key,
                "nvrtc": ".".join(map(str, module.nvrtc_version)),
            }
        )
    record = {
        "arch": gpu.arch,
        "precision": precision,
        "modules": compiled,
        "layer_tactics": tactics,
        "tactic_sources": sorted(set(sources.values())),
        **describe(program),
    }
    return GpuCode(record, kernels_by_layer(program, sub))


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
