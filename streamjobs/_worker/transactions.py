"""Exactly-once mode: the worker's records and its consumed offsets commit in one Kafka
transaction per batch.

``TransactionalOutbox`` replaces the worker's ``Outbox``: a transactional producer
(``transactional.id`` unique per worker process; since KIP-447 the consumer group metadata
sent with the offsets fences a zombie, so the id need not be stable across restarts). A
record caused by a consumed record (a retry, re-wait or dead-letter record; follow-ups wait in
``FollowUps``) is *held*, not produced: its cause counts finished at once, and the record joins
the transaction that commits an offset above its cause. So a transaction only ever carries
records of jobs below the offsets it commits (the contiguous watermark, ``offsets.py``): with
concurrency > 1, a job finished above the watermark keeps its records until every lower offset
is finished, and a crash before that re-runs it with nothing of its first run visible to a
``read_committed`` reader. Records with no cause (unique-job markers) join the open
transaction at once. Status records never join it (a missing status topic must not doom the
jobs); a follow-up's ``emitted`` and a failure's ``retrying``/``dead`` status (and the
failure's event) come only after the transaction carrying their record committed
(``Outgoing.on_commit``).

``commit`` (every ``commit_interval`` seconds or ``commit_every`` finished jobs, on revoke and
on shutdown): begin, produce the released records, ``send_offsets_to_transaction`` with each
consumer's group metadata, commit. A refusal that only dooms this transaction (librdkafka's
``txn_requires_abort()`` or ``retriable()``: a rebalance under way, a stale generation or an
unknown member after another worker joined or a killed one timed out, a timeout) aborts it and
returns ``Aborted``: the worker rewinds its partitions to their last committed offsets and runs
those jobs again (a stale-generation zombie then learns of the rebalance at its next poll;
nothing of it was committed). A fatal error or a fencing of the ``transactional.id`` itself
raises ``ProducerFenced`` and the worker stops. Side effects outside Kafka (an e-mail sent, a
database row written) are not covered: a crash re-runs the handler.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from .. import _headers as h
from .._connection import ClientError, TopicPartition, code_of, translate
from ..errors import KafkaError, ProducerFenced
from .outbox import Outbox, Outgoing, release_below

__all__ = ["Aborted", "TransactionalOutbox", "transactional_id"]

_log = logging.getLogger("streamjobs.worker")
TXN_ABORT_AFTER_MS = 10_000
TXN_TIMEOUT = 30.0  # seconds a begin/send-offsets/commit call may wait for the coordinator
ABORT_TRIES = 3
# Codes meaning a newer instance owns this transactional.id (or group.instance.id): the
# producer can write nothing more, the worker must stop. Rebalance codes (ILLEGAL_GENERATION,
# UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) are not here: they doom one transaction only.
_FENCED = frozenset({"_FENCED", "PRODUCER_FENCED", "INVALID_PRODUCER_EPOCH",
                     "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", "FENCED_INSTANCE_ID"})


@dataclass(frozen=True, slots=True)
class Aborted:
    """A commit refused for this transaction only; it was aborted (nothing of it is visible)."""

    error: str


def transactional_id(group_id: str) -> str:
    """One per worker process: ``<group>.<host>.<pid>.<random>``."""
    return f"{group_id}.{h.hostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"


class TransactionalOutbox(Outbox):
    def __init__(self, settings: dict[str, Any], tid: str, *, timeout: float,
                 finish: Callable[[Any, int], None],
                 make: Callable[[dict[str, Any]], Any] | None = None) -> None:
        # A killed worker's open transaction holds back read_committed readers of its
        # partitions (the retry tiers too) until the coordinator aborts it: after this long.
        conf = {"transaction.timeout.ms": TXN_ABORT_AFTER_MS, **settings,
                "transactional.id": tid}
        if make is None:
            super().__init__(conf)
        else:
            super().__init__(conf, make)
        self._finish = finish  # marks a consumed record finished (the worker's tracker)
        self.tid = tid
        self.timeout = timeout
        self.open = False
        self.broken = False
        self.commits = 0
        # Records produced in the open transaction (ids); one of them not delivered dooms it.
        self._in_txn: set[int] = set()
        self._doomed: str | None = None
        # part -> {cause offset: records}
        self.held: dict[Any, dict[int, list[Outgoing]]] = {}
        try:
            self.producer.init_transactions(timeout)
        except ClientError as exc:
            raise _error(exc, tid, "cannot start transactions") from None

    def send(self, out: Outgoing) -> None:
        if out.cause is None:
            self._begin()
            self.pending += 1
            self._produce(out)
            return
        self.pending += 1
        part, offset = out.cause
        self.held.setdefault(part, {}).setdefault(offset, []).append(out)
        # Finished now: the record goes out with the commit of this offset. (Its on_ack
        # finishing it again then is a no-op for the tracker.)
        self._finish(part, offset)

    def carry(self, routed: Any, recorder: Any, done: Callable[[], None],
              cause: tuple[Any, int] | None = None) -> None:
        """As ``Outbox.carry``, but what tells of the failure waits for the transaction
        carrying its record to commit (``Outgoing.on_commit``): ``done`` (the failure's
        event) and the status record. An aborted transaction re-runs the job from the last
        committed offset (it may then succeed), so a ``retrying``/``dead`` shown for it
        would be a state the job never reached. The status goes outside the transaction, on
        the recorder's own client (status is not part of the promise, and a missing or slow
        status topic must not doom the jobs' transaction); a ``dead`` is written once, with
        its dead-letter place. (The cause's offset counts finished at once: ``send``.)"""
        status = routed.status if recorder is not None else None
        out: Outgoing | None = None

        def committed() -> None:
            if status is not None:
                t = status[2]
                if t.state == "dead" and out is not None and out.where is not None:
                    t = replace(t, partition=out.where[0], offset=out.where[1])
                recorder.write(status[0], status[1], t)
            done()

        # A record with no cause joins the open transaction and is not among those a commit
        # releases: its acknowledgement is all there is to wait for.
        out = Outgoing(routed.topic, routed.key, routed.value, routed.headers,
                       _nothing if cause is not None else committed,
                       cause=cause, on_commit=committed if cause is not None else None)
        self.send(out)

    def _begin(self) -> None:
        if not self.open:
            self.producer.begin_transaction()
            self.open = True

    def _produce(self, out: Outgoing) -> None:
        self._in_txn.add(id(out))
        super()._produce(out)

    def _defer(self, out: Outgoing, delay: float) -> None:
        self._drop(out, "not acknowledged")

    def _undelivered(self, out: Outgoing, err: Any) -> None:
        self._drop(out, str(err.str()) if hasattr(err, "str") else str(err))

    def _drop(self, out: Outgoing, why: str) -> None:
        # Never resent: a later transaction would carry it apart from its cause's offset.
        # Missing from this one, the transaction must not commit; a report for a record of
        # an aborted transaction (purged) is no news. Either way it is no longer pending
        # (else --burst would wait for it forever). The first refusal is the abort's reason:
        # librdkafka purges the transaction's other queued records after it.
        self.pending -= 1
        if id(out) in self._in_txn and self._doomed is None:
            self._doomed = f"a record for {out.topic} was not delivered: {why}"

    def commit(self, parts: Iterable[Any], followups: Any) -> list[TopicPartition] | Aborted:
        """Commit what is finished of ``parts``: their offsets at the watermark and the held
        records (follow-ups, failures) of jobs below it. Returns the offsets committed, or
        ``Aborted`` (the caller must rewind: the released records are gone)."""
        if self.broken:
            return []
        by_consumer: dict[Any, list[TopicPartition]] = {}
        released: list[Outgoing] = []
        moved: list[tuple[Any, int]] = []
        for part in parts:
            if part.gone:
                continue
            pos = part.tracker.commit_position()
            if pos is None:
                continue
            fresh = followups.release(part, pos)
            self.pending += len(fresh)
            released += fresh
            released += self._release(part, pos)
            if pos > part.stored:
                by_consumer.setdefault(part.consumer, []).append(
                    TopicPartition(part.topic, part.partition, pos))
                moved.append((part, pos))
        if not released and not by_consumer and not self.open:
            return []
        produced = 0
        try:
            self._begin()
            for out in released:
                self._produce(out)
                produced += 1
            for consumer, tps in by_consumer.items():
                self.producer.send_offsets_to_transaction(
                    tps, consumer.consumer_group_metadata(), self.timeout)
            if self._doomed is None:
                self.producer.flush(self.timeout)  # delivery reports before the verdict
            if self._doomed is None:
                self.producer.commit_transaction(self.timeout)
        except ClientError as exc:
            self.pending -= len(released) - produced  # taken from held, never produced
            if _fenced(exc):
                self.broken = True
                self._abort()
                raise _error(exc, self.tid, "transaction not committed") from None
            self._abort_or_raise(exc)
            return Aborted(_detail(exc))
        if self._doomed is not None:
            reason = self._doomed
            self._abort_or_raise(None)
            return Aborted(reason)
        self._in_txn.clear()
        self.open = False
        self.commits += 1
        for part, pos in moved:
            part.stored = pos
        for out in released:
            if out.on_commit is not None:
                out.on_commit()
        return [tp for tps in by_consumer.values() for tp in tps]

    def _release(self, part: Any, below: int) -> list[Outgoing]:
        return release_below(self.held, part, below)

    def forget(self, part: Any) -> None:
        """``part`` left the assignment: its held records go (their jobs run again)."""
        held = self.held.pop(part, None)
        if held:
            self.pending -= sum(len(v) for v in held.values())

    def _abort_or_raise(self, cause: ClientError | None) -> None:
        """Abort after an abortable refusal; a producer that cannot abort is broken."""
        self._in_txn.clear()
        self._doomed = None
        if not self.open:
            return  # begin_transaction itself was refused: nothing to abort
        failure = cause
        for _ in range(ABORT_TRIES):
            try:
                self.producer.abort_transaction(self.timeout)
            except ClientError as exc:
                failure = exc
                if not _fenced(exc) and _retriable(exc):
                    continue
                break
            else:
                self.open = False
                return
        self.open = False
        self.broken = True
        assert failure is not None  # the loop saw an exception
        raise _error(failure, self.tid, "transaction not committed nor aborted") from None

    def _abort(self) -> None:
        if not self.open:
            return
        self.open = False
        try:
            self.producer.abort_transaction(self.timeout)
        except ClientError as exc:
            _log.error("could not abort the transaction of %s: %s", self.tid, exc)

    def flush(self, timeout: float) -> int:
        """Records left: a commit delivered everything it carried; held ones never go."""
        self.poll(0)
        return 0

    def close(self) -> None:
        """On shutdown after a failure: abort what is open."""
        self._abort()


def _flag(exc: ClientError, name: str) -> bool:
    err = exc.args[0] if exc.args else None
    fn = getattr(err, name, None)
    return bool(fn()) if callable(fn) else False


def _fenced(exc: ClientError) -> bool:
    """Fatal for the producer: stop (the other refusals abort one transaction)."""
    return _flag(exc, "fatal") or code_of(exc) in _FENCED


def _retriable(exc: ClientError) -> bool:
    return _flag(exc, "retriable") or _flag(exc, "txn_requires_abort")


def _detail(exc: ClientError) -> str:
    err = exc.args[0] if exc.args else None
    return str(err.str()) if err is not None and hasattr(err, "str") else str(exc)


def _error(exc: ClientError, tid: str, what: str) -> KafkaError:
    if _fenced(exc):
        return ProducerFenced(f"{what} ({tid}): {_detail(exc)}", transactional_id=tid)
    return translate(exc, f"{what} ({tid})")


def _nothing() -> None:
    pass
