"""Priority lanes of a job type: one Kafka topic per lane, chosen at emit.

A job type declaring ``priorities = ["high", "normal", "low"]`` (highest first) has one job
topic per lane: the default lane (``default_priority``, else ``"normal"``) keeps the job type's
own topic, every other lane ``<topic>.p-<lane>``. Each lane topic is a job topic of its own
(its wait tiers and dead-letter topic too), so a retry goes back to the lane it came from and
nothing in the offset or retry logic changes. Workers read every lane and prefer higher ones
(_worker/lanes.py) by ``priority_policy``:

- ``weighted`` (default): while a higher lane has jobs in flight, a lower lane may keep only its
  share (``priority_weights``, default 8:2:1...) of the worker's lane buffer in flight, and idle
  threads take queued tasks by the same weights: a flood of high jobs slows low ones, never
  stops them.
- ``strict``: while a higher lane has jobs in flight, lower lanes take nothing new; threads
  always take the highest lane's task first. Low jobs can starve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ._names import lane_topic
from .errors import ConfigError

__all__ = ["POLICIES", "PriorityLanes", "parse_priorities"]

POLICIES = ("weighted", "strict")
DEFAULT_LANE = "normal"
_LANE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")


def default_weights(n: int) -> tuple[int, ...]:
    """8, 2, 1, 1, ...: the highest lane 8 shares, the next 2, every other 1."""
    return tuple(max(1, 8 // 4 ** i) for i in range(n))


@dataclass(frozen=True)
class PriorityLanes:
    lanes: tuple[str, ...]  # highest first
    default: str
    policy: str = "weighted"
    weights: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.lanes) < 2:
            raise ConfigError("priorities", "give at least two lanes, highest first")
        if len(set(self.lanes)) != len(self.lanes):
            raise ConfigError("priorities", "lanes must be distinct")
        for lane in self.lanes:
            if not isinstance(lane, str) or not _LANE.match(lane):
                raise ConfigError("priorities", f"lane {lane!r}: lowercase letters, digits, "
                                                "'_' and '-' (at most 32)")
        if self.default not in self.lanes:
            raise ConfigError("default_priority", f"{self.default!r} is not one of the lanes "
                                                  f"({', '.join(self.lanes)})")
        if self.policy not in POLICIES:
            raise ConfigError("priority_policy", f"must be one of {', '.join(POLICIES)}, "
                                                 f"got {self.policy!r}")
        if not self.weights:
            object.__setattr__(self, "weights", default_weights(len(self.lanes)))
        if len(self.weights) != len(self.lanes) or not all(
                isinstance(w, int) and not isinstance(w, bool) and w >= 1
                for w in self.weights):
            raise ConfigError("priority_weights", f"one integer >= 1 per lane "
                                                  f"({len(self.lanes)}), got {self.weights!r}")

    def topic(self, base: str, lane: str | None) -> str:
        """The topic of ``lane`` (None: the default lane) for a job type on ``base``."""
        if lane is None or lane == self.default:
            return base
        if lane not in self.lanes:
            raise ValueError(f"unknown priority {lane!r} (lanes: {', '.join(self.lanes)})")
        return lane_topic(base, lane)

    def topics(self, base: str) -> tuple[str, ...]:
        """Every lane's topic, highest lane first."""
        return tuple(self.topic(base, lane) for lane in self.lanes)


def parse_priorities(spec: dict[str, Any]) -> PriorityLanes | None:
    """The lanes of a catalogue job entry (None when it declares none)."""
    if "priorities" not in spec:
        for key in ("default_priority", "priority_policy", "priority_weights"):
            if key in spec:
                raise ConfigError(key, "needs priorities")
        return None
    lanes = spec["priorities"]
    if not isinstance(lanes, list):
        raise ConfigError("priorities", "must be a list of lane names, highest first")
    weights = spec.get("priority_weights", [])
    if not isinstance(weights, list):
        raise ConfigError("priority_weights", "must be a list of integers")
    return PriorityLanes(tuple(lanes), spec.get("default_priority", DEFAULT_LANE),
                         spec.get("priority_policy", "weighted"), tuple(weights))
