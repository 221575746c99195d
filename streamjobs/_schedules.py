"""Recurring jobs: the catalogue's schedules, their ticks, and the record of fired ticks.

A schedule emits one job of a job type, with a fixed payload, at each *tick*: the times of a cron
expression in a time zone (parsed by ``cronsim``) or of a fixed interval (``every``, aligned to
the Unix epoch, so every worker computes the same ticks). Which worker fires is decided by Kafka
(``streamjobs._worker.scheduler``); this module is the pure part: parsing, tick arithmetic, the
catch-up policy, the deterministic job id of a tick and the compacted state record
(schedule name -> last tick). Format and guarantees: docs/catalogue.md "Schedules".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from cronsim import CronSim, CronSimError

from ._config import KafkaConfig
from ._connection import admin as admin_client
from ._durations import format_duration, parse_duration
from ._scan import Range, partitions_of, scan, watermarks

__all__ = [
    "CATCH_UP",
    "MAX_CATCH_UP",
    "ON_TIME_MS",
    "Schedule",
    "ScheduleState",
    "parse_schedule",
    "plan_fires",
    "read_states",
    "tick_job_id",
]

CATCH_UP = ("latest", "all", "none")
# How late a tick may be and still count as on time (``catch_up = "none"``; and the look-back
# of a schedule that was never fired).
ON_TIME_MS = 5_000
# ``catch_up = "all"`` fires at most this many missed ticks per pass of the scheduler loop.
MAX_CATCH_UP = 1000
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
_KEYS = {"job", "cron", "timezone", "every", "payload", "catch_up"}


@dataclass(frozen=True)
class Schedule:
    name: str
    job_type: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    cron: str | None = None
    timezone: str = "UTC"
    every_s: float | None = None
    catch_up: str = "latest"

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"schedule name {self.name!r}: letters, digits, '_', '.', '-', "
                             f"starting with a letter or '_'")
        if (self.cron is None) == (self.every_s is None):
            raise ValueError("give cron or every (one of the two)")
        if self.catch_up not in CATCH_UP:
            raise ValueError(f"catch_up must be one of {', '.join(CATCH_UP)}, "
                             f"got {self.catch_up!r}")
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {self.timezone!r} (an IANA name such as "
                             f"'Europe/Paris' or 'UTC')") from None
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(zone))
            except CronSimError as exc:
                raise ValueError(f"cron {self.cron!r}: {exc}") from None
        elif self.every_s is not None and (self.every_s < 1 or self.every_s % 1):
            raise ValueError(f"every must be a whole number of seconds >= 1, "
                             f"got {self.every_s!r}")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)  # cached by zoneinfo

    @property
    def spec(self) -> str:
        """``cron '*/5 * * * *' Europe/Paris`` or ``every 30s``."""
        if self.cron is not None:
            return f"cron '{self.cron}' {self.timezone}"
        assert self.every_s is not None
        return f"every {format_duration(self.every_s)}"

    def next_after(self, ms: int) -> int:
        """The first tick strictly after ``ms`` (ms since the epoch)."""
        if self.every_s is not None:
            step = int(self.every_s * 1000)
            return (ms // step + 1) * step
        assert self.cron is not None
        it = CronSim(self.cron, datetime.fromtimestamp(ms / 1000, self.zone))
        return _ms(next(it))

    def latest_at_or_before(self, ms: int) -> int:
        """The last tick at or before ``ms``."""
        if self.every_s is not None:
            step = int(self.every_s * 1000)
            return ms // step * step
        assert self.cron is not None
        # Reverse iteration yields ticks strictly before its start: start 1 ms later.
        it = CronSim(self.cron, datetime.fromtimestamp((ms + 1) / 1000, self.zone),
                     reverse=True)
        return _ms(next(it))

    def ticks(self, after_ms: int, until_ms: int, limit: int = MAX_CATCH_UP) -> list[int]:
        """Ticks in ``(after_ms, until_ms]``, oldest first, at most ``limit``."""
        out: list[int] = []
        t = after_ms
        while len(out) < limit:
            t = self.next_after(t)
            if t > until_ms:
                break
            out.append(t)
        return out


def _ms(dt: datetime) -> int:
    return round(dt.timestamp() * 1000)


def parse_schedule(name: str, table: Any) -> Schedule:
    """A ``[schedules.NAME]`` table; ValueError naming the problem."""
    if not isinstance(table, dict):
        raise ValueError("must be a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r} "
                         f"(allowed: {', '.join(sorted(_KEYS))})")
    job = table.get("job")
    if not isinstance(job, str) or not job:
        raise ValueError("'job' is required (a job type name)")
    payload = table.get("payload", {})
    if not isinstance(payload, dict):
        raise ValueError("payload must be a table")
    cron = table.get("cron")
    if cron is not None and not isinstance(cron, str):
        raise ValueError("cron must be a string")
    tz = table.get("timezone", "UTC")
    if not isinstance(tz, str):
        raise ValueError("timezone must be a string")
    if "timezone" in table and cron is None:
        raise ValueError("timezone applies to cron schedules only")
    every = None
    if "every" in table:
        every = parse_duration(table["every"])
    catch_up = table.get("catch_up", "latest")
    return Schedule(name=name, job_type=job, payload=payload, cron=cron, timezone=tz,
                    every_s=every, catch_up=catch_up)


def tick_job_id(schedule: str, tick_ms: int) -> str:
    """The job id of one tick: a UUIDv8 (RFC 9562) laid out like a UUIDv7 (48-bit ms of the
    tick, so ids sort by tick time) whose other 74 bits hash the schedule name and tick. Every
    owner computes the same id for a tick, so a tick fired twice is recognised (and run once)."""
    digest = int.from_bytes(hashlib.sha256(f"{schedule}\x00{tick_ms}".encode()).digest()[:10])
    rand_a = digest >> 68  # 12 bits
    rand_b = digest & ((1 << 62) - 1)
    value = (((tick_ms & 0xFFFFFFFFFFFF) << 80) | (0x8 << 76) | (rand_a << 64)
             | (0b10 << 62) | rand_b)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


@dataclass(frozen=True)
class ScheduleState:
    """What the schedule topic says about one schedule (the value under its name)."""

    last_tick_ms: int  # the newest tick handled: fired, or skipped by the catch-up policy
    fired_tick_ms: int | None = None  # the newest tick fired
    job_id: str | None = None  # the job id of that tick
    fired_at_ms: int | None = None  # when it was fired (wall clock of the owner)
    owner: str = ""  # host/pid of the owner that wrote this

    def to_bytes(self) -> bytes:
        return orjson.dumps({"last_tick_ms": self.last_tick_ms,
                             "fired_tick_ms": self.fired_tick_ms, "job_id": self.job_id,
                             "fired_at_ms": self.fired_at_ms, "owner": self.owner})

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScheduleState | None:
        """None for a value that is not a state record (tolerated, ignored)."""
        try:
            d = orjson.loads(raw)
            return cls(int(d["last_tick_ms"]), d.get("fired_tick_ms"), d.get("job_id"),
                       d.get("fired_at_ms"), str(d.get("owner") or ""))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


def plan_fires(schedule: Schedule, last_tick_ms: int | None,
               now_ms: int) -> tuple[list[int], int | None]:
    """(ticks to fire now, oldest first; the new ``last_tick_ms``) for a schedule whose newest
    handled tick is ``last_tick_ms`` (None: never fired; then only ticks of the last
    ``ON_TIME_MS`` count).

    One due tick is fired, however late (``none``: unless it is more than ``ON_TIME_MS`` late).
    Several due ticks mean ticks were missed (no owner ran, or it stalled): ``latest`` fires the
    newest once, ``all`` fires each (at most ``MAX_CATCH_UP`` per pass), ``none`` fires the
    newest only if it is on time. The new last tick is the newest tick handled (fired or
    skipped); it is ``last_tick_ms`` when nothing is due.
    """
    after = now_ms - ON_TIME_MS if last_tick_ms is None else last_tick_ms
    if schedule.next_after(after) > now_ms:
        return [], last_tick_ms
    if schedule.catch_up == "all":
        fire = schedule.ticks(after, now_ms)
        return fire, fire[-1]
    newest = schedule.latest_at_or_before(now_ms)
    if schedule.catch_up == "none" and now_ms - newest > ON_TIME_MS:
        return [], newest
    return [newest], newest


def read_states(config: KafkaConfig, topic: str) -> dict[str, ScheduleState]:
    """The schedule topic read to its end: schedule name -> its latest state (TopicNotFound
    when it does not exist, BrokerUnavailable when Kafka does not answer)."""
    admin = admin_client(config)
    partitions_of(admin, config, topic)
    low, high = watermarks(admin, config, [(topic, 0)])[(topic, 0)]
    out: dict[str, ScheduleState] = {}
    if high > low:
        for m in scan(config, [Range(topic, 0, low, high)]):
            key, value = m.key(), m.value()
            state = ScheduleState.from_bytes(value) if value is not None else None
            if key is not None and state is not None:
                out[key.decode("utf-8", "replace")] = state
    return out
