"""Fault scenario g: poison records and random bytes among normal jobs."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections import Counter
from typing import Any

import pytest
from confluent_kafka import Producer as RawProducer

from streamjobs._config import KafkaConfig
from tests.faults.checker import check
from tests.faults.conftest import MakeScenario
from tests.faults.harness import publish, size

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

REASONS = {"decode_error", "unknown_type", "missing_headers", "unknown_schema"}


def _poison(rng: random.Random, i: int,
            schema_fp: str) -> tuple[bytes | None, list[tuple[str, str | bytes | None]]]:
    """Four kinds, in turn: random bytes without headers, random bytes with job headers,
    a job-framed value of a type nobody knows, and an empty (null) value."""
    junk = rng.randbytes(rng.randint(1, 300))
    job: list[tuple[str, str | bytes | None]] = [
        ("sj-id", f"poison-{i}".encode()), ("sj-attempt", b"1"),
        ("sj-schema", schema_fp.encode())]
    kind = i % 4
    if kind == 0:
        return junk, []
    if kind == 1:
        return junk, [*job, ("sj-type", b"fault_job")]
    if kind == 2:
        return b"\xc3\x01" + rng.randbytes(8) + junk, [*job, ("sj-type", b"no_such_type")]
    return None, []


def test_poison_reaches_dlq_once_and_nothing_else_suffers(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """Poison records (random bytes, no headers, unknown types, null values) written by a raw
    producer and by kcat among normal jobs: each reaches the dead-letter topic exactly once
    with a reason; every normal job succeeds exactly once; no worker crashes (both still run
    at the end and exit 0 when stopped)."""
    kcat = shutil.which("kcat")
    assert kcat, "kcat is missing (apt-get install kcat; .ci/run installs it)"
    t0 = time.monotonic()
    rng = random.Random(5)
    s = make_scenario("poison", kafka_config)
    s.create_topics()
    s.sampler.start()
    workers = [s.spawn_worker(concurrency=4) for _ in range(2)]
    s.wait_members(2)
    n, poison = size(1000, 20_000), size(60, 1000)
    emitter = s.emit(n, rate=size(200, 2000))
    fp = s.producer.codec.fingerprint("fault_job").hex()
    raw = RawProducer({**kafka_config.client_settings(), "linger.ms": 5})
    for i in range(poison):
        value, headers = _poison(rng, i, fp)
        raw.produce(s.topic, value=value, headers=headers, partition=i % 12)
        raw.poll(0)
        time.sleep(2.0 / poison)
    assert raw.flush(30) == 0
    lines = size(20, 200)
    garbage = b"\n".join(rng.randbytes(40).replace(b"\n", b"x") for _ in range(lines)) + b"\n"
    res = subprocess.run([kcat, "-P", "-b", kafka_config.bootstrap_servers, "-t", s.topic],
                         input=garbage, capture_output=True, timeout=60)
    assert res.returncode == 0, res.stderr
    emitter.join()
    s.finish_emitting()
    assert s.wait_drained(120), s.not_drained()
    alive = [w.alive() for w in workers]
    codes = s.stop_all()
    h = s.history()
    r = check(h)
    acked = {a.job_id for a in h.acks}
    poison_positions = {rec.position for rec in h.records
                        if rec.topic == s.topic and rec.job_id not in acked}
    reasons = Counter(d.reason for d in h.dead_letters)
    publish("g_poison", r, "each poison record in the DLQ once with its reason; 0 crashes",
            record_property, poison_written=poison + lines, poison_found=len(poison_positions),
            dlq_reasons=dict(reasons), unconfirmed_resent=len(s.unconfirmed),
            seconds=round(time.monotonic() - t0, 1))

    assert len(poison_positions) == poison + lines
    assert {p: r.dlq_per_position.get(p, 0) for p in poison_positions} == dict.fromkeys(
        poison_positions, 1)
    assert all(d.reason in REASONS for d in h.dead_letters), reasons
    assert len(h.dead_letters) == poison + lines
    assert r.lost == [], r.lost_detail
    assert r.acked == n and r.duplicates == {}
    assert r.succeeded == n
    assert r.regressions == [] and r.skips == []
    assert alive == [True, True] and set(codes.values()) == {0}, s.worker_logs()
