"""Exactly-once mode (Kafka transactions) on the real broker."""

from __future__ import annotations

import collections
import logging
import signal
import time

import pytest

from streamjobs import _headers as h
from streamjobs._kafka_log import FORWARDER, LOGGER
from streamjobs._names import retry_topic
from streamjobs._status import lookup, status_topic
from streamjobs._worker.outbox import Outgoing
from streamjobs._worker.transactions import TXN_TIMEOUT, TransactionalOutbox
from streamjobs.events import TransactionAborted
from tests.conftest import wait_for

from .followup_support import CHAIN_APP, ChainWorker, at_end, chain_env, meta, read_all
from .test_followups import _topic_config
from .worker_support import Env, env_fixture  # noqa: F401


def _child_parents(env: Env, *, committed: bool = True) -> collections.Counter[str]:
    return collections.Counter(dict(m.headers())[h.PARENT_ID].decode()
                               for m in read_all(env, env.topic("child"), committed=committed,
                                                 idle=2))


def test_followups_retries_and_offsets_commit_together(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With exactly_once, a read_committed reader sees one follow-up per succeeded parent
    (none of a failed attempt: they go with it), the retry record of the failed attempt, and
    the group's offsets at the end of each partition, with jobs finishing out of order
    (unordered, concurrency 4)."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    ids = [env.emit("parent", key=f"k{i}", sleep_ms=(i * 37) % 120) for i in range(24)]
    failing = env.emit("parent", key="f", fail="after_emit", fail_attempts=1)
    env.flush()
    w = ChainWorker(env, monkeypatch, exactly_once=True, ordering="unordered", concurrency=4,
                    commit_interval=0.3)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= {*ids, failing}, 60,
                 what="parents run")
        ends = env.end_offsets(env.topic("parent"))
        wait_for(lambda: env.committed(env.topic("parent")) == ends, 30, what="commits")
        assert w.worker.outbox.commits > 0
    finally:
        w.stop()
    jobs = {x["id"]: x["job_id"] for x in env.lines()}
    counts = _child_parents(env)
    assert set(counts) == set(jobs.values())
    assert all(n == 1 for n in counts.values()), counts
    retried = read_all(env, retry_topic(env.topic("parent"), 1.0), committed=True, idle=1)
    assert [meta(m).attempt for m in retried] == [2]


