"""Re-publishing dead letters to their job topics, at most once per dead letter per success.

Progress is a compacted topic ``<dlq topic>.reprocessed`` keyed by ``"<partition>/<offset>"``
of the dead letter (docs/dlq.md). It is read completely before a run, and a dead letter is
written there only after its re-publish was acknowledged (``acks=all``, idempotent producer).
So any filtered run, in any order, skips exactly the dead letters already re-published and
never loses those it did not select; a crash between the acknowledgement and the progress
write can at worst re-publish that batch again on the next run (at-least-once).

Before publishing, each payload is re-validated against the current schema of its job type
(``dlq.revalidate``); records that no longer fit are reported and left in place (``force_raw``
publishes them as they are).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from confluent_kafka import KafkaError as _RdKafkaError
from confluent_kafka import Message
from confluent_kafka import Producer as _RawProducer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from . import headers as h
from ._delivery import PRODUCER_SETTINGS, resend, unconfirmed
from .codec import Codec
from .config import KafkaConfig
from .dlq import DeadLetter, Filter, read, revalidate
from .errors import KafkaError
from .scan import (
    Range,
    TopicNotFound,
    admin_client,
    partitions_of,
    scan,
    topic_exists,
    watermarks,
)
from .status.record import Transition
from .status.writer import StatusWriter

__all__ = ["Item", "Report", "Reprocessor", "load_progress", "progress_topic"]

BATCH = 200  # re-publishes acknowledged (and recorded) together


def progress_topic(dlq: str) -> str:
    return f"{dlq}.reprocessed"


def load_progress(config: KafkaConfig, dlq: str, admin: AdminClient | None = None
                  ) -> dict[tuple[int, int], int | None]:
    """(partition, offset) of every dead letter already re-published -> its record timestamp
    (None if unknown). Empty when the progress topic does not exist yet."""
    admin = admin or admin_client(config)
    topic = progress_topic(dlq)
    try:
        parts = partitions_of(admin, config, topic)
    except TopicNotFound:
        return {}
    marks = watermarks(admin, config, [(topic, p) for p in parts])
    done: dict[tuple[int, int], int | None] = {}
    for msg in scan(config, [Range(t, p, lo, hi) for (t, p), (lo, hi) in marks.items()]):
        key = (msg.key() or b"").decode("utf-8", "replace")
        part, _, off = key.partition("/")
        if not (part.isdigit() and off.isdigit()):
            continue
        ts: int | None = None
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            ts = int(orjson.loads(msg.value() or b"{}").get("dlq_ts"))
        done[(int(part), int(off))] = ts
    return done


@dataclass(frozen=True)
class Item:
    """One dead letter in a report."""

    ref: str
    job_type: str | None
    reason: str
    key: str | None
    target: str | None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ref": self.ref, "job_type": self.job_type, "reason": self.reason,
                "key": self.key, "target": self.target, "problem": self.problem}


@dataclass
class Report:
    topic: str
    executed: bool
    scanned: int = 0
    matched: int = 0
    already: int = 0  # matched but re-published by an earlier run
    published: list[Item] = field(default_factory=list)  # (dry run: would be)
    rejected: list[Item] = field(default_factory=list)  # no longer fit / no target
    failed: list[Item] = field(default_factory=list)  # delivery failed
    limit_reached: bool = False

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "executed": self.executed, "scanned": self.scanned,
                "matched": self.matched, "already_reprocessed": self.already,
                "published": [i.as_dict() for i in self.published],
                "rejected": [i.as_dict() for i in self.rejected],
                "failed": [i.as_dict() for i in self.failed],
                "limit_reached": self.limit_reached}


def republish_headers(dl: DeadLetter) -> h.Headers:
    """Original headers, provenance stripped, attempt 1, linked to the dead letter."""
    return h.replace(dl.original_headers(), {h.ATTEMPT: "1", h.REPROCESSED_FROM: dl.ref})


class Reprocessor:
    """One reprocess run over one dead-letter topic: ``open()`` (returns the number of records
    to scan, for a progress bar), then ``run()`` (returns the report)."""

    def __init__(self, config: KafkaConfig, codec: Codec | None, dlq: str, flt: Filter, *,
                 execute: bool = False, limit: int | None = None, rate: float | None = None,
                 force_raw: bool = False) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("--rate must be > 0")
        if limit is not None and limit < 0:
            raise ValueError("--limit must be >= 0")
        self.config = config
        self.codec = codec
        self.dlq = dlq
        self.flt = flt
        self.execute = execute
        self.limit = limit
        self.rate = rate
        self.force_raw = force_raw
        self.admin = admin_client(config)
        self.report = Report(dlq, execute)
        self._done: dict[tuple[int, int], int | None] = {}
        self._records: Iterator[DeadLetter] = iter(())
        self._targets: dict[str, bool] = {}
        self._producer: _RawProducer | None = None
        self._batch: list[tuple[DeadLetter, Item]] = []
        self._failed: dict[str, str] = {}  # ref (or progress key) -> delivery error
        self._status: StatusWriter | None = None

    def open(self) -> int:
        """Read the progress topic and capture the ranges to scan; TopicNotFound here."""
        bounds = Filter(partition=self.flt.partition, from_offset=self.flt.from_offset,
                        to_offset=self.flt.to_offset)
        ranges, self._records = read(self.config, self.dlq, bounds)
        self._done = load_progress(self.config, self.dlq, self.admin)
        return sum(len(r) for r in ranges)

    def run(self, progress: Callable[[int], None] | None = None) -> Report:
        if self.execute:
            self._ensure_progress_topic()
            self._producer = _RawProducer({**self.config.client_settings(),
                                           **PRODUCER_SETTINGS, "linger.ms": 5,
                                           **self.config.role_settings("producer")})
            if self.codec is not None:  # its catalogue names the environment's prefix
                self._status = StatusWriter.open(self._producer,
                                                 self.codec.catalogue.topic_prefix)
        started = time.monotonic()
        try:
            for dl in self._records:
                self.report.scanned += 1
                if progress is not None:
                    progress(1)
                if not self.flt.matches(dl):
                    continue
                self.report.matched += 1
                if self._already(dl):
                    self.report.already += 1
                    continue
                if self.limit is not None and self._selected() >= self.limit:
                    self.report.limit_reached = True
                    break
                self._one(dl)
                if len(self._batch) >= BATCH:
                    self._flush_batch()
                if self.rate is not None:
                    self._pace(started)
            self._flush_batch()
        finally:
            if self._producer is not None:
                self._producer.flush(30)
        return self.report

    def _already(self, dl: DeadLetter) -> bool:
        # The timestamp check keeps a deleted and re-created dead-letter topic (offsets
        # starting over) from matching the old progress records.
        key = (dl.partition, dl.offset)
        return key in self._done and self._done[key] in (None, dl.timestamp)

    def _pace(self, started: float) -> None:
        # Pace by the schedule, not by a sleep per record, so slow acks do not add up.
        assert self.rate is not None
        delay = started + self._selected() / self.rate - time.monotonic()
        if delay > 0:
            self._flush_batch()  # record progress while waiting anyway
            time.sleep(delay)

    def _selected(self) -> int:
        r = self.report
        return len(r.published) + len(r.failed) + len(r.rejected) + len(self._batch)

    def _one(self, dl: DeadLetter) -> None:
        job_topic = None
        if self.codec is not None and dl.job_type is not None and \
                dl.job_type in self.codec.catalogue:
            job_topic = self.codec.catalogue.get(dl.job_type).topic
        target = dl.target_topic(job_topic)
        item = Item(dl.ref, dl.job_type, dl.reason, dl.key_text, target)
        if target is None:
            self._reject(item, "no sj-orig-topic header and no known job type: nowhere to "
                               "re-publish")
            return
        problem = revalidate(self.codec, dl)
        if problem is not None and not self.force_raw:
            self._reject(item, problem)
            return
        if problem is not None:
            item = replace(item, problem=f"published raw (--force-raw): {problem}")
        if not self._target_exists(target):
            self._reject(item, f"target topic {target!r} does not exist")
            return
        if not self.execute:
            self.report.published.append(item)
            return
        assert self._producer is not None
        hdrs: list[tuple[str, str | bytes | None]] = list(republish_headers(dl))
        self._record_status(dl, target)
        self._produce(target, dl.key, dl.value, hdrs, dl.ref)
        self._batch.append((dl, item))

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 hdrs: list[tuple[str, str | bytes | None]] | None, ref: str) -> None:
        assert self._producer is not None
        producer, failed = self._producer, self._failed

        def on_delivery(err: _RdKafkaError | None, msg: Message) -> None:
            if err is not None:
                failed[ref] = f"{err.name()}: {err.str()}"
            elif unconfirmed(err, msg) and (why := resend(producer, msg, hdrs,
                                                         on_delivery)) is not None:
                failed[ref] = why

        while True:
            try:
                self._producer.produce(topic, value=value, key=key, headers=hdrs,
                                       on_delivery=on_delivery)
                break
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.1)
        self._producer.poll(0)

    def _record_status(self, dl: DeadLetter, target: str) -> None:
        """``reprocessed`` in the status topic (types recording ``all`` or ``failures``)."""
        job_id, job_type = dl.meta.job_id, dl.job_type
        if self._status is None or not job_id or self.codec is None:
            return
        catalogue = self.codec.catalogue
        if job_type is not None and job_type in catalogue and \
                catalogue.get(job_type).status == "none":
            return
        self._status.send(job_id, job_type or "", Transition(
            "reprocessed", time.time_ns() // 1_000_000, 1, topic=target, reason=dl.ref))

    def _reject(self, item: Item, problem: str) -> None:
        self.report.rejected.append(replace(item, problem=problem))

    def _target_exists(self, topic: str) -> bool:
        # Checked up front: producing to a missing topic (no auto-creation) would only fail
        # after message.timeout.ms.
        if topic not in self._targets:
            try:
                partitions_of(self.admin, self.config, topic)
                self._targets[topic] = True
            except TopicNotFound:
                self._targets[topic] = False
        return self._targets[topic]

    def _flush_batch(self) -> None:
        """Wait for the batch's acknowledgements, then record progress for the acked ones."""
        if not self._batch or self._producer is None:
            return
        batch, self._batch = self._batch, []
        if self._producer.flush(60):
            raise KafkaError("re-published records not acknowledged within 60s; they may be "
                             "re-published again by the next run")
        acked = []
        for dl, item in batch:
            err = self._failed.pop(dl.ref, None)
            if err is None:
                acked.append((dl, item))
            else:
                self.report.failed.append(replace(item, problem=f"delivery failed: {err}"))
        self._write_progress(acked)
        self.report.published.extend(item for _, item in acked)

    def _write_progress(self, acked: list[tuple[DeadLetter, Item]]) -> None:
        """Record the acknowledged re-publishes; only once this returns are they 'done'."""
        if not acked or self._producer is None:
            return
        topic = progress_topic(self.dlq)
        now = time.time_ns() // 1_000_000
        for dl, item in acked:
            value = orjson.dumps({"to": item.target, "at": now, "dlq_ts": dl.timestamp})
            self._produce(topic, f"{dl.partition}/{dl.offset}".encode(), value, None,
                          f"progress:{dl.ref}")
        remaining = self._producer.flush(60)
        if remaining or any(k.startswith("progress:") for k in self._failed):
            raise KafkaError(f"could not record reprocess progress in {topic!r}; the records "
                             f"just re-published may be re-published again by the next run")

    def _ensure_progress_topic(self) -> None:
        topic = progress_topic(self.dlq)
        if topic_exists(self.admin, self.config, topic):
            return
        fut = self.admin.create_topics([NewTopic(topic, 1, self._replication(), config={
            "cleanup.policy": "compact"})])[topic]
        try:
            fut.result(timeout=30)
        except Exception as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, _RdKafkaError)
                    and err.code() == _RdKafkaError.TOPIC_ALREADY_EXISTS):  # lost a race: fine
                raise KafkaError(f"cannot create progress topic {topic!r}: {exc}") from None

    def _replication(self) -> int:
        """The dead-letter topic's replication factor, so progress is as durable."""
        tmd = self.admin.list_topics(topic=self.dlq, timeout=10).topics.get(self.dlq)
        if tmd is None or not tmd.partitions:
            return 1
        return max(1, len(next(iter(tmd.partitions.values())).replicas))
