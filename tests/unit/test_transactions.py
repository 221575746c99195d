"""Exactly-once commits (``TransactionalOutbox.commit``) when the broker refuses them: a
refusal that dooms only this transaction (a rebalance: stale generation, unknown member)
aborts it and returns ``Aborted`` without moving any offset, and the next transaction
commits; a fencing of the transactional.id raises ``ProducerFenced`` and nothing commits any
more; a record of the transaction that was not delivered dooms it and is never resent; status
records never join the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException

from streamjobs._worker.outbox import Outgoing
from streamjobs._worker.transactions import Aborted, TransactionalOutbox
from streamjobs.errors import ProducerFenced


class _Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.refuse: list[KafkaException] = []  # raised by send_offsets_to_transaction
        self.undeliverable: set[str] = set()  # topics whose records fail delivery
        self.queued: list[tuple[str, Any]] = []
        self.txn: list[str] = []
        self.written: list[str] = []  # topics of committed records
        self.purged: list[Any] = []  # callbacks of records an abort purged (librdkafka)
        self.refuse_begin: list[KafkaException] = []

    def init_transactions(self, timeout: float) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")
        if self.refuse_begin:
            raise self.refuse_begin.pop(0)

    def produce(self, topic: str, *, on_delivery: Any, **_: Any) -> None:
        self.queued.append((topic, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        purged, self.purged = self.purged, []
        for cb in purged:  # as librdkafka reports the records an abort purged
            cb(RdError(RdError._PURGE_QUEUE, "purged"), None)
        done, self.queued = self.queued, []
        for topic, cb in done:
            if topic in self.undeliverable:
                cb(RdError(RdError._MSG_TIMED_OUT, "timed out"), None)
            else:
                self.txn.append(topic)
                cb(None, _Msg())
        return len(done)

    def flush(self, timeout: float = -1) -> int:
        return self.poll()

    def send_offsets_to_transaction(self, tps: Any, meta: Any, timeout: float) -> None:
        self.calls.append("offsets")
        if self.refuse:
            raise self.refuse.pop(0)

    def commit_transaction(self, timeout: float) -> None:
        self.calls.append("commit")
        self.written += self.txn
        self.txn = []

    def abort_transaction(self, timeout: float) -> None:
        self.calls.append("abort")
        self.txn = []
        self.purged += [cb for _, cb in self.queued]
        self.queued = []


class _Msg:
    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7

    def error(self) -> None:
        return None


class _Tracker:
    def __init__(self, pos: int) -> None:
        self.pos = pos

    def commit_position(self) -> int:
        return self.pos


class _Part:
    def __init__(self, pos: int) -> None:
        self.topic, self.partition, self.consumer = "t.w", 0, self
        self.gone = False
        self.stored = -1
        self.tracker = _Tracker(pos)

    def consumer_group_metadata(self) -> object:
        return object()


class _NoFollowUps:
    def release(self, part: Any, below: int) -> list[Outgoing]:
        return []


def _outbox() -> tuple[TransactionalOutbox, _Producer]:
    producer = _Producer()
    box = TransactionalOutbox({}, "tid", timeout=1.0, finish=lambda p, o: None,
                              make=lambda conf: producer)
    return box, producer


def _retry(part: _Part, offset: int) -> Outgoing:
    return Outgoing("t.w.retry", None, b"v", [], lambda: None, cause=(part, offset))


def test_a_refusal_by_a_rebalance_aborts_only_that_transaction() -> None:
    box, producer = _outbox()
    part = _Part(3)
    box.send(_retry(part, 1))
    producer.refuse.append(KafkaException(RdError(
        RdError.ILLEGAL_GENERATION, "stale generation", txn_requires_abort=True)))
    got = box.commit([part], _NoFollowUps())
    assert isinstance(got, Aborted) and "stale generation" in got.error
    assert producer.calls[-2:] == ["offsets", "abort"]
    assert part.stored == -1 and producer.written == [] and not box.broken
    assert box.held == {}  # released into the aborted transaction: gone (the job runs again)
    part.tracker.pos = 4
    assert [tp.offset for tp in box.commit([part], _NoFollowUps())] == [4]  # carries on
    assert part.stored == 4 and producer.calls[-1] == "commit"


def test_a_fenced_producer_raises_and_commits_nothing_more() -> None:
    box, producer = _outbox()
    part = _Part(3)
    producer.refuse.append(KafkaException(RdError(RdError._FENCED, "fenced", fatal=True)))
    with pytest.raises(ProducerFenced):
        box.commit([part], _NoFollowUps())
    assert box.broken and part.stored == -1
    assert box.commit([part], _NoFollowUps()) == []
    assert "commit" not in producer.calls


def test_a_record_not_delivered_dooms_its_transaction_and_is_never_resent() -> None:
    box, producer = _outbox()
    part = _Part(3)
    producer.undeliverable.add("t.w.retry")
    box.send(_retry(part, 1))
    got = box.commit([part], _NoFollowUps())
    assert isinstance(got, Aborted) and "t.w.retry" in got.error and "timed out" in got.error
    assert "commit" not in producer.calls and part.stored == -1
    producer.undeliverable.clear()
    box.poll(0)
    part.tracker.pos = 4
    box.commit([part], _NoFollowUps())
    assert producer.written == [] and part.stored == 4  # not carried by a later transaction


@dataclass(frozen=True)
class _Transition:
    state: str
    partition: int | None = None
    offset: int | None = None


class _Recorder:
    topic = "streamjobs.status"

    def __init__(self) -> None:
        self.written: list[tuple[str, str, _Transition]] = []

    def write(self, job_id: str, job_type: str, t: _Transition) -> None:
        self.written.append((job_id, job_type, t))


def test_status_records_go_outside_the_transaction() -> None:
    """A missing status topic must not doom the jobs' transaction (scenario i's flake): the
    dead letter's status is written by the recorder's own client, once the transaction
    carrying the dead-letter record committed, with its place."""
    box, producer = _outbox()
    part = _Part(3)
    recorder = _Recorder()
    done: list[int] = []
    routed = SimpleNamespace(topic="t.w.dlq", key=None, value=b"v", headers=[],
                             status=("j1", "work", _Transition("dead")))
    box.carry(routed, recorder, lambda: done.append(1), cause=(part, 1))
    assert recorder.written == []
    assert [out.topic for outs in box.held[part].values() for out in outs] == ["t.w.dlq"]
    box.commit([part], _NoFollowUps())
    assert producer.written == ["t.w.dlq"] and done == [1]
    assert recorder.written == [("j1", "work", _Transition("dead", 0, 7))]


def test_a_delivered_failure_of_an_aborted_transaction_tells_nothing() -> None:
    """Rule: a dead-letter record delivered inside a transaction that is then aborted (another
    record of it was refused) writes no ``dead`` status and runs no ``done`` (the failure's
    event): the job runs again."""
    box, producer = _outbox()
    part = _Part(3)
    recorder = _Recorder()
    done: list[int] = []
    routed = SimpleNamespace(topic="t.w.dlq", key=None, value=b"v", headers=[],
                             status=("j1", "work", _Transition("dead")))
    box.carry(routed, recorder, lambda: done.append(1), cause=(part, 1))
    (dlq,) = box.held[part][1]
    producer.undeliverable.add("t.child")
    assert isinstance(box.commit([part], _FollowUps("t.child")), Aborted)
    box.poll(0)
    assert dlq.where == (0, 7)  # it was delivered (then aborted)
    assert recorder.written == [] and done == [] and producer.written == []


def test_no_failure_status_for_an_aborted_transaction() -> None:
    """Rule: a ``retrying``/``dead`` status is written only by the transaction that commits
    the failure's record: an aborted one (the job runs again, and may succeed) writes none,
    even when its record was delivered before the refusal."""
    box, producer = _outbox()
    part = _Part(3)
    recorder = _Recorder()
    routed = SimpleNamespace(topic="t.w.dlq", key=None, value=b"v", headers=[],
                             status=("j1", "work", _Transition("dead")))
    box.carry(routed, recorder, lambda: None, cause=(part, 1))
    producer.refuse.append(_rebalance())
    # The refusal comes after the produce: the record's delivery report is served, then the
    # abort (as when the send of the offsets is refused).
    assert isinstance(box.commit([part], _NoFollowUps()), Aborted)
    box.poll(0)
    assert recorder.written == [] and producer.written == []
    retrying = SimpleNamespace(topic="t.w.retry", key=None, value=b"v", headers=[],
                               status=("j1", "work", _Transition("retrying")))
    box.carry(retrying, recorder, lambda: None, cause=(part, 1))
    box.commit([part], _NoFollowUps())
    assert recorder.written == [("j1", "work", _Transition("retrying"))]


class _FollowUps:
    def __init__(self, *topics: str) -> None:
        self.outs = [Outgoing(t, None, b"f", [], lambda: None) for t in topics]

    def release(self, part: Any, below: int) -> list[Outgoing]:
        outs, self.outs = self.outs, []
        return outs


def _rebalance() -> KafkaException:
    return KafkaException(RdError(RdError.ILLEGAL_GENERATION, "stale generation",
                                  txn_requires_abort=True))


def test_the_first_refusal_is_the_reason_of_the_abort() -> None:
    """Rule: the abort names the first record refused and why (librdkafka then purges the
    transaction's queued records, whose reports come after it and say only "purged")."""
    box, producer = _outbox()
    part = _Part(3)
    producer.undeliverable.update({"t.w.retry", "t.child"})
    box.send(_retry(part, 1))
    got = box.commit([part], _FollowUps("t.child"))  # reported first, then the retry
    assert isinstance(got, Aborted)
    assert got.error == "a record for t.child was not delivered: timed out"


def test_an_abort_leaves_nothing_pending() -> None:
    """Rule: the records of an aborted transaction (purged by the abort, their delivery
    reports errors) no longer count as pending, so a --burst worker drains and exits after
    an abort."""
    box, producer = _outbox()
    part = _Part(3)
    box.send(_retry(part, 1))  # held until its cause commits
    box.send(Outgoing("t.unique", None, b"m", [], lambda: None))  # no cause: joins at once
    assert box.pending == 2
    producer.refuse.append(_rebalance())
    assert isinstance(box.commit([part], _FollowUps("t.child")), Aborted)
    box.poll(0)  # the purged records' reports
    assert box.pending == 0 and producer.written == []


def test_a_refused_begin_leaves_nothing_pending() -> None:
    """Rule: records released for a transaction that could not even begin (never produced)
    no longer count as pending."""
    box, producer = _outbox()
    part = _Part(3)
    box.send(_retry(part, 1))
    producer.refuse_begin.append(_rebalance())
    assert isinstance(box.commit([part], _FollowUps("t.child", "t.child")), Aborted)
    box.poll(0)
    assert box.pending == 0


def test_followup_status_is_written_after_the_commit_only() -> None:
    """Rule: a follow-up's ``emitted`` status (its ``on_commit``) is written once the
    transaction carrying it committed; an aborted transaction writes none."""
    box, producer = _outbox()
    part = _Part(3)
    written: list[str] = []
    followups = _FollowUps("t.child")
    followups.outs[0].on_commit = lambda: written.append("aborted")
    producer.refuse.append(_rebalance())
    assert isinstance(box.commit([part], followups), Aborted)
    box.poll(0)
    assert written == []
    followups = _FollowUps("t.child")
    followups.outs[0].on_commit = lambda: written.append(
        "committed" if producer.written == ["t.child"] else "too early")
    assert [tp.offset for tp in box.commit([part], followups)] == [3]
    assert written == ["committed"]
