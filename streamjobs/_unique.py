"""Unique jobs: a duplicate emitted within a window is not run.

A job type declares ``unique = { by = "key" | "job_id", window = "10m" }``. The worker checks
each record of a job topic's partition against the partition's *seen set*: the dedupe value (the
record key, or the ``sj-id``) -> (offset and creation time of the first record). A record whose
value was first seen at another offset less than ``window`` earlier (by ``sj-created-at``) is a
duplicate: acknowledged without running. Records with the same key land in the same partition,
so the check is local to a partition and needs no coordination between workers; the seen set
lives in a compacted topic ``<job topic>.unique`` (same partition numbers), so it survives
restarts and rebalances. This module is the pure part; the worker side is
``streamjobs._worker.uniqueness``. Guarantees and limits: docs/catalogue.md "Unique jobs".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ._durations import parse_duration

__all__ = [
    "TICK_WINDOW_S",
    "UNIQUE_BY",
    "SeenEntry",
    "SeenSet",
    "UniquePolicy",
    "parse_unique",
]

UNIQUE_BY = ("key", "job_id")
# Ticks of schedules are deduplicated by job id for this long (a failover re-fires a tick at
# most a session timeout plus a few seconds late).
TICK_WINDOW_S = 3600.0


@dataclass(frozen=True)
class UniquePolicy:
    by: str = "key"
    window_s: float = 600.0

    def __post_init__(self) -> None:
        if self.by not in UNIQUE_BY:
            raise ValueError(f"unique.by must be one of {', '.join(UNIQUE_BY)}, got {self.by!r}")
        if not self.window_s > 0:
            raise ValueError(f"unique.window must be > 0, got {self.window_s!r}")

    @property
    def window_ms(self) -> int:
        return round(self.window_s * 1000)


def parse_unique(table: Any) -> UniquePolicy:
    """``{ by = ..., window = ... }`` from the catalogue; ValueError naming the problem."""
    if not isinstance(table, Mapping):
        raise ValueError("unique must be a table: { by = \"key\" | \"job_id\", window = \"10m\" }")
    unknown = set(table) - {"by", "window"}
    if unknown:
        raise ValueError(f"unique: unknown key {sorted(unknown)[0]!r} (allowed: by, window)")
    if "window" not in table:
        raise ValueError("unique.window is required (a duration, e.g. \"10m\")")
    try:
        window = parse_duration(table["window"])
    except ValueError as exc:
        raise ValueError(f"unique.window: {exc}") from None
    return UniquePolicy(by=table.get("by", "key"), window_s=window)


@dataclass(frozen=True, slots=True)
class SeenEntry:
    offset: int
    created_ms: int
    job_id: str

    def to_bytes(self) -> bytes:
        return orjson.dumps({"offset": self.offset, "created_ms": self.created_ms,
                             "job_id": self.job_id})

    @classmethod
    def from_bytes(cls, raw: bytes | None) -> SeenEntry | None:
        if raw is None:
            return None
        try:
            d = orjson.loads(raw)
            return cls(int(d["offset"]), int(d["created_ms"]), str(d["job_id"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


class SeenSet:
    """Dedupe values of one partition -> their first record. Not thread safe (poll thread)."""

    def __init__(self, keep_ms: int) -> None:
        self.keep_ms = keep_ms  # the longest window of the partition's job types
        self._seen: dict[str, SeenEntry] = {}
        self._newest_ms = 0
        self._pruned_at = 0

    def __len__(self) -> int:
        return len(self._seen)

    def load(self, key: str, entry: SeenEntry) -> None:
        """An entry read back from the state topic (later records win, as in compaction)."""
        self._seen[key] = entry
        self._newest_ms = max(self._newest_ms, entry.created_ms)

    def check(self, key: str, record: SeenEntry, window_ms: int) -> SeenEntry | None:
        """The first record of ``key`` if ``record`` duplicates it (another offset, created
        less than ``window_ms`` apart); else None, and ``record`` becomes the first of ``key``
        (the caller persists it). A record read again (a restart before its offset was
        committed) finds itself: not a duplicate."""
        first = self._seen.get(key)
        if first is not None:
            if first.offset == record.offset:
                return None
            if abs(record.created_ms - first.created_ms) < window_ms:
                return first
        self._seen[key] = record
        self._newest_ms = max(self._newest_ms, record.created_ms)
        if len(self._seen) > 1024 and self._newest_ms - self._pruned_at > self.keep_ms // 4:
            self.prune()
        return None

    def prune(self, now_ms: int | None = None) -> None:
        """Forget entries older than the longest window (they can no longer match)."""
        if now_ms is not None:
            self._newest_ms = max(self._newest_ms, now_ms)
        horizon = self._newest_ms - self.keep_ms
        self._seen = {k: e for k, e in self._seen.items() if e.created_ms >= horizon}
        self._pruned_at = self._newest_ms
