"""Structured logs from worker events: one JSON line per event on stderr (structlog).

Levels: job received/started/succeeded -> debug (one line per job costs tens of µs, more
than a small job: at the default ``info`` level a busy worker logs only what needs attention;
``streamjobs_jobs_total`` counts successes); failed/retried -> warning;
dead-lettered -> error; partitions, worker start/stop -> info; commit done and lag samples ->
debug (they come every second or more often); commit failed -> warning; broker status ->
info when it recovers, warning when it is lost (logged on change only). ``LoopAlive`` and
``InFlightChanged`` are never logged: they are heartbeats, not news.

``LogListener.attach`` subscribes only to the events whose level the logger lets through, so
at ``info`` the worker's ``bus.wants(JobReceived)`` is False and debug events are never built.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

from ..errors import ConfigError
from ..events import (
    BrokerStatus,
    CommitDone,
    CommitFailed,
    Event,
    EventBus,
    JobDeadLettered,
    JobDuplicate,
    JobEvent,
    JobFailed,
    JobReceived,
    JobRetried,
    JobStarted,
    JobSucceeded,
    JobTimedOut,
    LagSampled,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    ScheduleFired,
    SchedulerOwnership,
    ScheduleSkipped,
    WorkerStarted,
    WorkerStopping,
)

__all__ = ["LogListener", "configure_logging"]

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
_STDLIB_HANDLER_MARK = "_streamjobs_handler"


def _level_number(level: str) -> int:
    try:
        return _LEVELS[level.lower()]
    except KeyError:
        raise ConfigError("log_level", f"{level!r} is not one of {', '.join(_LEVELS)}") from None


def _dumps(obj: Any, **_: Any) -> str:
    # orjson is ~10x faster than json.dumps; default=str keeps odd values from raising.
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
        else structlog.dev.ConsoleRenderer(colors=False)
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


def _partitions(parts: tuple[tuple[str, int], ...]) -> list[str]:
    return [f"{t}[{p}]" for t, p in parts]


class LogListener:
    """Turns events into structlog calls on ``structlog.get_logger("streamjobs")``."""

    def __init__(self, logger: Any | None = None) -> None:
        # bind() resolves the lazy proxy once against the current configuration, so each
        # call below is a direct method call (a no-op when the level filters it out).
        self._log: Any = logger if logger is not None else structlog.get_logger("streamjobs").bind()
        self._broker_reachable: bool | None = None

    def enabled(self, level: str) -> bool:
        check = getattr(self._log, "is_enabled_for", None)
        return True if check is None else bool(check(_LEVELS[level]))

    def attach(self, bus: EventBus) -> None:
        """Subscribe to the events this logger would actually write at its level."""
        table: list[tuple[str, type[Event], Callable[[Any], None]]] = [
            ("debug", JobReceived, self.on_received),
            ("debug", JobStarted, self.on_started),
            ("debug", JobSucceeded, self.on_succeeded),
            ("warning", JobFailed, self.on_failed),
            ("warning", JobRetried, self.on_retried),
            ("error", JobDeadLettered, self.on_dead_lettered),
            ("info", PartitionsAssigned, self.on_partitions),
            ("info", PartitionsRevoked, self.on_partitions),
            ("info", PartitionsLost, self.on_partitions),
            ("debug", CommitDone, self.on_commit_done),
            ("warning", CommitFailed, self.on_commit_failed),
            ("info", WorkerStarted, self.on_worker_started),
            ("info", WorkerStopping, self.on_worker_stopping),
            ("debug", LagSampled, self.on_lag),
            ("info", BrokerStatus, self.on_broker_status),
            ("info", JobDuplicate, self.on_duplicate),
            ("warning", JobTimedOut, self.on_timed_out),
            ("info", ScheduleFired, self.on_schedule_fired),
            ("warning", ScheduleSkipped, self.on_schedule_skipped),
            ("info", SchedulerOwnership, self.on_scheduler_owner),
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
        self._log.debug(
            "job.succeeded", duration_ms=round(e.duration_s * 1000, 3), **_job_fields(e)
        )

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
        self._log.warning(
            "job.retried", delay_s=e.delay_s, retry_topic=e.retry_topic, **_job_fields(e)
        )

    def on_dead_lettered(self, e: JobDeadLettered) -> None:
        self._log.error(
            "job.dead_lettered", reason=e.reason, dlq_topic=e.dlq_topic, **_job_fields(e)
        )

    def on_duplicate(self, e: JobDuplicate) -> None:
        self._log.info("job.duplicate", unique_key=e.unique_key, first_offset=e.first_offset,
                       **_job_fields(e))

    def on_timed_out(self, e: JobTimedOut) -> None:
        self._log.warning("job.timed_out", timeout_s=e.timeout_s, **_job_fields(e))

    # --- schedules -------------------------------------------------------------------

    def on_schedule_fired(self, e: ScheduleFired) -> None:
        self._log.info("schedule.fired", schedule=e.schedule, job_type=e.job_type,
                       tick=_iso(e.tick_ms), job_id=e.job_id, late_s=round(e.late_s, 3))

    def on_schedule_skipped(self, e: ScheduleSkipped) -> None:
        self._log.warning("schedule.skipped", schedule=e.schedule, count=e.count,
                          through_tick=_iso(e.through_tick_ms))

    def on_scheduler_owner(self, e: SchedulerOwnership) -> None:
        self._log.info("schedules.owner" if e.owner else "schedules.released", pid=os.getpid())

    # --- consumer group and process --------------------------------------------------

    def on_partitions(self, e: PartitionsAssigned | PartitionsRevoked | PartitionsLost) -> None:
        name = {
            PartitionsAssigned: "partitions.assigned",
            PartitionsRevoked: "partitions.revoked",
            PartitionsLost: "partitions.lost",
        }[type(e)]
        self._log.info(name, partitions=_partitions(e.partitions), count=len(e.partitions))

    def on_commit_done(self, e: CommitDone) -> None:
        self._log.debug("commit.done", offsets=[f"{t}[{p}]@{o}" for t, p, o in e.offsets])

    def on_commit_failed(self, e: CommitFailed) -> None:
        self._log.warning("commit.failed", error=e.error)

    def on_worker_started(self, e: WorkerStarted) -> None:
        self._log.info(
            "worker.started",
            group_id=e.group_id,
            topics=list(e.topics),
            concurrency=e.concurrency,
            pid=e.pid,
        )

    def on_worker_stopping(self, e: WorkerStopping) -> None:
        self._log.info("worker.stopping", reason=e.reason)

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
    WorkerStarted: "on_worker_started",
    WorkerStopping: "on_worker_stopping",
    LagSampled: "on_lag",
    BrokerStatus: "on_broker_status",
    JobDuplicate: "on_duplicate",
    JobTimedOut: "on_timed_out",
    ScheduleFired: "on_schedule_fired",
    ScheduleSkipped: "on_schedule_skipped",
    SchedulerOwnership: "on_scheduler_owner",
}
