"""CI (no GPU): tactic candidates, names, the cost-model choice and the timing cache file."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gpu_kernels.tactics import (
    DIRECT,
    MMA_TILES,
    ConvProblem,
    ConvTactic,
    candidates,
    estimate_seconds,
    heuristic,
)
from gpu_kernels.timing_cache import TimingCache, TimingCacheError

SMALL = ConvProblem(1, 7, 7, 512, 512, 7, 7, 3, 3, (1, 1), (1, 1))  # ResNet layer4, batch 1
BIG = ConvProblem(32, 56, 56, 64, 64, 56, 56, 3, 3, (1, 1), (1, 1))


@pytest.mark.parametrize("problem,arch,expect_mma", [
    (SMALL, 90, True), (SMALL, 87, True), (SMALL, 72, False),
    (ConvProblem(1, 8, 8, 3, 16, 8, 8, 3, 3), 90, False),  # C % 8 != 0
    (ConvProblem(1, 8, 8, 32, 32, 8, 8, 3, 3, groups=32), 90, False),  # depthwise
    (ConvProblem(1, 8, 8, 32, 32, 8, 8, 3, 3, dtype="float32"), 90, False),
])
def test_candidates_follow_the_hardware_rules(problem, arch, expect_mma) -> None:
    cands = candidates(problem, arch)
    assert (cands != [DIRECT]) == expect_mma
    for t in cands:
        assert ConvTactic.from_name(t.name) == t  # names round-trip through the cache
        assert t.kind == "direct" or t.smem_bytes <= 227 * 1024


def test_split_k_only_for_small_grids_and_long_reductions() -> None:
    assert any(t.splits > 1 for t in candidates(SMALL, 90))
    assert all(t.splits == 1 for t in candidates(BIG, 90))
    assert {t.tile for t in candidates(BIG, 90) if not t.sk} == set(MMA_TILES)


def test_stream_k_is_listed_for_few_waves_and_only_measured() -> None:
    from gpu_kernels.tactics import STREAM_K_TILES

    layer3 = ConvProblem(32, 14, 14, 256, 256, 14, 14, 3, 3, (1, 1), (1, 1))  # 50 tiles of 256
    huge = ConvProblem(32, 224, 224, 64, 64, 224, 224, 3, 3, (1, 1), (1, 1))
    for problem in (layer3, replace(layer3, dtype="int8")):
        sk = [t for t in candidates(problem, 87) if t.sk]
        assert sk and set(sk) <= set(STREAM_K_TILES)
        for t in sk:
            assert ConvTactic.from_name(t.name) == t and t.name.endswith(("_sk", "_sk_i8"))
            assert "-DSTREAMK=1" in t.compile_options() and t.splits == 1
            assert t.grid(problem, 132) == (132 * t.resident_per_sm, 1, 1)
            assert t.workspace_floats(problem, 132) == 2 * 132 * t.resident_per_sm * t.bm * t.bn
        assert not heuristic(problem, 87, 16).sk and not heuristic(problem, 90, 132).sk
    assert not any(t.sk for t in candidates(huge, 90))  # many waves: nothing left to balance
    # ResNet-50's 28x28 3x3 at batch 32: 98 tiles of 256x128, 196 of 128x128, where the
    # partials cost more than the idle SMs (H200, bench/conv_tiles.py)
    layer2 = ConvProblem(32, 28, 28, 128, 128, 28, 28, 3, 3, (1, 1), (1, 1))
    assert not any(t.sk for t in candidates(layer2, 90))
    assert any(t.sk for t in candidates(SMALL, 90))  # batch 1: 4 tiles, 144 k-tiles each
    tiny = ConvProblem(1, 4, 4, 64, 64, 4, 4, 1, 1)  # 2 k-tiles: too few to share out
    assert not any(t.sk for t in candidates(tiny, 90))
    one = STREAM_K_TILES[0]
    assert one.grid(tiny, 132) == (one.tiles(tiny) * 2, 1, 1)  # never more CTAs than k-tiles


@pytest.mark.parametrize("tiles,ktiles,ctas", [(98, 36, 132), (50, 72, 132), (8, 18, 144),
                                               (7, 9, 1), (3, 5, 4), (264, 8, 264)])
def test_stream_k_partition_covers_every_k_tile_once(tiles, ktiles, ctas) -> None:
    """conv_mma.cu's stream-K arithmetic, restated: CTA c owns iterations
    [c*T/G, (c+1)*T/G); sk_owner(i) is the CTA holding iteration i; a partial piece's slot is
    2c if it starts its CTA's range, else 2c + 1; a tile's pieces are CTAs first..first+pieces-1.
    Every (tile, k-tile) is done once, each tile's pieces are the CTAs the formula names, and
    no two pieces share a slot."""
    total = tiles * ktiles

    def start(c: int) -> int:
        return c * total // ctas

    def owner(i: int) -> int:
        return ((i + 1) * ctas - 1) // total

    done, slots = [], {}
    for c in range(ctas):
        it, end = start(c), start(c + 1)
        while it < end:
            tile = it // ktiles
            kt0 = it - tile * ktiles
            kt1 = min(ktiles, kt0 + end - it)
            done += [(tile, k) for k in range(kt0, kt1)]
            first = owner(tile * ktiles)
            pieces = owner((tile + 1) * ktiles - 1) - first + 1
            assert first <= c < first + pieces
            if kt1 - kt0 < ktiles:
                slot = 2 * c if it == start(c) else 2 * c + 1
                assert slot not in slots
                slots[slot] = tile
                # the slot the combining piece computes for this CTA: sk_slot(c, tile)
                assert slot == (2 * c if start(c) >= tile * ktiles else 2 * c + 1)
            else:
                assert pieces == 1
            it += kt1 - kt0
    assert sorted(done) == [(t, k) for t in range(tiles) for k in range(ktiles)]


def test_heuristic_prefers_split_k_at_batch_1_and_big_tiles_at_batch_32() -> None:
    assert heuristic(SMALL, 90, 132).splits > 1
    big = heuristic(BIG, 90, 132)
    assert big.splits == 1 and big.bm * big.bn >= 64 * 64
    assert estimate_seconds(BIG, big, 132) > estimate_seconds(SMALL, heuristic(SMALL, 90, 132),
                                                              132)


def test_measured_only_tiles_reach_the_autotuner_not_the_heuristic() -> None:
    # the wide (one CTA per SM) tiles have no efficiency in the cost model: only a measurement
    # (autotuning, a board's timing cache) may pick them, and never with split-K
    wide = [t for t in MMA_TILES if t.wide]
    assert wide and all(ConvTactic.from_name(t.name) == t for t in wide)
    for problem in (SMALL, BIG, replace(BIG, dtype="int8"), replace(SMALL, dtype="int8")):
        cands = candidates(problem, 87)
        assert any(t.wide for t in cands)
        assert all(t.splits == 1 for t in cands if t.wide)
        assert not heuristic(problem, 87, 16).wide and not heuristic(problem, 90, 132).wide
    assert "-DFRAG_BUFS=2" in wide[0].compile_options()
    assert "-DFRAG_BUFS=2" not in MMA_TILES[0].compile_options()


def test_timing_cache_round_trip_and_merge(tmp_path) -> None:
    a, b = TimingCache(), TimingCache()
    sig = SMALL.signature()
    a.record(sig, "sm_87", "mma_64x64_w2x2_s3_k4", 0.030)
    a.record(sig, "sm_87", "mma_32x64_w1x2_s4_k8", 0.025)
    b.record(sig, "sm_87", "mma_64x64_w2x2_s3_k4", 0.020)  # measured faster elsewhere
    b.record(sig, "sm_90", "mma_32x64_w1x2_s4_k8", 0.010)
    a.merge(b)
    assert a.best(sig, "sm_87") == "mma_64x64_w2x2_s3_k4"
    assert a.best(sig, "sm_90") == "mma_32x64_w1x2_s4_k8"
    assert a.best(sig, "sm_72") is None
    path = tmp_path / "timing.json"
    a.save(path)
    again = TimingCache.load(path)
    assert again.entries == a.entries and len(again) == 2


@pytest.mark.parametrize("text,match", [
    ("not json", "not JSON"),
    ("{}", "not a Tandem timing cache"),
    (json.dumps({"format": "tandem-timing-cache", "version": 99, "entries": {}}), "version 99"),
    (json.dumps({"format": "tandem-timing-cache", "version": 1,
                 "entries": {"sm_87": {"sig": {"t": "fast"}}}}), "not a number"),
])
def test_bad_timing_cache_files_are_refused(tmp_path, text, match) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TimingCacheError, match=match):
        TimingCache.load(path)
    with pytest.raises(TimingCacheError, match="does not exist"):
        TimingCache.load(tmp_path / "missing.json")


def test_fast_divisor_matches_integer_division() -> None:
    """FastDiv (common.cuh) on the host's constants: (umulhi(n, mul) + n) >> shift == n // d
    for divisors up to 2^16 and numerators across [0, 2^31), edges included."""
    import numpy as np

    from gpu_kernels.tactics import fast_divisor

    rng = np.random.default_rng(0)
    divisors = list(range(1, 300)) + [512, 1000, 1023, 1024, 1025, 4095, 65535, 65536] + \
        [int(d) for d in rng.integers(1, 1 << 16, 200)]
    n = np.concatenate([np.arange(0, 5000), rng.integers(0, 1 << 31, 5000),
                        np.array([(1 << 31) - 1, (1 << 31) - 2])]).astype(np.uint64)
    for d in divisors:
        mul, shift = fast_divisor(d)
        hi = (n * np.uint64(mul & 0xFFFFFFFF)) >> np.uint64(32)
        q = ((hi + n) & np.uint64(0xFFFFFFFF)) >> np.uint64(shift)
        np.testing.assert_array_equal(q, n // np.uint64(d), err_msg=f"d={d}")
        assert -(1 << 31) <= mul < (1 << 31)  # fits the int32 KArgs slot
