"""Emitting jobs: ``Producer`` (threads) and ``AsyncProducer`` (asyncio).

``emit`` validates and encodes the payload (nothing is sent when it is invalid), writes the job
metadata (one compact ``sj`` header, the record's timestamp as created-at; delayed jobs carry the
rich headers), sends the record without waiting and returns the job id at once. Delivery is
checked by ``flush()`` (or per record with ``on_delivery`` / ``wait=True``); only failures are
reported into Python until a caller asks for per-record reports (``Producer._reporting``).
Delayed jobs go to the wait tier of their topic with ``sj-due-at``; the worker runs them when
due (docs/DESIGN.md "Topics").

The underlying client is an idempotent producer (``enable.idempotence=true``, ``acks=all``), so
broker retries never duplicate or reorder records within a partition. See docs/producer.md.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from . import _connection as connection
from . import _headers as h
from ._avro.codec import Codec
from ._config import KafkaConfig
from ._connection import (
    AdminClient,
    ClientError,
    ConfigResource,
    ResourceType,
    client_settings,
    translate,
)
from ._delivery import PRODUCER_SETTINGS, DeliveryTracker, Poller
from ._names import retry_topic, status_topic
from ._retry import pick_tier
from ._schemas.catalogue import Catalogue
from ._schemas.registry import RegistryConfig, SchemaRegistry
from ._status.lookup import lookup as _lookup
from ._status.lookup import watch as _watch
from ._status.record import Transition
from ._status.timeline import JobStatus
from ._status.writer import StatusWriter
from .errors import BrokerUnavailable, DeliveryFailed, KafkaError, RecordTooLarge

__all__ = ["AsyncProducer", "Job", "Producer", "check_traceparent"]

OnDelivery = Callable[[str, KafkaError | None], None]
_Headers = list[tuple[str, str | bytes | None]]  # as confluent-kafka's produce() takes them
# (topic, key, value, headers, job id, size estimate, timestamp ms = created-at)
_Record = tuple[str, bytes | None, bytes, _Headers, str, int, int]

_TRACEPARENT = re.compile(r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}"
                          r"-[0-9a-f]{2}$")
# Set by emit itself; a caller's value would contradict ours.
_RESERVED = frozenset({h.META, h.JOB_ID, h.JOB_TYPE, h.ATTEMPT, h.CREATED_AT, h.SCHEMA, h.DUE_AT,
                       h.TARGET, h.TRACEPARENT, h.PARENT_ID})
# Upper bound of what Kafka adds around key, value and headers in a one-record batch:
# 61 bytes of batch header, record varints, 2 length varints per header (<= 4 bytes each).
_BATCH_OVERHEAD = 61 + 30
_HEADER_OVERHEAD = 8
_CLIENT_MAX = 1_000_000  # librdkafka's default message.max.bytes
_time_ns, _new_job_id, _META = time.time_ns, h.new_job_id, h.META
_new_job_ids = h.new_job_ids


@dataclass(frozen=True)
class Job:
    """One job for ``emit_many``; the fields mean what ``emit``'s arguments mean."""

    job_type: str
    payload: Mapping[str, Any]
    key: str | bytes | None = None
    headers: Mapping[str, str | bytes] | None = None
    traceparent: str | None = None
    delay: float | timedelta | None = None
    run_at: datetime | None = None
    job_id: str | None = None
    priority: str | None = None


