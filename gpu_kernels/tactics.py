"""Convolution / GEMM tactics: the candidate tile configurations and how one is chosen.

A tactic is one way to run a convolution: the tensor-core implicit GEMM with a given block tile,
warp layout, pipeline depth, split-K factor and element type (FP16 m16n8k16 or INT8 m16n8k32),
or the direct SIMT kernel. On a GPU the builder
times the candidates (CUDA events) and keeps the fastest; without one (a cross-build) the choice
comes from the timing cache or, failing that, from :func:`heuristic`, a small occupancy model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ConvProblem:
    """One convolution's shape, NHWC; a GEMM is a 1x1 convolution with H = W = 1."""

    n: int
    h: int
    w: int
    c: int
    k: int
    p: int
    q: int
    r: int
    s: int
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    dtype: str = "float16"  # "float16" | "float32" | "int8" (INT8 in, FP16 or INT8 out)
    # > 0: a grouped convolution run in bundles of groups by the tensor-core kernel
    # (conv_mma.cu): output channels a bundle; ``c`` is then the input channels a bundle reads
    # and ``groups`` 1 (each bundle is a dense convolution with block-diagonal weights)
    bundle: int = 0

    @property
    def gemm_m(self) -> int:
        return self.n * self.p * self.q

    @property
    def x_channels(self) -> int:
        """Channels of a pixel of x: every bundle's where bundled, else ``c``."""
        return self.k // self.bundle * self.c if self.bundle else self.c

    @property
    def gemm_k(self) -> int:
        return self.r * self.s * self.c // self.groups

    @property
    def flops(self) -> int:
        return 2 * self.gemm_m * self.k * self.gemm_k

    def conv_ints(self, act: int = 0, res_after: int = 0, xcs: int = 0, ycs: int = 0,
                  rcs: int = 0) -> list[int]:
        """KArgs i[0:21] of every convolution kernel (ConvArgs in common.cuh). ``xcs`` / ``ycs``
        / ``rcs``: elements between pixels of x / y / the residual (0: dense x and y, no
        residual); ``act``: an ACT_* code."""
        return [self.n, self.h, self.w, self.c, self.k, self.p, self.q, self.r, self.s,
                self.stride[0], self.stride[1], self.pad[0], self.pad[1], self.dilation[0],
                self.dilation[1], self.bundle or self.groups, act, res_after,
                xcs or self.x_channels, ycs or self.k, rcs]

    def mma_ints(self, splits: int, res_i8: int = 0, out_i8: int = 0) -> list[int]:
        """conv_mma's i[21:32] after :meth:`conv_ints`: split-K factor, INT8 residual / output
        flags, and the FastDiv (common.cuh) multipliers and shifts for dividing by Q, P, C and
        S, so that its prologue decodes pixels and filter taps without divisions."""
        return [splits, res_i8, out_i8] + [
            v for d in (self.q, self.p, self.c, self.s) for v in fast_divisor(d)]

    def signature(self) -> str:
        """Stable text key for the timing cache."""
        return (
            f"conv n{self.n} h{self.h} w{self.w} c{self.c} k{self.k} p{self.p} q{self.q} "
            f"r{self.r} s{self.s} st{self.stride[0]}x{self.stride[1]} "
            f"pd{self.pad[0]}x{self.pad[1]} dl{self.dilation[0]}x{self.dilation[1]} "
            f"g{self.groups} {self.dtype}" + (f" b{self.bundle}" if self.bundle else "")
        )


def fast_divisor(d: int) -> tuple[int, int]:
    """(multiplier as a signed 32-bit int, shift) with n // d == (umulhi(n, multiplier) + n)
    >> shift for every 0 <= n < 2**31 (Granlund-Montgomery; FastDiv in common.cuh)."""
    if d < 1:
        raise ValueError(f"fast_divisor: divisor must be >= 1, got {d}")
    shift = (d - 1).bit_length()
    mul = ((1 << 32) * ((1 << shift) - d)) // d + 1
    return (mul - (1 << 32) if mul >= 1 << 31 else mul), shift


