"""Prometheus metrics from worker events (names and labels are documented in
docs/observability.md; dashboards and alerts depend on them, so treat them as API).

Per-job cost is a dict lookup for the cached labelled children of the job type plus the
prometheus_client increments; ``labels()`` (which hashes and locks) runs once per job type.
Received and succeeded jobs arrive as summaries (``JobsReceived``, ``JobsSucceeded``): one
counter increment per batch and histogram buckets filled with one increment per bucket hit,
so the worker never builds per-job events for metrics. A run of jobs shorter than the first
duration bucket (the usual case for small handlers) fills that bucket without a duration per
job (``RunDurations.total``); a run whose jobs' end-to-end times share a bucket fills it from
the extremes and sums. The counts are exactly those of observing job by job (sums up to
float rounding), but for an inline slice timed as a whole that overran the first duration
bucket (``RunDurations.whole``: its overrun shows as one slow job) and its end-to-end
``_sum`` (each job's end within the slice): docs/observability.md "What they cost".
"""

from __future__ import annotations

import contextlib
import itertools
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from operator import sub, truediv
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ..events import (
    BreakerChanged,
    BrokerStatus,
    CommitDone,
    CommitFailed,
    Event,
    EventBus,
    InFlightChanged,
    JobDeadLettered,
    JobDuplicate,
    JobFailed,
    JobReceived,
    JobRetried,
    JobsReceived,
    JobsSucceeded,
    JobSucceeded,
    JobTimedOut,
    LagSampled,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    PartitionThrottled,
    RunDurations,
    ScheduleFired,
    SchedulerOwnership,
    ScheduleSkipped,
    SlotFreed,
    SlotStuck,
    WorkerStarted,
    WorkerStopping,
)

_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

__all__ = ["DURATION_BUCKETS", "END_TO_END_BUCKETS", "UNKNOWN_JOB_TYPE", "MetricsListener"]

# Handlers range from sub-millisecond to minutes.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
# End-to-end includes queueing, retries and scheduled delays: up to hours.
END_TO_END_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0,
)  # fmt: skip
# Poison records have no decodable job type; an empty label value would equal "absent".
UNKNOWN_JOB_TYPE = "unknown"


class _JobChildren(NamedTuple):
    received: Any
    succeeded: Any
    failed: Any
    retried: Any
    dead_lettered: Any
    duration: Any
    end_to_end: Any


