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
    assert {t.tile for t in tactics} == {t for t in MMA_TILES if t.bk == 32 or p.gemm_k >= 256}
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
