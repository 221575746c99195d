"""Fault scenarios a-d: worker processes killed, stopped, churned and frozen."""

from __future__ import annotations

import random
import signal
import time
from typing import Any

import pytest

from streamjobs._config import KafkaConfig
from tests.faults.checker import Report, check
from tests.faults.conftest import MakeScenario
from tests.faults.harness import Scenario, publish, size

pytestmark = [pytest.mark.slow, pytest.mark.kafka]

CONCURRENCY = 4


def _finish(s: Scenario, drain_timeout: float) -> tuple[Report, dict[int, int]]:
    s.finish_emitting()
    assert s.wait_drained(drain_timeout), s.not_drained()
    codes = s.stop_all()
    return check(s.history()), codes


def _common(r: Report, s: Scenario, n: int) -> None:
    assert r.acked == n and s.delivery_failures == 0
    assert r.lost == [], r.lost_detail
    assert r.regressions == [], r.regressions[:5]
    assert r.skips == [], r.skips[:5]


def test_sigkill_churn_loses_nothing_and_duplicates_stay_within_exposure(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """Workers (3; 4 at full size) over 12 partitions, one SIGKILLed every ~4 s and replaced:
    no acknowledged job is lost; every duplicate is explained by a kill: duplicates <= the sum
    over kills of (jobs the killed worker had started and not finished + jobs it had finished
    at offsets at or above the committed offset right after the kill); per kill, started-but-
    unfinished <= concurrency; committed offsets never regress nor pass unfinished work."""
    t0 = time.monotonic()
    rng = random.Random(7)
    s = make_scenario("churn", kafka_config)
    s.create_topics()
    s.sampler.start()
    workers = [s.spawn_worker(concurrency=CONCURRENCY) for _ in range(size(3, 4))]
    s.wait_members(len(workers))
    n = size(3000, 100_000)
    emitter = s.emit(n, rate=size(150, 1500), work_ms=2)
    while emitter.is_alive():
        time.sleep(rng.uniform(3, 5))
        live = [w for w in workers if w.alive()]
        victim = rng.choice(live)
        s.kill(victim)
        workers[workers.index(victim)] = s.spawn_worker(concurrency=CONCURRENCY)
    r, codes = _finish(s, 120 + n / 200)
    worst = max(r.exposure, key=lambda e: e.total)
    publish("a_sigkill_churn", r, "0 lost; duplicates <= in-flight + finished-uncommitted "
            "at each kill", record_property, workers=len(workers),
            worst_kill_exposure=worst.total, seconds=round(time.monotonic() - t0, 1))
    _common(r, s, n)
    assert len(r.exposure) >= 3
    assert all(e.in_flight <= CONCURRENCY for e in r.exposure), r.exposure
    assert r.duplicate_count <= r.exposure_total, (r.duplicate_count, r.exposure)
    assert set(codes.values()) == {0}, s.worker_logs()


def test_rolling_sigterm_loses_and_duplicates_nothing(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """A rolling restart: every worker in turn gets SIGTERM (exits 0 after finishing its
    running jobs and committing) and is replaced while jobs keep coming: 0 lost, 0 duplicates
    (a graceful hand-over commits everything finished), offsets never regress or skip."""
    t0 = time.monotonic()
    s = make_scenario("rolling", kafka_config)
    s.create_topics()
    s.sampler.start()
    workers = [s.spawn_worker(concurrency=CONCURRENCY) for _ in range(3)]
    s.wait_members(3)
    n = size(2000, 50_000)
    emitter = s.emit(n, rate=size(100, 1000), work_ms=2)
    codes_during: list[int] = []
    for i in range(len(workers)):
        time.sleep(3)
        codes_during.append(s.stop_worker(workers[i]))
        workers[i] = s.spawn_worker(concurrency=CONCURRENCY)
    emitter.join()
    r, codes = _finish(s, 120 + n / 200)
    publish("b_rolling_sigterm", r, "0 lost, 0 duplicates", record_property,
            restarts=len(codes_during), seconds=round(time.monotonic() - t0, 1))
    _common(r, s, n)
    assert codes_during == [0, 0, 0], s.worker_logs()
    assert r.duplicates == {}, f"{r.duplicate_count} duplicates, e.g. {list(r.duplicates)[:3]}"
    assert set(codes.values()) == {0}, s.worker_logs()


def test_rebalance_storm_loses_nothing_and_leaves_no_offset_gap(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """Workers join and leave (SIGTERM) every 2-3 s while jobs are emitted: 0 lost; no
    committed offset ever covers a record that was not finished (no gap), none regresses."""
    t0 = time.monotonic()
    rng = random.Random(11)
    s = make_scenario("storm", kafka_config)
    s.create_topics()
    s.sampler.start()
    live = [s.spawn_worker(concurrency=CONCURRENCY) for _ in range(2)]
    s.wait_members(2)
    n = size(2000, 50_000)
    emitter = s.emit(n, rate=size(100, 1000), work_ms=2)
    changes, codes_during = 0, []
    while emitter.is_alive():
        time.sleep(rng.uniform(2, 3))
        if len(live) < 2 or (len(live) < 4 and rng.random() < 0.5):
            live.append(s.spawn_worker(concurrency=CONCURRENCY))
        else:
            codes_during.append(s.stop_worker(live.pop(rng.randrange(len(live)))))
        changes += 1
    r, codes = _finish(s, 120 + n / 200)
    publish("c_rebalance_storm", r, "0 lost, no offset gaps", record_property,
            membership_changes=changes, seconds=round(time.monotonic() - t0, 1))
    _common(r, s, n)
    assert changes >= 4
    assert set(codes_during) <= {0} and set(codes.values()) == {0}, s.worker_logs()


def test_frozen_worker_late_commits_move_no_offset_wrongly(
        kafka_config: KafkaConfig, make_scenario: MakeScenario, record_property: Any) -> None:
    """A worker frozen with SIGSTOP past its session timeout loses its partitions to the other
    worker; after SIGCONT its late commits must not move any committed offset backwards or
    past unfinished work, and nothing is lost."""
    t0 = time.monotonic()
    s = make_scenario("frozen", kafka_config, session_timeout_ms=6000)
    s.create_topics()
    s.sampler.start()
    frozen, other = (s.spawn_worker(concurrency=CONCURRENCY) for _ in range(2))
    s.wait_members(2)
    n = size(1500, 30_000)
    emitter = s.emit(n, rate=size(75, 750), work_ms=2)
    time.sleep(4)
    frozen.signal(signal.SIGSTOP)
    time.sleep(s.session_timeout_ms / 1000 + 5)
    frozen.signal(signal.SIGCONT)
    emitter.join()
    r, codes = _finish(s, 120 + n / 200)
    publish("d_sigstop_freeze", r, "late commits move no offset wrongly; 0 lost",
            record_property, frozen_s=s.session_timeout_ms / 1000 + 5,
            seconds=round(time.monotonic() - t0, 1))
    _common(r, s, n)
    assert set(codes.values()) == {0}, s.worker_logs()
    assert other.returncode == 0 and frozen.returncode == 0
