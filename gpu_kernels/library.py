"""Compiled kernels of one GPU, loaded on first use: ``lib.function("pool2d_f16")``."""

from __future__ import annotations

from typing import Any

from gpu_kernels.catalog import mma_module, source_of
from gpu_kernels.compile import compile_kernel
from gpu_kernels.driver import Context, Module
from gpu_kernels.tactics import ConvTactic


class KernelLibrary:
    def __init__(self, ctx: Context, nvrtc_major: int | None = None) -> None:
        self.ctx = ctx
        self.arch = f"sm_{ctx.info.arch}"
        self.nvrtc_major = nvrtc_major
        self._modules: dict[tuple[str, tuple[str, ...]], Module] = {}
        self.compile_seconds = 0.0

    def module(self, source: str, options: tuple[str, ...] = ()) -> Module:
        key = (source, options)
        mod = self._modules.get(key)
        if mod is None:
            import time

            t0 = time.perf_counter()
            compiled = compile_kernel(source, self.arch, options, self.nvrtc_major)
            self.compile_seconds += time.perf_counter() - t0
            mod = self._modules[key] = self.ctx.load_module(compiled.cubin)
        return mod

    def function(self, name: str, smem: int = 0) -> Any:
        return self.module(source_of(name)).function(name, smem)

    def conv_mma(self, tactic: ConvTactic) -> Any:
        src, opts = mma_module(tactic)
        return self.module(src, opts).function("conv_mma_f16", tactic.smem_bytes)


def elementwise_grid(n: int, block: int = 256, max_blocks: int = 65535 * 8) -> tuple[int, int, int]:
    """A 1-D grid for grid-stride kernels over ``n`` elements."""
    return (max(1, min((n + block - 1) // block, max_blocks)), 1, 1)
