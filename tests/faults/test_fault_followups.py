"""Fault scenario i: exactly-once follow-ups while workers are SIGKILLed."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from tests.faults.checker import check
from tests.faults.conftest import MakeScenario
from tests.faults.harness import Scenario, publish, size
from tests.faults.ledger import OK
from tests.faults.observe import end_offsets, read_topics

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

CONCURRENCY = 4
EOS_ENV = {"STREAMJOBS_EXACTLY_ONCE": "1", "STREAMJOBS_FAULTS_FOLLOWUPS": "1"}


def _parents(s: Scenario) -> Counter[str]:
    """Parent job id -> follow-ups a read_committed reader sees."""
    assert s.followups is not None
    c: Counter[str] = Counter()
    ends = {tp: e for tp, e in end_offsets(s.config, [s.followups]).items() if e > 0}
    reader = Consumer({**s.config.client_settings(), "group.id": f"{s.prefix}-reader",
                       "enable.auto.commit": False, "isolation.level": "read_committed"})
    reader.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
    deadline = time.monotonic() + 120
    try:
        while ends and time.monotonic() < deadline:
            for m in reader.consume(1000, 0.5):
                if m.error() is None:
                    c[h.get(m.headers() or [], h.PARENT_ID) or "?"] += 1
            for tp in reader.position([TopicPartition(t, p) for t, p in ends]):
                if tp.offset >= ends[(tp.topic, tp.partition)]:
                    del ends[(tp.topic, tp.partition)]
    finally:
        reader.close()
    assert not ends, f"follow-ups not read to the end: {ends}"
    return c


def _finished(s: Scenario) -> tuple[set[str], set[str], set[str]]:
    """(acked jobs, jobs with a succeeded run, jobs dead-lettered (committed))."""
    reader = s.ledger()
    acked = {a.job_id for a in reader.acks}
    ok = {r.job_id for r in reader.runs if r.kind == OK}
    dead = {d.job_id for d in read_topics(s.config, [s.dlq], committed=True) if d.job_id}
    return acked, ok, dead


def test_sigkilled_workers_emit_each_followup_exactly_once(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """Workers in exactly-once mode (3) over 12 partitions, each job emitting one follow-up
    with ``ctx.emit`` before it may fail (5% of attempts fail; 3 attempts), one worker
    SIGKILLed every ~4 s and replaced: every acknowledged job ends succeeded or
    dead-lettered; a read_committed reader sees exactly one follow-up per job that
    succeeded, none of a job dead-lettered (its failed attempts' follow-ups were aborted),
    and no follow-up twice although killed workers had run jobs whose commit never came."""
    t0 = time.monotonic()
    rng = random.Random(11)
    s = make_scenario("eos", kafka_config, followups=True)
    s.create_topics()
    s.sampler.start()
    workers = [s.spawn_worker(concurrency=CONCURRENCY, env=EOS_ENV) for _ in range(3)]
    s.wait_members(len(workers))
    n = size(1500, 50_000)
    emitter = s.emit(n, rate=size(150, 1500), work_ms=2, fail_permille=50)
    while emitter.is_alive():
        time.sleep(rng.uniform(3, 5))
        victim = rng.choice([w for w in workers if w.alive()])
        s.kill(victim)
        workers[workers.index(victim)] = s.spawn_worker(concurrency=CONCURRENCY, env=EOS_ENV)
    s.finish_emitting()
    deadline = time.monotonic() + 180
    while True:
        acked, ok, dead = _finished(s)
        if acked and acked <= ok | dead:
            break
        assert time.monotonic() < deadline, (
            f"{len(acked - ok - dead)} jobs unfinished\n" + s.worker_logs())
        time.sleep(2)
    time.sleep(3)  # the last commits
    codes = s.stop_all()
    r = check(s.history(committed=True))
    parents = _parents(s)
    reader = s.ledger()
    ids = {r.job_id for r in reader.runs}
    twice = {p: c for p, c in parents.items() if c > 1}
    publish("i_exactly_once_followups", r, "each succeeded job's follow-up seen once by a "
            "read_committed reader; none of dead-lettered jobs", record_property,
            followups=sum(parents.values()), followups_twice=len(twice),
            followup_jobs=len(parents), seconds=round(time.monotonic() - t0, 1))
    assert r.acked == n and s.delivery_failures == 0
    assert r.lost == [], r.lost_detail
    assert len(r.exposure) >= 3
    assert r.duplicate_count > 0 or r.reruns > 0  # kills did re-run work...
    assert twice == {}, list(twice.items())[:5]  # ...yet no follow-up is seen twice
    assert set(parents) == ok - dead, (len(set(parents) ^ (ok - dead)))
    assert set(parents) <= ids
    assert set(codes.values()) == {0}, s.worker_logs()
