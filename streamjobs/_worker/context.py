"""``JobContext``: what a handler knows about the job it runs; ``Handler``: what runs it.

One object per record, built in the poll thread; it is also the worker's unit of work (the
underscored slots), so the hot path allocates nothing else per job. ``log`` is built on first
use: binding a structlog logger per job would cost more than a no-op handler.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any

import structlog

from .. import _headers as h
from ..errors import NotInWorker

if TYPE_CHECKING:
    from .._schemas.catalogue import JobType

__all__ = ["Handler", "HandlerFunc", "JobContext", "RecordContext", "TopicRecordContext",
           "bind_thread", "bound", "foreign_id", "idents"]

# Ids of records that came without sj- headers (foreign producers): stable across redeliveries.
_META = h.META  # read per record on the hot path: a global, not a module attribute
_FOREIGN_IDS = uuid.UUID("5f0c8a52-3d1e-4c56-9a57-1d9e3b7f2c10")


def foreign_id(topic: str, partition: int, offset: int) -> str:
    """The id of a record without one (a foreign producer's): derived from its position."""
    return str(uuid.uuid5(_FOREIGN_IDS, f"{topic}/{partition}/{offset}"))

# The executor whose thread (or event loop) this is: where ``ctx.emit`` hands follow-ups.
_bound = threading.local()


def bind_thread(executor: Any) -> None:
    """Called once by each handler thread (and the asyncio loop's) of an executor."""
    _bound.executor = executor


def bound() -> Any:
    """The executor this thread is bound to (None: not a handler thread)."""
    return getattr(_bound, "executor", None)


class JobContext:
    """Read-only facts about the running job.

    ``topic``/``partition``/``offset`` are where the record was read (a retry tier topic for a
    retried job); ``job_topic`` is the job type's topic. ``attempt`` is 1 for the first run.
    """

    __slots__ = ("_due_at_ms", "_handler", "_job", "_log", "_timestamp_ms", "_value",
                 "attempt", "created_at_ms", "headers", "job_id", "job_topic", "job_type",
                 "key", "offset", "partition", "payload", "topic")

    def __init__(self, job_id: str, job_type: str, attempt: int, headers: h.Headers, topic: str,
                 partition: int, offset: int, key: bytes | None, created_at_ms: int | None,
                 payload: dict[str, Any], job_topic: str, value: bytes, timestamp_ms: int,
                 job: JobType, handler: Handler, due_at_ms: int | None = None) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.headers = headers
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.created_at_ms = created_at_ms
        self.payload = payload
        self.job_topic = job_topic
        self._value = value
        self._timestamp_ms = timestamp_ms
        self._job = job
        self._handler = handler
        self._due_at_ms = due_at_ms
        self._log: Any = None

    @property
    def log(self) -> Any:
        """A structlog logger bound to this job's id, type, attempt and position."""
        if self._log is None:
            self._log = structlog.get_logger("streamjobs.job").bind(
                job_id=self.job_id, job_type=self.job_type, attempt=self.attempt,
                topic=self.topic, partition=self.partition, offset=self.offset)
        return self._log

    def header(self, name: str) -> str | None:
        """Last value of header ``name`` as text."""
        return h.get(self.headers, name)

    def emit(self, job_type: str, payload: Mapping[str, Any], *,
             key: str | bytes | None = None, headers: Mapping[str, str | bytes] | None = None,
             traceparent: str | None = None, delay: float | timedelta | None = None,
             run_at: datetime | None = None, job_id: str | None = None) -> str:
        """Emit a follow-up job; returns its id. Validated like ``Producer.emit`` (raises
        with nothing sent); carries this job's ``traceparent`` (unless given) and
        ``sj-parent-id``. This job's offset is finished only once the broker acknowledged
        the follow-up (exactly-once: they commit in one transaction). In a
        ``streamjobs.testing.JobRunner`` the runner collects it. See docs/worker.md."""
        executor = getattr(_bound, "executor", None)
        followups = getattr(executor, "followups", None)
        if followups is None:
            raise NotInWorker("ctx.emit works inside the handlers of a worker or of a "
                              "streamjobs.testing.JobRunner only")
        result: str = followups.emit(self, job_type, payload, key=key, headers=headers,
                                     traceparent=traceparent, delay=delay, run_at=run_at,
                                     job_id=job_id)
        return result

    def __repr__(self) -> str:
        return (f"JobContext(job_id={self.job_id!r}, job_type={self.job_type!r}, "
                f"attempt={self.attempt}, topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset})")


class RecordContext(JobContext):
    """The worker's ``JobContext``: built per record on the poll thread, so it stores the
    Kafka message and its route and derives the other facts when they are read (most
    handlers read none of them). Header values were validated by the intake."""

    __slots__ = ("_created", "_id", "_msg", "_part", "_route")

    def __init__(self, msg: Any, part: Any, route: Any, offset: int, attempt: int,
                 payload: dict[str, Any], created: int | None, id_b: bytes) -> None:
        self._msg = msg
        self._id = id_b  # the job id as sent (the intake checked it is UTF-8)
        # A wait topic's record: its sj-created-at, for success summaries (executor.created_at;
        # a job topic's records report their timestamps). None elsewhere.
        self._created = created
        self._part = part
        self._route = route
        self._handler = route.handler
        self.offset = offset
        self.attempt = attempt
        self.payload = payload
        self._log = None
        self._due_at_ms = None

    @property
    def job_id(self) -> str:  # type: ignore[override]
        return self._id.decode("utf-8")

    def _ident(self) -> tuple[bytes, int, int]:
        """(id as sent, attempt, offset): what a status record lists of a job, in one call."""
        return self._id, self.attempt, self.offset

    @property
    def job_type(self) -> str:  # type: ignore[override]
        name: str = self._route.job.name
        return name

    @property
    def headers(self) -> h.Headers:  # type: ignore[override]
        hdrs: h.Headers = self._msg.headers() or []
        return hdrs

    @property
    def topic(self) -> str:  # type: ignore[override]
        topic: str = self._part.topic
        return topic

    @property
    def partition(self) -> int:  # type: ignore[override]
        partition: int = self._part.partition
        return partition

    @property
    def key(self) -> bytes | None:  # type: ignore[override]
        key: bytes | None = self._msg.key()
        return key

    @property
    def created_at_ms(self) -> int | None:  # type: ignore[override]
        created = h.get_int(self.headers, h.CREATED_AT)  # the rich form carries it
        if created is not None:
            return created
        ts: int = self._msg.timestamp()[1]  # the compact form: created-at is CreateTime
        return ts if ts > 0 else None

    @property
    def job_topic(self) -> str:  # type: ignore[override]
        topic: str = self._part.job_topic  # the record's lane topic, when the type has lanes
        return topic

    @property
    def _value(self) -> bytes:  # type: ignore[override]
        value: bytes = self._msg.value()
        return value

    @property
    def _timestamp_ms(self) -> int:  # type: ignore[override]
        ts: int = self._msg.timestamp()[1]
        return ts

    @property
    def _job(self) -> JobType:  # type: ignore[override]
        return self._route.job  # type: ignore[no-any-return]


class TopicRecordContext(RecordContext):
    """A record taken from a topic that carries one job type, without reading its headers:
    the topic names the type and the cached reader of one of its writer schemas read the
    value, so the intake needs nothing else. Converting a record's headers to Python is the
    costliest step of taking it (more than the body read), and most runs never look at them:
    the job id, attempt, created-at and headers are read on first use. Whatever the headers
    hold is taken as it comes: no id (a foreign producer) is one derived from the record's
    position, added to ``headers`` so a retry keeps it; an unreadable attempt is 1, an
    unreadable created-at the record's timestamp; a ``sj-type`` naming another type is not
    looked at (the topic's type wins)."""

    __slots__ = ("_meta",)

    def __init__(self, msg: Any, part: Any, route: Any, offset: int,
                 payload: dict[str, Any]) -> None:
        self._msg = msg
        self._part = part
        self._route = route
        self._handler = route.handler
        self.offset = offset
        self.payload = payload
        self._created = None
        self._meta: tuple[bytes, int, h.Headers] | None = None
        self._log = None
        self._due_at_ms = None

    def _read(self) -> tuple[bytes, int, h.Headers]:
        """(id, attempt, headers), read once."""
        meta = self._meta
        if meta is None:
            hdrs: h.Headers = self._msg.headers() or []
            # As emit writes a first attempt: one ``sj`` header (``idents`` reads the same
            # over a whole chunk).
            if len(hdrs) == 1:
                k, v = hdrs[0]
                tail = self._route.tail
                if (k == _META and v is not None and v.endswith(tail)
                        and len(v) > len(tail) and v.isascii()):
                    meta = self._meta = (v[:-len(tail)], 1, hdrs)
                    return meta
            type_b, id_b, a, c = h.scan(hdrs)
            # What this runs as, added where the headers say otherwise or cannot be read
            # (later headers win), so that a retry or dead letter carries it as it ran.
            fix: dict[str, bytes] = {}
            name = self._route.type_b
            if type_b != name:
                fix[h.JOB_TYPE] = name
            if id_b is None:  # a foreign producer's record: an id from its position
                id_b = fix[h.JOB_ID] = foreign_id(self._part.topic, self._part.partition,
                                                  self.offset).encode()
            elif not id_b.isascii():
                text = id_b.decode("utf-8", "replace").encode()
                if text != id_b:
                    id_b = fix[h.JOB_ID] = text
            if c is not None and not c.isdigit():
                fix[h.CREATED_AT] = str(self._msg.timestamp()[1]).encode()
            if fix:
                hdrs = [*hdrs, *fix.items()]
            attempt = int(a) if a is not None and a.isdigit() and int(a) > 0 else 1
            meta = self._meta = (id_b, attempt, hdrs)
        return meta

    @property
    def _id(self) -> bytes:  # type: ignore[override]
        return self._read()[0]

    def _ident(self) -> tuple[bytes, int, int]:
        meta = self._meta
        if meta is None:
            meta = self._read()
        return meta[0], meta[1], self.offset

    @property
    def attempt(self) -> int:
        return self._read()[1]

    @attempt.setter
    def attempt(self, value: int) -> None:  # a retry in place (keyhold.py, key-strict)
        id_b, _, hdrs = self._read()
        self._meta = (id_b, value, hdrs)

    @property
    def headers(self) -> h.Headers:  # type: ignore[override]
        return self._read()[2]


_MSG = attrgetter("_msg")
_META_OF = attrgetter("_meta")
_OFFSET = attrgetter("offset")
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)


