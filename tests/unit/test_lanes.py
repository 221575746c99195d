"""Priority lanes: the catalogue's declaration, the lane topics, the intake gate's caps and the
task queue's choice between lanes (strict, weighted)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamjobs._names import lane_topic
from streamjobs._ops.topics import desired_topics
from streamjobs._priorities import PriorityLanes, default_weights
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker.lanes import LaneGate, LaneQueue, lane_ranks
from streamjobs.errors import ConfigError
from tests.unit.test_catalogue import GOOD, load_error, make_dir

LANES = GOOD + 'priorities = ["high", "normal", "low"]\n'


def test_lanes_from_the_catalogue_and_their_topics(tmp_path: Path) -> None:
    cat = Catalogue.load(make_dir(tmp_path, LANES), topic_prefix="")
    job = cat.get("a")
    assert job.lanes is not None and job.lanes.default == "normal"
    assert job.lanes.policy == "weighted" and job.lanes.weights == (8, 2, 1)
    assert job.topics == ("t.users.p-high", "t.users", "t.users.p-low")
    assert set(cat.job_topics()) == set(job.topics)
    assert cat.for_topic("t.users.p-low") == (job,)
    names = {s.name for s in desired_topics(cat)}  # topics plan/apply create every lane
    assert {"t.users.p-high", "t.users.p-high.dlq", "t.users.p-high.retry.1s",
            "t.users.p-low.retry.1s"} <= names
    prefixed = cat.with_topic_prefix("x.")
    assert prefixed.get("a").topics == ("x.t.users.p-high", "x.t.users", "x.t.users.p-low")
    assert job.lanes.topic("t.users", None) == "t.users"
    assert job.lanes.topic("t.users", "high") == lane_topic("t.users", "high")
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        job.lanes.topic("t.users", "urgent")


def test_lane_declarations_are_checked(tmp_path: Path) -> None:
    err = load_error(make_dir(tmp_path, GOOD + 'priorities = ["high", "low"]\n'))
    assert "default_priority" in err.reason and "'normal' is not one of" in err.reason
    err = load_error(make_dir(tmp_path, LANES + 'priority_policy = "fifo"\n'))
    assert "priority_policy: must be one of weighted, strict" in err.reason
    err = load_error(make_dir(tmp_path, LANES + 'priority_weights = [3, 1]\n'))
    assert "priority_weights: one integer >= 1 per lane (3)" in err.reason
    err = load_error(make_dir(tmp_path, GOOD + 'default_priority = "high"\n'))
    assert "default_priority: needs priorities" in err.reason
    err = load_error(make_dir(tmp_path, GOOD + 'priorities = ["High", "normal"]\n'))
    assert "lane 'High'" in err.reason
    err = load_error(make_dir(tmp_path, LANES + 'concurrency = 2\n'))
    assert "cannot also have rate_limit, concurrency or breaker" in err.reason
    shared = LANES + '[jobs.b]\nschema = "t.User"\ntopic = "t.users"\n'
    err = load_error(make_dir(tmp_path, shared))
    assert "has its topics to itself" in err.reason
    with pytest.raises(ConfigError, match="at least two lanes"):
        PriorityLanes(("only",), "only")
    assert default_weights(4) == (8, 2, 1, 1)


def _ranks(policy: str = "weighted") -> Any:
    lanes = PriorityLanes(("high", "normal", "low"), "normal", policy)
    return {t: ("a", r, lanes) for r, t in enumerate(lanes.topics("t"))}


def test_the_gate_caps_lower_lanes_while_higher_ones_are_busy() -> None:
    gate = LaneGate(_ranks(), concurrency=8, max_in_flight=5000)
    assert gate.buffer == 256
    assert LaneGate(_ranks(), concurrency=8, max_in_flight=100).buffer == 50
    assert gate.caps({}) == {("a", 1): 256, ("a", 2): 256}  # nothing higher: the buffer
    # high busy: normal keeps 2/(8+2) of it, low 1/(8+2+1)
    assert gate.caps({("a", 0): 5}) == {("a", 1): 51, ("a", 2): 23}
    strict = LaneGate(_ranks("strict"), concurrency=8, max_in_flight=5000)
    assert strict.caps({("a", 1): 1}) == {("a", 1): 256, ("a", 2): 0}


class _Tracker:
    def __init__(self, n: int) -> None:
        self.in_flight = n


class _Part:
    def __init__(self, topic: str, n: int) -> None:
        self.topic = topic
        self.tracker = _Tracker(n)
        self.hold_until_ms = 0.0


class _Worker:
    def hold(self, part: _Part, until_ms: float) -> None:
        part.hold_until_ms = until_ms


def test_the_gate_holds_and_releases_partitions() -> None:
    gate = LaneGate(_ranks("strict"), concurrency=2, max_in_flight=64)  # buffer 32
    high, low = _Part("t.p-high", 1), _Part("t.p-low", 0)
    gate.apply([high, low], _Worker(), 1000.0)
    assert low.hold_until_ms > 1000.0 and high.hold_until_ms == 0.0
    high.tracker.in_flight = 0
    gate.apply([high, low], _Worker(), 2000.0)
    assert low.hold_until_ms == 2000.0  # due: the next reconcile resumes it
    low.tracker.in_flight = 40  # past the buffer with nothing higher: held again
    low.hold_until_ms = 0.0
    gate.apply([high, low], _Worker(), 3000.0)
    assert low.hold_until_ms > 3000.0


def _task(topic: str, n: int) -> tuple[Any, None, Any]:
    return (_Part(topic, 0), None, n)


def test_strict_queue_takes_the_highest_lane_first() -> None:
    q = LaneQueue(_ranks("strict"))
    for topic, n in [("t.p-low", 1), ("t", 2), ("t.p-high", 3), ("other", 4)]:
        q.put(_task(topic, n))
    assert [q.get()[2] for _ in range(4)] == [3, 4, 2, 1]  # "other": no lanes, rank 0
    q.put(_task("t.p-low", 5))
    assert q.yield_to(_Part("t.p-low", 0)) is False
    q.put(_task("t.p-high", 6))
    assert q.yield_to(_Part("t.p-low", 0)) is True
    q.put(None)
    assert q.get() is None  # shutdown first


def test_weighted_queue_shares_by_weight_and_never_starves() -> None:
    q = LaneQueue(_ranks("weighted"))
    for i in range(110):
        q.put(_task("t.p-high", i))
        q.put(_task("t", i))
        q.put(_task("t.p-low", i))
    first = [q.get()[0].topic for _ in range(110)]
    assert first.count("t.p-high") == 80 and first.count("t") == 20
    assert first.count("t.p-low") == 10


def test_lane_ranks_of_a_catalogue(tmp_path: Path) -> None:
    cat = Catalogue.load(make_dir(tmp_path, LANES), topic_prefix="p.")
    ranks = lane_ranks(cat, ["a"])
    assert {t: r for t, (_, r, _) in ranks.items()} == {
        "p.t.users.p-high": 0, "p.t.users": 1, "p.t.users.p-low": 2}


def test_a_partition_holding_a_big_batch_does_not_hold_back_its_lane() -> None:
    """The lane's cap is split between its partitions: one past its share is held, the others
    keep fetching (each runs on its own thread)."""
    gate = LaneGate(_ranks(), concurrency=2, max_in_flight=64)  # buffer 32: 16 a partition
    big, idle = _Part("t.p-low", 1000), _Part("t.p-low", 0)
    gate.apply([big, idle], _Worker(), 1000.0)
    assert big.hold_until_ms > 1000.0 and idle.hold_until_ms == 0.0


class _RunPart:
    """What the executor reads of a partition."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.revoked = False
        self.single_type = None
        self.pace = None  # never inline (inline.py)


