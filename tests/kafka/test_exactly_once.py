"""Exactly-once mode (Kafka transactions) on the real broker."""

from __future__ import annotations

import collections
import signal
import time

import pytest

from streamjobs import _headers as h
from streamjobs._names import retry_topic
from streamjobs._status import lookup, status_topic
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
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """With exactly_once, a follow-up written in a transaction that was then aborted (the
    broker refused another record of it: a retry record larger than its topic now allows)
    gets no `emitted` status record, since a read_committed reader never sees it; the
    follow-ups that commit get theirs."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    tier = retry_topic(env.topic("parent"), 1.0)
    _topic_config(env, tier, "max.message.bytes", "100")  # the retry record cannot go there
    # Same key: one partition, the failing parent first, so the transaction that carries the
    # second parent's follow-up also carries the first one's (refused) retry record.
    failing = env.emit("parent", key="k", fail="after_emit", fail_attempts=1)
    ok = env.emit("parent", key="k")
    env.flush()
    w = ChainWorker(env, monkeypatch, exactly_once=True, commit_interval=0.3)
    try:
        children = env.topic("child")
        wait_for(lambda: w.events and any(isinstance(e, TransactionAborted) for e in w.events)
                 and read_all(env, children, idle=0.5), 60,
                 what="a follow-up written by an aborted transaction")
        _topic_config(env, tier, "max.message.bytes", "1048588")
        wait_for(lambda: {x["id"] for x in env.lines()} >= {failing, ok}, 60,
                 what="both parents succeed")
        wait_for(lambda: len(read_all(env, children, committed=True, idle=1)) == 2, 30,
                 what="both follow-ups committed")
    finally:
        w.stop()
    committed = {meta(m).job_id for m in read_all(env, children, committed=True, idle=1)}
    aborted = {meta(m).job_id for m in read_all(env, children, idle=1)} - committed
    assert aborted, "no follow-up was written by an aborted transaction"
    topic = status_topic(env.prefix)
    for job_id in committed:
        wait_for(lambda j=job_id: lookup(env.kafka, j, topic=topic), 30,
                 what=f"emitted status of committed follow-up {job_id}")
    assert {j: lookup(env.kafka, j, topic=topic) for j in aborted} == dict.fromkeys(aborted)
