"""Intake: records from Kafka to runnable jobs (poll thread only).

For each record: header lookup, Avro decode (either framing), a ``JobContext``; a record
without sj- headers on a topic of one job type is that type (``_foreign``); poison (missing headers,
unknown type, undecodable bytes) goes to the dead-letter topic with its raw bytes; an unknown
writer schema (a newer deploy wrote it) climbs the retry ladder first. Records on wait topics
(retry tiers, delayed jobs) wake at ``min(sj-due-at, append time + tier)``: those waking within
the horizon wait in a timer heap, a later one pauses its partition until shortly before it
wakes. A woken record runs if due, else moves to the largest tier that does not overshoot.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import time
import uuid
from typing import TYPE_CHECKING, Any

from .. import headers as h
from .._avro_reader import BodyReader
from ..codec import Codec
from ..errors import DecodeError, UnknownSchema
from ..events import JobDeadLettered, JobReceived, JobRetried, JobsReceived
from ..framing import header_of
from ..names import dlq_topic, retry_topic
from ..retry import pick_tier
from ..status.record import Transition
from .context import JobContext, RecordContext
from .failures import (
    Decision,
    Failure,
    Origin,
    dead_letter_record,
    describe,
    retry_record,
)
from .offsets import PartitionTracker
from .outbox import Outgoing
from .routes import Route, Routes

if TYPE_CHECKING:
    from ..unique import SeenSet

if TYPE_CHECKING:
    from .runner import Worker

__all__ = ["Intake", "Part"]

# Ids of records that came without sj- headers (foreign producers): stable across redeliveries.
_FOREIGN_IDS = uuid.UUID("5f0c8a52-3d1e-4c56-9a57-1d9e3b7f2c10")
_scan = h.scan


class Part:
    """State of one assigned partition (a new object per assignment, so late completions for
    an earlier assignment are recognised by ``gone``)."""

    __slots__ = ("acks", "consumer", "dedupe", "gone", "hold_until_ms", "is_async", "job_topic",
                 "next_fetch", "partition", "paused", "paused_kafka", "revoked", "single_type",
                 "status_every",
                 "stored", "tasks", "topic", "tracker", "wait")

    def __init__(self, topic: str, partition: int, routes: Routes, ordering: str,
                 consumer: Any = None) -> None:
        self.topic = topic
        self.partition = partition
        self.consumer = consumer  # the one of the worker's two consumers that owns it
        self.tracker = PartitionTracker()
        self.dedupe: SeenSet | None = None  # unique jobs / schedule ticks (uniqueness.py)
        self.wait = routes.wait.get(topic)  # (job topic, tier) for a wait topic
        self.job_topic = routes.job_topic_of(topic)
        self.is_async = routes.all_async(self.job_topic)
        routes_here = routes.job_topics.get(self.job_topic, ())
        self.single_type = routes_here[0].job.name if len(routes_here) == 1 else None
        # Every job type here records every transition (no per-job check of the setting).
        self.status_every = all(r.job.status == "all" for r in routes_here)
        self.next_fetch = -1  # first offset not taken yet (-1: nothing received)
        self.stored = -1
        self.tasks = 0  # executor tasks running for this partition
        self.acks = 0  # retry/DLQ records awaiting acknowledgement
        self.hold_until_ms = 0.0
        self.paused = False  # drop incoming records (pause requested or in effect)
        self.paused_kafka = False
        self.revoked = False
        self.gone = False


class _Poison(Exception):
    def __init__(self, reason: str, failure: Failure, route: Route | None = None,
                 attempt: int = 1, headers: h.Headers | None = None) -> None:
        self.reason = reason
        self.failure = failure
        self.route = route
        self.attempt = attempt
        self.headers = headers  # the record's, completed for a foreign record


class Intake:
    def __init__(self, worker: Worker, codec: Codec) -> None:
        self.worker = worker
        self.codec = codec
        self.routes = worker.routes
        self.bus = worker.bus
        self.horizon_ms = worker.settings.wake_horizon * 1000.0
        self.host = h.hostname()
        self._readers: dict[tuple[Route, bytes], BodyReader] = {}  # (route, framing)
        self._max_bytes = codec.max_record_bytes
        self._wakes: list[tuple[float, int, Part, JobContext]] = []
        self._seq = itertools.count()

    # -- taking a batch -----------------------------------------------------------------------

    def take(self, msgs: list[Any], max_in_flight: int) -> None:
        """Turn a consumed batch into jobs and dispatch them, one chunk per partition.

        The per-record hot path (known type and writer, first attempt, plain headers) is
        inlined: one scan of the header list, one compiled body read, one ``RecordContext``,
        two list appends. Everything else goes through ``_decode`` (precise errors, poison).
        Offsets reach the trackers in bulk, in offset order.
        """
        worker = self.worker
        parts = worker.parts
        in_flight = worker.in_flight
        by_type = self.routes.by_type
        readers = self._readers
        max_bytes = self._max_bytes
        batches: dict[Part, list[Any]] = {}  # part -> [jobs, offsets, how many added]
        last_t: str | None = None
        last_p = -1
        part: Part | None = None
        batch: list[Any] = []
        jobs: list[JobContext] = []
        offs: list[int] = []
        route_c: Route | None = None  # the last (route, framing) -> reader, cached
        prefix_c = b""
        body_c = 0
        read_c: Any = None
        now_ms = 0.0
        for m in msgs:
            if m.error() is not None:
                continue  # partition EOF is off; fetch errors are retried by librdkafka
            t = m.topic()
            p = m.partition()
            if p != last_p or t != last_t:
                part = parts.get((t, p))
                last_t, last_p = t, p
                if part is not None:
                    found = batches.get(part)
                    if found is None:
                        found = batches[part] = [[], [], 0]
                    batch = found
                    jobs, offs = batch[0], batch[1]
            if part is None or part.paused or part.revoked:
                continue  # stale: paused/revoked records are fetched again later
            offset = m.offset()
            if offset < part.next_fetch:
                continue
            if in_flight >= max_in_flight:
                worker.request_pause()  # next_fetch stays here: the pause seeks back to it
                continue
            if part.wait is not None:
                if not now_ms:
                    now_ms = time.time() * 1000.0
                if self._wait_record(m, part, offset, now_ms):
                    in_flight += 1
                continue
            part.next_fetch = offset + 1
            in_flight += 1
            type_b, id_b, a, c = _scan(m.headers())  # either form (compact or rich)
            route = by_type.get(type_b) if type_b is not None else None
            value = m.value()
            if (route is not None and id_b is not None and value is not None
                    and (a is None or a == b"1") and (c is None or c.isdigit())
                    and id_b.isascii()):
                if route is not route_c or not value.startswith(prefix_c):
                    route_c, prefix_c = route, header_of(value)
                    body_c = len(prefix_c)
                    read_c = readers.get((route, prefix_c))
                if read_c is not None and len(value) <= max_bytes:
                    try:
                        payload = read_c(value, body_c)
                    except Exception:
                        payload = None  # _decode below finds out what is wrong
                    if payload is not None:
                        jobs.append(RecordContext(m, part, route, offset, 1, payload, c,
                                                  id_b))
                        offs.append(offset)
                        continue
            # Slow path: the tracker gets what this batch took so far, then this offset.
            self._add_taken(part, batch)
            part.tracker.add(offset)
            try:
                ctx = self._decode(m, part, offset)
            except _Poison as poison:
                self._poison(m, part, offset, poison)
                continue
            jobs.append(ctx)
            offs.append(offset)
            batch[2] = len(offs)
        worker.in_flight = in_flight
        bus = self.bus
        each = bus.wants_each(JobReceived)
        summary = not each and bus.wants(JobsReceived)
        for part, batch in batches.items():
            self._add_taken(part, batch)
            jobs, offs = batch[0], batch[1]
            if part.dedupe is not None and jobs:
                jobs, offs = worker.uniqueness.filter(part, part.dedupe, jobs, offs)
            if not jobs:
                continue
            if each:
                for ctx in jobs:
                    bus.emit(JobReceived(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                         ctx.offset, ctx.attempt))
            elif summary:
                self._summarise(part, jobs)
            worker.dispatch(part, jobs, offs)

    @staticmethod
    def _add_taken(part: Part, batch: list[Any]) -> None:
        offs, added = batch[1], batch[2]
        if added < len(offs):
            part.tracker.add_many(offs if added == 0 else offs[added:])
            batch[2] = len(offs)

    def _summarise(self, part: Part, jobs: list[JobContext]) -> None:
        if part.single_type is not None:
            counts = {part.single_type: len(jobs)}
        else:
            counts = {}
            for ctx in jobs:
                counts[ctx.job_type] = counts.get(ctx.job_type, 0) + 1
        for job_type, n in counts.items():
            self.bus.emit(JobsReceived(job_type, part.topic, part.partition, n))

    def _decode(self, m: Any, part: Part, offset: int) -> JobContext:
        hdrs = m.headers()
        type_b, id_b, a, c = h.scan(hdrs) if hdrs else (None, None, None, None)
        if part.single_type is not None and (type_b is None or id_b is None):
            return self._foreign(m, part, offset, hdrs or [])
        if not hdrs:
            raise _Poison("missing_headers", Failure("MissingHeaders", "record has no headers"))
        if type_b is None or id_b is None:
            raise _Poison("missing_headers", Failure(
                "MissingHeaders", f"missing the job {'type' if type_b is None else 'id'} "
                f"({h.META} or {h.JOB_TYPE if type_b is None else h.JOB_ID})"))
        route = self.routes.by_type.get(type_b)
        if route is None:
            name = type_b.decode("utf-8", "replace")
            raise _Poison("unknown_type", Failure(
                "UnknownJobType", f"job type {name!r} is not run by this worker"))
        try:
            attempt = int(a) if a else 1
            if c:
                int(c)  # checked here; RecordContext parses it when it is read
            id_b.decode("utf-8")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Poison("missing_headers", Failure("BadHeaders", str(exc)), route) from None
        value = m.value()
        payload = None
        if value is not None and len(value) <= self._max_bytes:
            frame = header_of(value)
            read = self._readers.get((route, frame))
            if read is not None:
                try:
                    payload = read(value, len(frame))
                except Exception:
                    payload = None
        if payload is None:
            payload = self._decode_payload(value, route, attempt)
        return RecordContext(m, part, route, offset, attempt, payload, c, id_b)

    def _foreign(self, m: Any, part: Part, offset: int, hdrs: h.Headers) -> JobContext:
        """A record without ``sj-type``/``sj-id`` (a foreign producer) on a topic of one job
        type: it is that type, with an id derived from its position (stable across
        redeliveries); both are added to its headers so a retry keeps them."""
        assert part.single_type is not None
        meta = h.JobMeta.from_headers(hdrs)
        job_type = meta.job_type or part.single_type
        route = self.routes.by_type.get(job_type.encode())
        if route is None:
            raise _Poison("unknown_type", Failure(
                "UnknownJobType", f"job type {job_type!r} is not run by this worker"))
        job_id = meta.job_id or str(
            uuid.uuid5(_FOREIGN_IDS, f"{part.topic}/{part.partition}/{offset}"))
        full = [*hdrs, (h.JOB_TYPE, job_type.encode()), (h.JOB_ID, job_id.encode())]
        attempt_s = h.get(hdrs, h.ATTEMPT)
        attempt = int(attempt_s) if attempt_s and attempt_s.isdigit() else 1
        value = m.value()
        try:
            payload = self._decode_payload(value, route, attempt)
        except _Poison as poison:
            poison.headers = full
            raise
        ts = m.timestamp()[1]
        return JobContext(job_id, job_type, attempt, full, part.topic, part.partition, offset,
                          m.key(), ts, payload, route.topic, value, ts, route.job,
                          route.handler)

    def _decode_payload(self, value: bytes | None, route: Route, attempt: int) -> dict[str, Any]:
        try:
            if value is None:
                raise DecodeError(b"", "no_value", "record value is null")
            decoded = self.codec.decode(value, route.job.name)
        except UnknownSchema as exc:
            raise _Poison("unknown_schema", describe(exc), route, attempt) from None
        except DecodeError as exc:
            raise _Poison("decode_error", Failure("DecodeError", f"{exc.reason}: {exc.detail}"),
                          route, attempt) from None
        # The hot path in ``take`` reads this framing with the codec's cached reader from now on.
        self._readers[(route, header_of(value))] = self.codec.body_reader(value, route.job.name)
        return decoded.payload

    # -- wait topics --------------------------------------------------------------------------

    def _wait_record(self, m: Any, part: Part, offset: int, now_ms: float) -> bool:
        """Take a wait-topic record (True) or hold the partition before it (False)."""
        assert part.wait is not None
        tier_ms = part.wait[1] * 1000.0
        ts = m.timestamp()[1]
        due = h.get_int(m.headers(), h.DUE_AT)
        due_ms = float(due) if due is not None else float(ts)
        wake = min(due_ms, ts + tier_ms)
        if wake > now_ms + self.horizon_ms:
            self.worker.hold(part, wake - self.horizon_ms)
            part.next_fetch = offset
            return False
        part.next_fetch = offset + 1
        part.tracker.add(offset)
        try:
            ctx = self._decode(m, part, offset)
        except _Poison as poison:
            self._poison(m, part, offset, poison)
            return True
        ctx._due_at_ms = int(due_ms)
        heapq.heappush(self._wakes, (wake, next(self._seq), part, ctx))
        return True

    def fire(self, now_ms: float) -> float | None:
        """Run or re-wait records whose wake time has come; returns the next wake time."""
        wakes = self._wakes
        due: dict[Part, list[JobContext]] = {}
        while wakes and wakes[0][0] <= now_ms:
            _, _, part, ctx = heapq.heappop(wakes)
            if part.gone or part.revoked:
                continue
            due_at = ctx._due_at_ms or 0
            if now_ms >= due_at:
                due.setdefault(part, []).append(ctx)
            else:  # the tier ended before the due time: wait in the next tier that fits
                tier = pick_tier((due_at - now_ms) / 1000.0, self.routes.tiers[ctx.job_topic])
                self._send(part, ctx.offset, retry_topic(ctx.job_topic, tier), ctx.key,
                           ctx._value, ctx.headers, None)
        for part, jobs in due.items():
            self.worker.dispatch(part, jobs)
        return wakes[0][0] if wakes else None

    # -- failures -----------------------------------------------------------------------------

    def route_failure(self, part: Part, ctx: JobContext, failure: Failure,
                      decision: Decision) -> None:
        now_ms = int(time.time() * 1000)
        origin = Origin(ctx.topic, ctx.partition, ctx.offset, ctx._timestamp_ms, self.host,
                        self.worker.group_id)
        ident = (ctx.job_id, ctx.job_type, ctx._job.status)
        if decision.delay is not None:
            self._retry(part, ctx.offset, ctx.key, ctx._value, ctx.headers, origin, failure,
                        ctx.attempt, ctx.job_topic, decision.delay, now_ms, ident)
        else:
            self._dead_letter(part, ctx.offset, ctx.key, ctx._value, ctx.headers, origin,
                              failure, decision.reason or "max_attempts", ctx.job_topic,
                              now_ms, ident, ctx.attempt)

    def _poison(self, m: Any, part: Part, offset: int, poison: _Poison) -> None:
        now_ms = int(time.time() * 1000)
        hdrs = poison.headers or m.headers() or []
        origin = Origin(part.topic, part.partition, offset, m.timestamp()[1], self.host,
                        self.worker.group_id)
        job_topic = poison.route.topic if poison.route else part.job_topic
        # A record of no known type: its status is recorded unless no type here records any.
        mode = poison.route.job.status if poison.route else (
            "failures" if any(r.job.status != "none"
                              for r in self.routes.job_topics.get(part.job_topic, ()))
            else "none")
        meta = h.JobMeta.from_headers(hdrs)
        ident = (meta.job_id or "", meta.job_type or "", mode)
        if poison.reason == "unknown_schema" and poison.route is not None:
            delay = poison.route.job.retry.delay_for(poison.attempt)
            if delay is not None:
                self._retry(part, offset, m.key(), m.value(), list(hdrs), origin,
                            poison.failure, poison.attempt, job_topic, delay, now_ms, ident)
                return
        self._dead_letter(part, offset, m.key(), m.value(), list(hdrs), origin,
                          poison.failure, poison.reason, job_topic, now_ms, ident,
                          poison.attempt)

    def _retry(self, part: Part, offset: int, key: bytes | None, value: bytes | None,
               hdrs: h.Headers, origin: Origin, failure: Failure, attempt: int,
               job_topic: str, delay: float, now_ms: int, ident: tuple[str, str, str]) -> None:
        topic = retry_topic(job_topic, pick_tier(delay, self.routes.tiers[job_topic]))
        due_at_ms = now_ms + round(delay * 1000)
        rec = retry_record(key, value, hdrs, origin=origin, failure=failure, attempt=attempt,
                           target=job_topic, due_at_ms=due_at_ms, now_ms=now_ms)
        event = None
        if self.bus.wants(JobRetried):
            event = JobRetried(ident[0], ident[1], origin.topic, origin.partition, offset,
                               attempt, delay, topic)
        status = self._status(ident, Transition(
            "retrying", now_ms, attempt, origin.host, failure.error_class, failure.message,
            topic, due_at_ms=due_at_ms))
        self._send(part, offset, topic, *rec, event, status)

    def _dead_letter(self, part: Part, offset: int, key: bytes | None, value: bytes | None,
                     hdrs: h.Headers, origin: Origin, failure: Failure, reason: str,
                     job_topic: str, now_ms: int, ident: tuple[str, str, str],
                     attempt: int) -> None:
        topic = dlq_topic(job_topic)
        rec = dead_letter_record(key, value, hdrs, origin=origin, failure=failure,
                                 reason=reason, now_ms=now_ms)
        event = None
        if self.bus.wants(JobDeadLettered):
            event = JobDeadLettered(ident[0], ident[1], origin.topic, origin.partition, offset,
                                    attempt, reason, topic)
        dead = Transition("dead", now_ms, attempt, origin.host, failure.error_class,
                          failure.message, topic, reason=reason)
        self._send(part, offset, topic, *rec, event, self._status(ident, dead))

    def _status(self, ident: tuple[str, str, str],
                t: Transition) -> tuple[str, str, Transition] | None:
        """What to record for a failure: (job id, job type, transition), or None."""
        if self.worker.status is None or ident[2] == "none" or not ident[0]:
            return None
        return ident[0], ident[1], t

    def _send(self, part: Part, offset: int, topic: str, key: bytes | None,
              value: bytes | None, hdrs: h.Headers, event: Any,
              status: tuple[str, str, Transition] | None = None) -> None:
        """Produce a retry, re-wait or dead-letter record; the record at ``offset`` is
        finished once it, and the failure's status record with it, are acknowledged."""
        worker = self.worker
        bus = self.bus
        part.acks += 1
        waiting = 1 if status is None else 2
        out: Outgoing | None = None

        def acked() -> None:
            nonlocal waiting
            waiting -= 1
            if waiting:
                return
            part.acks -= 1
            worker.finish(part, offset)
            if event is not None:
                bus.emit(event)

        def dead_letter_acked() -> None:
            # The dead-letter record's place is known now: the same transition, with it.
            assert status is not None and out is not None and out.where is not None
            recorder = worker.status
            if recorder is not None:
                recorder.write(status[0], status[1], dataclasses.replace(
                    status[2], partition=out.where[0], offset=out.where[1]))
            acked()

        if status is not None and worker.status is not None:
            partition, skey, svalue = worker.status.record(*status)
            worker.outbox.send(Outgoing(worker.status.topic, skey, svalue, [], acked, partition))
        on_ack = dead_letter_acked if status is not None and status[2].state == "dead" else acked
        out = Outgoing(topic, key, value, hdrs, on_ack)
        worker.outbox.send(out)

