"""Fault scenario h: random handler failures with retries."""

from __future__ import annotations

import time
from typing import Any

import pytest

from streamjobs._config import KafkaConfig
from tests.faults.app import should_fail
from tests.faults.checker import check
from tests.faults.conftest import MakeScenario
from tests.faults.harness import publish, size

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

MAX_ATTEMPTS = 3


def test_random_failures_end_exactly_once_never_early(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """10% of attempts fail (deterministically per job id + attempt; retries after 1 s then
    2 s, 3 attempts): every job ends exactly once, as succeeded when some attempt passes and
    dead-lettered (max_attempts) when all three fail; no retry starts before its sj-due-at;
    committed offsets never go backwards or past unfinished work."""
    t0 = time.monotonic()
    s = make_scenario("retries", kafka_config)
    s.create_topics()
    s.sampler.start()
    workers = [s.spawn_worker(concurrency=4) for _ in range(2)]
    # Rebalances are scenarios b-d; here both workers own their partitions before any job.
    s.wait_members(2)
    n = size(2000, 50_000)
    s.emit(n, rate=size(400, 2000), fail_permille=100)
    s.finish_emitting()
    assert s.wait_drained(90 + n / 100), s.not_drained()
    codes = s.stop_all()
    r = check(s.history())

    expect_dlq = {a.job_id for a in s.ledger().acks
                  if all(should_fail(a.job_id, k, 100) for k in range(1, MAX_ATTEMPTS + 1))}
    ok_jobs = {x.job_id for x in s.ledger().runs if x.kind == "ok"}
    dlq_jobs = {d.job_id for d in s.history().dead_letters}
    reasons = {d.reason for d in s.history().dead_letters}
    failed_attempts = sum(1 for x in s.ledger().runs if x.kind == "fail")
    publish("h_retries", r, "every job once: succeeded or dead-lettered; none early",
            record_property, failed_attempts=failed_attempts, expected_dlq=len(expect_dlq),
            seconds=round(time.monotonic() - t0, 1))

    assert r.acked == n and s.delivery_failures == 0
    assert r.lost == [], r.lost_detail
    assert r.duplicates == {}
    assert r.early == []
    assert dlq_jobs == expect_dlq and ok_jobs == {a.job_id for a in s.ledger().acks} - expect_dlq
    assert reasons <= {"max_attempts"}
    assert r.regressions == [] and r.skips == []
    assert set(codes.values()) == {0}, s.worker_logs()
    assert len(workers) == 2
