"""``Producer.flush(timeout)`` after the switch to a full-report client (``_reporting``): the
timeout is one deadline shared by the retired client and the current one, not given to each
in full, and records still waiting in the retired client count among those left."""

from __future__ import annotations

import pytest

from streamjobs import _producer
from streamjobs._delivery import DeliveryTracker
from streamjobs._producer import Producer
from streamjobs.errors import DeliveryFailed


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Client:
    """librdkafka's flush as far as the producer sees it: it uses up to ``timeout`` seconds
    (``takes`` of them when its records are all acknowledged by then) and returns how many are
    left."""

    def __init__(self, clock: _Clock, *, takes: float, records: int) -> None:
        self.clock, self.takes, self.records = clock, takes, records
        self.waits: list[float] = []

    def flush(self, timeout: float) -> int:
        self.waits.append(timeout)
        if timeout < 0 or timeout >= self.takes:
            self.clock.now += self.takes
            return 0
        self.clock.now += timeout
        return self.records


def _producer_with(retired: _Client, current: _Client) -> Producer:
    p = Producer.__new__(Producer)  # only what flush reads: no broker behind these clients
    p._retired = [(retired, None)]
    p._kafka = current  # type: ignore[assignment]
    p._tracker = DeliveryTracker()
    return p


def test_the_timeout_is_shared_by_the_retired_and_the_current_client(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(_producer.time, "monotonic", clock)
    retired = _Client(clock, takes=2.0, records=0)
    current = _Client(clock, takes=10.0, records=3)
    p = _producer_with(retired, current)
    start = clock.now
    with pytest.raises(DeliveryFailed) as info:
        p.flush(5.0)
    assert retired.waits == [5.0]
    assert current.waits == [3.0]  # what the retired client left of the 5 s
    assert clock.now - start == 5.0
    assert info.value.code == "_TIMED_OUT"
    assert str(info.value).startswith("3 record(s)")


def test_records_left_in_the_retired_client_count(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(_producer.time, "monotonic", clock)
    retired = _Client(clock, takes=10.0, records=2)
    current = _Client(clock, takes=0.0, records=0)
    p = _producer_with(retired, current)
    with pytest.raises(DeliveryFailed) as info:
        p.flush(1.0)
    assert current.waits == [0.0]  # nothing of the deadline left: a poll, no wait
    assert str(info.value).startswith("2 record(s)")


def test_no_timeout_waits_for_every_client(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(_producer.time, "monotonic", clock)
    retired = _Client(clock, takes=4.0, records=1)
    current = _Client(clock, takes=7.0, records=1)
    p = _producer_with(retired, current)
    p.flush()
    assert retired.waits == [-1.0] and current.waits == [-1.0]
