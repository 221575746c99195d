"""``JobRunner``: an App's handlers run in-process on a fake clock, no broker.

What is real: the payload is validated and Avro-encoded by the production ``Codec`` at emit,
decoded again (into the current schema version) before the handler runs; the handler gets a
``JobContext`` with the headers a worker would see; a failure goes through the worker's own
``decide`` (catalogue retry policy, ``Retry(after=...)``, ``PermanentError``,
``permanent_errors``) and the retry and dead-letter records are built by the worker's
failure router (``worker.router.route``; ``produced`` lists them). What is fake: the clock
(``runner.now``; retries and delayed jobs run instantly but in due order),
topics/partitions/offsets (plausible: keyed jobs land on ``crc32(key) % partitions`` as with
librdkafka's default partitioner), and concurrency: jobs run one at a time, in due order,
then emit order. ``ctx.emit`` in a handler builds the follow-up with the worker's own code
(``testing.followups``); sent follow-ups are listed (``emitted``) and those of types the app
handles run in the same ``run``. See docs/testing.md.
"""


from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .. import _headers as h
from .._avro.codec import Codec
from .._avro.framing import SINGLE_OBJECT, parse
from .._producer import _RESERVED, check_traceparent
from .._producer import due_at_ms as due_at_ms_of
from .._schemas.catalogue import Catalogue
from .._worker import App, JobContext
from .._worker.context import bind_thread, bound
from .._worker.failures import Decision, Failure, Origin, decide, describe
from .._worker.router import Routed, last_wait_topic, route, unknown_schema_decision
from ..errors import DecodeError, RunawayJobs, UnknownSchema
from .followups import Collector, Emitted
from .outcome import FollowUp, JobOutcome, RunReport, Status

__all__ = ["JobRunner"]


@dataclass
class _Record:
    job_type: str
    job_id: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: h.Headers
    timestamp_ms: int