def test_a_low_lane_task_hands_its_rest_to_a_waiting_high_task() -> None:
    """One thread busy with a 20-job low chunk: a high job submitted meanwhile runs after the
    low job in progress, not after the whole chunk; the low jobs keep their order."""
    import threading
    import time
    from collections import deque

    from streamjobs._worker.executor import Executor
    from streamjobs._worker.ordering import Lanes
    from streamjobs.events import EventBus
    from tests.unit.test_timeouts import _Ctx

    order: list[str] = []
    started = threading.Event()

    def job(name: str) -> Any:
        def run(payload: Any, ctx: Any) -> None:
            started.set()
            time.sleep(0.01)
            order.append(name)
        return run

    ranks = _ranks("weighted")
    completions: deque[Any] = deque()
    lanes: Lanes[Any] = Lanes()
    ex = Executor(1, EventBus(), lanes, completions, use_async=False, ranks=ranks)
    try:
        low, high = _RunPart("t.p-low"), _RunPart("t.p-high")
        low_jobs = [_Ctx(job(f"low{i}"), None, None) for i in range(20)]
        assert lanes.offer(low, None)
        ex.submit(low, low, (low_jobs, range(20)), False)
        started.wait(5)
        ex.submit(high, None, ([_Ctx(job("high"), None, None)], [0]), False)
        deadline = time.monotonic() + 10
        while len(order) < 21 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        ex.shutdown()
    assert order.index("high") <= 3, order
    assert [n for n in order if n != "high"] == [f"low{i}" for i in range(20)]