class _TypeInfo:
    """What emit needs per job type, computed once."""

    __slots__ = ("const_size", "encode", "key_by_id", "key_field", "name", "rich", "rich_size",
                 "room", "status", "suffix", "target", "tier_topics", "tiers", "topic", "unique")

    def __init__(self, catalogue: Catalogue, codec: Codec, name: str,
                 status: StatusWriter | None) -> None:
        job = catalogue.get(name)
        self.name = name
        self.topic = job.topic
        self.target = job.topic.encode()
        self.key_field = job.key_field
        self.unique = job.unique
        # Unique by job id: records of one id must meet in one partition (docs/catalogue.md).
        self.key_by_id = job.unique is not None and job.unique.by == "job_id"
        self.encode = codec.encoder(name)
        self.suffix = f";{name}"  # the compact header is job id + this (headers.compact)
        # The rich headers' constant part, for delayed jobs (they wait on a LogAppendTime
        # tier, so created-at must travel as a header).
        self.rich: list[tuple[str, bytes]] = [
            (h.JOB_TYPE, name.encode()),
            (h.ATTEMPT, b"1"),
            (h.SCHEMA, codec.fingerprint(name).hex().encode()),
        ]
        # sj-id (36 chars) and sj-created-at (13 digits) vary in value, not in size.
        self.const_size = _BATCH_OVERHEAD + len(h.META) + 36 + len(self.suffix) + \
            _HEADER_OVERHEAD
        fixed = [*self.rich, (h.JOB_ID, b"x" * 36), (h.CREATED_AT, b"x" * 13)]
        self.rich_size = _BATCH_OVERHEAD + sum(len(k) + len(v) + _HEADER_OVERHEAD
                                               for k, v in fixed)
        # Bytes of key + value that fit a compact record on the topic (its size limit minus
        # const_size); -1 until the limit was read (Producer._room).
        self.room = -1
        self.tiers = catalogue.wait_tiers(job.topic)
        self.tier_topics = {t: retry_topic(job.topic, t) for t in self.tiers}
        # The start of its ``emitted`` status record, for job types recording everything.
        self.status = (status.emitted_head(name, job.topic)
                       if status is not None and job.status == "all" else None)


