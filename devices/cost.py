"""Cost models: predicted seconds of one layer on the GPU, the DLA or the CPU, and of a boundary.

GPU: a roofline per layer from the target's arch (per-SM throughput, ``devices.hardware``), the
SMs and clock the power mode leaves, and its DRAM bandwidth, plus a per-kernel launch overhead::

    seconds = kernels x launch + max(compute, bytes / (dram * memory_eff))

The two parts are apart: :func:`gpu_roofline_seconds` is the roofline, :func:`gpu_kernel_seconds`
the fixed cost of one kernel. Placement prices each layer with the kernels the per-layer model
expects of it (:func:`gpu_priced_kernels`: one, or none for views and epilogue-fused layers);
a built plan prices each GPU segment with the kernels its lowering emitted
(:func:`gpu_segment_seconds`), which fuses element-wise chains into one kernel and adds copies
the per-layer model does not see.

A tensor-core layer's compute is priced as the implicit-GEMM kernel runs it
(:func:`tensor_core_seconds`): the output GEMM (M = batch x output pixels, N = output channels)
is cut into CTA tiles, the tiles run in waves of one per SM, and a tile computes at the SM's MMA
rate times the arch's sustained fraction (``TC_SUSTAINED``) unless the L2 cannot feed its operands
(small tiles reuse each loaded byte less). Small GEMMs (batch 1, late layers) fill few SMs or pay
for padded tiles; large ones approach the sustained fraction, which is where batching gains come
from. Other layers (depthwise, pooling, element-wise) run on the CUDA cores at SIMT_EFFICIENCY.

Layers the GPU kernels fold into a convolution's or a GEMM's epilogue (activation, bias and
residual Add: ``node.meta["fusion"]``, written by ``partitioner.passes.fusion`` from the very
decision the lowering follows) pay no launch and only the extra bytes they read; a
squeeze-and-excitation block's Mul (role ``scale``) is the one launch that runs its FCs and
streams its input. Layers that only relabel data (Reshape, Flatten, ...) are free views, and
so is a channel Concat nested in a wider one (role ``concat_view``, DenseNet's dense blocks:
``partitioner.passes.concat_chains``; the producers write once into the widest one's buffer).

DLA: the latency model of the DLA emulator (``dla_sim.latency.predict_layer_seconds``: MAC
atomics, CBUF re-reads, engine rates, DBB bandwidth). Where it cannot model a layer, a simple
roofline from the DLA's MAC rate and memory port stands in (:func:`dla_roofline_seconds`).

Boundary: :func:`transition_seconds` = per-switch overhead + a GPU reformat kernel (read +
write of the tensor) + the transfer (none: GPU and DLA share DRAM). Both constants are fitted on
four of HaX-CoNN's nine GoogLeNet split costs on AGX Xavier (``dla_sim/data/published.yaml``,
``transitions``); ``bench/dla_latency.py`` prints all nine.

Concurrency: :func:`concurrent_slowdown` is the factor by which a device's time grows while other
devices stream from the same DRAM (TensorRT issue 2745's GPU + DLA runs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from devices.hardware import TargetSpec
from dla_sim.hardware import dla_config
from partitioner.analysis import layer_flops
from partitioner.errors import ConfigError, InternalError, TandemError
from partitioner.ir import Constant, Graph, Node, Tensor

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}

# Per-kernel launch overhead: ~5.7 us per cuda.core launch measured on an H100 (gpu.md §4).
GPU_LAUNCH_SECONDS = 5e-6
# Per-kernel cost of a Jetson GPU's layers (launch, the drain/fill between dependent kernels,
# the per-kernel host work of the SoC's CPU), per arch; GPU_LAUNCH_SECONDS elsewhere. fit (jointly
# with TC_SUSTAINED, see there); the batch-1 rows set it: Orin 5 us
# (= the H100 launch figure), Xavier 13 us (its Carmel CPU and Volta front end are slower).
# The fit counts one kernel per layer the per-layer model charges (gpu_priced_kernels), the count
# of a TensorRT-like engine: the published rows are TensorRT engines. A built plan charges these
# constants per kernel Tandem's lowering emits, which for the fit networks is more (RetinaNet
# INT8: 150 against 117, 22 of them FP16 -> INT8 copies after Tandem's grouped convolutions,
# which write FP16). Fitting on that count instead (bench/gpu_fit.py --kernels lowered,
# 2026-12-02) gives Orin 4 us / TC 0.62 and Xavier 10 us / depthwise 0.32 (11 us / 0.35 on the
# 0.05 fraction step): fit rows median 1.9 % (2.5 %), but the validate rows get worse (max
# 37.6 % / median 14.4 %, three outside test_gpu_published's bounds; these constants on the
# lowered count: 29.1 % / 12.7 %, one outside): Tandem's extra kernels would be read as faster
# hardware. Not adopted; BENCHMARKS.md has the tables.
GPU_KERNEL_SECONDS = {"sm_72": 13e-6, "sm_87": 5e-6}
# Fractions of peak a hand-written kernel reaches. Tensor-core implicit GEMM with mma.sync stays
# well below peak (gpu.md §2: 35-98% depending on tuning); SIMT and streaming kernels do better.
# TENSOR_EFFICIENCY is the sustained MMA fraction of an arch without its own TC_SUSTAINED entry.
TENSOR_EFFICIENCY = 0.5
SIMT_EFFICIENCY = 0.7
MEMORY_EFFICIENCY = 0.8
# The fraction of the SM's MMA peak a well-fed tile sustains (issue, pipeline fill, epilogue).
# fit, per arch with GPU_KERNEL_SECONDS and the grouped-conv fractions below, minimising the
# squared log error of devices/data/gpu_published.yaml's fit rows (bench/gpu_latency.py):
# sm_87 (Orin) on orin-rn50-ss, orin-retinanet-offline, orinnx-rn50-offline; sm_72 (Xavier) on
# xavier-ssdmn-ss, xavier-ssdrn34-offline, xaviernx-ssdmn-offline, xaviernx-ssdrn34-offline.
# Both arches came out at 0.64 (grid step 0.02): the figures ask for no per-arch fraction.
# bench/gpu_fit.py re-runs the grid (per-layer kernel counts: GPU_KERNEL_SECONDS says why);
# 2026-12-02 it gives these values for Orin; for Xavier 13 us / 0.64 / depthwise 0.35 on a 0.05
# fraction step, 12 us / 0.64 / 0.32 on a 0.01 step (objective 0.0206 against 0.0228).
TC_SUSTAINED = {"sm_72": 0.64, "sm_87": 0.64}
# INT8 depthwise and grouped convolutions on the CUDA cores reach these fractions of their
# roofline (few channels per group: no dp4a reduction, strided gathers, little reuse). fit with
# TC_SUSTAINED: depthwise (one channel per group) 0.35, set by xaviernx-ssdmn-offline
# (SSD-MobileNet); grouped (several channels per group) 0.11, set by orin-retinanet-offline
# (ResNeXt-50's 32 groups of 4 channels). Each is fitted on one arch and used on every arch:
# no figure has the other kind on the other arch (orin-ssdmn-offline, added after the fit,
# checks the depthwise one on Orin).
DEPTHWISE_CONV_EFFICIENCY = 0.35
GROUPED_CONV_EFFICIENCY = 0.11
# CTA tiles (output rows x columns) of the implicit-GEMM kernels a builder picks among (CUTLASS's
# Ampere/Volta tensor-op conv and GEMM configurations span 256x128 .. 32x32); each layer is
# priced with the tile that finishes first, as TensorRT's tactic timing picks the fastest kernel.
GEMM_TILES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64), (64, 32),
              (32, 64), (32, 32))  # fmt: skip
# L2 -> SM bytes per clock per SM: the operand feed of a tile. A100 reads 5120 B/clk from L2
# over 108 SMs (47.4) and V100 2048 B/clk over 80 SMs (25.6) (NVIDIA A100 Tensor Core GPU
# Architecture whitepaper, L2 section); Orin (sm_87) and Xavier (sm_72) are taken at their
# generation's per-SM figure (UNCONFIRMED for the Tegra parts).
L2_BYTES_PER_CLOCK_PER_SM = {"sm_72": 25.6, "sm_87": 47.4}
# K (the reduction) runs in whole MMA k-steps: 32 bytes of each operand (m16n8k32 INT8,
# m16n8k16 FP16).
MMA_K_BYTES = 32
# A GPU<->DLA switch costs a + b * bytes: a least-squares line through HaX-CoNN's split costs at
# 81.5, 200.7, 301.1 and 752.6 KB (46.3, 48.4, 73.5, 67.2 us; fit rows googlenet-split-110, -67,
# -10, -38 of published.yaml) gives a = 49.0 us, b = 29.3 us/MB. a is the launch of the reformat
# kernel (GPU_LAUNCH_SECONDS) plus cuDLA submission and synchronisation; b is the reformat's read
# + write at REFORMAT_EFFICIENCY of the DRAM peak (2 / (136.5 GB/s * 0.50) = 29.3 us/MB). fit.
SWITCH_OVERHEAD_SECONDS = 44e-6
REFORMAT_EFFICIENCY = 0.50
# Slowdown of a device per co-running device that streams from the same DRAM: each device's
# sensitivity times the co-runner's demand. TensorRT issue 2745 (AGX Orin): a DLA alone 17.68 ms
# -> 20.78 ms beside the GPU (DLA_BESIDE_GPU = 0.175), the GPU 45 -> 51.05 ms beside one DLA
# (GPU_BESIDE_DLA = 0.134); fit rows dla-with-gpu, gpu-with-dla. A DLA's demand relative to the
# GPU's is the ratio of their memory ports (DLA DBB 64 B/cycle x 1.6 GHz = 102 GB/s against the
# 204.8 GB/s the GPU can draw: 0.5), which gives the DLA-beside-DLA term without another fit.
DLA_BESIDE_GPU = 0.175
GPU_BESIDE_DLA = 0.134
DLA_DEMAND_RELATIVE_TO_GPU = 0.5
# The host CPU when it is the device (a planning figure, not a measurement of this machine).
CPU_PEAK_FLOPS = 50e9

# Ops that are views (no kernel, no traffic).
FREE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout",
                      "Shape", "Constant", "ConstantOfShape"})  # fmt: skip
MAIN_LOOP_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


@dataclass(frozen=True)
class Work:
    """What a layer does: arithmetic, DRAM bytes, and whether tensor cores can do it."""

    flops: float
    bytes: float
    tensor_cores: bool


def _numel(t: Tensor | None) -> int:
    if t is None or t.shape is None:
        return 0
    return math.prod(d if isinstance(d, int) else 1 for d in t.shape)


def layer_work(node: Node, precision: str) -> Work:
    """FLOPs (``partitioner.analysis.layer_flops``) and bytes moved at ``precision``."""
    bpe = BYTES_PER_ELEMENT[precision]
    flops = layer_flops(node)
    if flops is None:  # shapes unknown: one op per output element is the floor
        flops = sum(_numel(t) for t in node.outputs)
    data = 0
    for t in node.inputs:
        if t is None:
            continue
        if isinstance(t, Constant):
            # Integer constants (axes, shapes) are tiny; weights travel at the run precision.
            data += t.values.size * (bpe if t.values.dtype.kind == "f" else 0)
        else:
            data += _numel(t) * bpe
    data += sum(_numel(t) for t in node.outputs) * bpe
    return Work(float(flops), float(data), _uses_tensor_cores(node, precision))


def _uses_tensor_cores(node: Node, precision: str) -> bool:
    if precision == "fp32" or node.op not in MAIN_LOOP_OPS:
        return False
    if node.op in ("Conv", "ConvTranspose"):
        w = node.input(1)
        group = int(node.attrs.get("group", 1))
        # Depthwise / narrow grouped convs have too few channels per group for an MMA tile.
        per_group = w.shape[1] if w is not None and w.shape else 0
        return group == 1 or (isinstance(per_group, int) and per_group >= 16)
    return True


def fused_into_epilogue(node: Node) -> bool:
    """True when the GPU kernels fold ``node`` into a convolution's or a GEMM's epilogue: the
    fusion pass marked it (the build's passes always run it; an unmarked graph fuses nothing
    here rather than guess at what the lowering does)."""
    return fusion_role(node) not in (None, "conv", "concat_view")


def fusion_anchor(node: Node, graph: Graph) -> Node | None:
    """The convolution / GEMM whose kernel runs ``node`` as its epilogue (the fusion group's
    main layer), None for a layer not fused into one. Its precision is the kernel's: an INT8
    convolution reads a fused residual in INT8 (``gpu_kernels/lowering/int8.py``)."""
    fusion = node.meta.get("fusion")
    if not fused_into_epilogue(node) or not isinstance(fusion, dict):
        return None
    try:
        return graph.node(str(fusion.get("group")))
    except (KeyError, TandemError):
        return None


def fusion_role(node: Node) -> str | None:
    """The role the fusion pass gave ``node`` in its kernel, None when it marked none."""
    fusion = node.meta.get("fusion")
    return fusion.get("role") if isinstance(fusion, dict) else None


def gpu_layer_seconds(node: Node, graph: Graph, precision: str, target: TargetSpec) -> float:
    """Seconds of ``node`` on ``target``'s GPU at its selected power mode, as placement prices
    it: its roofline (:func:`gpu_roofline_seconds`) plus the fixed cost of the kernels the
    per-layer model expects it to launch (:func:`gpu_priced_kernels` x
    :func:`gpu_kernel_seconds`). A built plan charges the kernels the lowering emitted instead
    (``targets.build``, :func:`gpu_segment_seconds`)."""
    gpu = target.gpu
    if gpu is None:
        raise ConfigError(f"target '{target.name}' has no GPU")
    roofline = gpu_roofline_seconds(node, graph, precision, target)
    return roofline + gpu_priced_kernels(node) * gpu_kernel_seconds(gpu.arch)


def gpu_priced_kernels(node: Node) -> int:
    """Kernels the per-layer model charges ``node`` a launch for: none for a view (FREE_OPS, a
    nested channel Concat) or a layer fused into a convolution's / GEMM's epilogue, one for
    every other layer (a squeeze-and-excitation block's ``scale`` Mul is its one kernel)."""
    if node.op in FREE_OPS or fusion_role(node) == "concat_view":
        return 0
    if fusion_role(node) == "scale":
        return 1
    return 0 if fused_into_epilogue(node) else 1


def gpu_roofline_seconds(node: Node, graph: Graph, precision: str, target: TargetSpec) -> float:
    """The compute / memory part of ``node``'s GPU time on ``target`` at its selected power
    mode: ``max(compute, bytes / (dram * memory_eff))``, no per-kernel cost."""
    gpu = target.gpu
    if gpu is None:
        raise ConfigError(f"target '{target.name}' has no GPU")
    if node.op in FREE_OPS or fusion_role(node) == "concat_view":
        return 0.0
    mode = target.power_mode
    bandwidth = target.dram_bytes_per_s * MEMORY_EFFICIENCY
    if fusion_role(node) == "scale":
        # a squeeze-and-excitation block's second kernel: it reads the block's input and
        # writes it scaled (its FCs, role se_fc, add their weights' bytes)
        streamed = sum(_numel(t) for t in node.inputs if t is not None) + _numel(node.outputs[0])
        return streamed * BYTES_PER_ELEMENT[precision] / bandwidth
    if fused_into_epilogue(node):
        # Only the extra operands are read (the residual of an Add, BN parameters).
        src = node.input(0)
        extra = sum(_numel(t) for t in node.inputs[1:] if t is not None and t is not src)
        return extra * BYTES_PER_ELEMENT[precision] / bandwidth
    work = layer_work(node, precision)
    memory = work.bytes / bandwidth
    shape = gemm_shape(node) if work.tensor_cores else None
    if shape is not None:
        return max(tensor_core_seconds(shape, precision, target)[0], memory)
    if work.tensor_cores:  # shapes unknown: the sustained fraction of the peak
        sustained = TC_SUSTAINED.get(gpu.arch, TENSOR_EFFICIENCY)
        peak = gpu.peak_ops_per_s(precision, mode, tensor=True)  # type: ignore[arg-type]
        return max(work.flops / (peak * sustained), memory)
    if precision == "int8" and int(node.attrs.get("group", 1)) > 1:
        # INT8 on CUDA cores is dp4a, a 4-long dot product along the reduction; a grouped /
        # depthwise conv reduces over few channels per group, so it runs at the scalar rate
        peak = gpu.peak_ops_per_s("fp32", mode, tensor=False)
        roofline = max(work.flops / (peak * SIMT_EFFICIENCY), memory)
        weight = node.input(1)
        depthwise = weight is not None and bool(weight.shape) and weight.shape[1] == 1
        return roofline / (DEPTHWISE_CONV_EFFICIENCY if depthwise else GROUPED_CONV_EFFICIENCY)
    peak = gpu.peak_ops_per_s(precision, mode, tensor=False)  # type: ignore[arg-type]
    return max(work.flops / (peak * SIMT_EFFICIENCY), memory)


def gpu_kernel_seconds(arch: str) -> float:
    """Fixed seconds per GPU kernel on ``arch`` (:data:`GPU_KERNEL_SECONDS`)."""
    return GPU_KERNEL_SECONDS.get(arch, GPU_LAUNCH_SECONDS)


@dataclass(frozen=True)
class SegmentSeconds:
    """A GPU segment priced from its lowered program: seconds in all and per layer."""

    total: float
    per_layer: dict[str, float]
    kernels: int


def gpu_segment_seconds(
    rooflines: Mapping[str, float], kernels: Mapping[str, int], arch: str
) -> SegmentSeconds:
    """A lowered GPU segment's seconds: each layer's roofline (``rooflines``, by layer, from
    :func:`gpu_roofline_seconds`) plus :func:`gpu_kernel_seconds` for every kernel the lowering
    emitted for it (``kernels``, by layer; a layer whose work another layer's kernel does has
    none, and pays its roofline only). Every kernel must belong to a layer of ``rooflines``."""
    strays = sorted(set(kernels) - set(rooflines))
    if strays:
        raise InternalError(f"kernels of layer(s) {', '.join(strays[:5])} outside the segment")
    each = gpu_kernel_seconds(arch)
    per_layer = {name: r + kernels.get(name, 0) * each for name, r in rooflines.items()}
    return SegmentSeconds(sum(per_layer.values()), per_layer, sum(kernels.values()))


@dataclass(frozen=True)
class GemmShape:
    """The implicit GEMM of a conv / GEMM layer: ``groups`` independent (m x k) @ (k x n)."""

    m: int
    n: int
    k: int
    groups: int = 1


def gemm_shape(node: Node) -> GemmShape | None:
    """M (batch x output pixels, or rows), N (output channels per group) and K (reduction)
    of a Conv / ConvTranspose / Gemm / MatMul with known shapes; None otherwise."""
    if node.op not in MAIN_LOOP_OPS or not node.outputs:
        return None
    flops, shape = layer_flops(node), node.outputs[0].shape
    out = [d for d in shape or () if isinstance(d, int)]
    if not flops or not out or len(out) != len(shape or ()):
        return None
    groups = int(node.attrs.get("group", 1)) if node.op in ("Conv", "ConvTranspose") else 1
    if node.op in ("Conv", "ConvTranspose"):
        if len(out) < 3:
            return None
        n = out[1] // groups
        m = math.prod(out) // out[1]
    else:
        n = out[-1]
        m = math.prod(out) // n if n else 0
    if not (m and n and groups):
        return None
    return GemmShape(m, n, max(1, round(flops / (2 * m * n * groups))), groups)


def tensor_core_seconds(
    shape: GemmShape, precision: str, target: TargetSpec
) -> tuple[float, tuple[int, int], int]:
    """(seconds, tile, waves) of ``shape`` on the target's tensor cores with the fastest tile.

    Tiles run in waves of one per SM; a tile takes tm x tn x K MACs at the SM's MMA rate times
    TC_SUSTAINED, or at the rate the L2 feeds its operands (tm + tn) x K bytes when that is
    lower (:data:`L2_BYTES_PER_CLOCK_PER_SM`). K is rounded up to whole MMA k-steps."""
    gpu = target.gpu
    assert gpu is not None
    mode = target.power_mode
    sms, clock = gpu.sms(mode), float(gpu.clock_hz[mode])
    bpe = BYTES_PER_ELEMENT[precision]
    macs_per_clock = gpu.throughput.ops_per_clock(precision, tensor=True) / 2  # type: ignore[arg-type]
    sustained = macs_per_clock * TC_SUSTAINED.get(gpu.arch, TENSOR_EFFICIENCY)
    feed = L2_BYTES_PER_CLOCK_PER_SM.get(gpu.arch)
    step = max(1, MMA_K_BYTES // bpe)
    k = math.ceil(shape.k / step) * step
    best: tuple[float, tuple[int, int], int] | None = None
    for tm, tn in GEMM_TILES:
        tiles = math.ceil(shape.m / tm) * math.ceil(shape.n / tn) * shape.groups
        waves = math.ceil(tiles / sms)
        rate = sustained if feed is None else min(sustained, feed * tm * tn / ((tm + tn) * bpe))
        seconds = waves * tm * tn * k / rate / clock
        if best is None or seconds < best[0]:
            best = (seconds, (tm, tn), waves)
    assert best is not None
    return best


def dla_roofline_seconds(node: Node, graph: Graph, precision: str, target: TargetSpec) -> float:
    """Stand-in DLA cost: MACs at the DLA's MAC rate (atomic-C/K rounding for convs) against
    bytes over its memory port (the lesser of the DBB width x clock and DRAM bandwidth)."""
    dla, clock = target.dla, target.dla_clock_hz
    if dla is None or clock is None:
        raise ConfigError(f"target '{target.name}' has no DLA")
    if precision not in ("fp16", "int8"):
        raise ConfigError("the DLA has no FP32: cost it at fp16 or int8")
    work = layer_work(node, precision)
    macs = work.flops / 2
    weight = node.input(1)
    depthwise = int(node.attrs.get("group", 1)) > 1 and weight is not None and weight.shape
    if node.op == "Conv" and weight is not None and weight.shape and not depthwise:
        k, c_per_group = weight.shape[:2]
        if isinstance(k, int) and isinstance(c_per_group, int) and k and c_per_group:
            # The convolution core works on whole atomics of C x K.
            pad_c = math.ceil(c_per_group / dla.atomic_c) * dla.atomic_c / c_per_group
            pad_k = math.ceil(k / dla.atomic_k) * dla.atomic_k / k
            macs *= pad_c * pad_k
    mac_seconds = macs / (dla.macs_per_cycle(precision) * clock)  # type: ignore[arg-type]
    port = min(dla.dbb_bytes_per_cycle * clock, target.dram_bytes_per_s) * MEMORY_EFFICIENCY
    # The per-op fixed cost of the emulator's latency model, per image of the batch.
    cfg = dla_config(dla.version)
    images = _batch(node)
    fixed = images * (cfg.op_fixed_seconds + cfg.op_fixed_cycles / clock)
    return fixed + max(mac_seconds, work.bytes / port)


def _batch(node: Node) -> int:
    out = node.outputs[0] if node.outputs else None
    shape = out.shape if out is not None and out.shape else ()
    lead = [d for d in shape[:-3] if isinstance(d, int)] if len(shape) >= 4 else []
    return max(1, math.prod(lead)) if lead else 1


def dla_layer_seconds(node: Node, graph: Graph, precision: str, target: TargetSpec) -> float:
    """Seconds ``node`` adds to a DLA segment on ``target`` (per-loadable overhead excluded:
    it is part of :func:`transition_seconds`)."""
    dla, clock = target.dla, target.dla_clock_hz
    if dla is None or clock is None:
        raise ConfigError(f"target '{target.name}' has no DLA")
    try:
        from dla_sim.latency import predict_layer_seconds
    except ImportError:  # layering allows it; absent only in a stripped install
        return dla_roofline_seconds(node, graph, precision, target)
    key = _dla_signature(node, graph, precision, dla.version, clock, target.dram_bytes_per_s)
    if key is not None and key in _DLA_MEMO:
        return _DLA_MEMO[key]
    try:
        seconds = float(
            predict_layer_seconds(
                node, graph, precision, dla.version, clock, target.dram_bytes_per_s
            )
        )
    except TandemError:
        # The emulator declines layers it cannot lower; the roofline still gives a number.
        seconds = dla_roofline_seconds(node, graph, precision, target)
    if key is not None:
        if len(_DLA_MEMO) >= _DLA_MEMO_LIMIT:
            _DLA_MEMO.clear()
        _DLA_MEMO[key] = seconds
    return seconds


# The DLA latency model compiles a layer's fused group to price it (about a millisecond); real
# networks repeat the same layer shapes many times, so prices are kept by what they depend on:
# the fused group up to the layer (ops, attributes, tensor shapes / dtypes, which tensors are
# segment I/O, small constant values such as clip bounds), the precision and the hardware.
_DLA_MEMO: dict[tuple[Any, ...], float] = {}
_DLA_MEMO_LIMIT = 200_000


def _dla_signature(
    node: Node, graph: Graph, precision: str, version: int, clock: float, bandwidth: float
) -> tuple[Any, ...] | None:
    from dla_sim.fusion import group_of

    try:
        group = group_of(node, graph)
    except TandemError:
        return None
    io = {t.name for t in graph.inputs} | {t.name for t in graph.outputs}

    def tensor_key(t: Tensor | None) -> Any:
        if t is None:
            return None
        small = isinstance(t, Constant) and t.values.size <= 16
        value = tuple(np.asarray(t.values).ravel().tolist()) if small else None
        return (t.shape, t.dtype, isinstance(t, Constant), t.name in io, value)

    parts = []
    for member in group.nodes:
        attrs = tuple(sorted((k, repr(v)) for k, v in member.attrs.items()))
        parts.append(
            (
                member.op,
                attrs,
                tuple(tensor_key(t) for t in member.inputs),
                tuple(tensor_key(t) for t in member.outputs),
            )
        )
        if member is node:
            return (group.engine, tuple(parts), precision, version, clock, bandwidth)
    return None


def cpu_layer_seconds(node: Node, graph: Graph, precision: str, target: TargetSpec) -> float:
    """A planning figure for the host CPU (numpy backend): a roofline at CPU_PEAK_FLOPS."""
    if node.op in FREE_OPS:
        return 0.0
    work = layer_work(node, "fp32")
    return max(work.flops / CPU_PEAK_FLOPS, work.bytes / target.dram_bytes_per_s)


def transition_seconds(
    tensor_bytes: float, target: TargetSpec, src: str = "gpu", dst: str = "dla"
) -> float:
    """Cost of handing a tensor of ``tensor_bytes`` from device kind ``src`` to ``dst``.

    reformat (a GPU kernel reading and writing the tensor between GPU and DLA layouts) +
    transfer (0: one shared DRAM) + per-switch overhead. Same kind on both sides: 0, except
    two DLA cores (``dla0`` -> ``dla1``): the tensor stays in the DLA's layout in DRAM, so no
    reformat, but the next core's task waits for this one's (the switch overhead's submission
    and synchronisation).
    """
    kinds = {_kind(src), _kind(dst)}
    if kinds == {"dla"} and src != dst and "dla" not in (src, dst):  # two named cores
        return SWITCH_OVERHEAD_SECONDS
    if len(kinds) == 1:
        return 0.0
    if "cpu" in kinds:
        # Host <-> device copy across the memory system, one pass each way.
        return GPU_LAUNCH_SECONDS + 2 * tensor_bytes / target.dram_bytes_per_s
    reformat = GPU_LAUNCH_SECONDS + 2 * tensor_bytes / (
        target.dram_bytes_per_s * REFORMAT_EFFICIENCY
    )
    transfer = 0.0
    return SWITCH_OVERHEAD_SECONDS + reformat + transfer


def concurrent_slowdown(device: str, others: Sequence[str] | Mapping[str, float]) -> float:
    """Factor by which ``device``'s time grows while ``others`` (device names: ``gpu``,
    ``dla0``, ``dla1``) run at the same time and share the DRAM.

    1 + sum over co-runners of (this device's sensitivity x the co-runner's demand x the
    fraction of the time it runs), with the constants above; ``others`` as a mapping gives that
    fraction per co-runner (a sequence: each runs all the time). E.g. a DLA beside the GPU and
    the other DLA, both always busy: 1 + 0.175 + 0.175 * 0.5.
    """
    me = _kind(device)
    if me not in ("gpu", "dla"):
        raise ConfigError(f"no contention model for device '{device}': expected gpu or dla*")
    pairs = list(others.items()) if isinstance(others, Mapping) else [(o, 1.0) for o in others]
    factor = 1.0
    for other, fraction in pairs:
        kind = _kind(other)
        demand = DLA_DEMAND_RELATIVE_TO_GPU if kind == "dla" else 1.0 if kind == "gpu" else 0.0
        demand *= min(max(float(fraction), 0.0), 1.0)
        if me == "dla":
            factor += DLA_BESIDE_GPU * demand
        else:
            factor += GPU_BESIDE_DLA / DLA_DEMAND_RELATIVE_TO_GPU * demand
    return factor


def _kind(device: str) -> str:
    return "dla" if device.startswith("dla") else device


def transition_cost_for(
    target: TargetSpec, precision: str = "fp16", native_io: frozenset[str] = frozenset()
) -> Callable[[Tensor, str, str], float]:
    """``transition_cost(tensor, src, dst)`` for ``partitioner.assign.partition``: boundary
    tensors cross in the DLA's format at ``precision`` (FP32 requests cross as FP16).

    ``native_io``: graph inputs/outputs bound in a DLA-native layout (trtexec's
    ``--inputIOFormats=fp16:chw16`` and the like): the DLA reads/writes them in place, so
    their GPU<->DLA crossing pays the switch overhead only, no reformat kernel."""
    bpe = BYTES_PER_ELEMENT["fp16" if precision == "fp32" else precision]

    def cost(tensor: Tensor, src: str, dst: str) -> float:
        if tensor.name in native_io and {_kind(src), _kind(dst)} == {"gpu", "dla"}:
            return SWITCH_OVERHEAD_SECONDS
        return transition_seconds(_numel(tensor) * bpe, target, src, dst)

    return cost
