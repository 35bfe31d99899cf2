"""Hardware configuration of each DLA version, as the emulator and its latency model see it.

Every figure carries where it comes from (``/work/shared/reference/dla.md`` section numbers).
Figures marked UNCONFIRMED are defaults a user can override (``DlaConfig.with_overrides`` takes
the same keys a YAML ``dla:`` block would). Nothing here is fitted to measured latencies.

DLA 1 is Xavier's (open NVDLA ``nv_full``); DLA 2 is Orin's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from partitioner.errors import ConfigError


@dataclass(frozen=True)
class EngineRates:
    """Convolution-core geometry at one precision: one atomic operation per cycle.

    An atomic operation multiplies ``atomic_c`` input channels by ``atomic_k`` kernels at one
    output pixel and one kernel tap, so ``macs_per_cycle == atomic_c * atomic_k``.
    """

    atomic_c: int
    atomic_k: int

    @property
    def macs_per_cycle(self) -> int:
        return self.atomic_c * self.atomic_k


@dataclass(frozen=True)
class DlaConfig:
    """One DLA core. Throughputs are per DLA clock cycle; bytes are bytes."""

    version: int
    name: str
    int8: EngineRates
    fp16: EngineRates
    # Convolution pipes working on one layer in parallel (Orin: 2 CPIPEs for INT8 convolution,
    # SDP, pooling and LRN; FP16 convolution runs on the single Rubik engine).
    int8_conv_pipes: int
    fp16_conv_pipes: int
    # Convolution buffer: TensorRT's CBUF check uses 16 banks of 32 KiB (dla.md §1.2, §2.1).
    cbuf_banks: int
    cbuf_bank_bytes: int
    # Post-processing engines, elements per cycle (dla.md §2.3: nv_full SDP 16, PDP/CDP 8).
    sdp_elems_per_cycle: int
    pdp_elems_per_cycle: int
    cdp_elems_per_cycle: int
    # Rubik (reshape/transpose) and BDMA (copies), bytes per cycle.
    rubik_bytes_per_cycle: int
    bdma_bytes_per_cycle: int
    # Depth-wise convolution: channels processed per cycle and kernel tap.
    depthwise_channels_per_cycle: int
    # Memory interfaces: DBB (to DRAM) and SRAMIF (to on-chip SRAM), bytes per cycle.
    dbb_bytes_per_cycle: int
    sramif_bytes_per_cycle: int
    # Managed on-chip SRAM (dla.md §1.4: Orin 1 MiB/core; TRT default pool 1 MiB). TensorRT
    # documents it as RAM "used by DLA to communicate within a layer": intermediate tensors
    # between engine ops live in local DRAM, so the latency model streams them from DRAM.
    sram_bytes: int
    # Fraction of the DRAM peak a DLA's streams achieve: LPDDR sustains roughly 60-80 % of its
    # peak (refresh, bank conflicts, read/write turnarounds); we take the low end because the
    # DLA interleaves weight, input, output and second-operand streams and shares the DRAM
    # with the other DLA, the GPU and the CPUs. Not measured (UNCONFIRMED).
    dram_efficiency: float
    # Fixed costs. Per engine op: pipeline drain/fill between dependent hardware layers
    # (CDMA -> CSC -> CMAC(7 stages) -> CACC -> SDP -> write) plus one DRAM round trip for
    # the first fetch. Per loadable: a cuDLA submission (dla.md §1.3: 45-74 us measured per
    # GPU->DLA switch on Xavier).
    op_fixed_cycles: int
    op_fixed_seconds: float
    loadable_fixed_seconds: float
    # What the version can do at all.
    has_softmax: bool
    max_loadables_per_core: int
    hwc4_row_align_bytes: int

    def conv_pipes(self, precision: str) -> int:
        return self.int8_conv_pipes if precision == "int8" else self.fp16_conv_pipes

    def macs_per_cycle(self, precision: str) -> int:
        return self.rates(precision).macs_per_cycle * self.conv_pipes(precision)

    @property
    def cbuf_bytes(self) -> int:
        return self.cbuf_banks * self.cbuf_bank_bytes

    def rates(self, precision: str) -> EngineRates:
        """Convolution geometry for ``"int8"`` or ``"fp16"``; the DLA has no FP32."""
        if precision == "int8":
            return self.int8
        if precision == "fp16":
            return self.fp16
        raise ConfigError(f"DLA {self.version} has no precision '{precision}'; use fp16 or int8")

    def with_overrides(self, **values: Any) -> DlaConfig:
        """A copy with some fields replaced (keys as in a YAML ``dla:`` block)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ConfigError(
                f"unknown DLA hardware field(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        for key in ("int8", "fp16"):
            if isinstance(values.get(key), dict):
                values[key] = EngineRates(**values[key])
        return dataclasses.replace(self, **values)


# Xavier: open NVDLA nv_full (dla.md §2.3; nvdla/hw nvdlav1 README, unit_description.rst):
# atomic-C 64, atomic-K 32 (INT8) / 16 (FP16), 2048 INT8 / 1024 FP16 MACs, matching 5.7 TOPS
# at 1395.2 MHz (5.7e12 / 2 / 1.3952e9 = 2043 MACs per cycle, §2.1). CBUF 16 x 32 KiB.
# SDP 16, PDP/CDP 8 elements per cycle (nv_full / nv_large spec). DBB 512 bits (nv_full).
XAVIER = DlaConfig(
    version=1,
    name="DLA 1.0 (Xavier, nv_full)",
    int8=EngineRates(atomic_c=64, atomic_k=32),
    fp16=EngineRates(atomic_c=64, atomic_k=16),
    int8_conv_pipes=1,
    fp16_conv_pipes=1,
    cbuf_banks=16,
    cbuf_bank_bytes=32 * 1024,
    sdp_elems_per_cycle=16,
    pdp_elems_per_cycle=8,
    cdp_elems_per_cycle=8,
    rubik_bytes_per_cycle=32,
    bdma_bytes_per_cycle=32,
    depthwise_channels_per_cycle=32,  # UNCONFIRMED: one kernel lane per channel (atomic-K)
    dbb_bytes_per_cycle=64,
    sramif_bytes_per_cycle=64,
    sram_bytes=1 << 20,
    dram_efficiency=0.6,
    op_fixed_cycles=256,
    op_fixed_seconds=0.5e-6,
    loadable_fixed_seconds=50e-6,
    has_softmax=False,
    max_loadables_per_core=16,
    hwc4_row_align_bytes=32,
)

# Orin: 8192 INT8 MACs per cycle dense (INFERRED in dla.md §2.1 from 40 sparse TOPS for 2 DLAs
# at 614.4 MHz and 90 TOPS at 1369.6 MHz). NVIDIA's cuDLA layer-wise profiling notes
# (Deep-Learning-Accelerator-SW, samples/cuDLA/cuDLALayerwiseStatsHybrid/README.md) say Orin's
# DLA has 2 "CPIPEs" (convolution pipes: INT8 convolution, SDP point-wise ops, pooling, LRN),
# a Rubik engine that also runs FP16 convolutions and format conversions, and a BDMA engine for
# copies. So INT8 is 2 pipes x (atomic-C 64 x atomic-K 64) = 8192 MACs; 2:4 sparsity along C
# "needs C > 64" (§1.4) fits atomic-C 64. FP16 convolution on Rubik: Orin "trades FP16
# convolution compute for INT8" and FP16 conv "may be up to 2x slower than Xavier" (§2.1,
# §1.2), i.e. half of Xavier's 1024 at similar clocks: 512 FP16 MACs per cycle (32 x 16),
# UNCONFIRMED, overridable. Each CPIPE carries an nv_full-sized SDP (16 elements/cycle) and
# PDP/CDP (8), so the DLA has twice that. The depth-wise processor is taken to handle atomic-C
# channels per cycle (UNCONFIRMED). DBB 512 bits as nv_full's (INFERRED).
ORIN = DlaConfig(
    version=2,
    name="DLA 2.0 (Orin)",
    int8=EngineRates(atomic_c=64, atomic_k=64),
    fp16=EngineRates(atomic_c=32, atomic_k=16),
    int8_conv_pipes=2,
    fp16_conv_pipes=1,
    cbuf_banks=16,
    cbuf_bank_bytes=32 * 1024,
    sdp_elems_per_cycle=32,
    pdp_elems_per_cycle=16,
    cdp_elems_per_cycle=16,
    rubik_bytes_per_cycle=64,
    bdma_bytes_per_cycle=64,
    depthwise_channels_per_cycle=64,
    dbb_bytes_per_cycle=64,
    sramif_bytes_per_cycle=64,
    sram_bytes=1 << 20,
    dram_efficiency=0.6,
    op_fixed_cycles=256,
    op_fixed_seconds=0.5e-6,
    loadable_fixed_seconds=50e-6,
    has_softmax=True,
    max_loadables_per_core=16,
    hwc4_row_align_bytes=64,
)

DLA_CONFIGS: dict[int, DlaConfig] = {1: XAVIER, 2: ORIN}


def dla_config(version: int) -> DlaConfig:
    """The built-in configuration of DLA ``version`` (1 = Xavier, 2 = Orin)."""
    try:
        return DLA_CONFIGS[int(version)]
    except (KeyError, ValueError, TypeError):
        raise ConfigError(f"unknown DLA version {version!r}; known: 1 (Xavier), 2 (Orin)") from None