class MetricsListener:
    """Counters, histograms and gauges of one worker, in ``registry`` (a fresh one if None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter(
            "streamjobs_jobs", "Jobs by outcome.", ["job_type", "outcome"], registry=r
        )
        self.jobs_received = Counter(
            "streamjobs_jobs_received", "Jobs decoded and accepted.", ["job_type"], registry=r
        )
        self.job_duration = Histogram(
            "streamjobs_job_duration_seconds",
            "Handler run time (successful and failed runs).",
            ["job_type"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.job_end_to_end = Histogram(
            "streamjobs_job_end_to_end_seconds",
            "From the job being queued (its record's timestamp; a retried or delayed job's "
            "sj-created-at) to successful completion.",
            ["job_type"],
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("streamjobs_in_flight", "Jobs currently running.", registry=r)
        self.consumer_lag = Gauge(
            "streamjobs_consumer_lag",
            "Records behind the log end, per assigned partition.",
            ["topic", "partition"],
            registry=r,
        )
        self.commits = Counter(
            "streamjobs_commits", "Offset commits by outcome.", ["outcome"], registry=r
        )
        self.dead_lettered = Counter(
            "streamjobs_dead_lettered",
            "Records sent to a dead-letter topic, by reason.",
            ["job_type", "reason"],
            registry=r,
        )
        self.assigned_partitions = Gauge(
            "streamjobs_assigned_partitions", "Partitions assigned to this worker.", registry=r
        )
        self.worker_up = Gauge(
            "streamjobs_worker_up", "1 while the worker runs, 0 once it stops.", registry=r
        )
        self.broker_reachable = Gauge(
            "streamjobs_broker_reachable", "1 if the last broker check succeeded.", registry=r
        )
        self.duplicates = Counter(
            "streamjobs_jobs_duplicate",
            "Records not run: duplicates of a unique job or of a schedule tick.",
            ["job_type"],
            registry=r,
        )
        self.timed_out = Counter(
            "streamjobs_jobs_timed_out",
            "Handlers past their timeout (async cancelled, sync abandoned in its thread; the "
            "job then takes the retry path).",
            ["job_type"],
            registry=r,
        )
        self.stuck_threads = Gauge(
            "streamjobs_stuck_threads",
            "Sync handler threads stuck past their timeout (at the stuck limit: not live).",
            registry=r,
        )
        self.stuck_limit = Gauge(
            "streamjobs_stuck_limit", "Stuck sync handler threads replaced before the worker "
            "reports itself not live.", registry=r,
        )
        self.schedule_fired = Counter(
            "streamjobs_schedule_fired", "Schedule ticks emitted by this worker.",
            ["schedule"], registry=r,
        )
        self.schedule_skipped = Counter(
            "streamjobs_schedule_skipped", "Missed schedule ticks not fired (catch-up policy).",
            ["schedule"], registry=r,
        )
        self.schedule_late = Histogram(
            "streamjobs_schedule_late_seconds", "From a tick's time to its emit.",
            buckets=DURATION_BUCKETS, registry=r,
        )
        self.scheduler_owner = Gauge(
            "streamjobs_scheduler_owner", "1 while this worker fires the schedules.", registry=r
        )
        self.throttled = Counter(
            "streamjobs_partition_throttled",
            "Partitions paused by a rate limit, a concurrency limit or an open breaker.",
            ["job_type", "reason"], registry=r,
        )
        self.breaker_state = Gauge(
            "streamjobs_breaker_state", "A job type's circuit: 0 closed, 1 half-open, 2 open.",
            ["job_type"], registry=r,
        )
        self.breaker_transitions = Counter(
            "streamjobs_breaker_transitions", "Circuit breaker transitions, by the new state.",
            ["job_type", "state"], registry=r,
        )
        # NaN until the first check, so an alert on "== 0" cannot fire for "not checked yet".
        self.broker_reachable.set(float("nan"))
        self._commit_ok = self.commits.labels(outcome="succeeded")
        self._commit_failed = self.commits.labels(outcome="failed")
        self._children: dict[str, _JobChildren] = {}
        self._dlq_children: dict[tuple[str, str], Any] = {}
        self._assigned: set[tuple[str, int]] = set()

    def attach(self, bus: EventBus) -> None:
        handlers: list[tuple[type[Event], Callable[[Any], None]]] = [
            (JobsReceived, self.on_received_summary),
            (JobsSucceeded, self.on_succeeded_summary),
            (JobFailed, self.on_failed),
            (JobRetried, self.on_retried),
            (JobDeadLettered, self.on_dead_lettered),
            (InFlightChanged, self.on_in_flight),
            (LagSampled, self.on_lag),
            (PartitionsAssigned, self.on_assigned),
            (PartitionsRevoked, self.on_removed),
            (PartitionsLost, self.on_removed),
            (CommitDone, self.on_commit_done),
            (CommitFailed, self.on_commit_failed),
            (WorkerStarted, self.on_worker_started),
            (WorkerStopping, self.on_worker_stopping),
            (BrokerStatus, self.on_broker_status),
            (JobDuplicate, self.on_duplicate),
            (JobTimedOut, self.on_timed_out),
            (SlotStuck, self.on_stuck),
            (SlotFreed, self.on_stuck),
            (ScheduleFired, self.on_schedule_fired),
            (ScheduleSkipped, self.on_schedule_skipped),
            (SchedulerOwnership, self.on_scheduler_owner),
            (PartitionThrottled, self.on_throttled),
            (BreakerChanged, self.on_breaker),
        ]
        for event_type, handler in handlers:
            bus.subscribe(handler, event_type)

    def _job(self, job_type: str) -> _JobChildren:
        children = self._children.get(job_type)
        if children is None:
            jt = job_type or UNKNOWN_JOB_TYPE
            children = _JobChildren(
                received=self.jobs_received.labels(job_type=jt),
                succeeded=self.jobs.labels(job_type=jt, outcome="succeeded"),
                failed=self.jobs.labels(job_type=jt, outcome="failed"),
                retried=self.jobs.labels(job_type=jt, outcome="retried"),
                dead_lettered=self.jobs.labels(job_type=jt, outcome="dead_lettered"),
                duration=self.job_duration.labels(job_type=jt),
                end_to_end=self.job_end_to_end.labels(job_type=jt),
            )
            self._children[job_type] = children
        return children

    # --- jobs ------------------------------------------------------------------------

    def on_received(self, e: JobReceived) -> None:
        self._job(e.job_type).received.inc()

    def on_succeeded(self, e: JobSucceeded) -> None:
        c = self._job(e.job_type)
        c.succeeded.inc()
        c.duration.observe(e.duration_s)
        if e.created_at_ms is not None:
            # Clock skew between producer and worker hosts can make this negative; clamp.
            c.end_to_end.observe(max(0.0, time.time() - e.created_at_ms / 1000.0))

    def on_received_summary(self, e: JobsReceived) -> None:
        self._job(e.job_type).received.inc(e.count)

    def on_succeeded_summary(self, e: JobsSucceeded) -> None:
        c = self._job(e.job_type)
        durations = e.durations_s
        c.succeeded.inc(len(durations))
        _observe_many(c.duration, durations)
        created = e.created_at_ms
        if _end_to_end_at_once(c.end_to_end, e):
            return
        if e.finished_at:
            ends = list(e.finished_at)
        else:  # back to back: job i finished at started_at + the durations up to it
            ends = list(itertools.accumulate(durations, initial=e.started_at))
            del ends[0]
        if None in created:
            pairs = [(end, ms) for end, ms in zip(ends, created, strict=True) if ms is not None]
            if not pairs:
                return
            ends = [end for end, _ in pairs]
            created = tuple(ms for _, ms in pairs)
        seconds = list(map(sub, ends, map(truediv, created, itertools.repeat(1000.0))))
        if min(seconds) < 0.0:  # clock skew between producer and worker hosts: clamp
            seconds = list(map(max, itertools.repeat(0.0), seconds))
        _observe_many(c.end_to_end, seconds)

    def on_failed(self, e: JobFailed) -> None:
        c = self._job(e.job_type)
        c.failed.inc()
        c.duration.observe(e.duration_s)

    def on_retried(self, e: JobRetried) -> None:
        self._job(e.job_type).retried.inc()

    def on_dead_lettered(self, e: JobDeadLettered) -> None:
        self._job(e.job_type).dead_lettered.inc()
        key = (e.job_type, e.reason)
        child = self._dlq_children.get(key)
        if child is None:
            child = self.dead_lettered.labels(
                job_type=e.job_type or UNKNOWN_JOB_TYPE, reason=e.reason
            )
            self._dlq_children[key] = child
        child.inc()

    def on_duplicate(self, e: JobDuplicate) -> None:
        self.duplicates.labels(job_type=e.job_type).inc()

    def on_timed_out(self, e: JobTimedOut) -> None:
        self.timed_out.labels(job_type=e.job_type).inc()

    def on_stuck(self, e: SlotStuck | SlotFreed) -> None:
        self.stuck_threads.set(e.stuck)
        self.stuck_limit.set(e.limit)

    # --- schedules -------------------------------------------------------------------

    def on_schedule_fired(self, e: ScheduleFired) -> None:
        self.schedule_fired.labels(schedule=e.schedule).inc()
        self.schedule_late.observe(e.late_s)

    def on_schedule_skipped(self, e: ScheduleSkipped) -> None:
        self.schedule_skipped.labels(schedule=e.schedule).inc(e.count)

    def on_scheduler_owner(self, e: SchedulerOwnership) -> None:
        self.scheduler_owner.set(1 if e.owner else 0)

    # --- flow control ----------------------------------------------------------------

    def on_throttled(self, e: PartitionThrottled) -> None:
        self.throttled.labels(job_type=e.job_type, reason=e.reason).inc()

    def on_breaker(self, e: BreakerChanged) -> None:
        self.breaker_state.labels(job_type=e.job_type).set(_BREAKER_STATES.get(e.state, 0))
        self.breaker_transitions.labels(job_type=e.job_type, state=e.state).inc()

    # --- gauges ----------------------------------------------------------------------

    def on_in_flight(self, e: InFlightChanged) -> None:
        self.in_flight.set(e.count)

    def on_lag(self, e: LagSampled) -> None:
        # A sample racing a revoke must not resurrect the series of a partition we lost.
        if (e.topic, e.partition) in self._assigned:
            self.consumer_lag.labels(topic=e.topic, partition=str(e.partition)).set(e.lag)

    def on_assigned(self, e: PartitionsAssigned) -> None:
        self._assigned.update(e.partitions)
        self.assigned_partitions.set(len(self._assigned))

    def on_removed(self, e: PartitionsRevoked | PartitionsLost) -> None:
        for topic, partition in e.partitions:
            self._assigned.discard((topic, partition))
            # KeyError: no lag sample was taken for it yet.
            with contextlib.suppress(KeyError):
                self.consumer_lag.remove(topic, str(partition))
        self.assigned_partitions.set(len(self._assigned))

    # --- commits and process ---------------------------------------------------------

    def on_commit_done(self, e: CommitDone) -> None:
        self._commit_ok.inc()

    def on_commit_failed(self, e: CommitFailed) -> None:
        self._commit_failed.inc()

    def on_worker_started(self, e: WorkerStarted) -> None:
        self.worker_up.set(1)

    def on_worker_stopping(self, e: WorkerStopping) -> None:
        self.worker_up.set(0)

    def on_broker_status(self, e: BrokerStatus) -> None:
        self.broker_reachable.set(1 if e.reachable else 0)


def _end_to_end_at_once(child: Any, e: JobsSucceeded) -> bool:
    """Observe every job's end-to-end time (its end minus its created-at) as one increment,
    without a value per job, when bounds of the chunk's extremes (earliest end minus latest
    created-at, latest end minus earliest created-at) fall in one bucket: the usual case, as
    a chunk's jobs were created and ran close together. False (nothing observed) otherwise,
    or when a job has no created-at."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    durations = e.durations_s
    created: tuple[int, ...] = e.created_at_ms  # type: ignore[assignment]  # checked below
    if bounds is None or buckets is None or total is None or not durations:
        return False
    try:  # a None among ints makes the comparisons raise: no separate pass looking for one
        if created[0] <= created[-1]:
            # Usually in order (a producer's emits): sorting an ordered tuple is one
            # comparison per job, a third of what min and max take (interleaved producers'
            # records cost up to about 1.2x min and max: still exact).
            ordered = sorted(created)
            earliest, latest = ordered[0], ordered[-1]
        else:
            earliest, latest = min(created), max(created)
    except TypeError:
        return False
    if earliest is None:  # (None,): min compared nothing
        return False
    n = len(created)
    # Sums relative to the first job's created-at: epoch seconds summed over a chunk would
    # lose the sub-millisecond part to rounding.
    ref_ms = created[0]
    ref = ref_ms / 1000.0
    if e.finished_at:
        ends = e.finished_at
        first_end, last_end = min(ends), max(ends)
        ends_since_ref = sum(map(sub, ends, itertools.repeat(ref)))
    elif isinstance(durations, RunDurations):  # the jobs' end times: no duration computed
        start, ran = e.started_at, durations.start
        first_end = start + (durations.first_end - ran)
        last_end = start + durations.total
        ends_since_ref = n * (start - ref) + durations.ends_sum()
    else:  # back to back: job i ended at started_at + the durations up to it
        start = e.started_at
        first_end, last_end = start + durations[0], start + sum(durations)
        ends_since_ref = n * (start - ref) + sum(itertools.accumulate(durations))
    low = first_end - latest / 1000.0
    bucket = bisect_left(bounds, low)
    if low < 0.0 or bucket != bisect_left(bounds, last_end - earliest / 1000.0):
        return False  # spread over buckets, or clock skew to clamp: value by value
    buckets[bucket].inc(n)
    total.inc(ends_since_ref - (sum(created) - n * ref_ms) / 1000.0)
    return True


