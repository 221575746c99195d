"""Intake: records from Kafka to runnable jobs and decisions (poll thread only).

It acts on nothing: ``take`` and ``fire`` return a ``Taken`` (jobs per partition, records to
send, whether to pause) that the runner applies. For each record: header lookup, Avro decode
(either framing), a ``JobContext``; a record without sj- headers on a topic of one job type is
that type (``_foreign``); poison (missing headers, unknown type, undecodable bytes) becomes a
dead-letter record with its raw bytes, and an unknown writer schema (a newer deploy wrote it)
a retry first (both built by ``router.py``). Records on wait topics
(retry tiers, delayed jobs) wake at ``min(sj-due-at, append time + tier)``: those waking within
the horizon wait in a timer heap, a later one pauses its partition until shortly before it
wakes. A woken record runs if due, else moves to the largest tier that does not overshoot.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Sequence
from typing import Any

from .. import _headers as h
from .._avro.codec import Codec
from .._avro.framing import header_of
from .._avro.reader import BodyReader
from ..errors import DecodeError, UnknownSchema
from ..events import EventBus, JobReceived, JobsReceived
from .context import JobContext, RecordContext, TopicRecordContext, foreign_id
from .failures import Failure, describe
from .partition import Part
from .router import Routed, Router
from .routes import Route, Routes
from .throttle import Throttle

__all__ = ["Intake", "Taken", "announce"]

_scan = h.scan


class Taken:
    """What a batch (or a timer sweep) turned into, for the runner to apply: jobs to run per
    partition (``offsets`` None: due wait-tier jobs, in due order), records to produce
    (poison, re-waits), whether the in-flight bound was hit, whether a partition was held."""

    __slots__ = ("held", "in_flight", "jobs", "pause", "routed")

    def __init__(self, in_flight: int) -> None:
        self.in_flight = in_flight
        self.jobs: list[tuple[Part, list[JobContext], Sequence[int] | None]] = []
        self.routed: list[tuple[Part, Routed]] = []
        self.pause = False  # the in-flight bound was reached
        self.held = False  # a wait tier's partition holds until its records fall due


class _Poison(Exception):
    def __init__(self, reason: str, failure: Failure, route: Route | None = None,
                 attempt: int = 1, headers: h.Headers | None = None) -> None:
        self.reason = reason
        self.failure = failure
        self.route = route
        self.attempt = attempt
        self.headers = headers  # the record's, completed for a foreign record


class Intake:
    """Turns polled records into jobs and decisions (``Taken``); never acts on the worker.
    A record that its job type's limits or breaker hold back is left in Kafka: ``throttle``
    pauses its partition at once (throttle.py)."""

    def __init__(self, routes: Routes, codec: Codec, router: Router, bus: EventBus,
                 wake_horizon: float, throttle: Throttle | None = None) -> None:
        self.throttle = throttle
        self.codec = codec
        self.routes = routes
        self.router = router
        self.bus = bus
        self.horizon_ms = wake_horizon * 1000.0
        self._readers: dict[tuple[Route, bytes], BodyReader] = {}  # (route, framing)
        self._max_bytes = codec.max_record_bytes
        self._wakes: list[tuple[float, int, Part, JobContext]] = []
        self._seq = itertools.count()

    # -- taking a batch -----------------------------------------------------------------------

    def take(self, msgs: list[Any], parts: dict[tuple[str, int], Part], in_flight: int,
             max_in_flight: int) -> Taken:
        """Turn a consumed batch into jobs, one chunk per partition, and decisions.

        The per-record hot path (a first-attempt job in the compact form, its type's writer
        schema already read once) is inlined: three ``Message`` reads, one look at the one
        header, one compiled body read, one ``RecordContext``, one append. What a partition
        needs checked (its state, wait tier, throttle) is looked up once per run of its
        records, and the offsets reach the tracker in bulk (a ``range`` when contiguous, which
        the runner retires as one). Everything else goes through ``_one`` (rich headers, a
        wait tier, a throttled type, poison).
        """
        taken = Taken(in_flight)
        by_type = self.routes.by_type
        readers = self._readers
        max_bytes = self._max_bytes
        throttle = self.throttle
        meta = h.META
        batches: dict[Part, list[Any]] = {}  # part -> [jobs, unused, how many the tracker has]
        last_t: str | None = None
        last_p = -1
        part: Part | None = None
        batch: list[Any] = []
        jobs: list[JobContext] = []
        add = jobs.append
        hot = False  # this partition's records may take the inlined path
        nf = -1
        skip = False
        one: Route | None = None  # the route of a topic's one job type
        route_c: Route | None = None  # the last (route, framing) -> reader, cached
        prefix_c = b""
        body_c = 0
        read_c: Any = None
        for m in msgs:
            t = m.topic()
            p = m.partition()
            if p != last_p or t != last_t:
                if part is not None:
                    part.next_fetch = nf
                last_t, last_p = t, p
                part = parts.get((t, p)) if t is not None else None
                if part is None:
                    continue
                nf = part.next_fetch  # first offset not taken, kept here while in this run
                skip = part.paused or part.revoked
                batch = batches.get(part)  # type: ignore[assignment]
                if batch is None:
                    batch = batches[part] = [[], None, 0]
                jobs = batch[0]
                add = jobs.append
                hot = part.wait is None and (throttle is None
                                             or part.job_topic not in throttle.topics)
                one = part.route  # a job topic's one type (None: several, or a wait topic)
            if part is None or skip:
                continue  # stale: paused/revoked records are fetched again later
            if m.error() is not None:
                continue  # partition EOF is off; fetch errors are retried by librdkafka
            offset = m.offset()
            if offset < nf:
                continue
            if in_flight >= max_in_flight:
                taken.pause = True  # next_fetch stays here: the pause seeks back to it
                if nf < 0:  # nothing taken since assigned: the seek needs a place too
                    nf = offset
                continue
            if hot:
                # A topic of one job type: its records are that type, so neither the type nor
                # the id is needed to run them, and the headers stay unread (TopicRecordContext).
                # Elsewhere the one compact header routes the record.
                route = one
                id_b = None
                if one is None:
                    hd = m.headers()
                    if hd is not None and len(hd) == 1:
                        k, v = hd[0]
                        if k == meta and v is not None and v.isascii():
                            i = v.rfind(b";")
                            if i >= 0:
                                route = by_type.get(v[i + 1:])
                                id_b = v[:i]
                if route is not None:
                    value = m.value()
                    if value is not None and len(value) <= max_bytes:
                        if route is not route_c or not value.startswith(prefix_c):
                            route_c, prefix_c = route, header_of(value)
                            body_c = len(prefix_c)
                            read_c = readers.get((route, prefix_c))
                        if read_c is not None:
                            try:
                                payload = read_c(value, body_c)
                            except Exception:
                                payload = None  # _one below finds out what is wrong
                            if payload is not None:
                                nf = offset + 1
                                in_flight += 1
                                add(TopicRecordContext(m, part, route, offset, payload)
                                    if id_b is None else
                                    RecordContext(m, part, route, offset, 1, payload, None, id_b))
                                continue
            in_flight += self._one(m, part, offset, batch, taken, throttle)
            nf = part.next_fetch  # _one moved it (a wait tier's hold, a throttle: not past)
            skip = part.paused or part.revoked  # a wait tier's hold pauses its partition
        if part is not None:
            part.next_fetch = nf
        taken.in_flight = in_flight
        out = taken.jobs
        for part, batch in batches.items():
            if batch[0]:
                offs = _offsets(batch)
                self._add_taken(part, batch, offs)
                out.append((part, batch[0], offs))
        return taken

    def _one(self, m: Any, part: Part, offset: int, batch: list[Any], taken: Taken,
             throttle: Throttle | None) -> int:
        """A record off the inlined path: rich headers, a wait tier, a throttled type, a
        reader not cached yet, poison. Returns how many records it took (0 or 1)."""
        if throttle is not None and part.job_topic in throttle.topics:
            part.next_fetch = offset  # if held (throttle.py), the pause seeks back here
            if not throttle.admit(part, m, offset):
                return 0
        if part.wait is not None:
            now_ms = time.time() * 1000.0
            return 1 if self._wait_record(m, part, offset, now_ms, taken) else 0
        part.next_fetch = offset + 1
        jobs = batch[0]
        value = m.value()
        one = part.route
        if one is not None:
            # A topic of one job type: a value of one of its writer schemas is that type, as
            # on the inlined path (whose reader this caches), so that which path a record
            # takes never changes what becomes of it.
            payload = self._read_as(value, one)
            if payload is not None:
                jobs.append(TopicRecordContext(m, part, one, offset, payload))
                return 1
        type_b, id_b, a, c = _scan(m.headers())  # either form (compact or rich)
        route = self.routes.by_type.get(type_b) if type_b is not None else None
        if (route is not None and id_b is not None and value is not None
                and (a is None or a == b"1") and (c is None or c.isdigit())
                and id_b.isascii() and len(value) <= self._max_bytes):
            payload = self._cached(value, route)  # None: _decode below finds out why
            if payload is not None:
                jobs.append(RecordContext(m, part, route, offset, 1, payload, None, id_b))
                return 1
        # Slow path: the tracker gets what this batch took so far, then this offset.
        self._add_taken(part, batch)
        part.tracker.add(offset)
        try:
            ctx = self._decode(m, part, offset)
        except _Poison as poison:
            taken.routed.append((part, self._poison(m, part, offset, poison)))
            return 1
        jobs.append(ctx)
        batch[2] = len(jobs)
        return 1

    @staticmethod
    def _add_taken(part: Part, batch: list[Any], offs: Sequence[int] | None = None) -> None:
        # The tracker gets the offsets of the batch's jobs it has not seen yet (batch[2]: how
        # many it has); ``offs``: all of them, when the caller has them.
        jobs, added = batch[0], batch[2]
        if added < len(jobs):
            if offs is None or added:
                offs = [ctx.offset for ctx in jobs[added:]]
            part.tracker.add_many(offs)
            batch[2] = len(jobs)

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
        payload = self._cached(value, route)
        if payload is None:
            payload = self._decode_payload(value, route, attempt)
        return RecordContext(m, part, route, offset, attempt, payload, int(c) if c else None,
                             id_b)

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
        job_id = meta.job_id or foreign_id(part.topic, part.partition, offset)
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
                          m.key(), ts, payload, part.job_topic, value, ts, route.job,
                          route.handler)

    def _cached(self, value: bytes | None, route: Route) -> dict[str, Any] | None:
        """``value`` read by ``route``'s cached reader of its framing; None when none is
        cached yet or the reader declines it."""
        if value is None or len(value) > self._max_bytes:
            return None
        frame = header_of(value)
        read = self._readers.get((route, frame))
        if read is None:
            return None
        try:
            payload: dict[str, Any] = read(value, len(frame))
        except Exception:
            return None
        return payload

    def _read_as(self, value: bytes | None, route: Route) -> dict[str, Any] | None:
        """``value`` read as a job of ``route``'s type (compiling its reader on first use), or
        None when it is not one (the caller's path finds out why)."""
        if value is None or len(value) > self._max_bytes:
            return None
        if (route, header_of(value)) in self._readers:
            return self._cached(value, route)
        try:
            return self._decode_payload(value, route, 1)
        except _Poison:
            return None

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

    def _wait_record(self, m: Any, part: Part, offset: int, now_ms: float,
                     taken: Taken) -> bool:
        """Take a wait-topic record (True) or hold the partition before it (False)."""
        assert part.wait is not None
        tier_ms = part.wait[1] * 1000.0
        ts = m.timestamp()[1]
        due = h.get_int(m.headers(), h.DUE_AT)
        due_ms = float(due) if due is not None else float(ts)
        wake = min(due_ms, ts + tier_ms)
        if wake > now_ms + self.horizon_ms:
            part.hold(wake - self.horizon_ms)
            taken.held = True
            part.next_fetch = offset
            return False
        part.next_fetch = offset + 1
        part.tracker.add(offset)
        try:
            ctx = self._decode(m, part, offset)
        except _Poison as poison:
            taken.routed.append((part, self._poison(m, part, offset, poison)))
            return True
        ctx._due_at_ms = int(due_ms)
        heapq.heappush(self._wakes, (wake, next(self._seq), part, ctx))
        return True

    def fire(self, now_ms: float, taken: Taken) -> float | None:
        """Wait-tier records whose wake time has come: due ones into ``taken.jobs``, the rest
        re-waited (``taken.routed``); returns the next wake time."""
        wakes = self._wakes
        due: dict[Part, list[JobContext]] = {}
        while wakes and wakes[0][0] <= now_ms:
            _, _, part, ctx = heapq.heappop(wakes)
            if part.gone or part.revoked:
                continue
            if now_ms >= (ctx._due_at_ms or 0):
                due.setdefault(part, []).append(ctx)
            else:  # the tier ended before the due time: wait in the next tier that fits
                taken.routed.append((part, self.router.rewait(ctx, now_ms)))
        for part, jobs in due.items():
            taken.jobs.append((part, jobs, None))
        return wakes[0][0] if wakes else None

    # -- poison -------------------------------------------------------------------------------

    def _poison(self, m: Any, part: Part, offset: int, poison: _Poison) -> Routed:
        hdrs = poison.headers or m.headers() or []
        job_topic = poison.route.topic if poison.route else part.job_topic
        if poison.route in self.routes.job_topics.get(part.job_topic, ()):
            job_topic = part.job_topic  # its priority lane's topic (priorities.py)
        # A record of no known type: its status is recorded unless no type here records any.
        mode = poison.route.job.status if poison.route else (
            "failures" if any(r.job.status != "none"
                              for r in self.routes.job_topics.get(part.job_topic, ()))
            else "none")
        return self.router.unreadable(
            m.key(), m.value(), hdrs, topic=part.topic, partition=part.partition, offset=offset,
            timestamp_ms=m.timestamp()[1], job_topic=job_topic, reason=poison.reason,
            failure=poison.failure, attempt=poison.attempt,
            policy=poison.route.job.retry if poison.route else None, status_mode=mode,
            now_ms=int(time.time() * 1000))


def _offsets(batch: list[Any]) -> Sequence[int]:
    """The offsets of a partition's jobs in this batch: a ``range`` when contiguous (the usual
    case: no list built per record), else a list."""
    jobs = batch[0]
    if not jobs:
        return ()
    first, last = jobs[0].offset, jobs[-1].offset
    if last - first == len(jobs) - 1:
        return range(first, last + 1)
    return [ctx.offset for ctx in jobs]


def announce(bus: EventBus, part: Part, jobs: list[JobContext], each: bool) -> None:
    """``JobReceived`` per job when a listener wants each (``each``), else ``JobsReceived``
    per type (the caller checked that someone listens to either)."""
    if each:
        for ctx in jobs:
            bus.emit(JobReceived(ctx.job_id, ctx.job_type, ctx.topic, ctx.partition,
                                 ctx.offset, ctx.attempt))
    else:
        if part.single_type is not None:
            counts = {part.single_type: len(jobs)}
        else:
            counts = {}
            for ctx in jobs:
                counts[ctx.job_type] = counts.get(ctx.job_type, 0) + 1
        for job_type, n in counts.items():
            bus.emit(JobsReceived(job_type, part.topic, part.partition, n))