class Producer:
    """Emits jobs of a catalogue. Thread safe: share one per process."""

    def __init__(self, catalogue: Catalogue | str | Path, config: KafkaConfig | None = None, *,
                 linger_ms: float = 5, connect_timeout: float = 10.0,
                 delivery_timeout: float = 30.0, settings: Mapping[str, Any] | None = None,
                 registry: RegistryConfig | None = None) -> None:
        self.catalogue = (catalogue if isinstance(catalogue, Catalogue)
                          else Catalogue.load(catalogue))
        # Schema ids of registry-framed job types (None: STREAMJOBS_REGISTRY_* or none).
        registry = registry if registry is not None else RegistryConfig.from_env()
        self.codec = Codec(self.catalogue, registry=(
            SchemaRegistry(registry) if registry is not None else None))
        self.config = config if config is not None else KafkaConfig.from_env()
        self.connect_timeout = connect_timeout
        self.delivery_timeout = delivery_timeout
        self._tracker = DeliveryTracker()
        conf: dict[str, Any] = {
            **PRODUCER_SETTINGS,
            "linger.ms": linger_ms,
            # Bounds how long a record may wait for the broker before its delivery fails.
            "message.timeout.ms": max(1, round(delivery_timeout * 1000)),
            "on_delivery": self._tracker.callback,
            # Only failures reach Python: a success report per record (a Message object and a
            # call on the poll thread) costs emit about a tenth of its rate. The first
            # on_delivery= or wait=True switches to a client with every report (_reporting).
            "delivery.report.only.error": True,
        }
        every = client_settings(self.config, "producer", conf, overrides=settings)
        self._client_max = int(every.get("message.max.bytes", _CLIENT_MAX))
        self._conf, self._settings = conf, settings
        self._all_reports = not _truthy(every.get("delivery.report.only.error"))
        self._switch = threading.Lock()
        self._retired: list[tuple[Any, Poller]] = []  # clients before the switch, still served
        self._admin: AdminClient | None = None
        self._types: dict[str, _TypeInfo] = {}
        self._lanes: dict[tuple[str, str], _TypeInfo] = {}  # (job type, priority lane)
        self._status: StatusWriter | None = None
        self._status_opened = False
        self._limits: dict[str, int] = {}
        self._kafka = connection.producer(self.config, conf, overrides=settings)
        self._tracker.client = self._kafka
        try:
            self._kafka.list_topics(timeout=connect_timeout)
        except ClientError as exc:
            self._destroy()
            raise connection.no_answer(self.config, connect_timeout, exc) from None
        self._poller = Poller(self._kafka)
        self._poller.start()
        self._closed = False

    # -- emitting ---------------------------------------------------------------------------

    def emit(self, job_type: str, payload: Mapping[str, Any], *, key: str | bytes | None = None,
             headers: Mapping[str, str | bytes] | None = None, traceparent: str | None = None,
             delay: float | timedelta | None = None, run_at: datetime | None = None,
             on_delivery: OnDelivery | None = None, job_id: str | None = None,
             priority: str | None = None) -> str:
        """Validate, encode and send one job; returns its id before the broker acknowledges.

        ``priority``: one of the job type's priority lanes (catalogue ``priorities``; None:
        its default lane); the job goes to that lane's topic (docs/catalogue.md "Priorities").

        ``job_id``: the caller's id instead of a new UUIDv7 (``headers.check_job_id``); a job
        type that is unique by job id runs one job per id within its window.
        Raises PayloadError / UnknownJobType / RecordTooLarge / ValueError with nothing sent.
        ``on_delivery(job_id, error_or_None)`` runs on the producer's poll thread.
        """
        if (headers or traceparent is not None or delay is not None or run_at is not None
                or on_delivery is not None or job_id is not None or priority is not None):
            record = self._prepare(job_type, payload, key, headers, traceparent, delay, run_at,
                                   job_id, priority)
            self._check_size(record)
            self._send(record, on_delivery)
            self._record_emitted(job_type, record)
            return record[4]
        # The common case, inlined: a call per record is a real share of emit's cost.
        try:
            info = self._types[job_type]
        except KeyError:
            info = None  # outside the handler: an UnknownJobType carries no KeyError context
        if info is None:
            info = self._type_info(job_type)
        value = info.encode(payload)
        now_ms = _time_ns() // 1_000_000
        job_id = _new_job_id(now_ms)
        if key is None:
            if info.key_field is not None:
                field_value = payload.get(info.key_field)
                if field_value is not None:
                    key = str(field_value).encode()
        elif isinstance(key, str):
            key = key.encode()
        if key is None and info.key_by_id:
            key = job_id.encode()
        size = len(value) + (len(key) if key else 0)
        room = info.room
        if size > room and size > (room if room >= 0 else self._room(info)):
            raise RecordTooLarge(size + info.const_size, self._limits[info.topic],
                                 topic=info.topic)
        # A str value: the client writes its UTF-8 itself, sparing a bytes object.
        hdrs: _Headers = [(_META, job_id + info.suffix)]
        try:
            # Positional (partition -1: the partitioner's; no per-record callback): the
            # client's keyword parsing costs more than the header.
            self._kafka.produce(info.topic, value, key, -1, None, None, now_ms, hdrs)
        except (BufferError, ClientError):
            self._send((info.topic, key, value, hdrs, job_id, size + info.const_size, now_ms),
                       None)
        if info.status is not None:
            self._emitted(info, job_id, now_ms, None)
        return job_id

    def emit_many(self, jobs: Iterable[tuple[str, Mapping[str, Any]] | Job], *,
                  on_delivery: OnDelivery | None = None) -> list[str]:
        """Emit a batch. Every job is validated and encoded first, so one bad payload sends
        nothing (the error carries a note naming its position in the batch); then the records
        are produced in one tight loop. Returns the job ids in order. The jobs of a batch share
        one creation time (the call's), so their ids are made in one go."""
        batch = jobs if isinstance(jobs, list) else list(jobs)
        records: list[_Record] = []
        append = records.append
        emitted: list[tuple[_TypeInfo, str, int]] = []  # for job types recording everything
        prepared: list[tuple[str, _Record]] = []  # Job values (their status: _record_emitted)
        types = self._types
        now_ms = _time_ns() // 1_000_000
        ids = _new_job_ids(len(batch), now_ms)
        last_type: str | None = None
        info: _TypeInfo | None = None
        # The current job type's state, in locals: an attribute load per field and job is a
        # real share of a batch's Python work.
        encode: Callable[[Mapping[str, Any]], bytes] | None = None
        topic, key_field, key_by_id, suffix, const, room = "", None, False, "", 0, 0
        for i, job in enumerate(batch):
            try:
                if isinstance(job, Job):
                    rec = self._prepare(job.job_type, job.payload, job.key, job.headers,
                                        job.traceparent, job.delay, job.run_at, job.job_id,
                                        job.priority)
                    self._check_size(rec)
                    append(rec)
                    prepared.append((job.job_type, rec))
                    last_type = None  # the limit kept below is for its type's own topic
                    continue
                # (type, payload): emit's common case, with the per-type state kept across jobs.
                job_type, payload = job
                if job_type != last_type or info is None or encode is None:
                    info = types.get(job_type) or self._type_info(job_type)
                    last_type = job_type
                    room = info.room if info.room >= 0 else self._room(info)
                    encode, topic, key_field, key_by_id = (info.encode, info.topic,
                                                           info.key_field, info.key_by_id)
                    suffix, const = info.suffix, info.const_size
                value = encode(payload)
                job_id = ids[i]
                key = None
                if key_field is not None:
                    field_value = payload.get(key_field)
                    if field_value is not None:
                        key = str(field_value).encode()
                if key is None and key_by_id:
                    key = job_id.encode()
                size = len(value) + (len(key) if key else 0)
                if size > room:
                    raise RecordTooLarge(size + const, self._limits[topic], topic=topic)
                append((topic, key, value, [(_META, job_id + suffix)], job_id, size + const,
                        now_ms))
                if info.status is not None:
                    emitted.append((info, job_id, now_ms))
            except Exception as exc:
                exc.add_note(f"job #{i} of the batch; nothing was sent")
                raise
        if on_delivery is not None:
            for rec in records:
                self._send(rec, on_delivery)
        else:
            produce = self._kafka.produce
            send = self._send
            for rec in records:
                rec_topic, rec_key, rec_value, hdrs, _, _, ts = rec
                try:
                    produce(rec_topic, rec_value, rec_key, -1, None, None, ts, hdrs)
                except (BufferError, ClientError):
                    send(rec, None)
            used = getattr(produce, "__self__", None)
            if used is not None and used is not self._kafka:
                # Another thread switched clients (_reporting) during the loop: this batch's
                # tail went to the old one, so it is acknowledged before the caller's next
                # records (on the new one) can overtake it.
                used.flush(self.delivery_timeout + 5)
        for info, job_id, now_ms in emitted:
            self._emitted(info, job_id, now_ms, None)
        for job_type, rec in prepared:
            self._record_emitted(job_type, rec)
        return [rec[4] for rec in records]

    def flush(self, timeout: float | None = None) -> None:
        """Wait for every outstanding delivery; raise DeliveryFailed if any record failed since
        the last flush, or (code ``_TIMED_OUT``) if some are still in flight after ``timeout``."""
        # One deadline for every client (the retired one still carries the status writer's
        # records after a switch, _reporting): the caller's timeout bounds the whole call.
        deadline = None if timeout is None else time.monotonic() + timeout
        remaining = 0
        for client in [*(c for c, _ in self._retired), self._kafka]:
            wait = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            remaining += client.flush(wait)
        self._tracker.raise_failures()
        if remaining:
            raise DeliveryFailed(f"{remaining} record(s) still waiting for the broker after "
                                 f"{timeout:g}s", code="_TIMED_OUT")

    def close(self) -> None:
        """Wait (up to ``delivery_timeout``) for records in flight, then stop. Failures not yet
        reported by ``flush`` were logged and given to ``on_delivery`` callbacks."""
        if self._closed:
            return
        self._closed = True
        for client, poller in [*self._retired, (self._kafka, self._poller)]:
            client.flush(self.delivery_timeout)
            poller.stop()
        self._destroy()

    def _destroy(self) -> None:
        # Ends librdkafka's threads now. Left to garbage collection (the client and the
        # tracker's callback refer to each other) they outlive the interpreter, and a client
        # still retrying a refused login can crash the process at exit.
        self._tracker.client = None
        self._admin = None
        for client, _ in self._retired:
            client.close()
        self._kafka.close()

    # -- status -----------------------------------------------------------------------------

    def status(self, job_id: str, *, timeout: float = 10.0) -> JobStatus | None:
        """The job's status from the status topic (None when it holds nothing about it: an
        unknown id, or a job type recording ``failures`` that has not failed). Reads only
        the partition the id hashes to."""
        return _lookup(self.config, job_id, topic=status_topic(self.catalogue.topic_prefix),
                       timeout=timeout)

    def _record_emitted(self, job_type: str, record: _Record) -> None:
        write = self._emitted_write(job_type, record)
        if write is not None:
            self._queue_status(write, record[4])

    def _emitted_write(self, job_type: str, record: _Record) -> Callable[[], None] | None:
        """The one produce call of ``record``'s ``emitted`` status (None: its type records
        none). It raises BufferError on a full local queue: a caller that must not wait (the
        worker's poll thread) keeps it for later."""
        info = self._types.get(job_type) or self._type_info(job_type)
        status = self._status
        if info.status is None or status is None:
            return None
        topic, _, _, hdrs, job_id, _, at = record
        due = next((v for k, v in hdrs if k == h.DUE_AT), None)
        t = Transition("emitted", at, topic=topic,
                       due_at_ms=int(due) if due is not None else None)
        return functools.partial(status.write, job_id, info.name, t)

    def _emitted(self, info: _TypeInfo, job_id: str, now_ms: int, t: Transition | None) -> None:
        """Write the ``emitted`` status record (``t``: the slow path's; None: emit's own)."""
        status = self._status
        assert status is not None and info.status is not None

        def write() -> None:
            if t is None:
                status.emitted(info.status, job_id, now_ms)  # type: ignore[arg-type]
            else:
                status.write(job_id, info.name, t)

        self._queue_status(write, job_id)

    def _queue_status(self, write: Callable[[], None], job_id: str) -> None:
        """``write`` (one status produce), waiting up to ``delivery_timeout`` for room in
        the local queue."""
        status = self._status
        assert status is not None
        try:
            queued, _ = connection.until_queued(self._kafka, write,
                                                timeout=self.delivery_timeout)
        except ClientError as exc:
            raise translate(exc, f"cannot record the status of job {job_id}",
                              topic=status.topic) from None
        if not queued:
            raise DeliveryFailed(f"job {job_id}: local queue still full after "
                                 f"{self.delivery_timeout:g}s", code="_QUEUE_FULL",
                                 topic=status.topic, job_id=job_id)

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.flush()
        finally:
            self.close()

    # -- internals (shared with AsyncProducer) ----------------------------------------------

    def _prepare(self, job_type: str, payload: Mapping[str, Any], key: str | bytes | None,
                 headers: Mapping[str, str | bytes] | None, traceparent: str | None,
                 delay: float | timedelta | None, run_at: datetime | None,
                 job_id: str | None = None, priority: str | None = None) -> _Record:
        """A ``_Record``; raises before anything is sent."""
        info = self._types.get(job_type) or self._type_info(job_type)
        if priority is not None:
            info = self._lanes.get((job_type, priority)) or self._lane_info(info, priority)
        value = info.encode(payload)
        now_ms = _time_ns() // 1_000_000
        job_id = _new_job_id(now_ms) if job_id is None else h.check_job_id(job_id)
        hdrs: _Headers = [(_META, job_id + info.suffix)]
        if key is None:
            if info.key_field is not None:
                field_value = payload.get(info.key_field)
                if field_value is not None:
                    key = str(field_value).encode()
        elif isinstance(key, str):
            key = key.encode()
        if key is None and info.key_by_id:
            key = job_id.encode()
        size = info.const_size + len(value) + (len(key) if key else 0) + max(0, len(job_id) - 36)
        topic = info.topic
        if headers or traceparent is not None or delay is not None or run_at is not None:
            topic, extra = _extras(info, now_ms, headers, traceparent, delay, run_at)
            if topic != info.topic and info.unique is not None:
                # Duplicates are detected on the job topic; a delayed job runs from its wait
                # tier without passing there.
                raise ValueError(f"job type {job_type!r} is unique: it cannot be delayed")
            if topic != info.topic:  # delayed: the rich headers (see _TypeInfo.rich)
                hdrs = [(h.JOB_ID, job_id), (h.CREATED_AT, str(now_ms)), *info.rich]
                size += info.rich_size - info.const_size
            hdrs += extra
            size += sum(len(k) + len(v) + _HEADER_OVERHEAD for k, v in extra)
        return topic, key, value, hdrs, job_id, size, now_ms

    def _lane_info(self, base: _TypeInfo, lane: str) -> _TypeInfo:
        """``base`` sent to the topic of priority lane ``lane`` (its tiers, its target)."""
        job = self.catalogue.get(base.name)
        if job.lanes is None:
            raise ValueError(f"job type {base.name!r} has no priority lanes (catalogue "
                             "`priorities`)")
        topic = job.lanes.topic(job.topic, lane)  # ValueError naming the lanes
        info = copy.copy(base)
        info.topic = topic
        info.target = topic.encode()
        info.room = -1
        info.tier_topics = {t: retry_topic(topic, t) for t in info.tiers}
        self._lanes[(base.name, lane)] = info
        return info

    def _type_info(self, job_type: str) -> _TypeInfo:
        if not self._status_opened and self.catalogue.get(job_type).status == "all":
            self._status_opened = True  # once, whether the topic exists or not
            try:
                self._status = StatusWriter.open(self._kafka, self.catalogue.topic_prefix,
                                                 self.connect_timeout)
            except ClientError as exc:
                raise translate(exc, "cannot read the status topic's metadata"
                                  ) from None
        info = self._types[job_type] = _TypeInfo(self.catalogue, self.codec, job_type,
                                                 self._status)
        return info

    def _check_size(self, record: _Record) -> None:
        topic = record[0]
        limit = self._limits.get(topic)
        if limit is None:
            limit = self._fetch_limit(topic)
        if record[5] > limit:
            raise RecordTooLarge(record[5], limit, topic=topic)

    def _room(self, info: _TypeInfo) -> int:
        """``info.room``, reading its topic's size limit the first time."""
        limit = self._limits.get(info.topic) or self._fetch_limit(info.topic)
        info.room = limit - info.const_size
        return info.room

    def _fetch_limit(self, topic: str) -> int:
        """min(topic's max.message.bytes, client's message.max.bytes), asked once per topic.
        Also tells a missing topic apart from a slow broker before anything is queued."""
        if self._admin is None:
            self._admin = connection.admin(self.config)
        res = ConfigResource(ResourceType.TOPIC, topic)
        try:
            fut = self._admin.describe_configs([res], request_timeout=self.connect_timeout)[res]
            configs = fut.result(timeout=self.connect_timeout + 1)
        except ClientError as exc:
            err = exc.args[0]
            if err.name() == "UNKNOWN_TOPIC_OR_PART":
                raise KafkaError(f"topic {topic!r} does not exist (create it with "
                                 f"`streamjobs topics apply`)", code=err.name(),
                                 topic=topic) from None
            raise translate(exc, f"cannot read the configuration of topic {topic!r}",
                              topic=topic) from None
        except TimeoutError:
            raise BrokerUnavailable(f"no answer about topic {topic!r} within "
                                    f"{self.connect_timeout:g}s", code="_TIMED_OUT",
                                    topic=topic) from None
        entry = configs.get("max.message.bytes")
        topic_max = int(entry.value) if entry is not None and entry.value else self._client_max
        limit = self._limits[topic] = min(topic_max, self._client_max)
        return limit

    def _reporting(self) -> None:
        """From now on, send through a client that reports every delivery, success included
        (once per producer: ``on_delivery=`` and ``wait=True`` need success reports, and
        librdkafka sets ``delivery.report.only.error`` per client). The old client's records
        are all acknowledged (or failed) before the new one sends anything, so records of one
        key keep their order across the switch; it stays open, served by its poll thread, for
        what else still holds it (the status writer), and closes with the producer."""
        with self._switch:
            if self._all_reports:
                return
            old = self._kafka
            new = connection.producer(self.config, self._conf,
                                      overrides={**(self._settings or {}),
                                                 "delivery.report.only.error": False})
            # Other threads' emits wait at the gate meanwhile, so the flush ends.
            self._kafka = _Gate(self)  # type: ignore[assignment]
            try:
                old.flush(self.delivery_timeout + 5)
                poller = Poller(new)
                poller.start()
            except BaseException:
                self._kafka = old
                new.close()
                raise
            self._retired.append((old, self._poller))
            self._kafka, self._poller = new, poller
            self._tracker.client = new
            self._all_reports = True

    def _send(self, record: _Record, on_delivery: OnDelivery | None) -> None:
        if on_delivery is not None and not self._all_reports:
            self._reporting()
        cb = (None if on_delivery is None
              else self._tracker.per_message(record[4], record[3], on_delivery))
        queued, _ = connection.until_queued(self._kafka, lambda: self._send_once(record, cb),
                                            timeout=self.delivery_timeout)
        if not queued:
            raise _queue_full(record, self.delivery_timeout)

    def _send_once(self, record: _Record, cb: Callable[[Any, Any], None] | None) -> None:
        """One produce call; BufferError (queue full) is the caller's to handle."""
        topic, key, value, hdrs, job_id, size, ts = record
        try:
            if cb is None:
                self._kafka.produce(topic, value, key, headers=hdrs, timestamp=ts)
            else:
                self._kafka.produce(topic, value, key, headers=hdrs, timestamp=ts,
                                    on_delivery=cb)
        except ClientError as exc:
            err = exc.args[0]
            if err.name() == "MSG_SIZE_TOO_LARGE":
                raise RecordTooLarge(size, self._client_max, topic=topic) from None
            raise translate(exc, f"cannot produce job {job_id}", topic=topic) from None


