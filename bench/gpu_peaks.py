"""The GPU's reference rates for bench/gpu_vs_torch.py: the register-only mma.sync peaks
(m16n8k16 FP16, m16n8k32 INT8; gpu_kernels/mma_peak.cu), cuBLAS's FP16 GEMM, and the achieved
rate of the main convolution tactics a built runner chose."""

from __future__ import annotations

import time


def _register_peak(ctx, mod, kernel: str, ops_per_mma: int, ctas_per_sm: int = 8) -> float:
    """Tera-ops/s of a register-only mma.sync loop kernel (8 chains per warp, see mma_peak.cu),
    ``ctas_per_sm`` CTAs of 256 threads per SM (8: as many warps as the SM holds)."""
    from gpu_kernels.driver import KArgs

    f = mod.function(kernel)
    sink = ctx.alloc(4096)
    iters, blocks, threads = 4096, ctx.info.sm_count * ctas_per_sm, 256
    args = KArgs.make([sink], [iters])
    ctx.launch(f, (blocks, 1, 1), threads, args)
    ctx.synchronize()
    t0 = time.perf_counter()
    for _ in range(5):
        ctx.launch(f, (blocks, 1, 1), threads, args)
    ctx.synchronize()
    dt = (time.perf_counter() - t0) / 5
    ctx.free(sink)
    return blocks * threads / 32 * iters * 8 * ops_per_mma / dt / 1e12


def mma_peak_tflops() -> dict[str, float]:
    import torch

    from gpu_kernels.compile import compile_kernel
    from gpu_kernels.driver import Context

    ctx = Context()
    mod = ctx.load_module(compile_kernel("mma_peak.cu", f"sm_{ctx.info.arch}").cubin)
    peaks = {
        "mma_sync_peak_tflops": round(_register_peak(ctx, mod, "mma_peak", 2 * 16 * 8 * 16), 1)
    }
    # The same loop with only the warps a big tile leaves resident: one CTA of 8 warps per SM
    # (2 a scheduler: the 256x128 "_f2" tiles) and two (the 128x128 tiles). Whether the tensor
    # cores can be kept busy at that occupancy at all, with no memory traffic.
    for n in (1, 2):
        peaks[f"mma_sync_peak_tflops_{n}cta_per_sm"] = round(
            _register_peak(ctx, mod, "mma_peak", 2 * 16 * 8 * 16, ctas_per_sm=n), 1)
    try:  # m16n8k32 s8: 2 * 16 * 8 * 32 integer ops per instruction
        peaks["mma_sync_int8_peak_tops"] = round(
            _register_peak(ctx, mod, "mma_peak_int8", 2 * 16 * 8 * 32), 1
        )
    except Exception as exc:  # report, keep benchmarking the rest
        peaks["mma_sync_int8_peak_tops"] = f"error: {type(exc).__name__}: {exc}"[:200]
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    peaks["cublas_fp16_8192_tflops"] = round(
        2 * 8192**3 / ((time.perf_counter() - t0) / 10) / 1e12, 1
    )
    return peaks


def conv_tflops(runner, top: int = 8) -> list[dict]:
    """Achieved T(FL)OPS of the chosen tactic for the largest convolutions of a built runner."""
    out, seen = [], set()
    for ln in runner.program.launches:
        p = ln.problem
        # "mma" in kind: the FP16 tactics and the INT8 ones, whatever suffix their kind has
        if (
            p is None
            or ln.tactic is None
            or "mma" not in str(ln.tactic.kind)
            or p.signature() in seen
        ):
            continue
        seen.add(p.signature())
        times = runner.timing_cache.times(p.signature(), runner.arch_key)
        if ln.tactic.name not in times:
            continue
        ms = times[ln.tactic.name]
        out.append(
            {
                "layer": ln.layer,
                "problem": p.signature(),
                "tactic": ln.tactic.name,
                "gflop": round(p.flops / 1e9, 3),
                "ms": round(ms, 4),
                "tflops": round(p.flops / (ms * 1e-3) / 1e12, 1),
            }
        )
    return sorted(out, key=lambda r: -r["gflop"])[:top]
