"""Which compiled module defines which kernel: the list every build and the CI cross-compile use."""

from __future__ import annotations

from dataclasses import replace

from gpu_kernels.tactics import MMA_TILES, MMA_TILES_I8, STREAM_K_TILES, ConvTactic

# source file -> kernel-name prefixes it defines (each with _f32 / _f16 suffixes or as listed)
SOURCES: dict[str, tuple[str, ...]] = {
    "conv_simt.cu": ("conv_direct", "conv_dw", "conv_transpose_direct"),
    # (before conv_tiled.cu: source_of takes the first source whose prefix fits)
    "conv_tiled_d2s.cu": ("conv_tiled_d2s",),
    "conv_tiled.cu": ("conv_tiled",),
    "elementwise.cu": ("fused", "copy", "space_to_depth"),
    "pool.cu": ("pool2d", "global_avgpool"),
    "se.cu": ("se_pool", "se_scale", "se_dw_pool"),
    "norm.cu": ("softmax_lastdim", "layernorm_lastdim", "groupnorm"),
    "reduce.cu": ("reduce_axes", "softmax_axis"),
    "indexing.cu": ("pad_nd", "gather_rows", "grid_sample"),
    "resize.cu": ("resize_nhwc",),
    "gemm.cu": ("bmm",),
    "rnn.cu": ("rnn",),
    "mma_peak.cu": ("mma_peak",),
}
MMA_SOURCE = "conv_mma.cu"


def source_of(kernel: str) -> str:
    """The ``.cu`` file that defines ``kernel`` (e.g. ``"pool2d_f16"``)."""
    for src, prefixes in SOURCES.items():
        if any(kernel == p or kernel.startswith(p + "_") for p in prefixes):
            return src
    raise KeyError(kernel)


def all_modules() -> list[tuple[str, tuple[str, ...]]]:
    """Every (source, options) pair a build may compile: the fixed sources and each MMA tile
    (FP16 and INT8, and the stream-K ones), plain and with the transposed convolution's
    upsampling epilogue (any tile may be the one chosen for a ConvTranspose's GEMM)."""
    mods: list[tuple[str, tuple[str, ...]]] = [(src, ()) for src in SOURCES]
    mods += [
        (MMA_SOURCE, replace(t, d2s=d2s).compile_options())
        for d2s in (False, True)
        for t in MMA_TILES + MMA_TILES_I8 + STREAM_K_TILES
    ]
    return mods


def mma_module(tactic: ConvTactic) -> tuple[str, tuple[str, ...]]:
    return MMA_SOURCE, tactic.tile.compile_options()