class _Gate:
    """Stands in for the client while ``Producer._reporting`` switches clients: a thread that
    reaches it waits until the switch is done, then uses the new client. (emit's hot path
    reads ``_kafka`` once per record and calls ``produce`` with no switch of threads in
    between, so no record of it lands in the old client after its flush.)"""

    __slots__ = ("_producer",)

    def __init__(self, producer: Producer) -> None:
        self._producer = producer

    def __getattr__(self, name: str) -> Any:
        with self._producer._switch:
            pass
        return getattr(self._producer._kafka, name)


def _passed(lock: threading.Lock) -> None:
    with lock:
        pass


def _truthy(value: Any) -> bool:
    """A librdkafka boolean setting as given in Python (True or "true")."""
    return value is True or str(value).lower() == "true"


def _queue_full(record: _Record, timeout: float) -> DeliveryFailed:
    return DeliveryFailed(f"job {record[4]}: local queue still full after {timeout:g}s",
                          code="_QUEUE_FULL", topic=record[0], job_id=record[4])


def check_traceparent(value: str) -> str:
    """``value`` if it is a valid W3C ``traceparent``, else ValueError."""
    if not _TRACEPARENT.match(value):
        raise ValueError(f"traceparent {value!r} is not W3C trace context "
                         f"(00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>)")
    return value


