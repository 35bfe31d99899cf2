"""Timing cache: measured tactic times keyed by (layer signature, GPU arch), as JSON.

A cache measured on one machine (a Jetson board, say) and merged into another's makes the next
build there pick the tactics that machine preferred without timing anything.

Several processes may share one cache file: :meth:`TimingCache.save` merges into what is on disk
under an exclusive lock and replaces the file atomically, so no update is lost and no reader
ever sees half a file.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from partitioner.errors import TandemError
from partitioner.files import locked, write_atomic

FORMAT_VERSION = 1


class TimingCacheError(TandemError):
    """A timing-cache file cannot be read."""


class TimingCache:
    """``{arch: {signature: {tactic_name: milliseconds}}}``; lower is better."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, dict[str, float]]] = {}

    def record(self, signature: str, arch: str, tactic: str, ms: float) -> None:
        per = self.entries.setdefault(arch, {}).setdefault(signature, {})
        per[tactic] = min(ms, per.get(tactic, float("inf")))

    def times(self, signature: str, arch: str) -> dict[str, float]:
        return dict(self.entries.get(arch, {}).get(signature, {}))

    def best(self, signature: str, arch: str) -> str | None:
        """The fastest measured tactic, or None when this layer was never timed on ``arch``."""
        per = self.entries.get(arch, {}).get(signature)
        return min(per, key=per.__getitem__) if per else None

    def merge(self, other: TimingCache) -> None:
        """Fold ``other`` in; where both timed a tactic the lower time wins."""
        for arch, sigs in other.entries.items():
            for sig, per in sigs.items():
                for tactic, ms in per.items():
                    self.record(sig, arch, tactic, ms)

    def __len__(self) -> int:
        return sum(len(sigs) for sigs in self.entries.values())

    def to_json(self) -> str:
        return json.dumps({"format": "tandem-timing-cache", "version": FORMAT_VERSION,
                           "entries": self.entries}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "<string>") -> TimingCache:
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise TimingCacheError(f"{origin}: not JSON ({type(err).__name__}: {err})") from None
        if not isinstance(doc, dict) or doc.get("format") != "tandem-timing-cache":
            raise TimingCacheError(f"{origin}: not a Tandem timing cache (missing 'format')")
        if doc.get("version") != FORMAT_VERSION:
            raise TimingCacheError(
                f"{origin}: timing cache version {doc.get('version')} is not supported "
                f"(expected {FORMAT_VERSION}); re-run the build to measure again"
            )
        cache = cls()
        for arch, sigs in _mapping(doc.get("entries", {}), origin, "'entries'").items():
            for sig, per in _mapping(sigs, origin, f"arch {arch!r}").items():
                for tactic, ms in _mapping(per, origin, f"signature {sig!r}").items():
                    if (
                        not isinstance(ms, int | float)
                        or isinstance(ms, bool)
                        or not math.isfinite(ms)
                        or ms < 0
                    ):
                        raise TimingCacheError(
                            f"{origin}: time of {tactic!r} is {ms!r}, not a number of ms >= 0"
                        )
                    cache.record(sig, arch, tactic, float(ms))
        return cache

    def save(self, path: str | os.PathLike[str]) -> None:
        """Merge into the cache at ``path`` (kept where it exists; the lower time of a tactic
        wins) and write the result atomically, all under an exclusive lock on ``PATH.lock``:
        concurrent savers lose nothing and concurrent loaders never read half a file. Afterwards
        this cache holds the merged entries too."""
        with locked(path, error=TimingCacheError):
            if Path(path).is_file():
                self.merge(TimingCache.load(path))
            write_atomic(path, self.to_json().encode("utf-8"), error=TimingCacheError)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TimingCache:
        p = Path(path)
        if not p.is_file():
            raise TimingCacheError(f"timing cache '{p}' does not exist")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TimingCacheError(f"cannot read timing cache '{p}': {err}") from None
        return cls.from_json(text, str(p))


def _mapping(value: Any, origin: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TimingCacheError(f"{origin}: {what} must be a mapping, not {type(value).__name__}")
    return value
