"""Compiled kernels of one GPU, loaded on first use: ``lib.function("pool2d_f16")``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpu_kernels.catalog import mma_module, source_of
from gpu_kernels.compile import compile_kernel
from gpu_kernels.driver import Context, Module
from gpu_kernels.tactics import ConvTactic

ModuleKey = tuple[str, tuple[str, ...]]


class KernelLibrary:
    """``prebuilt`` maps (source, options) to cubins compiled ahead of time for this arch (a
    plan's cross-built kernels); anything else is NVRTC-compiled on first use."""

    def __init__(
        self,
        ctx: Context,
        nvrtc_major: int | None = None,
        prebuilt: Mapping[ModuleKey, bytes] | None = None,
    ) -> None:
        self.ctx = ctx
        self.arch = f"sm_{ctx.info.arch}"
        self.nvrtc_major = nvrtc_major
        self.prebuilt = dict(prebuilt or {})
        self._modules: dict[ModuleKey, Module] = {}
        self.compile_seconds = 0.0
        self.prebuilt_loaded = 0

    def module(self, source: str, options: tuple[str, ...] = ()) -> Module:
        key = (source, tuple(options))
        mod = self._modules.get(key)
        if mod is None:
            cubin = self.prebuilt.get(key)
            if cubin is not None:
                self.prebuilt_loaded += 1
            else:
                import time

                t0 = time.perf_counter()
                cubin = compile_kernel(source, self.arch, options, self.nvrtc_major).cubin
                self.compile_seconds += time.perf_counter() - t0
            mod = self._modules[key] = self.ctx.load_module(cubin)
        return mod

    def function(self, name: str, smem: int = 0) -> Any:
        return self.module(source_of(name)).function(name, smem)

    def conv_mma(self, tactic: ConvTactic) -> Any:
        src, opts = mma_module(tactic)
        return self.module(src, opts).function(tactic.kernel, tactic.smem_bytes)