def idents(jobs: list[JobContext], route: Any) -> list[tuple[bytes, int, int]]:
    """(id as sent, attempt, offset) of each of ``jobs``, records of a job topic of one type
    (``route``'s), for their status records. When every record carries just the ``sj``
    header of that type (as ``emit`` writes a first attempt) and none was read yet, they are
    read as ``TopicRecordContext._read`` reads them, in C-level passes over them all (each
    record's headers still converted by one call, but no Python frame per job); otherwise
    job by job."""
    tail = route.tail
    try:
        if not any(map(_META_OF, jobs)):  # none read (no attempt set in place either)
            msgs = list(map(_MSG, jobs))
            hdrs = list(map(type(msgs[0]).headers, msgs))
            if set(map(len, hdrs)) == {1}:
                pairs = list(map(_FIRST, hdrs))
                values = list(map(_SECOND, pairs))
                if (set(map(_FIRST, pairs)) == {_META}
                        and all(map(bytes.endswith, values, repeat(tail)))
                        and min(map(len, values)) > len(tail)
                        and b"".join(values).isascii()):
                    ids = map(bytes.removesuffix, values, repeat(tail))
                    return list(zip(ids, repeat(1), map(_OFFSET, jobs)))
    except (AttributeError, IndexError, TypeError):  # not all alike: job by job
        pass
    return [c._ident() for c in jobs]  # type: ignore[attr-defined]


HandlerFunc = Callable[[dict[str, Any], JobContext], Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler (``App.job``); here, not in ``app.py``, because a job's context
    carries its handler and a handler's signature names the context."""

    job_type: str
    func: HandlerFunc
    is_async: bool
    timeout: float | None = None  # overrides the job type's catalogue timeout