def test_zombie_worker_cannot_commit(env: Env, spawn_cli) -> None:
    """A worker frozen (SIGSTOP) while its finished jobs' follow-ups wait above the watermark
    (a slow job below them), whose partition went to another worker meanwhile, cannot commit
    its transaction when it wakes (its group generation is stale: the transaction is aborted
    and the worker goes on); a read_committed reader sees each follow-up exactly once."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    slow = env.emit("parent", key="same", sleep_ms=4000)
    quick = [env.emit("parent", key="same") for _ in range(5)]
    env.flush()
    cli_env = env.cli_env(STREAMJOBS_EXACTLY_ONCE="1", STREAMJOBS_LOG_LEVEL="info")
    args = ("worker", CHAIN_APP, "--job-types", "parent", "--session-timeout-ms", "6000",
            "--ordering", "unordered", "--concurrency", "4")
    zombie = spawn_cli(*args, env=cli_env)
    wait_for(lambda: {x["id"] for x in env.lines()} >= set(quick), 40, what="quick jobs run")
    zombie.signal(signal.SIGSTOP)
    assert slow not in {x["id"] for x in env.lines()}
    try:
        other = spawn_cli(*args, env=cli_env)
        wait_for(lambda: at_end(env, env.topic("parent")), 60,
                 what="the other worker commits")
    finally:
        zombie.signal(signal.SIGCONT)
    time.sleep(6)  # the zombie's slow job ends and it tries to commit
    other.signal(signal.SIGTERM)
    assert other.wait(30) == 0, other.output()
    zombie.signal(signal.SIGTERM)
    code = zombie.wait(30)
    out = zombie.output()
    # Its commit is refused (stale generation): the transaction is aborted, its partitions
    # rewound, and it carries on as a member (a refusal by a rebalance is no failure); or it
    # learns first that its partitions were lost and commits nothing of them.
    assert code == 0, out
    assert "transaction.aborted" in out or "partitions.lost" in out, out
    counts = _child_parents(env)
    ran = collections.Counter(x["id"] for x in env.lines())
    assert ran[slow] == 2 and all(ran[q] == 2 for q in quick), ran  # both ran them
    assert len(counts) == 6 and all(n == 1 for n in counts.values()), counts


def test_followups_of_an_aborted_transaction_get_no_status(
        env: Env, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """With exactly_once, a follow-up written in a transaction that was then aborted (the
    broker refused another record of it: a retry record larger than its topic now allows)
    gets no `emitted` status record, since a read_committed reader never sees it (nor does the
    failed parent's retry record of that transaction get a `retrying` status); the worker
    rewinds and runs both parents again, through aborts that need a producer epoch bump too
    (a refused record leaves a gap in its partition's sequence numbers); once the record
    fits, each parent's follow-up commits exactly once and gets its status, and the failed
    parent gets one `retrying`."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    tier = retry_topic(env.topic("parent"), 1.0)
    children = env.topic("child")
    _topic_config(env, tier, "max.message.bytes", "100")  # the retry record cannot go there
    # librdkafka purges what is still queued when a record of the transaction is refused, so
    # whether the follow-up reached the log first is a race the broker's load decides. Each
    # follow-up is flushed before the next record is produced: every aborted transaction
    # that carries one leaves it in the log.
    produce = TransactionalOutbox._produce
    in_log: list[tuple[int, int]] = []  # where follow-ups were written in a transaction

    def produce_in_order(self: TransactionalOutbox, out: Outgoing) -> None:
        produce(self, out)
        if out.topic == children:
            self.producer.flush(TXN_TIMEOUT)
            if out.where is not None:
                in_log.append(out.where)

    monkeypatch.setattr(TransactionalOutbox, "_produce", produce_in_order)
    # librdkafka's TXNERR lines say which aborts need an epoch bump: let every one through.
    monkeypatch.setattr(FORWARDER, "burst", 1_000_000)
    caplog.set_level(logging.ERROR, logger=LOGGER.name)
    # Same key: one partition, the failing parent first, so the transaction that carries the
    # second parent's follow-up also carries the first one's (refused) retry record.
    failing = env.emit("parent", key="k", fail="after_emit", fail_attempts=1)
    ok = env.emit("parent", key="k")
    env.flush()
    failing_job, _ = [meta(m).job_id for m in read_all(env, env.topic("parent"), idle=1)]
    w = ChainWorker(env, monkeypatch, exactly_once=True, commit_interval=0.3)
    topic = status_topic(env.prefix)

    def aborts() -> list[str]:
        return [e.error for e in list(w.events) if isinstance(e, TransactionAborted)]

    try:
        # Nothing can commit while the retry record is refused (it holds the watermark at
        # the first parent), so the transaction that wrote the first follow-up was aborted
        # once a second one is written. (State, not the log: the log grows while it loops.)
        wait_for(lambda: len(in_log) >= 2, 90, what="follow-ups written by aborted transactions")
        # Nor does the first parent's failure show: its `retrying` waits for the commit.
        assert lookup(env.kafka, failing_job, topic=topic) is None
        _topic_config(env, tier, "max.message.bytes", "1048588")
        wait_for(lambda: {x["id"] for x in env.lines()} >= {failing, ok}, 90,
                 what="both parents succeed")
        wait_for(lambda: len(read_all(env, children, committed=True, idle=2)) == 2, 60,
                 what="both follow-ups committed")
    finally:
        w.stop()
    written = read_all(env, children, idle=2)
    committed = {meta(m).job_id for m in read_all(env, children, committed=True, idle=2)}
    aborted = {meta(m).job_id for m in written} - committed
    assert aborted, "no follow-up was written by an aborted transaction"
    # Re-emitted once per parent in the transaction that committed (the failing parent's
    # from its retry), whatever the aborted ones carried.
    assert sorted(_child_parents(env).values()) == [1, 1]
    # Every refusal took a sequence number the broker never saw: the first record that fits
    # is out of order, and only an abort with an epoch bump lets the worker go on.
    assert any("requires epoch bump" in r.getMessage() for r in caplog.records), aborts()
    retried = wait_for(lambda: lookup(env.kafka, failing_job, topic=topic), 30,
                       what="the committed retry's status")
    assert [t.state for t in retried.transitions] == ["retrying"]  # type: ignore[attr-defined]
    for job_id in committed:
        wait_for(lambda j=job_id: lookup(env.kafka, j, topic=topic), 30,
                 what=f"emitted status of committed follow-up {job_id}")
    assert {j: lookup(env.kafka, j, topic=topic) for j in aborted} == dict.fromkeys(aborted)
