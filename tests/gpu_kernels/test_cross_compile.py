"""CI (no GPU): every kernel module compiles for Xavier (sm_72), Orin (sm_87) and H100 (sm_90).

sm_72 needs a CUDA <= 12 NVRTC (CUDA 13 dropped Volta); the others use the newest installed.
"""

from __future__ import annotations

import pytest

from gpu_kernels.catalog import SOURCES, all_modules
from gpu_kernels.compile import (
    CompileError,
    available_majors,
    choose_major,
    compile_kernel,
)

ARCHS = ("sm_72", "sm_87", "sm_90")

pytestmark = pytest.mark.skipif(not available_majors(), reason="no NVRTC library installed")


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source,options", all_modules(), ids=lambda v: str(v))
def test_every_module_compiles(source: str, options: tuple[str, ...], arch: str, tmp_path,
                               monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path))
    mod = compile_kernel(source, arch, options)
    assert mod.cubin[:4] == b"\x7fELF"  # a cubin is an ELF image
    assert mod.arch == arch
    mma = ("conv_mma_i8",) if "-DINT8=1" in options else ("conv_mma_f16",)
    for prefix in SOURCES.get(source, mma):
        assert prefix.encode() in mod.cubin  # the kernel symbols are in it


def test_cache_returns_the_same_cubin_without_nvrtc(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path))
    first = compile_kernel("pool.cu", "sm_87")
    second = compile_kernel("pool.cu", "sm_87")
    assert not first.from_cache and second.from_cache
    assert first.cubin == second.cubin
    other = compile_kernel("pool.cu", "sm_87", ("-DUNUSED=1",))
    assert not other.from_cache  # options are part of the key


def test_compile_error_carries_the_nvrtc_log(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path))
    with pytest.raises(CompileError) as info:
        compile_kernel('extern "C" __global__ void k() { undefined_thing(); }', "sm_87")
    assert "undefined_thing" in info.value.log
    assert "undefined_thing" in str(info.value)


def test_cuda_core_compiles_where_its_nvrtc_fits_the_target(tmp_path, monkeypatch) -> None:
    """cuda.core.Program builds every target whose NVRTC major is the one cuda-bindings
    loaded; another major (Xavier's sm_72 beside NVRTC 13) goes through ctypes. Both give a
    loadable cubin with the same kernel symbols."""
    from gpu_kernels.compile import cuda_core_nvrtc

    monkeypatch.setenv("TANDEM_CACHE_DIR", str(tmp_path))
    core = cuda_core_nvrtc()
    if core is None:
        pytest.skip("cuda-bindings loads no NVRTC here")
    arch = "sm_87" if core[0] >= 12 else "sm_72"
    mod = compile_kernel("conv_mma.cu", arch, ("-DBM=32", "-DBN=64", "-DWARPS_M=1"))
    assert choose_major(arch) != core[0] or mod.frontend == "cuda.core"
    assert b"conv_mma_f16" in mod.cubin and mod.nvrtc_version == core
    others = [m for m in available_majors() if m != core[0] and m <= 12]  # sm_72-capable
    if not others:
        pytest.skip(f"only NVRTC {core[0]} is installed: no ctypes-only major to compare")
    old = compile_kernel("conv_mma.cu", "sm_72", ("-DBM=32", "-DBN=64", "-DWARPS_M=1"),
                         nvrtc_major=others[0])
    assert old.frontend == "ctypes" and old.nvrtc_version[0] == others[0]
    assert b"conv_mma_f16" in old.cubin


def test_sm72_uses_a_pre_13_nvrtc() -> None:
    assert choose_major("sm_72") <= 12
    with pytest.raises(CompileError, match="cannot compile for sm_72"):
        choose_major("sm_72", 13)