class JobRunner:
    """Runs an ``App``'s handlers on a fake clock. ``now``: the clock's start (epoch seconds,
    default: the real time). ``exactly_once`` (default: the app's ``exactly_once``): what
    happens to the follow-ups of a failed run, as in a worker of that mode. Use as a context
    manager (or call ``close``) when handlers are ``async def``: they run on a loop in a
    thread the runner owns, as in the worker."""

    def __init__(self, app: App, *, now: float | None = None, host: str = "test-host",
                 exactly_once: bool | None = None) -> None:
        self.app = app
        self.exactly_once = app.exactly_once if exactly_once is None else exactly_once
        # Registry framing needs a registry; in memory every job type is framed single-object
        # (validation and schema resolution are the same either way).
        self.codec = Codec(app.catalogue.with_framing(SINGLE_OBJECT))
        self._now_ms = round((time.time() if now is None else now) * 1000)
        self._origin_host = host
        self._group = app.default_group_id()
        self._queue: list[tuple[int, int, _Record]] = []  # (due ms, seq, record)
        self._seq = itertools.count()
        self._offsets: dict[tuple[str, int], int] = {}
        self._checked: set[str] = set()
        self._old_codecs: dict[tuple[str, int], Codec] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_loop: Callable[[], object] = lambda: None
        self.outcomes: list[JobOutcome] = []
        # Every retry and dead-letter record a worker would produce, in order (the router's).
        self.produced: list[Routed] = []
        # Every follow-up handlers sent with ctx.emit, in order.
        self.emitted: list[FollowUp] = []
        self._followups = Collector(self.codec.catalogue, self.codec, lambda: self._now_ms)

    # -- clock --------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        """The fake clock, epoch seconds."""
        return self._now_ms / 1000

    def advance(self, seconds: float) -> None:
        """Move the clock forward; nothing runs (``run_due`` runs what became due)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self._now_ms += round(seconds * 1000)

    # -- emitting -----------------------------------------------------------------------------

    def emit(self, job_type: str, payload: Mapping[str, Any], *, key: str | bytes | None = None,
             headers: Mapping[str, str | bytes] | None = None, traceparent: str | None = None,
             delay: float | timedelta | None = None, run_at: datetime | None = None,
             schema_version: int | None = None) -> str:
        """Validate and encode like ``Producer.emit`` (PayloadError / UnknownJobType at once);
        returns the job id. Nothing runs until ``run``. ``schema_version`` writes an older
        version of the job's schema, as a not-yet-upgraded producer would."""
        value = (self.codec.encode(job_type, payload) if schema_version is None
                 else self._encode_version(job_type, payload, schema_version))
        job = self.app.catalogue.get(job_type)
        if key is None and job.key_field is not None and payload.get(job.key_field) is not None:
            key = str(payload[job.key_field])
        due_at_ms = due_at_ms_of(self._now_ms, delay, run_at)
        hdrs = self._job_headers(job_type, due_at_ms)
        if len(hdrs) > 1:
            hdrs.append((h.SCHEMA, (parse(value).fingerprint or b"").hex().encode()))
        for name, val in (headers or {}).items():
            if name in _RESERVED:
                raise ValueError(f"header {name!r} is set by emit itself")
            hdrs.append((name, val if isinstance(val, bytes) else val.encode()))
        if traceparent is not None:
            hdrs.append((h.TRACEPARENT, check_traceparent(traceparent).encode()))
        return self.emit_raw(job_type, value, key=key, headers=hdrs, due_at_ms=due_at_ms)

    def _job_headers(self, job_type: str, due_at_ms: int | None) -> h.Headers:
        """As ``Producer.emit`` writes them: the compact header, or for a delayed job (it waits
        on a tier topic, whose timestamps are the broker's) the rich ones."""
        job_id = h.new_job_id(self._now_ms)
        if due_at_ms is None or due_at_ms <= self._now_ms:
            return [(h.META, h.compact(job_id, job_type).encode())]
        return [(h.JOB_ID, job_id.encode()), (h.CREATED_AT, str(self._now_ms).encode()),
                (h.JOB_TYPE, job_type.encode()), (h.ATTEMPT, b"1")]

    def emit_raw(self, job_type: str, value: bytes, *, key: str | bytes | None = None,
                 headers: h.Headers | None = None, due_at_ms: int | None = None) -> str:
        """Queue a record as it would arrive from Kafka: ``value`` is not checked here (bad
        bytes are dead-lettered with ``decode_error`` when run, as by the worker).
        ``headers`` default to a fresh job's; returns the job id."""
        self._check(job_type)
        if headers is None:
            headers = self._job_headers(job_type, due_at_ms)
        key_b = key.encode() if isinstance(key, str) else key
        job_id = h.JobMeta.from_headers(headers).job_id or ""
        return self._land(job_type, job_id, key_b, value, headers, due_at_ms, run=True).job_id

    def _check(self, job_type: str) -> None:
        if job_type not in self._checked:  # what a worker running this type checks at start
            self.app.check((job_type,))
            self._checked.add(job_type)

    def _land(self, job_type: str, job_id: str, key: bytes | None, value: bytes,
               headers: h.Headers, due_at_ms: int | None, *, run: bool) -> _Record:
        """The record as it lands on its topic (a wait tier when delayed); queued to run
        when ``run``."""
        topic = self.app.topic(self.app.catalogue.get(job_type))
        due = self._now_ms
        if due_at_ms is not None and due_at_ms > self._now_ms:
            due = due_at_ms
            headers = [*headers, (h.DUE_AT, str(due).encode()), (h.TARGET, topic.encode())]
            topic = self._wait_topic(job_type, self._now_ms, due)
        rec = _Record(job_type, job_id, topic, self._partition(job_type, key), -1, key, value,
                      list(headers), self._now_ms)
        if run:
            self._push(due, rec)
        return rec

    # -- running ------------------------------------------------------------------------------

    def run(self, *, max_jobs: int = 10_000, until: float | None = None) -> RunReport:
        """Run every job, advancing the clock to each next due time (retries after their
        delays), until none is left (or the next is due after ``until``, epoch seconds)."""
        limit = None if until is None else round(until * 1000)
        return self._run(max_jobs, lambda due: limit is None or due <= limit)

    def run_due(self, *, max_jobs: int = 10_000) -> RunReport:
        """Run what is due now (including retries due at once); the clock does not move."""
        return self._run(max_jobs, lambda due: False)

    def _run(self, max_jobs: int, may_advance: Callable[[int], bool]) -> RunReport:
        report = RunReport()
        while self._queue:
            due = self._queue[0][0]
            if due > self._now_ms:
                if not may_advance(due):
                    break
                self._now_ms = due
            if len(report.outcomes) >= max_jobs:
                raise RunawayJobs(max_jobs, len(self._queue))
            report.outcomes.append(self._run_one(heapq.heappop(self._queue)[2]))
        report.pending = len(self._queue)
        return report

    def _run_one(self, rec: _Record) -> JobOutcome:
        job = self.app.catalogue.get(rec.job_type)
        handler = self.app.handler(rec.job_type)
        job_topic = self.app.topic(job)
        meta = h.JobMeta.from_headers(rec.headers, rec.timestamp_ms)
        attempt = meta.attempt
        payload: dict[str, Any] | None = None
        try:
            payload = self.codec.decode(rec.value, rec.job_type).payload
        except UnknownSchema as exc:  # the worker retries these along the job's ladder
            return self._fail(rec, job_topic, attempt, None, exc, describe(exc),
                              unknown_schema_decision(attempt, job.retry))
        except DecodeError as exc:
            failure = Failure("DecodeError", f"{exc.reason}: {exc.detail}")
            return self._fail(rec, job_topic, attempt, None, exc, failure,
                              Decision(reason="decode_error"))
        created = meta.created_at_ms
        ctx = JobContext(job_id=rec.job_id, job_type=rec.job_type, attempt=attempt,
                         headers=rec.headers, topic=rec.topic, partition=rec.partition,
                         offset=rec.offset, key=rec.key, created_at_ms=created, payload=payload,
                         job_topic=job_topic, value=rec.value, timestamp_ms=rec.timestamp_ms,
                         job=job, handler=handler, due_at_ms=h.get_int(rec.headers, h.DUE_AT))
        self._followups.take()  # a run stopped by a BaseException (pytest.fail) left its own
        try:
            if handler.is_async:
                self._await(handler.func(payload, ctx))
            else:
                self._call(handler.func, payload, ctx)
        except Exception as exc:  # KeyboardInterrupt, pytest.fail() etc. stop the test
            # At-least-once the follow-ups it emitted are sent already; exactly-once they go
            # with the failed attempt (the retry emits its own).
            emitted = self._followups.take()
            sent = () if self.exactly_once else self._send(rec, emitted)
            decision = decide(exc, attempt, job.retry, job.permanent_errors)
            return self._fail(rec, job_topic, attempt, payload, exc, describe(exc), decision,
                              sent)
        sent = self._send(rec, self._followups.take())
        return self._outcome(rec, attempt, "succeeded", payload, rec.headers, emitted=sent)

    def _call(self, func: Callable[..., Any], payload: dict[str, Any], ctx: JobContext) -> None:
        """A sync handler on this thread, bound for ``ctx.emit`` as a worker's thread is."""
        before = bound()
        bind_thread(self._followups)
        try:
            func(payload, ctx)
        finally:
            bind_thread(before)

    def _send(self, parent: _Record, emitted: list[Emitted]) -> tuple[FollowUp, ...]:
        """What a worker sends of a run's follow-ups: each lands on its topic and, when this
        app handles its type, joins the queue."""
        sent = []
        for job_type, job_id, key, value, headers, due in emitted:
            runs = job_type in self.app.handlers
            if runs:
                self._check(job_type)
            rec = self._land(job_type, job_id, key, value, headers, due, run=runs)
            sent.append(FollowUp(job_id, job_type, self.codec.decode(value, job_type).payload,
                                 parent.job_id, key, rec.headers, rec.topic, rec.partition,
                                 None if due is None else due / 1000, runs))
        self.emitted += sent
        return tuple(sent)

    def _fail(self, rec: _Record, job_topic: str, attempt: int, payload: dict[str, Any] | None,
              exc: BaseException, failure: Failure, decision: Decision,
              emitted: tuple[FollowUp, ...] = ()) -> JobOutcome:
        origin = Origin(rec.topic, rec.partition, rec.offset, rec.timestamp_ms,
                        self._origin_host, self._group)
        now = self._now_ms
        routed = route(rec.key, rec.value, rec.headers, origin=origin, failure=failure,
                       decision=decision, attempt=attempt, job_topic=job_topic,
                       tiers=self._tiers(rec.job_type), now_ms=now)
        self.produced.append(routed)
        if routed.delay is not None:
            due = now + round(routed.delay * 1000)
            assert routed.value is not None
            self._push(due, _Record(rec.job_type, rec.job_id,
                                    self._wait_topic(rec.job_type, now, due), rec.partition, -1,
                                    routed.key, routed.value, routed.headers, now))
            return self._outcome(rec, attempt, "retried", payload, rec.headers, exc, failure,
                                 delay=routed.delay, emitted=emitted)
        return self._outcome(rec, attempt, "dead_lettered", payload, routed.headers, exc,
                             failure, reason=routed.reason, topic=routed.topic, emitted=emitted)

    def _outcome(self, rec: _Record, attempt: int, status: Status,
                 payload: dict[str, Any] | None, headers: h.Headers,
                 exc: BaseException | None = None, failure: Failure | None = None, *,
                 delay: float | None = None, reason: str | None = None,
                 topic: str | None = None, emitted: tuple[FollowUp, ...] = ()) -> JobOutcome:
        out = JobOutcome(rec.job_id, rec.job_type, attempt, status, payload, self.now,
                         topic or rec.topic, rec.partition, rec.offset, headers, exc,
                         failure.error_class if failure else None,
                         failure.message if failure else None, delay, reason, emitted)
        self.outcomes.append(out)
        return out

    # -- results ------------------------------------------------------------------------------

    def _with(self, status: Status) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def succeeded(self) -> list[JobOutcome]:
        return self._with("succeeded")

    @property
    def retried(self) -> list[JobOutcome]:
        return self._with("retried")

    @property
    def dead_lettered(self) -> list[JobOutcome]:
        return self._with("dead_lettered")

    @property
    def failed(self) -> list[JobOutcome]:
        """Every run that raised (retried or dead-lettered)."""
        return [o for o in self.outcomes if o.status != "succeeded"]

    @property
    def pending(self) -> list[tuple[float, str]]:
        """(due time, job id) of queued jobs, soonest first."""
        return [(due / 1000, rec.job_id) for due, _, rec in sorted(self._queue)]

    def attempts(self, job_id: str) -> list[JobOutcome]:
        """Every run of ``job_id``, first attempt first."""
        return [o for o in self.outcomes if o.job_id == job_id]

    def outcome(self, job_id: str) -> JobOutcome:
        """The latest run of ``job_id``."""
        runs = self.attempts(job_id)
        if not runs:
            state = "is still pending" if any(r.job_id == job_id for _, _, r in self._queue) \
                else "was never emitted"
            raise KeyError(f"job {job_id} has not run: it {state}")
        return runs[-1]

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the async handlers' loop thread (if one was started)."""
        if self._loop is not None:
            self._stop_loop()
            self._loop = None

    def __enter__(self) -> JobRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _await(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run on the runner's loop thread, like the worker: works from async tests too."""
        if self._loop is None:
            loop = self._loop = asyncio.new_event_loop()
            loop.call_soon(bind_thread, self._followups)  # its thread's ctx.emit
            thread = threading.Thread(target=loop.run_forever, name="sj-testing-asyncio",
                                      daemon=True)
            thread.start()
            # A runner dropped without close() must not leave its thread running.
            self._stop_loop = weakref.finalize(self, _stop_loop, loop, thread)
        asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _push(self, due: int, rec: _Record) -> None:
        part = (rec.topic, rec.partition)
        rec.offset = self._offsets.get(part, 0)
        self._offsets[part] = rec.offset + 1
        heapq.heappush(self._queue, (due, next(self._seq), rec))

    def _partition(self, job_type: str, key: bytes | None) -> int:
        # librdkafka's default partitioner (consistent_random): crc32 of the key.
        n = self.app.catalogue.get(job_type).partitions
        return zlib.crc32(key) % n if key else 0

    def _tiers(self, job_type: str) -> tuple[float, ...]:
        return self.app.catalogue.wait_tiers(self.app.catalogue.get(job_type).topic)

    def _wait_topic(self, job_type: str, now: int, due: int) -> str:
        """The tier topic a record waiting until ``due`` is read from last (the router's)."""
        return last_wait_topic(self.app.topic(self.app.catalogue.get(job_type)),
                               self._tiers(job_type), now, due)

    def _encode_version(self, job_type: str, payload: Mapping[str, Any], version: int) -> bytes:
        """The production codec over a catalogue whose newest version of this job's schema is
        ``version``: the same validation, and the bytes an older deploy's producer writes."""
        codec = self._old_codecs.get((job_type, version))
        if codec is None:
            catalogue = self.app.catalogue
            schema = catalogue.get(job_type).schema
            n = len(catalogue.versions(schema))
            if not 1 <= version <= n:
                raise ValueError(f"{job_type}: schema_version must be within 1..{n}")
            versions = {name: catalogue.versions(name) for name in catalogue.schema_names()}
            versions[schema] = versions[schema][:version]
            old = Catalogue(catalogue.schemas_dir, {j.name: j for j in catalogue},
                            versions).with_framing(SINGLE_OBJECT)
            codec = self._old_codecs[(job_type, version)] = Codec(old)
        return codec.encode(job_type, payload)


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    if thread is not threading.current_thread():  # a GC pass may run on the loop's thread
        thread.join()
        loop.close()