def _observe_many(child: Any, values: Any) -> None:
    """``child.observe(v)`` for each value, in C-level passes. When all values fall in one
    bucket (the usual case for a chunk of similar jobs: its min and max share a bucket) that
    is one increment; otherwise sort, then one ``bisect`` per bucket bound, one increment per
    non-empty bucket. Uses the histogram child's bucket counters directly (prometheus_client
    has no bulk observe); falls back to ``observe`` when its internals differ or for a handful
    of values. A ``RunDurations`` whose whole run is within the first bucket needs no value
    at all: every job of the run took at most the run's length."""
    bounds = getattr(child, "_upper_bounds", None)
    buckets = getattr(child, "_buckets", None)
    total = getattr(child, "_sum", None)
    if (bounds is not None and buckets is not None and total is not None
            and isinstance(values, RunDurations) and values.total <= bounds[0]):
        buckets[0].inc(len(values))
        total.inc(values.total)
        return
    if bounds is None or buckets is None or total is None or len(values) < 4:
        for v in values:
            child.observe(v)
        return
    low = bisect_left(bounds, min(values))  # observe: first bucket with v <= bound
    if low == bisect_left(bounds, max(values)):
        buckets[low].inc(len(values))
        total.inc(sum(values))
        return
    ordered = sorted(values)
    below = 0
    for i, bound in enumerate(bounds):
        upto = bisect_right(ordered, bound, below)
        if upto > below:
            buckets[i].inc(upto - below)
            below = upto
    total.inc(sum(ordered))