def due_at_ms(now_ms: int, delay: float | timedelta | None,
              run_at: datetime | None) -> int | None:
    """When a job emitted at ``now_ms`` with ``delay`` or ``run_at`` is due (epoch ms), or None
    for no (or a non-positive) delay. ``ValueError`` for both, or a naive ``run_at``."""
    if delay is not None and run_at is not None:
        raise ValueError("give delay or run_at, not both")
    if delay is not None:
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
        return now_ms + round(seconds * 1000) if seconds > 0 else None
    if run_at is not None:
        if run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware (e.g. datetime.now(UTC) + ...)")
        return round(run_at.timestamp() * 1000)
    return None


def _extras(info: _TypeInfo, now_ms: int, headers: Mapping[str, str | bytes] | None,
            traceparent: str | None, delay: float | timedelta | None,
            run_at: datetime | None) -> tuple[str, list[tuple[str, bytes]]]:
    """The slow path: caller headers, trace context and scheduling."""
    extra: list[tuple[str, bytes]] = []
    for name, val in (headers or {}).items():
        if name in _RESERVED:
            raise ValueError(f"header {name!r} is set by emit itself")
        extra.append((name, val if isinstance(val, bytes) else val.encode()))
    if traceparent is not None:
        extra.append((h.TRACEPARENT, check_traceparent(traceparent).encode()))
    due_ms = due_at_ms(now_ms, delay, run_at)
    if due_ms is None or due_ms <= now_ms:
        return info.topic, extra  # due already: a plain emit
    tier = pick_tier((due_ms - now_ms) / 1000, info.tiers)
    extra += [(h.DUE_AT, str(due_ms).encode()), (h.TARGET, info.target)]
    return info.tier_topics[tier], extra


