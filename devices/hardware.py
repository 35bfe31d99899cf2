"""What a target is made of: its GPU, its DLA, its power modes and its memory.

These are plain frozen records. ``targets/catalog.py`` fills them from board YAML files; the
cost models and support tables in ``devices/`` read them. Per-architecture throughput (what one
SM does per clock) lives here, so a board file only states counts and clocks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from dla_sim.hardware import DLA_CONFIGS
from partitioner.errors import ConfigError

Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class ArchThroughput:
    """Dense arithmetic per SM per clock (a multiply-add counts as 2 operations).

    ``tensor_*`` is the tensor-core rate a well-shaped GEMM/conv reaches; ``simt_*`` is the
    CUDA-core rate (depthwise convs, elementwise work). Sources: sm_72 8 SMs x 1377 MHz x 1024
    = 11.3 TFLOPS FP16 / 22.6 TOPS INT8 (Xavier GPU "~11 TF / ~22 TOPS", gpu.md §3); sm_87
    16 SMs x 1.3 GHz x 2048 = 42.6 TFLOPS FP16 dense, 85 TOPS INT8, 5.3 TFLOPS FP32 (Orin tech
    brief, gpu.md §3); sm_90 132 SMs x 1.83 GHz x 4096 = 989 TFLOPS FP16 (H100 SXM datasheet).
    """

    fp32: float
    tensor_fp16: float
    tensor_int8: float

    @property
    def simt_fp16(self) -> float:
        return 2.0 * self.fp32  # half2 arithmetic

    def ops_per_clock(self, precision: Precision, tensor: bool = True) -> float:
        if precision == "fp32":
            return self.fp32
        if not tensor:
            # INT8 on CUDA cores (dp4a) runs about as fast as half2; be conservative.
            return self.simt_fp16
        return self.tensor_fp16 if precision == "fp16" else self.tensor_int8


ARCH_THROUGHPUT: dict[str, ArchThroughput] = {
    "sm_70": ArchThroughput(fp32=128, tensor_fp16=1024, tensor_int8=512),  # no INT8 MMA
    "sm_72": ArchThroughput(fp32=128, tensor_fp16=1024, tensor_int8=2048),
    "sm_75": ArchThroughput(fp32=128, tensor_fp16=1024, tensor_int8=2048),
    "sm_80": ArchThroughput(fp32=128, tensor_fp16=2048, tensor_int8=4096),
    "sm_86": ArchThroughput(fp32=256, tensor_fp16=1024, tensor_int8=2048),
    "sm_87": ArchThroughput(fp32=256, tensor_fp16=2048, tensor_int8=4096),
    "sm_89": ArchThroughput(fp32=256, tensor_fp16=1024, tensor_int8=2048),
    "sm_90": ArchThroughput(fp32=256, tensor_fp16=4096, tensor_int8=8192),
}

# The newest NVRTC major that still compiles for an arch: CUDA 13 dropped Volta (sm_70/72),
# "CUDA 13.0 supports all NVIDIA architectures from Turing through Grace Blackwell"; NVRTC 13
# rejects --gpu-architecture=sm_72 (measured, gpu.md §0).
NVRTC_MAX_MAJOR: dict[str, int] = {"sm_70": 12, "sm_72": 12}


def arch_throughput(arch: str) -> ArchThroughput:
    """Throughput of ``arch``; an unknown newer arch gets the closest older known one."""
    if arch in ARCH_THROUGHPUT:
        return ARCH_THROUGHPUT[arch]
    try:
        number = int(arch.removeprefix("sm_").rstrip("a"))
    except ValueError:
        raise ConfigError(
            f"unknown GPU architecture '{arch}': expected e.g. sm_72, sm_87"
        ) from None
    older = [a for a in ARCH_THROUGHPUT if int(a[3:]) <= number]
    if not older:
        raise ConfigError(f"GPU architecture '{arch}' is older than Tandem supports (sm_70+)")
    return ARCH_THROUGHPUT[max(older, key=lambda a: int(a[3:]))]


@dataclass(frozen=True)
class GpuSpec:
    """An integrated (or host) GPU. Clocks and active SMs are per power mode name."""

    arch: str
    sm_count: int
    clock_hz: Mapping[str, float]
    active_sms: Mapping[str, int] = field(default_factory=dict)
    cuda_cores: int = 0
    l2_bytes: int = 0
    name: str = ""

    @property
    def throughput(self) -> ArchThroughput:
        return arch_throughput(self.arch)

    def sms(self, mode: str) -> int:
        """SMs powered in ``mode`` (nvpmodel gates TPCs in low-power modes)."""
        return int(self.active_sms.get(mode, self.sm_count))

    def peak_ops_per_s(self, precision: Precision, mode: str, tensor: bool = True) -> float:
        ops = self.throughput.ops_per_clock(precision, tensor)
        return ops * self.sms(mode) * float(self.clock_hz[mode])


def _dla_defaults(version: int) -> dict[str, float]:
    """A DLA version's figures as the emulator's configuration (``dla_sim/hardware.py``, where
    each number and its source live) states them; a board file may override any of them.

    ``atomic_c`` / ``atomic_k`` are the INT8 geometry (the cost roofline rounds both precisions
    to it); the MAC rates include Orin's 2 INT8 convolution pipes."""
    cfg = DLA_CONFIGS[version]
    return {
        "int8_macs_per_cycle": cfg.macs_per_cycle("int8"),
        "fp16_macs_per_cycle": cfg.macs_per_cycle("fp16"),
        "cbuf_banks": cfg.cbuf_banks,
        "cbuf_bank_bytes": cfg.cbuf_bank_bytes,
        "atomic_c": cfg.int8.atomic_c,
        "atomic_k": cfg.int8.atomic_k,
        # Xavier's SoC has 4 MiB of SRAM shared by 2 DLA + 2 PVA (dla.md §1.4); the emulator
        # models the 1 MiB managed pool TensorRT gives one DLA by default.
        "sram_bytes": 4 * 1024 * 1024 if version == 1 else cfg.sram_bytes,
        "dbb_bytes_per_cycle": cfg.dbb_bytes_per_cycle,
    }