def test_every_graph_kernel_waits_for_its_predecessor_first() -> None:
    """On sm_90 kernels are launched programmatically (devices/gpu.py): one that read memory
    before griddepcontrol.wait could see its predecessor's output half written. Every entry
    point must be a KERNEL(...) (which waits first) or call await_previous_kernel() first."""
    import re

    from gpu_kernels.compile import KERNEL_DIR

    bodies = 0
    # (headers too: conv_tiled.cuh holds the entries that conv_tiled.cu and conv_tiled_d2s.cu
    # compile)
    for path in sorted([*KERNEL_DIR.glob("*.cu"), *KERNEL_DIR.glob("*.cuh")]):
        if path.name == "mma_peak.cu":  # micro-benchmarks, launched alone, never in a graph
            continue
        if path.name == "common.cuh":  # the KERNEL macro: checked below
            continue
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"__global__[^{;]*\{", text):
            bodies += 1
            first = text[m.end():].lstrip()
            assert first.startswith("await_previous_kernel();"), (
                f"{path.name}: kernel '{m.group(0)}' does not wait for its predecessor first")
        if path.suffix == ".cu":  # a module defines entries itself or through a header
            headers = "".join((KERNEL_DIR / h).read_text(encoding="utf-8")
                              for h in re.findall(r'#include "(\w+\.cuh)"', text))
            assert any(e in t for e in ("__global__", "KERNEL(") for t in (text, headers)), \
                path.name
    assert bodies >= 3  # conv_mma, conv_tiled x2 spell their entries out
    common = (KERNEL_DIR / "common.cuh").read_text(encoding="utf-8")
    macro = common[common.index("#define KERNEL("):]
    assert macro.index("await_previous_kernel();") < macro.index("__VA_ARGS__")


def test_an_unknown_cuda_major_is_one_error_not_a_key_error() -> None:
    """A target file claiming CUDA 99 (found by the fuzzer: it raised KeyError)."""
    from gpu_kernels.compile import NvrtcNotFoundError, choose_major

    with pytest.raises(NvrtcNotFoundError, match="CUDA major 99 is not supported"):
        choose_major("sm_87", 99)


@pytest.mark.parametrize("arch", ["sm_72", "sm_87", "sm_90"])
def test_every_kernel_of_a_module_reports_its_registers(arch) -> None:
    """gpu_kernels.cubin reads each entry point's registers and stack from the cubin."""
    from gpu_kernels.cubin import kernel_resources

    res = kernel_resources(compile_kernel("se.cu", arch).cubin)
    assert len(res) == 14 and all(k.startswith(SOURCES["se.cu"]) for k in res), sorted(res)
    assert all(0 < r.registers <= 255 and r.stack_bytes >= 0 for r in res.values())


@pytest.mark.parametrize("arch", ["sm_72", "sm_87", "sm_90"])
def test_the_se_kernels_keep_four_ctas_an_sm(arch) -> None:
    """se_scale's FC and gate once took it to 94 registers on sm_87 (2 CTAs of 256 threads an
    SM, where it had 4): the 16-byte SE kernels stay at <= 64 registers, se_dw_pool's single
    pixels too. Its strips (DW_STRIP pixels x 8 channels of accumulators, a row of weights and
    its input columns a thread) take it to 2 CTAs an SM: <= 128."""
    from gpu_kernels.cubin import kernel_resources

    res = kernel_resources(compile_kernel("se.cu", arch).cubin)
    for name in ("se_scale_x8_f16", "se_scale_x8_f16_i8", "se_dw_pool_px1_x8_f16"):
        assert res[name].registers <= 64, (name, res[name])
    assert res["se_dw_pool_x8_f16"].registers <= 128, res["se_dw_pool_x8_f16"]


@pytest.mark.parametrize("arch", ["sm_72", "sm_87", "sm_90"])
def test_single_pixel_depthwise_kernels_are_lighter_than_their_strips(arch) -> None:
    """Each depthwise kernel's single-pixel twin (_px1_, for grids that do not fill the GPU)
    holds one pixel's accumulators and input columns: fewer registers than the strip, and no
    stack beyond the strip's (no spills)."""
    from gpu_kernels.cubin import kernel_resources

    res = {**kernel_resources(compile_kernel("conv_simt.cu", arch).cubin),
           **kernel_resources(compile_kernel("se.cu", arch).cubin)}
    twins = {k: k.replace("_px1_", "_") for k in res if "_px1_" in k}
    assert len(twins) == 8 and all(k.startswith(("conv_dw", "se_dw_pool")) for k in twins)
    for px1, strip in twins.items():
        assert res[px1].registers <= res[strip].registers, (px1, res[px1], res[strip])
        assert res[px1].stack_bytes <= res[strip].stack_bytes, (px1, res[px1], res[strip])