@dataclass(frozen=True)
class ConvTactic:
    kind: str  # "mma" (tensor cores, conv_mma.cu) or "direct" (SIMT: conv_tiled.cu, conv_simt.cu)
    bm: int = 0
    bn: int = 0
    warps_m: int = 0
    warps_n: int = 0
    stages: int = 0
    splits: int = 1
    bk: int = 32  # k-tile in elements (a row of 64 bytes is BK 32 in FP16, 64 in INT8)
    dtype: str = "f16"  # element type of the tensor-core path: "f16" | "i8"
    # one CTA per SM with all the registers it wants, fragments double-buffered ("_f2"): for
    # warp tiles that would spill at two CTAs' 128 registers a thread
    wide: bool = False
    # stream-K ("_sk", -DSTREAMK in conv_mma.cu): one CTA per resident slot, each taking an equal
    # share of all tiles' k-tiles, so no wave is left part-empty; pieces of a tile are combined
    # by its last one to finish. Never with split-K.
    sk: bool = False
    # the epilogue writes a kernel == stride ConvTranspose's output upsampled in place ("_d2s",
    # -DD2S in conv_mma.cu); never timed on its own: it is the chosen tile with this set
    d2s: bool = False

    @property
    def kernel(self) -> str:
        return "conv_direct" if self.kind == "direct" else f"conv_mma_{self.dtype}"

    @property
    def name(self) -> str:
        if self.kind == "direct":
            return "direct"
        bk = "" if self.bk == _DEFAULT_BK[self.dtype] else f"_b{self.bk}"
        dt = "" if self.dtype == "f16" else f"_{self.dtype}"
        wide = "_f2" if self.wide else ""
        sk = "_sk" if self.sk else ""
        d2s = "_d2s" if self.d2s else ""
        return (f"mma_{self.bm}x{self.bn}{bk}_w{self.warps_m}x{self.warps_n}_s{self.stages}"
                f"_k{self.splits}{wide}{sk}{dt}{d2s}")

    @property
    def tile(self) -> ConvTactic:
        """The same tactic with split-K 1: tactics sharing a tile share a compiled module."""
        return replace(self, splits=1)

    @property
    def threads(self) -> int:
        return 256 if self.kind == "direct" else 32 * self.warps_m * self.warps_n

    @property
    def smem_bytes(self) -> int:
        if self.kind == "direct":
            return 0
        row = (self.bk + 16 // _ELEM_BYTES[self.dtype]) * _ELEM_BYTES[self.dtype]  # +16 B pad
        return self.stages * (self.bm + self.bn) * row

    def compile_options(self) -> tuple[str, ...]:
        if self.kind == "direct":
            return ()
        opts: tuple[str, ...] = (f"-DBM={self.bm}", f"-DBN={self.bn}", f"-DWARPS_M={self.warps_m}",
                f"-DWARPS_N={self.warps_n}", f"-DSTAGES={self.stages}", f"-DBK={self.bk}")
        if self.wide:
            opts += ("-DMIN_CTAS=1", "-DFRAG_BUFS=2")
        if self.sk:
            opts += ("-DSTREAMK=1",)
        opts += ("-DINT8=1",) if self.dtype == "i8" else ()
        return opts + (("-DD2S=1",) if self.d2s else ())

    @staticmethod
    def from_name(name: str) -> ConvTactic:
        if name == "direct":
            return DIRECT
        parts = name.split("_")[1:]
        d2s = parts[-1] == "d2s"
        if d2s:
            parts.pop()
        dtype = "f16"
        if parts[-1] in _ELEM_BYTES:
            dtype = parts.pop()
        sk = parts[-1] == "sk"
        if sk:
            parts.pop()
        wide = parts[-1] == "f2"
        if wide:
            parts.pop()
        bk = _DEFAULT_BK[dtype]
        if parts[1].startswith("b"):
            bk = int(parts.pop(1)[1:])
        tile, warps, stages, splits = parts
        bm, bn = (int(v) for v in tile.split("x"))
        wm, wn = (int(v) for v in warps[1:].split("x"))
        return ConvTactic("mma", bm, bn, wm, wn, int(stages[1:]), int(splits[1:]), bk, dtype,
                          wide, sk, d2s)

    @property
    def resident_per_sm(self) -> int:
        """CTAs of this tile one SM holds at once: "_f2" tiles take the registers of one, other
        256-thread tiles are bounded to two (__launch_bounds__), smaller ones by shared memory
        (228 KB an SM on sm_80+, 1 KB of it reserved per CTA)."""
        if self.wide:
            return 1
        by_smem = (228 * 1024) // (self.smem_bytes + 1024)
        return max(1, min(2 if self.threads == 256 else 4, by_smem))

    def grid(self, problem: ConvProblem, sm_count: int) -> tuple[int, int, int]:
        """The launch grid: a CTA per tile and split, or with stream-K one per resident slot
        (never more than there are k-tiles to share out)."""
        if self.sk:
            work = self.tiles(problem) * -(-problem.gemm_k // self.bk)
            return (min(work, sm_count * self.resident_per_sm), 1, 1)
        return (-(-problem.gemm_m // self.bm), -(-problem.k // self.bn), self.splits)

    def workspace_floats(self, problem: ConvProblem, sm_count: int) -> int:
        """FP32 partial sums: split-K's (a whole output per split), stream-K's (two tiles per
        CTA), else none."""
        if self.sk:
            return 2 * self.grid(problem, sm_count)[0] * self.bm * self.bn
        return self.splits * problem.gemm_m * problem.k if self.splits > 1 else 0

    def tiles(self, problem: ConvProblem) -> int:
        """Output tiles of ``problem``: also the per-tile counters (int32, zero between
        launches) that the pieces of a split or stream-K tile count on."""
        return -(-problem.gemm_m // self.bm) * -(-problem.k // self.bn)


_ELEM_BYTES = {"f16": 2, "i8": 1}
_DEFAULT_BK = {"f16": 32, "i8": 64}  # 64-byte smem rows either way
DIRECT = ConvTactic("direct")
# The tensor-core tile configurations (each one compiled module per arch): those the cost model
# prices (its heuristic picks among them), then those only the autotuner picks.
_MODELLED_TILES: tuple[ConvTactic, ...] = (
    ConvTactic("mma", 64, 32, 2, 1, 4),  # narrow layers (K = 32: stems, YOLO's first blocks)
    ConvTactic("mma", 128, 32, 4, 1, 3),
    ConvTactic("mma", 32, 64, 1, 2, 4),
    ConvTactic("mma", 64, 64, 2, 2, 3),
    ConvTactic("mma", 64, 128, 2, 2, 3),
    ConvTactic("mma", 128, 64, 2, 2, 3),
    ConvTactic("mma", 128, 128, 2, 4, 3),
    ConvTactic("mma", 32, 64, 1, 2, 4, bk=64),
    ConvTactic("mma", 64, 64, 2, 2, 4, bk=64),
    ConvTactic("mma", 128, 64, 2, 2, 3, bk=64),
    ConvTactic("mma", 128, 128, 2, 4, 3, bk=64),
    ConvTactic("mma", 128, 256, 2, 4, 3, bk=32),
    # deeper pipelines: at batch 1 a CTA is alone on its SM and waits on L2 latency
    ConvTactic("mma", 32, 64, 1, 2, 6),
    ConvTactic("mma", 64, 64, 2, 2, 6),
)
_MEASURED_ONLY: tuple[ConvTactic, ...] = (
    # Large-batch tiles the autotuner measures but the cost model never picks: their efficiency
    # is not in _TILE_EFFICIENCY. Chosen by bench/conv_tiles.py on ResNet-50's batch-32 shapes
    # (H200, 2026-12-02: the three that cut the network's summed best time most, BENCHMARKS.md).
    ConvTactic("mma", 128, 128, 2, 4, 3, bk=64, wide=True),
    ConvTactic("mma", 256, 128, 4, 2, 3, wide=True),  # 64x64 warp tiles
    ConvTactic("mma", 128, 128, 2, 4, 4),
    # Narrow layers (<= 64 output channels: UNet's, YOLO's first stages, MobileNet's projections):
    # the three that cut the summed time most in bench/conv_tiles.py --network narrow (H200,
    # 2026-12-02, 29 shapes of unet-small, yolov5s and mobilenetv2 at batch 32: -9.9 %).
    ConvTactic("mma", 256, 32, 4, 1, 3),  # 64x32 warp tiles: half the loader work per mma
    ConvTactic("mma", 256, 64, 8, 1, 3),
    ConvTactic("mma", 64, 16, 2, 1, 4),  # 16 or fewer output channels
)
MMA_TILES = _MODELLED_TILES + _MEASURED_ONLY
# The INT8 tiles: the same block shapes with k-tiles of the same bytes (twice the elements).
MMA_TILES_I8: tuple[ConvTactic, ...] = tuple(
    replace(t, bk=2 * t.bk, dtype="i8") for t in MMA_TILES
)
_MEASURED_ONLY_I8 = tuple(replace(t, bk=2 * t.bk, dtype="i8") for t in _MEASURED_ONLY)
# Tiles also listed as stream-K ("_sk") where their plain grid fills at most half the SMs and
# the reduction is long. Measured on the H200 (bench/conv_tiles.py, ResNet-50 at batch 32,
# BENCHMARKS.md): on the 7x7 3x3 layers (52 tiles of 128x128, 72-144 k-tiles) it is 37-38 %
# faster than the same tile's plain grid and 18-20 % faster than the best plain tactic, but
# where the plain grid has 98 tiles or more it was slower in 92 of 96 cases (up to 57 %): the
# FP32 partials (128 KB written and read back per piece of a 256x128 tile) and the final
# combine cost more than the idle SMs.
# Measured only, like _MEASURED_ONLY; INT8 twins as above.
_STREAM_K_F16 = (ConvTactic("mma", 256, 128, 4, 2, 3, wide=True),
                 ConvTactic("mma", 128, 128, 2, 4, 3, bk=64, wide=True),
                 ConvTactic("mma", 128, 128, 2, 4, 3), ConvTactic("mma", 128, 128, 2, 4, 4))
STREAM_K_TILES: tuple[ConvTactic, ...] = tuple(
    replace(t, sk=True) for t in _STREAM_K_F16) + tuple(
    replace(t, sk=True, bk=2 * t.bk, dtype="i8") for t in _STREAM_K_F16)
_TILE_EFFICIENCY = {(64, 32): 0.4, (128, 32): 0.55, (32, 64): 0.45, (64, 64): 0.65,
                    (64, 128): 0.8, (128, 64): 0.8, (128, 128): 1.0, (128, 256): 1.0}


def mma_eligible(problem: ConvProblem, arch: int) -> bool:
    """Tensor cores need sm_80+, FP16 or INT8, one group and 16-byte channel chunks
    (C % 8 == 0 in FP16, C % 16 == 0 in INT8)."""
    chunk = {"float16": 8, "int8": 16}.get(problem.dtype)
    return arch >= 80 and chunk is not None and problem.groups == 1 and problem.c % chunk == 0


def candidates(problem: ConvProblem, arch: int) -> list[ConvTactic]:
    """Every tactic that can run ``problem`` on ``arch``."""
    if not mma_eligible(problem, arch):
        if problem.dtype == "int8":
            raise ValueError(f"no INT8 tactic runs {problem.signature()} on sm_{arch}")
        return [DIRECT]
    out: list[ConvTactic] = []
    tiles = MMA_TILES_I8 if problem.dtype == "int8" else MMA_TILES
    for t in tiles:
        if problem.bundle % t.bn:
            continue  # a tile straddling two bundles would read the wrong input channels
        if t.bk > _DEFAULT_BK[t.dtype] and problem.gemm_k < 8 * _DEFAULT_BK[t.dtype]:
            continue  # a deep k-tile only pays off on long reductions
        ktiles = math.ceil(problem.gemm_k / t.bk)
        out.append(t)
        ctas = t.tiles(problem)
        if replace(t, sk=True) in STREAM_K_TILES and ktiles >= 16 \
                and 2 * ctas <= 132 * t.resident_per_sm:
            out.append(replace(t, sk=True))
        if not _modelled(t):
            continue  # measured on large grids only, where split-K is never listed
        for splits in (2, 4, 8, 16):
            # split-K only where the grid is small and every split keeps >= 4 k-tiles
            if ctas * splits <= 2 * 132 and ktiles // splits >= 4:
                out.append(replace(t, splits=splits))
    return out


def estimate_seconds(problem: ConvProblem, tactic: ConvTactic, sm_count: int,
                     tflops: float = 300.0) -> float:
    """Occupancy-aware estimate: waves of CTAs x per-CTA work / tile efficiency."""
    if tactic.kind == "direct":
        return problem.flops / (tflops * 1e12 * 0.05) + 3e-6
    ctas = tactic.tiles(problem)
    per_sm = max(1, min(4, (200 * 1024) // max(1, tactic.smem_bytes)))
    blocks = ctas * tactic.splits
    waves = math.ceil(blocks / (sm_count * per_sm))
    resident = min(per_sm, math.ceil(blocks / sm_count))  # CTAs sharing one SM per wave
    cta_flops = 2 * tactic.bm * tactic.bn * math.ceil(problem.gemm_k / tactic.splits)
    eff = _TILE_EFFICIENCY[(tactic.bm, tactic.bn)] * (2.0 if tactic.dtype == "i8" else 1.0)
    t = waves * cta_flops * resident / (tflops * 1e12 / sm_count * eff) + 3e-6
    if tactic.splits > 1:  # partials written and read back in FP32 + one more launch
        t += (problem.gemm_m * problem.k * 4 * tactic.splits * 2) / 2e12 + 2e-6
    return t


def heuristic(problem: ConvProblem, arch: int, sm_count: int) -> ConvTactic:
    """The tactic the cost model prefers (used when nothing was measured)."""
    modelled = [t for t in candidates(problem, arch) if _modelled(t)]
    return min(modelled, key=lambda t: estimate_seconds(problem, t, sm_count))


def _modelled(t: ConvTactic) -> bool:
    """Whether the cost model knows the tile's efficiency (else only the autotuner picks it)."""
    return not t.sk and t.tile not in _MEASURED_ONLY and t.tile not in _MEASURED_ONLY_I8
