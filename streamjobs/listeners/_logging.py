"""Structured logs from worker events on stderr (structlog): one JSON object per line, or
human-readable console lines.

Levels: job succeeded -> ``job_level`` (default debug: formatting a line costs more than a
small job takes, so at the default ``info`` level a busy worker logs only what needs attention;
``streamjobs_jobs_total`` counts successes; ``"info"`` shows every success, ``"off"`` none, not
even at debug); job received/started -> debug (off with ``job_level="off"``); failed/retried ->
warning; dead-lettered -> error; partitions, worker start/stop -> info (wait-tier partitions
summarised per job topic); the stop line carries the jobs succeeded, retried and dead-lettered
since start and the seconds run; commit done and lag samples -> debug (they come every second
or more often); commit failed -> warning; broker status -> info when it recovers, warning when
it is lost (logged on change only). ``LoopAlive`` and ``InFlightChanged`` are never logged:
they are heartbeats, not news.

``LogListener.attach`` subscribes only to the events whose level the logger lets through, so
at ``info`` the worker's ``bus.wants(JobReceived)`` is False and debug events are never built.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

from ..errors import ConfigError
from ..events import (
    BreakerChanged,
    BrokerStatus,
    CommitDone,
    CommitFailed,
    Event,
    EventBus,
    InlineChanged,
    JobDeadLettered,
    JobDuplicate,
    JobEvent,
    JobFailed,
    JobReceived,
    JobRetried,
    JobsSucceeded,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    LagSampled,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    PartitionThrottled,
    ScheduleFired,
    SchedulerOwnership,
    ScheduleSkipped,
    SlotFreed,
    SlotStuck,
    TransactionAborted,
    WorkerStarted,
    WorkerStopped,
    WorkerStopping,
)

__all__ = ["JOB_LEVELS", "LogListener", "configure_logging", "summarise_partitions"]

JOB_LEVELS = ("debug", "info", "off")

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_STDLIB_HANDLER_MARK = "_streamjobs_handler"


def _level_number(level: str) -> int:
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ConfigError("log_level", f"{level!r} is not one of {', '.join(_LEVELS)}") from None


def _dumps(obj: Any, **_: Any) -> str:
    # orjson, because this runs once per logged job; default=str keeps odd values from raising.
    return orjson.dumps(obj, default=str).decode()


def configure_logging(
    level: str = "info", json: bool = True, *, stream: TextIO | None = None
) -> None:
    """Configure structlog (and the stdlib ``streamjobs`` logger) for the worker process.

    ``json=True`` writes one JSON object per line (``timestamp``, ``level``, ``event`` + fields);
    ``json=False`` writes human-readable console lines. ``stream`` defaults to ``sys.stderr``.
    """
    min_level = _level_number(level)
    out = stream if stream is not None else sys.stderr
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if json
        else structlog.dev.ConsoleRenderer(colors=False, sort_keys=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    # Library code below the listeners (e.g. EventBus reporting a broken listener) uses the
    # stdlib logger; render it the same way so stderr stays one format.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
            foreign_pre_chain=shared,
        )
    )
    setattr(handler, _STDLIB_HANDLER_MARK, True)
    stdlib = logging.getLogger("streamjobs")
    for old in [h for h in stdlib.handlers if getattr(h, _STDLIB_HANDLER_MARK, False)]:
        stdlib.removeHandler(old)
    stdlib.addHandler(handler)
    stdlib.setLevel(min_level)
    stdlib.propagate = False


def _job_fields(e: JobEvent) -> dict[str, Any]:
    return {
        "job_id": e.job_id,
        "job_type": e.job_type,
        "topic": e.topic,
        "partition": e.partition,
        "offset": e.offset,
        "attempt": e.attempt,
    }


# A wait-tier topic: <job topic>.retry.<duration> (streamjobs._names.retry_topic).
_TIER = re.compile(r"^(?P<base>.+)\.retry\.[0-9]+(?:ms|s|m|h)$")


def _ranges(numbers: list[int]) -> str:
    """[0, 1, 2, 5] -> "0-2,5"."""
    out: list[str] = []
    nums = sorted(numbers)
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(out)


def summarise_partitions(parts: tuple[tuple[str, int], ...] | tuple[str, ...]) -> list[str]:
    """One entry per job topic (``demo.emails[0-5]``) and one per job topic's wait tiers
    (``demo.emails.retry.*: 5 topics, 30 partitions``), instead of a line per partition.
    Topic names alone: ``demo.emails`` and ``demo.emails.retry.*: 5 topics``."""
    topics: dict[str, list[int]] = {}
    for item in parts:
        if isinstance(item, str):
            topics.setdefault(item, [])
        else:
            topics.setdefault(item[0], []).append(item[1])
    tiers: dict[str, list[int]] = {}  # base -> [topics, partitions]
    out: list[str] = []
    for topic in sorted(topics):
        m = _TIER.match(topic)
        if m is None:
            out.append(f"{topic}[{_ranges(topics[topic])}]" if topics[topic] else topic)
        else:
            count = tiers.setdefault(m["base"], [0, 0])
            count[0] += 1
            count[1] += len(topics[topic])
    for base, (n_topics, n_parts) in sorted(tiers.items()):
        text = f"{base}.retry.*: {n_topics} topic{'s' if n_topics != 1 else ''}"
        if n_parts:
            text += f", {n_parts} partition{'s' if n_parts != 1 else ''}"
        out.append(text)
    return out


class LogListener:
    """Turns events into structlog calls on ``structlog.get_logger("streamjobs")``."""

    def __init__(self, logger: Any | None = None, *, job_level: str = "debug") -> None:
        """``job_level``: the level of the ``job.succeeded`` line, or ``"off"``."""
        if job_level not in JOB_LEVELS:
            raise ConfigError("job_log_level", f"{job_level!r} is not one of "
                                               f"{', '.join(JOB_LEVELS)}")
        # bind() resolves the lazy proxy once against the current configuration, so each
        # call below is a direct method call (a no-op when the level filters it out).
        self._log: Any = logger if logger is not None else structlog.get_logger("streamjobs").bind()
        self.job_level = job_level
        self._broker_reachable: bool | None = None
        # job outcomes since start, for the stop line: succeeded, retried, dead-lettered
        self._counts = [0, 0, 0]

    def enabled(self, level: str) -> bool:
        check = getattr(self._log, "is_enabled_for", None)
        return True if check is None else bool(check(_LEVELS[level]))

    def attach(self, bus: EventBus) -> None:
        """Subscribe to the events this logger would actually write at its level."""
        Row = tuple[str, type[Event], Callable[[Any], None]]
        per_job: list[Row] = [] if self.job_level == "off" else [
            ("debug", JobReceived, self.on_received),
            ("debug", JobStarted, self.on_started),
            (self.job_level, JobSucceeded, self.on_succeeded)]
        table: list[Row] = [
            *per_job,
            # Counting for the stop line: summaries, never one event object per job.
            ("info", JobsSucceeded, self.count_succeeded),
            ("warning", JobFailed, self.on_failed),
            ("warning", JobRetried, self.on_retried),
            ("error", JobDeadLettered, self.on_dead_lettered),
            ("info", PartitionsAssigned, self.on_partitions),
            ("info", PartitionsRevoked, self.on_partitions),
            ("info", PartitionsLost, self.on_partitions),
            ("debug", CommitDone, self.on_commit_done),
            ("warning", CommitFailed, self.on_commit_failed),
            ("warning", TransactionAborted, self.on_transaction_aborted),
            ("info", WorkerStarted, self.on_worker_started),
            ("info", WorkerStopping, self.on_worker_stopping),
            ("info", WorkerStopped, self.on_worker_stopped),
            ("debug", LagSampled, self.on_lag),
            ("info", BrokerStatus, self.on_broker_status),
            ("info", JobDuplicate, self.on_duplicate),
            ("warning", JobTimedOut, self.on_timed_out),
            ("error", SlotStuck, self.on_slot_stuck),
            ("info", SlotFreed, self.on_slot_freed),
            ("info", InlineChanged, self.on_inline),
            ("info", ScheduleFired, self.on_schedule_fired),
            ("warning", ScheduleSkipped, self.on_schedule_skipped),
            ("info", SchedulerOwnership, self.on_scheduler_owner),
            ("info", BreakerChanged, self.on_breaker),
            ("debug", PartitionThrottled, self.on_throttled),
        ]
        for level, event_type, handler in table:
            if self.enabled(level):
                bus.subscribe(handler, event_type)

    def __call__(self, event: Event) -> None:
        """Generic entry point (e.g. ``bus.subscribe(listener)``); ``attach`` is cheaper."""
        handler = getattr(self, _HANDLERS.get(type(event), ""), None)
        if handler is not None:
            handler(event)

    # --- jobs ------------------------------------------------------------------------

    def on_received(self, e: JobReceived) -> None:
        self._log.debug("job.received", **_job_fields(e))

    def on_started(self, e: JobStarted) -> None:
        self._log.debug("job.started", **_job_fields(e))

    def on_succeeded(self, e: JobSucceeded) -> None:
        log = self._log.info if self.job_level == "info" else self._log.debug
        log("job.succeeded", duration_ms=round(e.duration_s * 1000, 3), **_job_fields(e))

    def count_succeeded(self, e: JobsSucceeded) -> None:
        self._counts[0] += len(e.durations_s)

    def on_failed(self, e: JobFailed) -> None:
        self._log.warning(
            "job.failed",
            duration_ms=round(e.duration_s * 1000, 3),
            error_class=e.error_class,
            error_message=e.error_message,
            will_retry=e.will_retry,
            **_job_fields(e),
        )

    def on_retried(self, e: JobRetried) -> None:
        self._counts[1] += 1
        self._log.warning(
            "job.retried", delay_s=e.delay_s, retry_topic=e.retry_topic, **_job_fields(e)
        )

    def on_dead_lettered(self, e: JobDeadLettered) -> None:
        self._counts[2] += 1
        self._log.error(
            "job.dead_lettered", reason=e.reason, dlq_topic=e.dlq_topic, **_job_fields(e)
        )

    def on_duplicate(self, e: JobDuplicate) -> None:
        self._log.info("job.duplicate", unique_key=e.unique_key, first_offset=e.first_offset,
                       **_job_fields(e))

    def on_timed_out(self, e: JobTimedOut) -> None:
        self._log.warning("job.timed_out", timeout_s=e.timeout_s, **_job_fields(e))

    def on_slot_stuck(self, e: SlotStuck) -> None:
        self._log.error("slot.stuck", slot=e.slot, stuck=e.stuck, limit=e.limit,
                        replaced=e.replaced, timeout_s=e.timeout_s, **_job_fields(e))

    def on_slot_freed(self, e: SlotFreed) -> None:
        self._log.info("slot.freed", job_id=e.job_id, job_type=e.job_type,
                       ran_s=round(e.ran_s, 3), stuck=e.stuck, limit=e.limit)

    def on_inline(self, e: InlineChanged) -> None:
        self._log.info("handler.inline" if e.inline else "handler.pooled", job_type=e.job_type,
                       per_job_us=round(e.per_job_s * 1e6, 1), reason=e.reason)

    # --- schedules -------------------------------------------------------------------

    def on_schedule_fired(self, e: ScheduleFired) -> None:
        self._log.info("schedule.fired", schedule=e.schedule, job_type=e.job_type,
                       tick=_iso(e.tick_ms), job_id=e.job_id, late_s=round(e.late_s, 3))

    def on_schedule_skipped(self, e: ScheduleSkipped) -> None:
        self._log.warning("schedule.skipped", schedule=e.schedule, count=e.count,
                          through_tick=_iso(e.through_tick_ms))

    def on_scheduler_owner(self, e: SchedulerOwnership) -> None:
        self._log.info("schedules.owner" if e.owner else "schedules.released", pid=os.getpid())

    # --- flow control ----------------------------------------------------------------

    def on_breaker(self, e: BreakerChanged) -> None:
        log = self._log.warning if e.state == "open" else self._log.info
        log(f"breaker.{e.state}", job_type=e.job_type, previous=e.previous, reason=e.reason,
            cooldown_s=e.cooldown_s)

    def on_throttled(self, e: PartitionThrottled) -> None:
        self._log.debug("partition.throttled", job_type=e.job_type, topic=e.topic,
                        partition=e.partition, reason=e.reason,
                        resume_in_s=round(e.resume_in_s, 3))

    # --- consumer group and process --------------------------------------------------

    def on_partitions(self, e: PartitionsAssigned | PartitionsRevoked | PartitionsLost) -> None:
        name = {
            PartitionsAssigned: "partitions.assigned",
            PartitionsRevoked: "partitions.revoked",
            PartitionsLost: "partitions.lost",
        }[type(e)]
        self._log.info(name, partitions=summarise_partitions(e.partitions),
                       count=len(e.partitions))

    def on_commit_done(self, e: CommitDone) -> None:
        self._log.debug("commit.done", offsets=[f"{t}[{p}]@{o}" for t, p, o in e.offsets])

    def on_commit_failed(self, e: CommitFailed) -> None:
        self._log.warning("commit.failed", error=e.error)

    def on_transaction_aborted(self, e: TransactionAborted) -> None:
        self._log.warning("transaction.aborted", error=e.error,
                          rewound=[f"{t}[{p}]@{o}" for t, p, o in e.rewound])

    def on_worker_started(self, e: WorkerStarted) -> None:
        self._counts = [0, 0, 0]
        self._log.info(
            "worker.started",
            group_id=e.group_id,
            topics=summarise_partitions(e.topics),
            concurrency=e.concurrency,
            pid=e.pid,
        )

    def on_worker_stopping(self, e: WorkerStopping) -> None:
        self._log.info("worker.stopping", reason=e.reason)

    def on_worker_stopped(self, e: WorkerStopped) -> None:
        succeeded, retried, dead = self._counts
        self._log.info("worker.stopped", reason=e.reason, succeeded=succeeded, retried=retried,
                       dead_lettered=dead, seconds=round(e.ran_s, 1))

    def serving(self, host: str, port: int) -> None:
        """The metrics and health server's address, once at start."""
        self._log.info("metrics.listening", address=f"{host}:{port}",
                       paths="/metrics /healthz /readyz")

    def on_lag(self, e: LagSampled) -> None:
        self._log.debug("consumer.lag", topic=e.topic, partition=e.partition, lag=e.lag)

    def on_broker_status(self, e: BrokerStatus) -> None:
        # Workers sample the broker periodically; only a change is news.
        if e.reachable == self._broker_reachable:
            return
        first = self._broker_reachable is None
        self._broker_reachable = e.reachable
        if not e.reachable:
            self._log.warning("broker.unreachable", detail=e.detail)
        elif not first:
            self._log.info("broker.reachable", detail=e.detail)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


