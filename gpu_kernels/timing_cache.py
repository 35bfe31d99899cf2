"""Timing cache: measured tactic times keyed by (layer signature, GPU arch), as JSON.

A cache measured on one machine (a Jetson board, say) and merged into another's makes the next
build there pick the tactics that machine preferred without timing anything.
"""

from __future__ import annotations

import json
from pathlib import Path

from partitioner.errors import TandemError

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
        except json.JSONDecodeError as err:
            raise TimingCacheError(f"{origin}: not JSON ({err})") from None
        if not isinstance(doc, dict) or doc.get("format") != "tandem-timing-cache":
            raise TimingCacheError(f"{origin}: not a Tandem timing cache (missing 'format')")
        if doc.get("version") != FORMAT_VERSION:
            raise TimingCacheError(
                f"{origin}: timing cache version {doc.get('version')} is not supported "
                f"(expected {FORMAT_VERSION}); re-run the build to measure again"
            )
        cache = cls()
        entries = doc.get("entries", {})
        if not isinstance(entries, dict):
            raise TimingCacheError(f"{origin}: 'entries' must be a mapping")
        for arch, sigs in entries.items():
            for sig, per in dict(sigs).items():
                for tactic, ms in dict(per).items():
                    if not isinstance(ms, (int, float)):
                        raise TimingCacheError(f"{origin}: time of {tactic!r} is not a number")
                    cache.record(sig, str(arch), str(tactic), float(ms))
        return cache

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> TimingCache:
        p = Path(path)
        if not p.is_file():
            raise TimingCacheError(f"timing cache '{p}' does not exist")
        return cls.from_json(p.read_text(encoding="utf-8"), str(p))
