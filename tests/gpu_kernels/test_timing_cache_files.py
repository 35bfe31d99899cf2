"""The timing-cache file shared by concurrent processes: no lost update, no partial read.

Real processes (multiprocessing, fork) against one file, as two builds on one machine would be.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from gpu_kernels.timing_cache import TimingCache, TimingCacheError

CTX = mp.get_context("fork")
WRITERS, ROUNDS = 4, 8


def _saver(path: str, who: int, start: mp.synchronize.Barrier) -> None:
    start.wait()
    for k in range(ROUNDS):
        cache = TimingCache()  # each round a new build that timed one more layer
        cache.record(f"conv-{who}-{k}", "sm_87", "mma_64x64", 0.01 * (k + 1))
        cache.save(path)


def test_concurrent_savers_lose_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "timing.json")
    start = CTX.Barrier(WRITERS)
    procs = [CTX.Process(target=_saver, args=(path, i, start)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    merged = TimingCache.load(path)
    assert len(merged) == WRITERS * ROUNDS
    assert merged.times("conv-3-7", "sm_87") == {"mma_64x64": pytest.approx(0.08)}


def _rewriter(path: str, ready: mp.synchronize.Event, stop: mp.synchronize.Event) -> None:
    big = TimingCache()
    for i in range(3000):  # ~0.3 MB of JSON: a write takes several system calls
        big.record(f"layer-signature-{i:05d}", "sm_87", "mma_128x128_w2x2_s3_k4", 0.5)
    big.save(path)
    ready.set()
    while not stop.is_set():
        big.save(path)


def _loader(path: str, loads: int, ready: mp.synchronize.Event, out: mp.Queue) -> None:
    ready.wait()
    bad = 0
    for _ in range(loads):
        try:
            TimingCache.load(path)
        except TimingCacheError:
            bad += 1
    out.put(bad)


def test_loads_during_saves_never_see_a_partial_file(tmp_path: Path) -> None:
    path = str(tmp_path / "timing.json")
    ready, stop, out = CTX.Event(), CTX.Event(), CTX.Queue()
    writer = CTX.Process(target=_rewriter, args=(path, ready, stop))
    writer.start()
    readers = [CTX.Process(target=_loader, args=(path, 40, ready, out)) for _ in range(2)]
    for r in readers:
        r.start()
    bad = [out.get(timeout=120) for _ in readers]
    stop.set()
    for p in [*readers, writer]:
        p.join(60)
    assert bad == [0, 0]
    assert writer.exitcode == 0


def test_save_refuses_to_clobber_a_corrupt_cache(tmp_path: Path) -> None:
    path = tmp_path / "timing.json"
    path.write_text(
        '{"format": "tandem-timing-cache", "version": 1, "entries": {"sm_87": 3}}', encoding="utf-8"
    )
    cache = TimingCache()
    cache.record("sig", "sm_87", "t", 1.0)
    with pytest.raises(TimingCacheError, match="timing.json: arch 'sm_87' must be a mapping"):
        cache.save(path)
    assert "sm_87\": 3" in path.read_text(encoding="utf-8")  # left as it was
    assert sorted(p.name for p in tmp_path.iterdir()) == ["timing.json", "timing.json.lock"]