_HANDLERS: dict[type[Event], str] = {
    JobReceived: "on_received",
    JobStarted: "on_started",
    JobSucceeded: "on_succeeded",
    JobFailed: "on_failed",
    JobRetried: "on_retried",
    JobDeadLettered: "on_dead_lettered",
    PartitionsAssigned: "on_partitions",
    PartitionsRevoked: "on_partitions",
    PartitionsLost: "on_partitions",
    CommitDone: "on_commit_done",
    CommitFailed: "on_commit_failed",
    TransactionAborted: "on_transaction_aborted",
    WorkerStarted: "on_worker_started",
    WorkerStopping: "on_worker_stopping",
    WorkerStopped: "on_worker_stopped",
    JobsSucceeded: "count_succeeded",
    LagSampled: "on_lag",
    BrokerStatus: "on_broker_status",
    JobDuplicate: "on_duplicate",
    JobTimedOut: "on_timed_out",
    SlotStuck: "on_slot_stuck",
    SlotFreed: "on_slot_freed",
    InlineChanged: "on_inline",
    ScheduleFired: "on_schedule_fired",
    ScheduleSkipped: "on_schedule_skipped",
    SchedulerOwnership: "on_scheduler_owner",
    BreakerChanged: "on_breaker",
    PartitionThrottled: "on_throttled",
}
