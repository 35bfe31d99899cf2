"""GPU: every tensor-core tactic (tile x split-K) computes the same convolution, and autotuning
fills the timing cache that a later build reuses without timing."""

from __future__ import annotations

import numpy as np
import pytest

from gpu_kernels.tactics import MMA_TILES, ConvProblem, ConvTactic, candidates
from gpu_kernels.timing_cache import TimingCache
from tests.devices.gpu_cases import Case, build, feeds_for, graph_of, reference, rel_err

pytestmark = pytest.mark.gpu


def conv_case(n: int, c: int, h: int, k: int, r: int, stride: int, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    return Case(f"conv_n{n}c{c}h{h}k{k}r{r}s{stride}", "Conv", {"x": (n, c, h, h + 2)},
                {"w": (rng.standard_normal((k, c, r, r)) * 0.1).astype(np.float32),
                 "b": rng.standard_normal(k).astype(np.float32)},
                dict(kernel_shape=[r, r], strides=[stride] * 2, pads=[r // 2] * 4))


def problem_of(graph) -> ConvProblem:
    from gpu_kernels.lowering import lower

    prog = lower(graph, "fp16", arch=90)
    return next(ln.problem for ln in prog.launches if ln.problem is not None)


SHAPES = [(1, 64, 7, 72, 3, 1), (2, 16, 19, 40, 3, 2), (1, 256, 14, 256, 1, 1)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_tactic_matches_the_reference(shape) -> None:
    from devices.gpu import GpuRunner

    graph = graph_of(build(conv_case(*shape, seed=3)))
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)["y0"]
    p = problem_of(graph)
    tactics = candidates(p, 90)
    assert {t.tile for t in tactics if not t.sk} == \
        {t for t in MMA_TILES if t.bk == 32 or p.gemm_k >= 256}
    for t in tactics:
        cache = TimingCache()
        cache.record(p.signature(), "sm_90", t.name, 0.0)  # force this tactic
        with GpuRunner(graph, "fp16", timing_cache=cache, autotune=False) as runner:
            if runner.arch_key != "sm_90":
                pytest.skip("tactic forcing assumes an sm_90 GPU")
            got = runner.infer(feeds)["y0"]
        err = rel_err(got, ref)
        assert err <= 1e-2, f"{t.name}: rel err {err:.2e}"


def test_autotune_fills_the_cache_and_a_rebuild_uses_it(tmp_path) -> None:
    from devices.gpu import GpuRunner

    graph = graph_of(build(conv_case(1, 64, 14, 64, 3, 1, seed=4)))
    path = tmp_path / "timing.json"
    with GpuRunner(graph, "fp16", timing_cache=path, autotune=True) as first:
        assert set(first.tactic_source.values()) == {"autotune"}
    cache = TimingCache.load(path)
    assert len(cache) == 1
    with GpuRunner(graph, "fp16", timing_cache=path, autotune=True) as second:
        assert set(second.tactic_source.values()) == {"cache"}
    name = cache.best(problem_of(graph).signature(), second.arch_key)
    assert ConvTactic.from_name(name).name == name


def deconv_case(n: int, c: int, h: int, ko: int, f: int, seed: int) -> Case:
    rng = np.random.default_rng(seed)
    return Case(f"deconv_n{n}c{c}h{h}k{ko}f{f}", "ConvTranspose", {"x": (n, c, h, h + 1)},
                {"w": (rng.standard_normal((c, ko, f, f)) * 0.1).astype(np.float32),
                 "b": rng.standard_normal(ko).astype(np.float32)},
                dict(kernel_shape=[f, f], strides=[f, f]))


# (N, C, H, Ko, F): split-K 2 and 4 among the candidates (C = 512, a small grid); taps
# straddling N-tiles (Ko = 24); 8 columns straddling two taps (Ko = 5: per-column stores); 4x4 / 4
DECONV_SHAPES = [(1, 512, 4, 24, 2), (2, 64, 7, 5, 2), (1, 32, 5, 16, 4)]


@pytest.mark.parametrize("shape", DECONV_SHAPES, ids=str)
def test_every_tactic_upsamples_a_deconv_in_its_epilogue(shape) -> None:
    """The tile chosen for a kernel == stride ConvTranspose's GEMM runs with the -DD2S
    epilogue: every candidate (tile x split-K) gives ONNX's output."""
    from dataclasses import replace

    from devices.gpu import GpuRunner

    graph = graph_of(build(deconv_case(*shape, seed=5)))
    feeds = feeds_for(graph)
    ref = reference(graph, feeds)["y0"]
    p = problem_of(graph)
    tactics = candidates(p, 90)
    assert len(tactics) > 1 and (shape[1] < 512 or {t.splits for t in tactics} == {1, 2, 4})
    for t in tactics:
        cache = TimingCache()
        cache.record(p.signature(), "sm_90", t.name, 0.0)  # force this tactic
        with GpuRunner(graph, "fp16", timing_cache=cache, autotune=False) as runner:
            if runner.arch_key != "sm_90":
                pytest.skip("tactic forcing assumes an sm_90 GPU")
            got = runner.infer(feeds)["y0"]
            ran = [ln.tactic for ln in runner.program.launches if ln.tactic is not None]
        assert [(replace(r, d2s=False), r.d2s) for r in ran] == [(t, True)]  # t, upsampling
        err = rel_err(got, ref)
        assert err <= 1e-2, f"{t.name}: rel err {err:.2e}"


def test_int8_tiles_upsample_into_a_channel_slice() -> None:
    """conv_mma_i8 -DD2S launched directly (the lowering runs ConvTranspose in FP16 only): every
    INT8 candidate tile x split-K stores the dequantised GEMM (+ bias, Relu) upsampled into the
    first Ko channels of pixels Ko + 8 apart, and leaves the other 8 channels alone."""
    from dataclasses import replace

    from gpu_kernels.driver import Context, KArgs
    from gpu_kernels.library import KernelLibrary

    ctx = Context(0)
    if ctx.info.arch < 80:
        pytest.skip("the INT8 tensor-core kernel needs sm_80+")
    lib = KernelLibrary(ctx)
    n, h, w, c, f, ko = 1, 4, 5, 512, 2, 24
    ycs, k = ko + 8, f * f * ko
    p = ConvProblem(n, h, w, c, k, h, w, 1, 1, dtype="int8")
    rng = np.random.default_rng(11)
    x = rng.integers(-127, 128, (n * h * w, c), dtype=np.int8)
    wq = rng.integers(-127, 128, (k, c), dtype=np.int8)
    dq = rng.uniform(1e-4, 3e-4, k).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    gemm = np.maximum(x.astype(np.float64) @ wq.T.astype(np.float64) * dq + bias, 0.0)
    want = gemm.reshape(n, h, w, f, f, ko).transpose(0, 1, 3, 2, 4, 5).reshape(-1, ko)
    sentinel = np.float16(-7.0)
    tactics = candidates(p, ctx.info.arch)
    assert any(t.splits > 1 for t in tactics)
    bufs = [ctx.alloc(v.nbytes) for v in (x, wq, bias, dq)]
    y = ctx.alloc(n * h * f * w * f * ycs * 2)
    sms = ctx.info.sm_count
    ws = ctx.alloc(max(t.workspace_floats(p, sms) for t in tactics) * 4)
    counters = ctx.alloc(4096)
    try:
        for b, v in zip(bufs, (x, wq, bias, dq), strict=True):
            ctx.upload(b, v)
        ctx.memset(counters, 0, 4096)
        for t in tactics:
            ctx.upload(y, np.full(n * h * f * w * f * ycs, sentinel, np.float16))
            ints = p.conv_ints(1, 0, c, ycs) + p.mma_ints(t.splits)  # act 1: Relu
            ints[15] = f
            d2s = replace(t, d2s=True)
            args = KArgs.make([bufs[0], bufs[1], bufs[2], 0, y, ws, counters, bufs[3]], ints,
                              [0.0, 0.0, 0.0, 0.0])
            ctx.launch(lib.conv_mma(d2s), t.grid(p, sms), d2s.threads, args, d2s.smem_bytes)
            ctx.synchronize()
            got = ctx.download(y, (n * h * f * w * f, ycs), np.float16).astype(np.float64)
            err = np.abs(got[:, :ko] - want).max() / np.abs(want).max()
            assert err <= 1e-3, f"{d2s.name}: rel err {err:.2e}"
            assert (got[:, ko:] == sentinel).all(), f"{d2s.name} wrote outside its slice"
    finally:
        ctx.synchronize()
        for b in (*bufs, y, ws, counters):
            ctx.free(b)


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_stream_k_matches_at_every_grid_size_and_replays_bit_for_bit(dtype) -> None:
    """conv_mma -DSTREAMK launched directly on a 3x3 convolution with a residual and Relu, at
    grids from 1 CTA to one per k-tile (so tiles are cut into 1 to many pieces, at every
    offset), against float64 NumPy; a second launch gives the same bits (the pieces are added
    in a fixed order, whichever finishes last) and finds the tile counters back at zero."""
    from gpu_kernels.driver import Context, KArgs
    from gpu_kernels.library import KernelLibrary
    from gpu_kernels.tactics import STREAM_K_TILES

    ctx = Context(0)
    if ctx.info.arch < 80:
        pytest.skip("the tensor-core kernel needs sm_80+")
    lib = KernelLibrary(ctx)
    n, h, c, k = 2, 20, 64, 200  # 800 pixels, 200 channels: partial tiles on both sides
    p = ConvProblem(n, h, h, c, k, h, h, 3, 3, (1, 1), (1, 1), dtype=dtype)
    rng = np.random.default_rng(12)
    if dtype == "int8":
        x = rng.integers(-127, 128, (n, h, h, c), dtype=np.int8)
        wt = rng.integers(-127, 128, (k, 3, 3, c), dtype=np.int8)
        dq = rng.uniform(1e-4, 3e-4, k).astype(np.float32)
    else:
        x = rng.standard_normal((n, h, h, c)).astype(np.float16)
        wt = (rng.standard_normal((k, 3, 3, c)) * 0.05).astype(np.float16)
        dq = np.ones(k, np.float32)
    res = rng.standard_normal((n * h * h, k)).astype(np.float16)
    bias = rng.standard_normal(k).astype(np.float32)
    xp = np.pad(x.astype(np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.stack([xp[:, r:r + h, s:s + h, :] for r in range(3) for s in range(3)], axis=3)
    gemm = cols.reshape(n * h * h, -1) @ wt.reshape(k, -1).T.astype(np.float64)
    want = np.maximum(gemm * dq + bias + res, 0.0)
    bufs = [ctx.alloc(v.nbytes) for v in (x, wt, bias, res, dq)]
    y = ctx.alloc(n * h * h * k * 2)
    for t in (t for t in STREAM_K_TILES if t.dtype == ("i8" if dtype == "int8" else "f16")):
        work = t.tiles(p) * -(-p.gemm_k // t.bk)
        grids = sorted({1, 3, t.tiles(p), 2 * t.tiles(p) + 1, work // 2, work})
        ws = ctx.alloc(2 * max(grids) * t.bm * t.bn * 4)
        counters = ctx.alloc(t.tiles(p) * 4)
        try:
            for b, v in zip(bufs, (x, wt, bias, res, dq), strict=True):
                ctx.upload(b, v.reshape(-1))
            ctx.memset(counters, 0, t.tiles(p) * 4)
            ints = p.conv_ints(1, 0, c, k, k) + p.mma_ints(1)  # act 1: Relu, residual after
            args = KArgs.make([bufs[0], bufs[1], bufs[2], bufs[3], y, ws, counters, bufs[4]],
                              ints, [0.0, 0.0, 0.0, 0.0])
            func = lib.conv_mma(t)
            for g in grids:
                runs = []
                for _ in range(2):
                    ctx.memset(y, 0, n * h * h * k * 2)
                    ctx.launch(func, (g, 1, 1), t.threads, args, t.smem_bytes)
                    ctx.synchronize()
                    runs.append(ctx.download(y, (n * h * h, k), np.float16))
                err = np.abs(runs[0].astype(np.float64) - want).max() / np.abs(want).max()
                assert err <= 2e-3, f"{t.name} on {g} CTAs: rel err {err:.2e}"
                assert runs[0].tobytes() == runs[1].tobytes(), f"{t.name} on {g} CTAs: replay"
        finally:
            ctx.synchronize()
            ctx.free(ws)
            ctx.free(counters)
    for b in (*bufs, y):
        ctx.free(b)
