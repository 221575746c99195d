"""Retry policies, delay tiers and the names of retry and dead-letter topics.

A ``RetryPolicy`` answers one question: after attempt N failed, how long until attempt N+1
(or ``None``: give up and dead-letter). Delays are either an explicit list (``delays``) or an
exponential backoff (``Exponential``). Waiting happens on *tier* topics
``<topic>.retry.<tier>`` (see docs/DESIGN.md); ``tiers()`` lists the tiers a policy needs and
``pick_tier`` chooses the tier for a remaining wait.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._durations import parse_duration
from ._names import parse_wait_topic
from .errors import ConfigError

__all__ = [
    "DEFAULT_DELAY_TIERS",
    "Exponential",
    "RetryPolicy",
    "old_tier_topics",
    "pick_tier",
]

# The wait tiers of every job topic (``Catalogue.wait_tiers``): any delay is a walk down this
# ladder, at most ``ratio - 1`` hops per step (9 between 1s and 10s), each hop one produce.
DEFAULT_DELAY_TIERS: tuple[float, ...] = (1.0, 10.0, 60.0, 600.0, 3600.0)


def _seconds(data: Mapping[str, Any], key: str, where: str) -> float:
    try:
        return parse_duration(data[key])
    except ValueError as exc:
        raise ConfigError(f"{where}.{key}", str(exc)) from None


@dataclass(frozen=True)
class Exponential:
    """Backoff ``base * factor**(attempt-1)``, capped at ``cap``; ``jitter`` is the fraction
    (0..1) by which a delay may be randomly shortened, to spread retries of a burst."""

    base: float
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.base) and self.base >= 0):
            raise ConfigError("exponential.base", f"must be >= 0, got {self.base!r}")
        if not (math.isfinite(self.factor) and self.factor >= 1):
            raise ConfigError("exponential.factor", f"must be >= 1, got {self.factor!r}")
        if not (math.isfinite(self.cap) and self.cap >= self.base):
            raise ConfigError("exponential.cap", f"must be >= base ({self.base}), got {self.cap!r}")
        if not 0 <= self.jitter <= 1:
            raise ConfigError("exponential.jitter", f"must be within 0..1, got {self.jitter!r}")

    def delay(self, attempt: int) -> float:
        """Delay after failed attempt ``attempt`` (1-based), without jitter."""
        # Compare exponents, not products, so huge attempt numbers never overflow.
        if self.base == 0:
            return 0.0
        steps = attempt - 1
        if self.factor > 1 and steps * math.log(self.factor) >= math.log(self.cap / self.base):
            return self.cap
        return float(min(self.cap, self.base * self.factor ** (attempt - 1)))


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait before running a failed job again.

    ``max_attempts`` counts every run including the first. Without ``exponential``, attempt N's
    failure waits ``delays[N-1]`` (the last delay repeats when the list is shorter).
    """

    delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    max_attempts: int = 4
    exponential: Exponential | None = None

    def __post_init__(self) -> None:
        delays = tuple(float(d) for d in self.delays)
        object.__setattr__(self, "delays", delays)
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ConfigError("max_attempts", f"must be an integer, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ConfigError("max_attempts", f"must be >= 1, got {self.max_attempts}")
        for i, d in enumerate(delays):
            if not (math.isfinite(d) and d >= 0):
                raise ConfigError(f"delays[{i}]", f"must be >= 0, got {d!r}")
        if self.exponential is None and not delays and self.max_attempts > 1:
            raise ConfigError("delays", "must not be empty when max_attempts > 1")

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> float | None:
        """Seconds to wait after failed attempt ``attempt`` (1-based) before the next one, or
        None when no attempt is left."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        if attempt >= self.max_attempts:
            return None
        exp = self.exponential
        if exp is None:
            return self.delays[min(attempt, len(self.delays)) - 1]
        delay = exp.delay(attempt)
        if exp.jitter:
            r = (rng or random).random()
            delay -= delay * exp.jitter * r
        return delay

    def tiers(self) -> tuple[float, ...]:
        """Distinct whole-second delays (without jitter) this policy can produce, sorted.
        Sub-second delays round up to 1s: a tier topic of 0s would be pointless."""
        if self.exponential is None:
            raw: list[float] = list(self.delays[: self.max_attempts - 1])
        else:
            raw = []
            for attempt in range(1, self.max_attempts):
                d = self.exponential.delay(attempt)
                raw.append(d)
                if d >= self.exponential.cap:
                    break
        return tuple(sorted({max(1.0, float(round(d))) for d in raw if d > 0}))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str) -> RetryPolicy:
        """Parse the catalogue form::

            { delays = ["1s", "5s", "30s"], max_attempts = 4 }
            { exponential = { base = "1s", factor = 2, cap = "1m", jitter = 0.1 },
              max_attempts = 5 }

        Errors are ConfigError whose field starts with ``where`` (e.g. ``jobs.x.retry.delays``).
        """
        if not isinstance(data, Mapping):
            raise ConfigError(where, f"must be a table, got {type(data).__name__}")
        unknown = set(data) - {"delays", "max_attempts", "exponential"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}",
                              "unknown key (expected delays, max_attempts, exponential)")
        if "delays" in data and "exponential" in data:
            raise ConfigError(where, "give either delays or exponential, not both")
        kwargs: dict[str, Any] = {}
        try:
            if "max_attempts" in data:
                kwargs["max_attempts"] = data["max_attempts"]
            if "delays" in data:
                raw = data["delays"]
                if isinstance(raw, str | bytes) or not isinstance(raw, Sequence):
                    raise ConfigError(f"{where}.delays", "must be a list of durations")
                delays: list[float] = []
                for i, d in enumerate(raw):
                    try:
                        delays.append(parse_duration(d))
                    except ValueError as exc:
                        raise ConfigError(f"{where}.delays[{i}]", str(exc)) from None
                kwargs["delays"] = tuple(delays)
            if "exponential" in data:
                kwargs["exponential"] = _exponential(data["exponential"], f"{where}.exponential")
            return cls(**kwargs)
        except ConfigError as exc:
            if exc.field.startswith(where):
                raise
            raise ConfigError(f"{where}.{exc.field}", exc.reason) from None


def _exponential(data: Any, where: str) -> Exponential:
    if not isinstance(data, Mapping):
        raise ConfigError(where, f"must be a table, got {type(data).__name__}")
    unknown = set(data) - {"base", "factor", "cap", "jitter"}
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}",
                          "unknown key (expected base, factor, cap, jitter)")
    if "base" not in data:
        raise ConfigError(f"{where}.base", "required")
    kwargs: dict[str, float] = {"base": _seconds(data, "base", where)}
    if "cap" in data:
        kwargs["cap"] = _seconds(data, "cap", where)
    for key in ("factor", "jitter"):
        if key in data:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{where}.{key}", f"must be a number, got {value!r}")
            kwargs[key] = float(value)
    try:
        return Exponential(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc.field.removeprefix('exponential.')}",
                          exc.reason) from None


def old_tier_topics(topic: str, tiers: Sequence[float],
                    names: Iterable[str]) -> dict[str, float]:
    """Wait topics of ``topic`` among ``names`` whose tier is not in ``tiers`` (left by an
    earlier version that made a tier per retry delay): name -> tier. Workers still drain them;
    nothing writes to them any more; ``topics plan`` lists them as removable."""
    current = set(tiers)
    out: dict[str, float] = {}
    for name in names:
        parsed = parse_wait_topic(name)
        if parsed is not None and parsed[0] == topic and parsed[1] not in current:
            out[name] = parsed[1]
    return dict(sorted(out.items(), key=lambda item: item[1]))


def pick_tier(remaining: float, tiers: Sequence[float]) -> float:
    """The largest tier <= ``remaining`` (never overshoot the due time), else the smallest."""
    if not tiers:
        raise ValueError("no tiers to pick from")
    best: float | None = None
    for t in tiers:
        if t <= remaining and (best is None or t > best):
            best = t
    return best if best is not None else min(tiers)
