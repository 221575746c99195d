"""Flow-control settings of a job type: a rate limit, a concurrency limit, a circuit breaker.

Catalogue keys of a ``[jobs.<name>]`` table (docs: README "Rate limits, concurrency and circuit
breakers")::

    rate_limit = "50/s"                  # or "600/m", "3600/h": jobs started per unit, whole group
    concurrency = 4                      # jobs of this type running at once, per worker process
    breaker = { failures = 5, cooldown = "30s" }               # N consecutive failures, or
    breaker = { ratio = 0.5, window = "30s", min_calls = 10 }  # a failure ratio over a window

Values are frozen dataclasses checked at construction; the parse functions raise ValueError
naming the key. The mechanics live in ``streamjobs._worker.throttle`` and
``streamjobs._worker.breaker``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._durations import parse_duration

__all__ = ["BreakerPolicy", "RateLimit", "parse_breaker", "parse_concurrency", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_S = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
           "h": 3600.0, "hour": 3600.0}
DEFAULT_COOLDOWN_S = 30.0


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` jobs started per ``per_s`` seconds across a worker group."""

    count: float
    per_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.count > 0:
            raise ValueError(f"rate_limit: the count must be > 0, got {self.count!r}")
        if not self.per_s > 0:
            raise ValueError(f"rate_limit: the period must be > 0, got {self.per_s!r}")

    @property
    def per_second(self) -> float:
        return self.count / self.per_s

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h"}.get(self.per_s)
        return f"{self.count:g}/{unit}" if unit else f"{self.count:g}/{self.per_s:g}s"


def parse_rate(value: Any) -> RateLimit:
    """``"50/s"``, ``"600/m"``, ``"10/h"`` (also ``sec``/``min``/``hour``)."""
    if not isinstance(value, str):
        raise ValueError(f"rate_limit must be a string like \"50/s\" or \"600/m\", got {value!r}")
    m = _RATE.match(value)
    if m is None:
        raise ValueError(f"rate_limit {value!r}: expected COUNT/UNIT, e.g. \"50/s\", \"600/m\", "
                         f"\"10/h\"")
    return RateLimit(float(m.group(1)), _UNIT_S[m.group(2)])


def parse_concurrency(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"concurrency must be an integer >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class BreakerPolicy:
    """When a job type's circuit opens: after ``failures`` consecutive failures, or when at
    least ``min_calls`` jobs finished within ``window_s`` and the failed share reached
    ``ratio``. Open, the type's partitions pause for ``cooldown_s``; then one probe job
    decides (success closes, failure re-opens)."""

    failures: int | None = None
    ratio: float | None = None
    window_s: float = 30.0
    min_calls: int = 10
    cooldown_s: float = DEFAULT_COOLDOWN_S

    def __post_init__(self) -> None:
        if (self.failures is None) == (self.ratio is None):
            raise ValueError("breaker: give failures (consecutive) or ratio (over a window), "
                             "one of them")
        if self.failures is not None and (isinstance(self.failures, bool)
                                          or not isinstance(self.failures, int)
                                          or self.failures < 1):
            raise ValueError(f"breaker.failures must be an integer >= 1, got {self.failures!r}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ValueError(f"breaker.ratio must be in (0, 1], got {self.ratio!r}")
        if not self.window_s > 0:
            raise ValueError(f"breaker.window must be > 0, got {self.window_s!r}")
        if isinstance(self.min_calls, bool) or not isinstance(self.min_calls, int) or (
                self.min_calls < 1):
            raise ValueError(f"breaker.min_calls must be an integer >= 1, got {self.min_calls!r}")
        if not self.cooldown_s > 0:
            raise ValueError(f"breaker.cooldown must be > 0, got {self.cooldown_s!r}")


_BREAKER_KEYS = ("failures", "ratio", "window", "min_calls", "cooldown")


def parse_breaker(table: Any) -> BreakerPolicy:
    """``{ failures = 5, cooldown = "30s" }`` or ``{ ratio = 0.5, window = "30s",
    min_calls = 10, cooldown = "30s" }``; ValueError naming the key."""
    if not isinstance(table, Mapping):
        raise ValueError("breaker must be a table: { failures = 5 } or "
                         "{ ratio = 0.5, window = \"30s\", min_calls = 10 }")
    unknown = set(table) - set(_BREAKER_KEYS)
    if unknown:
        raise ValueError(f"breaker: unknown key {sorted(unknown)[0]!r} "
                         f"(allowed: {', '.join(_BREAKER_KEYS)})")
    values: dict[str, Any] = {}
    for key, field in (("window", "window_s"), ("cooldown", "cooldown_s")):
        if key in table:
            try:
                values[field] = parse_duration(table[key])
            except ValueError as exc:
                raise ValueError(f"breaker.{key}: {exc}") from None
    if "ratio" in table:
        ratio = table["ratio"]
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
            raise ValueError(f"breaker.ratio must be a number in (0, 1], got {ratio!r}")
        values["ratio"] = float(ratio)
    for key in ("failures", "min_calls"):
        if key in table:
            values[key] = table[key]
    if "failures" in values and ("window" in table or "min_calls" in table):
        raise ValueError("breaker: window and min_calls go with ratio, not failures")
    return BreakerPolicy(**values)
