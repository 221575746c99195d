"""Fault scenario j: per-key order through retries (``--ordering key-strict``) while workers
are SIGKILLed."""

from __future__ import annotations

import random
import time
from collections import defaultdict
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
KEYS = 40


def _keys(s: Scenario) -> dict[str, tuple[bytes, int, int]]:
    """Job id -> (key, partition, offset) in the job topic."""
    ends = {tp: e for tp, e in end_offsets(s.config, [s.topic]).items() if e > 0}
    c = Consumer({**s.config.client_settings(), "group.id": f"{s.prefix}-keys",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in ends])
    out: dict[str, tuple[bytes, int, int]] = {}
    deadline = time.monotonic() + 120
    try:
        while ends and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    meta = h.JobMeta.from_headers(m.headers() or [])
                    out[meta.job_id or "?"] = (m.key(), m.partition(), m.offset())
                    if m.offset() + 1 >= ends.get((m.topic(), m.partition()), 0):
                        ends.pop((m.topic(), m.partition()), None)
    finally:
        c.close()
    return out


def test_sigkilled_workers_keep_each_keys_order_through_retries(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """Workers with ``--ordering key-strict`` (3) over 12 partitions, 40 keys, 5% of attempts
    failing (retries after 1 s, 2 s; 3 attempts), one worker SIGKILLed every ~4 s and
    replaced: no acknowledged job is lost, and for every key the jobs finish (first success,
    or dead letter) in the order they were emitted, although jobs of the same keys fail and
    are retried and their workers are killed."""
    t0 = time.monotonic()
    rng = random.Random(13)
    s = make_scenario("keyorder", kafka_config)
    s.create_topics()
    s.sampler.start()
    args = ("--ordering", "key-strict")
    workers = [s.spawn_worker(*args, concurrency=CONCURRENCY) for _ in range(3)]
    s.wait_members(len(workers))
    n = size(1500, 50_000)
    emitter = s.emit(n, rate=size(150, 1500), work_ms=2, fail_permille=50, keys=KEYS)
    while emitter.is_alive():
        time.sleep(rng.uniform(3, 5))
        victim = rng.choice([w for w in workers if w.alive()])
        s.kill(victim)
        workers[workers.index(victim)] = s.spawn_worker(*args, concurrency=CONCURRENCY)
    s.finish_emitting()
    deadline = time.monotonic() + 240
    while True:
        reader = s.ledger()
        acked = {a.job_id for a in reader.acks}
        ok = {r.job_id for r in reader.runs if r.kind == OK}
        dead = {d.job_id for d in read_topics(s.config, [s.dlq]) if d.job_id}
        if acked and acked <= ok | dead:
            break
        assert time.monotonic() < deadline, (
            f"{len(acked - ok - dead)} jobs unfinished\n" + s.worker_logs())
        time.sleep(2)
    codes = s.stop_all()
    r = check(s.history())
    done: dict[str, float] = {}
    for run in reader.runs:
        if run.kind == OK:
            done[run.job_id] = min(done.get(run.job_id, run.t), run.t)
    for d in read_topics(s.config, [s.dlq]):
        if d.job_id:
            done[d.job_id] = min(done.get(d.job_id, d.t), d.t)
    per_key: dict[bytes, list[tuple[int, int, str]]] = defaultdict(list)
    for job_id, (key, partition, offset) in _keys(s).items():
        per_key[key].append((partition, offset, job_id))
    out_of_order = []
    for key, jobs in per_key.items():
        times = [done[j] for _, _, j in sorted(jobs)]
        out_of_order += [(key, i) for i in range(1, len(times)) if times[i] < times[i - 1]]
    retried = len({run.job_id for run in reader.runs if run.attempt > 1})
    publish("j_key_order_through_retries", r, "per key, jobs finish in emission order "
            "through retries and kills", record_property, keys=KEYS, retried_jobs=retried,
            out_of_order=len(out_of_order), seconds=round(time.monotonic() - t0, 1))
    assert r.acked == n and s.delivery_failures == 0
    assert r.lost == [], r.lost_detail
    assert len(r.exposure) >= 3
    assert retried > 20  # jobs of the same keys did fail and retry
    assert out_of_order == [], out_of_order[:10]
    assert set(codes.values()) == {0}, s.worker_logs()