class AsyncProducer:
    """``Producer`` for asyncio services: no call blocks the event loop.

    The client's own thread does the I/O and a poll thread runs delivery callbacks, which hand
    results to the loop with ``call_soon_threadsafe``. Blocking steps (connecting, reading a
    topic's size limit once, flushing) run in worker threads.
    """

    def __init__(self, catalogue: Catalogue | str | Path, config: KafkaConfig | None = None,
                 **kwargs: Any) -> None:
        self._args = (catalogue, config)
        self._kwargs = kwargs
        self._producer: Producer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> Producer:
        """Connect (in a thread); raises BrokerUnavailable. ``emit`` calls it when needed."""
        async with self._lock:
            if self._producer is None:
                self._producer = await asyncio.to_thread(Producer, *self._args, **self._kwargs)
        return self._producer

    async def emit(self, job_type: str, payload: Mapping[str, Any], *,
                   key: str | bytes | None = None,
                   headers: Mapping[str, str | bytes] | None = None,
                   traceparent: str | None = None, delay: float | timedelta | None = None,
                   run_at: datetime | None = None, wait: bool = False,
                   job_id: str | None = None, priority: str | None = None) -> str:
        """Like ``Producer.emit``; with ``wait=True`` also await the broker's acknowledgement
        (raises DeliveryFailed). Without it, failures surface at ``flush()``."""
        p = self._producer or await self.start()
        if job_type not in p._types:  # first use: may read the status topic's metadata
            await asyncio.to_thread(p._type_info, job_type)
        record = p._prepare(job_type, payload, key, headers, traceparent, delay, run_at,
                            job_id, priority)
        if record[0] not in p._limits:
            await asyncio.to_thread(p._fetch_limit, record[0])
        p._check_size(record)
        fut: asyncio.Future[None] | None = None
        cb: Callable[[Any, Any], None] | None = None
        if not wait and p._switch.locked():  # another task switches clients: wait off the loop
            await asyncio.to_thread(_passed, p._switch)
        if wait:
            if not p._all_reports:
                await asyncio.to_thread(p._reporting)
            # The failure goes to the awaiting caller only, not to flush() as well.
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            cb = p._tracker.per_message(record[4], record[3], _resolver(loop, fut), track=False)
        queued, _ = await connection.until_queued_async(lambda: p._send_once(record, cb),
                                                        timeout=p.delivery_timeout)
        if not queued:
            raise _queue_full(record, p.delivery_timeout)
        p._record_emitted(job_type, record)
        if fut is not None:
            await fut
        return record[4]

    async def status(self, job_id: str, *, timeout: float = 10.0) -> JobStatus | None:
        """``Producer.status``, in a worker thread."""
        p = self._producer or await self.start()
        return await asyncio.to_thread(p.status, job_id, timeout=timeout)

    async def watch(self, job_id: str, *, timeout: float | None = None) -> JobStatus:
        """Await the job reaching a final state (succeeded or dead) and return its status;
        ``TimeoutError`` after ``timeout`` seconds. Job types recording ``failures`` only
        never show ``succeeded``: give those a timeout."""
        p = self._producer or await self.start()
        return await _watch(p.config, job_id, topic=status_topic(p.catalogue.topic_prefix),
                            timeout=timeout)

    async def flush(self, timeout: float | None = None) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, timeout)

    async def close(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.close)

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if exc_type is None:
                await self.flush()
        finally:
            await self.close()


def _resolver(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> OnDelivery:
    def resolve(job_id: str, error: KafkaError | None) -> None:
        loop.call_soon_threadsafe(_settle, fut, error)

    return resolve


def _settle(fut: asyncio.Future[None], error: KafkaError | None) -> None:
    if fut.done():  # the awaiting task was cancelled
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
