"""Flow control without a broker: the catalogue settings, the token bucket maths, the breaker's
state machine, and the worker's gate (``Throttle``) driven with stand-in partitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjobs._limits import BreakerPolicy, RateLimit, parse_breaker, parse_rate
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker.breaker import CLOSED, HALF_OPEN, OPEN, Breaker
from streamjobs._worker.throttle import Throttle, TokenBucket, bucket_for
from streamjobs.events import BreakerChanged, EventBus, PartitionThrottled
from streamjobs.listeners._metrics import MetricsListener
from tests.unit.test_catalogue import GOOD, load_error, make_dir

# -- catalogue ----------------------------------------------------------------------------


def test_settings_from_the_catalogue(tmp_path: Path) -> None:
    toml = GOOD + ('rate_limit = "600/m"\nconcurrency = 4\n'
                   'breaker = { ratio = 0.5, window = "1m", min_calls = 20, cooldown = "10s" }\n')
    job = Catalogue.load(make_dir(tmp_path, toml)).get("a")
    assert job.rate_limit == RateLimit(600, 60) and job.rate_limit.per_second == 10
    assert job.concurrency == 4
    assert job.breaker == BreakerPolicy(ratio=0.5, window_s=60, min_calls=20, cooldown_s=10)
    assert parse_breaker({"failures": 5}) == BreakerPolicy(failures=5, cooldown_s=30)
    assert parse_rate("50/s") == RateLimit(50, 1) and str(parse_rate("3/h")) == "3/h"


@pytest.mark.parametrize(("line", "reason"), [
    ('rate_limit = 50', 'rate_limit must be a string like "50/s"'),
    ('rate_limit = "50 per second"', "expected COUNT/UNIT"),
    ('rate_limit = "0/s"', "rate_limit: the count must be > 0"),
    ('concurrency = 0', "concurrency must be an integer >= 1"),
    ('concurrency = true', "concurrency must be an integer >= 1"),
    ('breaker = 5', "breaker must be a table"),
    ('breaker = {}', "give failures (consecutive) or ratio"),
    ('breaker = { failures = 3, ratio = 0.5 }', "give failures (consecutive) or ratio"),
    ('breaker = { failures = 0 }', "breaker.failures must be an integer >= 1"),
    ('breaker = { ratio = 1.5 }', "breaker.ratio must be in (0, 1]"),
    ('breaker = { ratio = 0.5, min_calls = 0 }', "breaker.min_calls must be an integer >= 1"),
    ('breaker = { failures = 3, cooldown = "soon" }', "breaker.cooldown: invalid duration"),
    ('breaker = { failures = 3, window = "1m" }', "window and min_calls go with ratio"),
    ('breaker = { failures = 3, after = 2 }', "unknown key 'after'"),
])
def test_bad_settings_name_the_key(tmp_path: Path, line: str, reason: str) -> None:
    err = load_error(make_dir(tmp_path, GOOD + line + "\n"))
    assert err.entry == "jobs.a" and reason in err.reason, err.reason


# -- token bucket -------------------------------------------------------------------------


def test_bucket_refills_at_its_rate_up_to_capacity() -> None:
    b = TokenBucket(rate=10.0, capacity=5.0, tokens=1.0, now=100.0)
    assert b.take(100.0) and not b.take(100.0)
    assert b.ready_at(100.0, 1.0) == pytest.approx(100.1)
    assert not b.take(100.05) and b.take(100.1)
    b.charge(100.1, 2.0)  # debt: two retries ran
    assert b.tokens == pytest.approx(-2.0)
    assert b.ready_at(100.1, 1.0) == pytest.approx(100.4)
    assert b.ready_at(200.0, 1.0) == 200.0 and b.tokens == 5.0  # capped


def test_bucket_share_of_the_limit() -> None:
    b = bucket_for(RateLimit(50, 1), partitions=6, now=0.0)
    assert b.rate == pytest.approx(50 / 6) and b.capacity == pytest.approx(50 / 6)
    assert b.tokens == 1.0  # taking a partition over adds at most one job
    slow = bucket_for(RateLimit(600, 60), partitions=12, now=0.0)
    assert slow.rate == pytest.approx(10 / 12) and slow.capacity == 1.0


def test_partitions_together_run_at_the_limit() -> None:
    """Buckets taken greedily for 10 s: the sum stays within the limit plus one per bucket."""
    limit, parts = RateLimit(40, 1), 4
    buckets = [bucket_for(limit, parts, 0.0) for _ in range(parts)]
    taken = 0
    for step in range(10_000):  # every millisecond
        now = step / 1000
        taken += sum(1 for b in buckets if b.take(now))
    assert 40 * 10 - 4 <= taken <= 40 * 10 + parts


# -- breaker ------------------------------------------------------------------------------


def test_consecutive_failures_open_then_probe_decides() -> None:
    br = Breaker("x", BreakerPolicy(failures=3, cooldown_s=10))
    e = br.epoch
    assert br.record(False, e, 0.0) is None and br.record(True, e, 0.1) is None
    assert br.record(False, e, 0.2) is None and br.record(False, e, 0.3) is None
    t = br.record(False, e, 0.4)
    assert t is not None and (t.previous, t.state, t.reason) == (CLOSED, OPEN, "failures")
    assert br.blocked_until(5.0) == (10.4, None)
    assert br.record(False, e, 5.0) is None  # a job started before the opening: ignored
    until, moved = br.blocked_until(10.5)
    assert until is None and moved is not None and moved.state == HALF_OPEN
    br.started(10.5)  # the probe
    assert br.blocked_until(10.6)[0] == pytest.approx(20.5)  # others wait for it
    t = br.record(False, br.epoch, 11.0)
    assert t is not None and (t.state, t.reason) == (OPEN, "probe_failed")
    assert br.blocked_until(12.0)[0] == 21.0
    assert br.blocked_until(21.0)[1] is not None
    br.started(21.0)
    t = br.record(True, br.epoch, 21.5)
    assert t is not None and (t.state, t.reason) == (CLOSED, "probe_succeeded")
    assert br.blocked_until(21.6) == (None, None) and br.consecutive == 0


def test_lost_probe_lets_another_through_after_a_cooldown() -> None:
    br = Breaker("x", BreakerPolicy(failures=1, cooldown_s=2))
    br.record(False, 0, 0.0)
    br.blocked_until(2.0)
    br.started(2.0)  # its outcome never comes (a duplicate, a revoked partition)
    assert br.blocked_until(3.0)[0] == 4.0
    assert br.blocked_until(4.0) == (None, None) and br.state == HALF_OPEN


def test_failure_ratio_over_a_window() -> None:
    br = Breaker("x", BreakerPolicy(ratio=0.5, window_s=10, min_calls=4, cooldown_s=5))
    e = br.epoch
    for i, ok in enumerate([False, False, False]):  # below min_calls
        assert br.record(ok, e, float(i)) is None
    assert br.record(True, e, 3.0) is not None  # 3 of 4 failed
    br2 = Breaker("y", BreakerPolicy(ratio=0.5, window_s=10, min_calls=4, cooldown_s=5))
    for i in range(4):
        assert br2.record(False, 0, float(i * 20)) is None  # old ones leave the window
    assert br2.state == CLOSED
    for now, ok in [(100.0, True), (101.0, True), (102.0, True), (103.0, False),
                    (104.0, True)]:
        assert br2.record(ok, 0, now) is None  # 1 of 5
    assert br2.record(False, 0, 105.0) is None and br2.record(False, 0, 106.0) is None
    assert br2.record(False, 0, 107.0) is not None  # 4 of 8


# -- the gate -----------------------------------------------------------------------------


class _Part:
    def __init__(self, topic: str, partition: int, single_type: str | None = "a") -> None:
        self.topic = self.job_topic = topic
        self.partition = partition
        self.single_type = single_type
        self.wait: Any = None
        self.gone = self.revoked = False
        self.hold_until_ms = 0.0
        self.paused_kafka = False


class _Ctx:
    def __init__(self, job_type: str, offset: int) -> None:
        self.job_type = job_type
        self.offset = offset


def _gate(tmp_path: Path, extra: str, parts: list[_Part]) -> tuple[Throttle, list[Any]]:
    job = Catalogue.load(make_dir(tmp_path, GOOD + extra)).get("a")
    bus = EventBus()
    seen: list[Any] = []
    bus.subscribe(seen.append, PartitionThrottled, BreakerChanged)
    MetricsListener().attach(bus)

    return Throttle([job], {"t.users": 2}, bus, _Pauses(), lambda: parts, 8), seen


class _Pauses:
    def hold(self, part: Any, until_ms: float) -> None:
        part.hold_until_ms = until_ms

    def pause(self, parts: list[Any]) -> None:
        for part in parts:
            part.paused_kafka = True


def test_gate_concurrency_holds_then_releases(tmp_path: Path) -> None:
    p0, p1 = _Part("t.users", 0), _Part("t.users", 1)
    gate, seen = _gate(tmp_path, "concurrency = 2\n", [p0, p1])
    assert gate.admit(p0, None, 10) and gate.admit(p1, None, 20)
    assert not gate.admit(p0, None, 11)
    assert p0.hold_until_ms > 0 and seen[-1].reason == "concurrency"
    gate.finished(p1, range(20, 21), None)  # a slot frees: p0 resumes now
    assert gate.running["a"] == 1 and p0.hold_until_ms <= Throttle.next_wake_ms([p0]) + 1
    assert gate.admit(p0, None, 11)
    gate.forget(p0)  # revoked: its jobs no longer count
    assert gate.running["a"] == 0


def test_gate_rate_limit_holds_until_the_bucket_refills(tmp_path: Path) -> None:
    p0 = _Part("t.users", 0)
    gate, seen = _gate(tmp_path, 'rate_limit = "2/s"\n', [p0])  # 1/s per partition
    assert gate.admit(p0, None, 0)
    assert not gate.admit(p0, None, 1)
    assert seen[-1].reason == "rate_limit" and 0.9 <= seen[-1].resume_in_s <= 1.0


def test_gate_breaker_opens_holds_every_partition_and_probes(tmp_path: Path) -> None:
    p0, p1 = _Part("t.users", 0), _Part("t.users", 1)
    gate, seen = _gate(tmp_path, 'breaker = { failures = 2, cooldown = "1h" }\n', [p0, p1])
    assert gate.limits == {"a": 8}  # a breaker alone limits the type to the worker's threads
    assert gate.admit(p0, None, 0) and gate.admit(p0, None, 1)
    gate.finished(p0, [], [(_Ctx("a", 0), None, None), (_Ctx("a", 1), None, None)])
    changed = [e for e in seen if isinstance(e, BreakerChanged)]
    assert [(e.previous, e.state) for e in changed] == [(CLOSED, OPEN)]
    assert p0.hold_until_ms > 0 and p1.hold_until_ms > 0  # both partitions held
    assert not gate.admit(p1, None, 5)
    assert gate.running["a"] == 0


def test_gate_counts_a_job_admitted_twice_once_and_a_held_job_is_no_breaker_failure(
        tmp_path: Path) -> None:
    """key-strict re-dispatches a job held behind its key (``waited``) after ``admit`` took it:
    it must count once toward the concurrency limit, and its ``KeyHeld`` hand-back (it never
    ran) must not count as a failure for the breaker."""
    from streamjobs._worker.failures import Failure
    from streamjobs._worker.keyhold import HELD_CLASS

    p0 = _Part("t.users", 0)
    gate, seen = _gate(tmp_path, 'concurrency = 2\nbreaker = { failures = 1, cooldown = "1h" }\n',
                       [p0])
    assert gate.admit(p0, None, 3)
    gate.waited(p0, [_Ctx("a", 3)])  # the same job, dispatched again
    assert gate.running["a"] == 1
    gate.finished(p0, [], [(_Ctx("a", 3), Failure(HELD_CLASS, "held"), None)])
    assert gate.running["a"] == 0
    assert not [e for e in seen if isinstance(e, BreakerChanged)]  # one failure would open it
