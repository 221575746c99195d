"""Re-publishing dead letters to their job topics, exactly once per dead letter.

Progress is a compacted topic ``<dlq topic>.reprocessed`` keyed by ``"<partition>/<offset>"``
of the dead letter (docs/dlq.md). An executing run writes with a transactional producer whose
``transactional.id`` is fixed per dead-letter topic (``transactional_id``): each batch of
re-published records and their progress records is one transaction, so both are visible
(``read_committed``) or neither is. Starting a run fences any earlier run on the same topic
(Kafka aborts its open transaction and refuses its further writes: it stops with
``ProducerFenced``); only then does the new run read the committed progress and decide what to
publish. Two concurrent runs, or a run after a crash, never re-publish a dead letter twice.

Before publishing, each payload is re-validated against the current schema of its job type
(``dlq.revalidate``); records that no longer fit are reported and left in place (``force_raw``
publishes them as they are).

``reprocessed`` status records are not in the transactions: they go through a plain producer
once their batch committed. A status topic that is missing, or deleted and re-created while a
run goes on, would otherwise fail the batch's partition registration; librdkafka then cannot
even abort (EndTxn of a transaction with no partition registered returns INVALID_TXN_STATE,
fatal for the producer) and the run stops with nothing of that batch written.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import orjson

from .. import _connection as connection
from .. import _headers as h
from .._avro.codec import Codec
from .._config import KafkaConfig
from .._connection import AdminClient, ClientError, Message, NewTopic, kafka_error, translate
from .._connection import Producer as _RawProducer
from .._connection import RdKafkaError as _RdKafkaError
from .._connection import admin as admin_client
from .._delivery import PRODUCER_SETTINGS, unconfirmed
from .._names import progress_topic, transactional_id
from .._scan import Range, partitions_of, scan, topic_exists, watermarks
from .._status.record import Transition
from .._status.writer import StatusWriter
from ..errors import KafkaError, ProducerFenced, TopicNotFound
from .dlq import DeadLetter, Filter, read, revalidate

__all__ = [
    "Item",
    "Report",
    "Reprocessor",
    "load_progress",
]

BATCH = 200  # re-publishes committed (with their progress records) in one transaction
TXN_TIMEOUT_S = 60.0  # bound of init/commit/abort calls
# A run killed mid-transaction leaves it open until the next run fences it or the coordinator
# aborts it after this long; meanwhile read_committed consumers of the target partitions
# (the workers) cannot read past it, so keep it short: a batch takes well under a second.
TXN_TIMEOUT_MS = 30_000
STATUS_TIMEOUT_S = 10.0  # how long a run waits for its status records at the end
_log = logging.getLogger("streamjobs.status")
_FENCED_CODES = frozenset({_RdKafkaError._FENCED, _RdKafkaError.PRODUCER_FENCED,
                           _RdKafkaError.INVALID_PRODUCER_EPOCH})


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
        self._status_client: _RawProducer | None = None
        # the batch's status transitions, written once it committed
        self._statuses: list[tuple[str, str, Transition]] = []
        self._in_txn = False
        self._fenced = False

    def open(self) -> int:
        """Read the progress topic and capture the ranges to scan; TopicNotFound here."""
        bounds = Filter(partition=self.flt.partition, from_offset=self.flt.from_offset,
                        to_offset=self.flt.to_offset)
        ranges, self._records = read(self.config, self.dlq, bounds)
        self._done = load_progress(self.config, self.dlq, self.admin)
        return sum(len(r) for r in ranges)

    def run(self, progress: Callable[[int], None] | None = None) -> Report:
        """Scan, filter and (with ``execute``) re-publish. ``ProducerFenced`` when another
        run on the same dead-letter topic started meanwhile: this one then wrote nothing
        after its last committed batch (``report.published`` lists what it did write)."""
        if self.execute:
            self._ensure_progress_topic()
            self._producer = self._transactional_producer()
            # After init_transactions no earlier run can commit any more: what is committed
            # now is final, so read it again (the open() read may predate that run's work).
            self._done = load_progress(self.config, self.dlq, self.admin)
            if self.codec is not None:  # its catalogue names the environment's prefix
                self._status_client = connection.producer(self.config, {
                    "linger.ms": 5, "message.timeout.ms": round(STATUS_TIMEOUT_S * 1000)})
                self._status = StatusWriter.open(self._status_client,
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
            self._close()
        return self.report

    def _close(self) -> None:
        status, self._status_client = self._status_client, None
        if status is not None:  # what it could not deliver by then is lost: status only
            status.flush(STATUS_TIMEOUT_S)
        producer, self._producer = self._producer, None
        if producer is None:
            return
        # A long-lived caller (the web dashboard) runs many of these: end librdkafka's threads.
        with contextlib.suppress(ClientError, RuntimeError), warnings.catch_warnings():
            # close() tries to abort an open transaction and warns when it cannot (fenced):
            # the fenced run has said so already, in one line.
            warnings.simplefilter("ignore", RuntimeWarning)
            if self._in_txn and not self._fenced:
                # Stopped mid-batch by an error: make none of it visible now, not after
                # transaction.timeout.ms (read_committed consumers wait until then).
                producer.abort_transaction(TXN_TIMEOUT_S)
            producer.close()

    def _transactional_producer(self) -> _RawProducer:
        tid = transactional_id(self.dlq)
        producer = connection.transactional_producer(
            self.config, tid, {**PRODUCER_SETTINGS, "linger.ms": 5},
            overrides={"transaction.timeout.ms": TXN_TIMEOUT_MS})
        try:
            # Fences every earlier producer with this id and aborts its open transaction.
            producer.init_transactions(TXN_TIMEOUT_S)
        except ClientError as exc:
            raise translate(exc, f"cannot start the transaction of {tid!r}",
                              topic=self.dlq) from None
        return producer

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
        self._produce(target, dl.key, dl.value, hdrs, dl.ref)  # opens the batch's transaction
        self._record_status(dl, target)  # written once the batch committed
        self._batch.append((dl, item))

    def _produce(self, topic: str, key: bytes | None, value: bytes | None,
                 hdrs: list[tuple[str, str | bytes | None]] | None, ref: str) -> None:
        assert self._producer is not None
        failed = self._failed
        if not self._in_txn:
            self._txn(self._producer.begin_transaction)
            self._in_txn = True

        def on_delivery(err: _RdKafkaError | None, msg: Message) -> None:
            # The whole batch is aborted on any failure, so nothing is re-sent here.
            if err is not None:
                failed[ref] = f"{err.name()}: {err.str()}"
            elif unconfirmed(err, msg):
                failed[ref] = "delivery reported without an offset"

        producer = self._producer
        try:
            connection.until_queued(producer, lambda: producer.produce(
                topic, value=value, key=key, headers=hdrs, on_delivery=on_delivery), step=0.1)
            producer.poll(0)  # raises a fatal error (a fencing) too
        except ClientError as exc:
            self._raise(exc)

    def _record_status(self, dl: DeadLetter, target: str) -> None:
        """``reprocessed`` in the status topic (types recording ``all`` or ``failures``)."""
        job_id, job_type = dl.meta.job_id, dl.job_type
        if self._status is None or not job_id or self.codec is None:
            return
        catalogue = self.codec.catalogue
        if job_type is not None and job_type in catalogue and \
                catalogue.get(job_type).status == "none":
            return
        self._statuses.append((job_id, job_type or "", Transition(
            "reprocessed", time.time_ns() // 1_000_000, 1, topic=target, reason=dl.ref)))

    def _txn(self, call: Callable[..., Any], *args: Any) -> None:
        """A transaction call; retried while librdkafka says it may be, fencing raised."""
        deadline = time.monotonic() + TXN_TIMEOUT_S
        while True:
            try:
                call(*args)
                return
            except ClientError as exc:
                err = exc.args[0]
                if err.retriable() and not err.fatal() and time.monotonic() < deadline:
                    continue
                self._raise(exc)

    def _flush(self) -> int:
        assert self._producer is not None
        try:
            return int(self._producer.flush(TXN_TIMEOUT_S))
        except ClientError as exc:  # a fatal error (fenced) surfaces here too
            self._raise(exc)
        except SystemError as exc:  # confluent-kafka wraps it when raised within a callback
            if isinstance(exc.__cause__, ClientError):
                self._raise(exc.__cause__)
            raise
        raise AssertionError("unreachable")

    def _raise(self, exc: ClientError) -> NoReturn:
        err = self._cause(exc.args[0])
        tid = transactional_id(self.dlq)
        if err.code() in _FENCED_CODES or (err.fatal() and "fenced" in err.str().lower()):
            self._fenced = True
            done = len(self.report.published)
            raise ProducerFenced(
                f"another `dlq reprocess --execute` on {self.dlq} took over (transactional id "
                f"{tid!r}); this run stopped after re-publishing {done} record(s) and wrote "
                f"nothing more", transactional_id=tid, topic=self.dlq) from None
        if err.fatal():
            self._fenced = True  # unusable either way: nothing more can be written
        raise kafka_error(err, f"reprocess transaction on {self.dlq}", topic=self.dlq) from None

    def _cause(self, err: _RdKafkaError) -> _RdKafkaError:
        """``err``, or for the bare ``_FATAL`` that ``produce`` raises once the producer is
        in a fatal state (a fencing noticed by its background thread first), the fatal error
        itself: a transactional call in that state fails with it at once."""
        if err.code() != _RdKafkaError._FATAL or self._producer is None:
            return err
        try:
            self._producer.abort_transaction(5)
        except ClientError as exc:
            cause = exc.args[0]
            if isinstance(cause, _RdKafkaError):
                return cause
        return err

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
        """Write the batch's progress records and commit the batch as one transaction; on any
        delivery failure abort it (nothing of it becomes visible; the next run retries)."""
        if not self._batch or self._producer is None:
            return
        batch, self._batch = self._batch, []
        topic = progress_topic(self.dlq)
        now = time.time_ns() // 1_000_000
        for dl, item in batch:
            value = orjson.dumps({"to": item.target, "at": now, "dlq_ts": dl.timestamp})
            self._produce(topic, f"{dl.partition}/{dl.offset}".encode(), value, None,
                          f"progress:{dl.ref}")
        remaining = self._flush()
        problem = next(iter(self._failed.values()), None)
        if remaining:
            problem = f"{remaining} record(s) not acknowledged within {TXN_TIMEOUT_S:g}s"
        if problem is None:
            problem = self._commit()
        if problem is not None:
            self._txn(self._producer.abort_transaction, TXN_TIMEOUT_S)
        self._in_txn = False
        statuses, self._statuses = self._statuses, []
        if problem is None:
            self.report.published.extend(item for _, item in batch)
            if self._status is not None:
                try:
                    for job_id, job_type, t in statuses:
                        self._status.send(job_id, job_type, t)
                except ClientError as exc:  # the status topic went away: status only
                    _log.warning("reprocessed status not recorded: %s", exc)
                    self._status = None
        else:
            for dl, item in batch:
                why = self._failed.get(dl.ref) or problem
                self.report.failed.append(replace(
                    item, problem=f"delivery failed: {why} (batch aborted, nothing written)"))
        self._failed.clear()

    def _commit(self) -> str | None:
        """Commit the open transaction; the reason it must be aborted instead, or None. A
        retriable refusal (a timeout, the coordinator moving) is retried, as librdkafka asks:
        the outcome of the first call is then unknown, and only a commit call tells it."""
        assert self._producer is not None
        deadline = time.monotonic() + TXN_TIMEOUT_S
        while True:
            try:
                self._producer.commit_transaction(TXN_TIMEOUT_S)
                return None
            except ClientError as exc:
                err = exc.args[0]
                if err.txn_requires_abort():
                    return f"{err.name()}: {err.str()}"
                if err.retriable() and not err.fatal() and time.monotonic() < deadline:
                    continue
                self._raise(exc)

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