DLA_VERSION_DEFAULTS: dict[int, dict[str, float]] = {v: _dla_defaults(v) for v in DLA_CONFIGS}


@dataclass(frozen=True)
class DlaSpec:
    """The DLA cores of a SoC (all cores identical). Clocks are per power mode name."""

    version: int
    cores: int
    clock_hz: Mapping[str, float]
    int8_macs_per_cycle: int
    fp16_macs_per_cycle: int
    cbuf_banks: int
    cbuf_bank_bytes: int
    atomic_c: int
    atomic_k: int
    sram_bytes: int
    dbb_bytes_per_cycle: int

    def macs_per_cycle(self, precision: Precision) -> int:
        if precision == "int8":
            return self.int8_macs_per_cycle
        if precision == "fp16":
            return self.fp16_macs_per_cycle
        raise ConfigError("the DLA has no FP32: use fp16 or int8")

    @staticmethod
    def for_version(
        version: int, cores: int, clock_hz: Mapping[str, float], **overrides: float
    ) -> DlaSpec:
        if version not in DLA_VERSION_DEFAULTS:
            raise ConfigError(f"unknown DLA version {version}: expected 1 (Xavier) or 2 (Orin)")
        values = {**DLA_VERSION_DEFAULTS[version], **overrides}
        return DlaSpec(version, cores, dict(clock_hz), **{k: int(v) for k, v in values.items()})


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode: clock caps and the DRAM bandwidth they leave."""

    name: str
    gpu_clock_hz: float
    gpu_sms: int
    dla_clock_hz: float | None
    dram_bytes_per_s: float
    budget_w: float | None = None  # the mode's power budget (nvpmodel), None where unknown


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for p in str(text).split("."):
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def version_at_least(have: str | None, need: str) -> bool:
    """``"10.3" >= "8.6.12"``; an unknown version (None) counts as new enough."""
    if have is None:
        return True
    return _version_tuple(have) >= _version_tuple(need)


@dataclass(frozen=True)
class TargetSpec:
    """A board (or the host) at one power mode. ``power_mode`` is the selected mode."""

    name: str
    soc: str
    gpu: GpuSpec | None
    dla: DlaSpec | None
    power_modes: tuple[PowerMode, ...]
    default_power_mode: str
    power_mode: str
    jetpack: str | None
    cuda: str | None
    l4t: str | None
    tensorrt: str | None = None
    dla_sw: str | None = None
    source: str = ""
    notes: tuple[str, ...] = ()

    # ----- derived -----------------------------------------------------------------------
    @property
    def cuda_major(self) -> int | None:
        return _version_tuple(self.cuda)[0] if self.cuda else None

    @property
    def nvrtc_major(self) -> int | None:
        """NVRTC major to compile this board's kernels with: the board's CUDA major (its driver
        loads cubins of that major), capped where a newer NVRTC dropped the arch (sm_72: 12)."""
        if self.gpu is None or self.cuda_major is None:
            return None
        return min(self.cuda_major, NVRTC_MAX_MAJOR.get(self.gpu.arch, 99))

    @property
    def mode(self) -> PowerMode:
        for m in self.power_modes:
            if m.name == self.power_mode:
                return m
        raise ConfigError(f"target '{self.name}' has no power mode '{self.power_mode}'")

    @property
    def dram_bytes_per_s(self) -> float:
        return self.mode.dram_bytes_per_s

    @property
    def dram_bandwidth(self) -> dict[str, float]:
        """DRAM bytes/s per power mode name."""
        return {m.name: m.dram_bytes_per_s for m in self.power_modes}

    @property
    def gpu_clock_hz(self) -> float:
        return self.mode.gpu_clock_hz

    @property
    def dla_clock_hz(self) -> float | None:
        return self.mode.dla_clock_hz

    @property
    def dla_devices(self) -> tuple[str, ...]:
        return tuple(f"dla{i}" for i in range(self.dla.cores)) if self.dla else ()

    def power_mode_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.power_modes)

    def with_power_mode(self, mode: str | None) -> TargetSpec:
        """The same target at ``mode`` (case-insensitive; ``MODE_15W`` == ``15W``)."""
        if mode is None:
            return dataclasses.replace(self, power_mode=self.default_power_mode)
        wanted = normalise_mode(mode)
        for m in self.power_modes:
            if normalise_mode(m.name) == wanted:
                return dataclasses.replace(self, power_mode=m.name)
        raise ConfigError(
            f"target '{self.name}' has no power mode '{mode}': "
            f"expected one of {', '.join(self.power_mode_names())}"
        )


def normalise_mode(name: str) -> str:
    n = name.strip().upper()
    return n.removeprefix("MODE_")


# ----- the host as a pseudo-target -------------------------------------------------------------


def probe_local_gpu() -> tuple[GpuSpec, float, str | None] | None:
    """The first local CUDA GPU as (GpuSpec at mode "default", DRAM bytes/s, CUDA driver
    version such as "13.0"), or None."""
    try:
        from cuda.bindings import driver  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        (err,) = driver.cuInit(0)
        if err != driver.CUresult.CUDA_SUCCESS:
            return None
        err, count = driver.cuDeviceGetCount()
        if err != driver.CUresult.CUDA_SUCCESS or count == 0:
            return None
        err, dev = driver.cuDeviceGet(0)
        attr = driver.CUdevice_attribute

        def get(a: object) -> int:
            e, v = driver.cuDeviceGetAttribute(a, dev)
            return int(v) if e == driver.CUresult.CUDA_SUCCESS else 0

        major = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
        minor = get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
        sms = get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        clock_khz = get(attr.CU_DEVICE_ATTRIBUTE_CLOCK_RATE)
        mem_khz = get(attr.CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)
        bus_bits = get(attr.CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)
        l2 = get(attr.CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)
        err, raw_name = driver.cuDeviceGetName(64, dev)
        ok = driver.CUresult.CUDA_SUCCESS
        name = raw_name.split(b"\0", 1)[0].decode(errors="replace") if err == ok else ""
        err, version = driver.cuDriverGetVersion()
        cuda = f"{version // 1000}.{version % 1000 // 10}" if err == ok else None
    except Exception:  # a broken driver install is "no GPU" for planning purposes
        return None
    gpu = GpuSpec(
        arch=f"sm_{major}{minor}",
        sm_count=sms,
        clock_hz={"default": clock_khz * 1e3},
        l2_bytes=l2,
        name=name,
    )
    # DDR: two transfers per memory clock.
    return gpu, 2.0 * mem_khz * 1e3 * bus_bits / 8, cuda


def host_target(cpu_dram_bytes_per_s: float = 20e9) -> TargetSpec:
    """The machine Tandem runs on: its first CUDA GPU if any, else CPU only; never a DLA."""
    probed = probe_local_gpu()
    gpu, bandwidth, cuda = probed if probed else (None, cpu_dram_bytes_per_s, None)
    mode = PowerMode(
        "default",
        gpu_clock_hz=float(gpu.clock_hz["default"]) if gpu else 0.0,
        gpu_sms=gpu.sm_count if gpu else 0,
        dla_clock_hz=None,
        dram_bytes_per_s=bandwidth,
    )
    return TargetSpec(
        name="host",
        soc=gpu.name if gpu else "cpu",
        gpu=gpu,
        dla=None,
        power_modes=(mode,),
        default_power_mode="default",
        power_mode="default",
        jetpack=None,
        cuda=cuda,
        l4t=None,
        source="<host>",
        notes=("probed from the local machine" if gpu else "no CUDA GPU found: CPU only",),
    )
