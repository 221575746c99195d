"""Publishes this worker's reports (``streamjobs._reports``) from its events.

Counting costs next to nothing per job: successes arrive as batch summaries
(``JobsSucceeded``), failures, retries and dead letters one by one (rare by nature), and each
is a list increment under a lock. A daemon thread owns a small producer and publishes a report
every ``REPORT_EVERY`` seconds, at start, and a final ``stopped`` one on ``close()``: the poll
loop never produces, flushes or waits for it. A missing reports topic (``topics apply`` not
run) is logged once and reporting stops; the worker itself is unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import _connection as connection
from .._config import KafkaConfig
from .._headers import hostname
from .._reports import OUTCOMES, REPORT_EVERY, WorkerReport, worker_id
from ..events import (
    Event,
    EventBus,
    InFlightChanged,
    JobDeadLettered,
    JobFailed,
    JobRetried,
    JobsSucceeded,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    WorkerStarted,
    WorkerStopping,
)
from ._metrics import UNKNOWN_JOB_TYPE

__all__ = ["ReportListener"]

_log = logging.getLogger("streamjobs.reports")
_SUCCEEDED, _FAILED, _RETRIED, _DEAD = range(4)


class ReportListener:
    """Counts a worker's outcomes per job type and publishes them to ``topic``."""

    def __init__(self, config: KafkaConfig, topic: str, *, every: float = REPORT_EVERY,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.topic = topic
        self.every = every
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._assigned: set[tuple[str, int]] = set()
        self._in_flight = 0
        self._group: str | None = None
        self._pid = os.getpid()
        self._host = hostname()
        self._started_ms = 0
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Any = None
        self.published = 0  # reports acknowledged by the broker (tests, debugging)

    def attach(self, bus: EventBus) -> None:
        handlers: list[tuple[type[Event], Callable[[Any], None]]] = [
            (JobsSucceeded, self.on_succeeded),
            (JobFailed, self.on_failed),
            (JobRetried, self.on_retried),
            (JobDeadLettered, self.on_dead),
            (InFlightChanged, self.on_in_flight),
            (PartitionsAssigned, self.on_assigned),
            (PartitionsRevoked, self.on_removed),
            (PartitionsLost, self.on_removed),
            (WorkerStarted, self.on_started),
            (WorkerStopping, self.on_stopping),
        ]
        for event_type, handler in handlers:
            bus.subscribe(handler, event_type)

    # -- events (worker threads) ----------------------------------------------------------------

    def _add(self, job_type: str, outcome: int, n: int = 1) -> None:
        with self._lock:
            counts = self._counts.get(job_type)
            if counts is None:
                counts = self._counts[job_type] = [0, 0, 0, 0]
            counts[outcome] += n

    def on_succeeded(self, e: JobsSucceeded) -> None:
        self._add(e.job_type, _SUCCEEDED, len(e.durations_s))

    def on_failed(self, e: JobFailed) -> None:
        self._add(e.job_type, _FAILED)

    def on_retried(self, e: JobRetried) -> None:
        self._add(e.job_type, _RETRIED)

    def on_dead(self, e: JobDeadLettered) -> None:
        self._add(e.job_type or UNKNOWN_JOB_TYPE, _DEAD)

    def on_in_flight(self, e: InFlightChanged) -> None:
        self._in_flight = e.count

    def on_assigned(self, e: PartitionsAssigned) -> None:
        with self._lock:
            self._assigned.update(e.partitions)

    def on_removed(self, e: PartitionsRevoked | PartitionsLost) -> None:
        with self._lock:
            self._assigned.difference_update(e.partitions)

    def on_started(self, e: WorkerStarted) -> None:
        self._group = e.group_id
        self._pid = e.pid
        self._started_ms = int(self._clock() * 1000)
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="streamjobs-reports")
            self._thread.start()
        self._wake.set()

    def on_stopping(self, e: WorkerStopping) -> None:
        self._wake.set()

    # -- reports ------------------------------------------------------------------------------

    @property
    def worker_id(self) -> str | None:
        return None if self._group is None else worker_id(self._host, self._pid, self._group)

    def counts(self) -> dict[str, dict[str, int]]:
        """Job type -> outcome -> jobs so far."""
        with self._lock:
            return {t: dict(zip(OUTCOMES, c, strict=True)) for t, c in self._counts.items()}

    def report(self, *, stopped: bool = False) -> WorkerReport | None:
        """This worker's report now (None before it started)."""
        wid = self.worker_id
        if wid is None or self._group is None:
            return None
        counters = self.counts()
        with self._lock:
            assigned = tuple(sorted(self._assigned))
        return WorkerReport(wid, self._group, self._host, self._pid, int(self._clock() * 1000),
                            self._started_ms, 0 if stopped else self._in_flight, counters,
                            assigned, stopped)

    def _run(self) -> None:
        producer = self._producer = connection.producer(self.config, {
            "linger.ms": 50, "message.timeout.ms": 30_000, "queue.buffering.max.messages": 1000})
        try:
            meta = producer.list_topics(self.topic, timeout=10)
            tmd = meta.topics.get(self.topic)
            if tmd is None or tmd.error is not None:
                _log.warning("worker reports topic %r missing (run `streamjobs topics apply`): "
                             "this worker will not show on the dashboard", self.topic)
                return
        except connection.ClientError as exc:
            _log.warning("worker reports disabled: %s", exc)
            return
        while not self._closing.is_set():
            self._publish(producer)
            self._wake.wait(self.every)
            self._wake.clear()
        self._publish(producer, stopped=True)
        producer.flush(5)

    def _publish(self, producer: Any, *, stopped: bool = False) -> None:
        rep = self.report(stopped=stopped)
        if rep is None:
            return
        # BufferError: the broker has not taken the last ones; this one is stale soon anyway.
        with contextlib.suppress(BufferError):
            producer.produce(self.topic, key=rep.worker_id.encode(), value=rep.to_bytes(),
                             on_delivery=self._delivered)
        producer.poll(0)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.published += 1
        else:
            _log.debug("worker report not delivered: %s", err)

    def close(self, timeout: float = 10.0) -> None:
        """Publish the final ``stopped`` report and stop the thread."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
