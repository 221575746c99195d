"""``WorkerSettings``: how one worker process consumes and runs jobs. Checked at construction;
errors are ``ConfigError`` naming the field. Every field has a CLI option and a
``STREAMJOBS_*`` variable (see ``streamjobs.cli.worker``)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .inline import under_seconds

__all__ = ["GROUP_PROTOCOLS", "KEY_DEAD_LETTER", "ORDERINGS", "WorkerSettings"]

ORDERINGS = ("partition", "key", "key-strict", "unordered")
KEY_DEAD_LETTER = ("release", "hold")
GROUP_PROTOCOLS = ("classic", "consumer")


@dataclass(frozen=True)
class WorkerSettings:
    """
    concurrency       sync handlers: threads in the pool; async handlers: jobs at once
    max_in_flight     records taken from Kafka and not finished; at this bound the worker takes
                      no more until half are finished (every partition is paused if that takes
                      longer than 0.5 s). None: max(5000, 20 x concurrency)
    ordering          partition (one job of a partition at a time, in order), key (same key
                      never concurrent, in order), key-strict (key, and a retried job keeps
                      its key's order: later jobs of the key wait for it; _worker/keyhold.py),
                      unordered
    key_dead_letter   key-strict: once the job they wait for is dead-lettered, the jobs behind
                      it run (release) or are dead-lettered behind it, reason key_held (hold)
    group_id          consumer group; None: "<topic prefix>streamjobs-<app name>"
    job_types         job types this process runs; empty: every handled type
    grace_period      seconds to finish running jobs on shutdown or revocation
    group_protocol    classic (with assignment_strategy) or consumer (KIP-848)
    commit_interval   seconds between offset commits (librdkafka auto-commit of stored offsets)
    commit_every      also commit asynchronously after this many finished jobs
    max_poll_interval_ms / session_timeout_ms   librdkafka consumer settings
    batch_size        records taken per consume call
    wake_horizon      seconds: waiting records due within it are held in memory; later ones
                      pause their partition
    burst             exit once all assigned partitions are drained and nothing is in flight
    connect_timeout   seconds the start-up metadata request may wait (BrokerUnavailable after)
    consumer_config   extra librdkafka consumer settings (win over ours)
    schedules         take part in firing the catalogue's schedules (docs/catalogue.md)
    exactly_once      Kafka transactions: follow-ups, retry/dead-letter records and consumed
                      offsets commit atomically per batch (_worker/transactions.py)
    stuck_limit       sync handler threads stuck past their timeout that are replaced by new
                      ones; at this many the worker is not live. 0: concurrency
    inline_under      microseconds: a sync handler without a timeout whose jobs take less than
                      this on average runs on the poll thread (_worker/inline.py); 0: never
    """

    concurrency: int = 8
    max_in_flight: int | None = None
    ordering: str = "partition"
    group_id: str | None = None
    job_types: tuple[str, ...] = ()
    grace_period: float = 30.0
    group_protocol: str = "classic"
    assignment_strategy: str = "cooperative-sticky"
    commit_interval: float = 1.0
    commit_every: int = 10_000
    max_poll_interval_ms: int = 300_000
    session_timeout_ms: int = 45_000
    batch_size: int = 1000
    wake_horizon: float = 2.0
    burst: bool = False
    connect_timeout: float = 10.0
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    schedules: bool = True
    exactly_once: bool = False
    key_dead_letter: str = "release"
    stuck_limit: int = 0
    inline_under: float = 20.0

    def __post_init__(self) -> None:
        _positive_int(self, "concurrency")
        if self.max_in_flight is None:
            # A pause drops the pre-fetched records and a resume re-fetches them (a fetch round
            # trip or more): the half left must keep every slot busy meanwhile, even for 20 ms jobs
            # at concurrency 500 (docs/worker.md, "Back-pressure").
            object.__setattr__(self, "max_in_flight", max(5000, 20 * self.concurrency))
        _positive_int(self, "max_in_flight")
        if self.ordering not in ORDERINGS:
            raise ConfigError("ordering", f"must be one of {', '.join(ORDERINGS)}, "
                                          f"got {self.ordering!r}")
        if self.key_dead_letter not in KEY_DEAD_LETTER:
            raise ConfigError("key_dead_letter", f"must be one of {', '.join(KEY_DEAD_LETTER)}"
                                                 f", got {self.key_dead_letter!r}")
        if self.group_protocol not in GROUP_PROTOCOLS:
            raise ConfigError("group_protocol", f"must be one of {', '.join(GROUP_PROTOCOLS)}, "
                                                f"got {self.group_protocol!r}")
        if self.group_id is not None and not self.group_id.strip():
            raise ConfigError("group_id", "must not be empty")
        object.__setattr__(self, "job_types", tuple(self.job_types))
        for name in ("grace_period", "commit_interval", "wake_horizon"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (
                    math.isfinite(value) and value >= 0):
                raise ConfigError(name, f"must be a number of seconds >= 0, got {value!r}")
        if self.commit_interval == 0:
            raise ConfigError("commit_interval", "must be > 0")
        if not (isinstance(self.connect_timeout, int | float) and self.connect_timeout > 0):
            raise ConfigError("connect_timeout", f"must be > 0 seconds, got "
                                                 f"{self.connect_timeout!r}")
        if isinstance(self.stuck_limit, bool) or not isinstance(self.stuck_limit, int) or (
                self.stuck_limit < 0):
            raise ConfigError("stuck_limit", f"must be an integer >= 0, got "
                                             f"{self.stuck_limit!r}")
        under_seconds(self.inline_under)
        for name in ("commit_every", "max_poll_interval_ms", "session_timeout_ms",
                     "batch_size"):
            _positive_int(self, name)

    @property
    def resume_at(self) -> int:
        """In-flight count at which paused partitions resume (hysteresis: half the bound)."""
        assert self.max_in_flight is not None
        return self.max_in_flight // 2


def _positive_int(obj: WorkerSettings, name: str) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(name, f"must be an integer >= 1, got {value!r}")
