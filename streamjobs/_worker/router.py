"""The failure router: where a failed or unreadable record goes, and the record that takes it.

One place decides retry / dead-letter / unknown-schema / poison and builds the outgoing record
(topic, key, value, headers) with the status transition and the event that report it. The
worker's runner sends what ``Router`` returns; ``streamjobs.testing.JobRunner`` builds its
records with ``route`` too, so the in-process harness and the worker cannot disagree.

Pure: no Kafka, no clock (callers pass ``now_ms``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .. import _headers as h
from .._names import dlq_topic, retry_topic
from .._retry import RetryPolicy, pick_tier
from .._status.record import Transition
from ..events import JobDeadLettered, JobRetried
from .context import JobContext
from .failures import Decision, Failure, Origin, dead_letter_record, retry_record

__all__ = ["Routed", "Router", "last_wait_topic", "route", "unknown_schema_decision"]


@dataclass(frozen=True, slots=True)
class Routed:
    """One record to produce for the record at ``offset``; that offset is finished once the
    broker acknowledged it (and the status record with it, when ``status`` is set)."""

    offset: int
    topic: str
    key: bytes | None
    value: bytes | None
    headers: h.Headers
    event: Any = None  # JobRetried / JobDeadLettered, emitted once acknowledged
    status: tuple[str, str, Transition] | None = None  # (job id, job type, transition)
    delay: float | None = None  # retried: seconds until the next attempt
    reason: str | None = None  # dead-lettered: why


def unknown_schema_decision(attempt: int, policy: RetryPolicy) -> Decision:
    """A record written with a writer schema this deploy does not know (a newer deploy wrote
    it) climbs the job's retry ladder, then is dead-lettered with ``unknown_schema``."""
    delay = policy.delay_for(attempt)
    return Decision(delay=delay) if delay is not None else Decision(reason="unknown_schema")


def route(key: bytes | None, value: bytes | None, headers: h.Headers, *, origin: Origin,
          failure: Failure, decision: Decision, attempt: int, job_topic: str,
          tiers: Sequence[float], now_ms: int,
          ident: tuple[str, str, str] | None = None) -> Routed:
    """The record that carries a failed attempt on: to the wait tier for ``decision.delay``,
    else to the dead-letter topic. ``ident`` (job id, job type, status mode) adds the status
    transition; without it (or with mode ``none`` or no id) there is none."""
    job_id, job_type = (ident[0], ident[1]) if ident is not None else ("", "")
    record_status = ident is not None and ident[2] != "none" and bool(ident[0])
    if decision.delay is not None:
        delay = decision.delay
        topic = retry_topic(job_topic, pick_tier(delay, tiers))
        due_at_ms = now_ms + round(delay * 1000)
        k, v, hdrs = retry_record(key, value, headers, origin=origin, failure=failure,
                                  attempt=attempt, target=job_topic, due_at_ms=due_at_ms,
                                  now_ms=now_ms)
        status = (job_id, job_type, Transition(
            "retrying", now_ms, attempt, origin.host, failure.error_class, failure.message,
            topic, due_at_ms=due_at_ms)) if record_status else None
        event = JobRetried(job_id, job_type, origin.topic, origin.partition, origin.offset,
                           attempt, delay, topic)
        return Routed(origin.offset, topic, k, v, hdrs, event, status, delay=delay)
    reason = decision.reason or "max_attempts"
    topic = dlq_topic(job_topic)
    k, v, hdrs = dead_letter_record(key, value, headers, origin=origin, failure=failure,
                                    reason=reason, now_ms=now_ms)
    status = (job_id, job_type, Transition(
        "dead", now_ms, attempt, origin.host, failure.error_class, failure.message, topic,
        reason=reason)) if record_status else None
    dead = JobDeadLettered(job_id, job_type, origin.topic, origin.partition, origin.offset,
                           attempt, reason, topic)
    return Routed(origin.offset, topic, k, v, hdrs, dead, status, reason=reason)


def last_wait_topic(job_topic: str, tiers: Sequence[float], now_ms: int, due_ms: int) -> str:
    """The tier topic a record waiting from ``now_ms`` until ``due_ms`` is read from last: a
    tier shorter than the wait wakes it early and ``Router.rewait`` moves it to the tier that
    fits the rest (as the worker does, hop by hop)."""
    tier = pick_tier((due_ms - now_ms) / 1000, tiers)
    while now_ms + tier * 1000 < due_ms:
        now_ms += round(tier * 1000)
        tier = pick_tier((due_ms - now_ms) / 1000, tiers)
    return retry_topic(job_topic, tier)


class Router:
    """``route`` with the worker's constants: its host, group, tiers and whether it records
    job status at all."""

    def __init__(self, tiers: Mapping[str, Sequence[float]], host: str, group: str,
                 records_status: bool) -> None:
        self.tiers = tiers
        self.host = host
        self.group = group
        self.records_status = records_status

    def failed(self, ctx: JobContext, failure: Failure, decision: Decision,
               now_ms: int) -> Routed:
        """A handler's failure (``decision`` from ``failures.decide``)."""
        origin = Origin(ctx.topic, ctx.partition, ctx.offset, ctx._timestamp_ms, self.host,
                        self.group)
        ident = (ctx.job_id, ctx.job_type, ctx._job.status) if self.records_status else None
        return route(ctx.key, ctx._value, ctx.headers, origin=origin, failure=failure,
                     decision=decision, attempt=ctx.attempt, job_topic=ctx.job_topic,
                     tiers=self.tiers[ctx.job_topic], now_ms=now_ms, ident=ident)

    def unreadable(self, key: bytes | None, value: bytes | None, headers: h.Headers, *,
                   topic: str, partition: int, offset: int, timestamp_ms: int, job_topic: str,
                   reason: str, failure: Failure, attempt: int, policy: RetryPolicy | None,
                   status_mode: str, now_ms: int) -> Routed:
        """A record that could not become a job (poison: ``reason`` is ``missing_headers``,
        ``unknown_type``, ``decode_error`` or ``unknown_schema``). ``policy``: the job type's
        retry policy when the type is known (an unknown schema retries along it)."""
        origin = Origin(topic, partition, offset, timestamp_ms, self.host, self.group)
        meta = h.JobMeta.from_headers(headers)
        ident = ((meta.job_id or "", meta.job_type or "", status_mode)
                 if self.records_status else None)
        decision = Decision(reason=reason)
        if reason == "unknown_schema" and policy is not None:
            decision = unknown_schema_decision(attempt, policy)
            if decision.delay is None:
                # Past the ladder: dead-lettered as unknown_schema (the record's own reason).
                decision = Decision(reason=reason)
        return route(key, value, list(headers), origin=origin, failure=failure,
                     decision=decision, attempt=attempt, job_topic=job_topic,
                     tiers=self.tiers.get(job_topic, ()), now_ms=now_ms, ident=ident)

    def rewait(self, ctx: JobContext, now_ms: float) -> Routed:
        """A woken wait-tier record not due yet: to the largest tier that does not overshoot
        its due time (no status, no event: nothing happened to the job)."""
        due_at = ctx._due_at_ms or 0
        tier = pick_tier((due_at - now_ms) / 1000.0, self.tiers[ctx.job_topic])
        return Routed(ctx.offset, retry_topic(ctx.job_topic, tier), ctx.key, ctx._value,
                      ctx.headers)
