"""Unique jobs on the real broker: duplicates within the window are acknowledged, not run, across
two workers of a group, a rebalance and a worker restart; the caller's job id."""

from __future__ import annotations

import signal
import time

from streamjobs import _headers as h
from streamjobs._schedules import tick_job_id
from tests.conftest import wait_for

from .flow_support import Flow, flow_fixture  # noqa: F401

CATALOGUE = """
[defaults]
partitions = 3

[jobs.once]
schema = "test.Flow"
topic = "once"
key_field = "key"
unique = { by = "key", window = "10m" }

[jobs.byid]
schema = "test.Flow"
topic = "byid"
unique = { by = "job_id", window = "3s" }

[jobs.beat]
schema = "test.Flow"
topic = "beat"

[schedules.hourly]
job = "beat"
cron = "0 * * * *"
timezone = "Europe/Paris"
"""


def _by_key(flow: Flow, job_type: str = "once") -> dict[str, int]:
    runs: dict[str, int] = {}
    for line in flow.lines():
        if line["type"] == job_type:
            runs[line["key"]] = runs.get(line["key"], 0) + 1
    return runs


def test_duplicates_run_once_across_two_workers_and_a_rebalance(flow: Flow) -> None:
    """Rule: a job type unique by key runs one job per key within its window, whichever worker
    of the group owns the partition: duplicates emitted before and after a second worker joins
    (partitions move, the newcomer reads the seen set back from <topic>.unique) are not run, their
    offsets are committed, and emit still returns an id for each."""
    flow.setup(CATALOGUE)
    a = flow.worker(STREAMJOBS_JOB_TYPES="once")  # both workers share the three partitions
    wait_for(lambda: flow.members() == 1, 60, what="first worker assigned")
    first = [flow.producer.emit("once", {"id": f"a{i}", "key": f"k{i}"}) for i in range(6)]
    dups = [flow.producer.emit("once", {"id": f"b{i}", "key": f"k{i}"}) for i in range(6)]
    flow.producer.flush(10)
    assert len(set(first + dups)) == 12  # the caller sees a fresh id for each emit
    wait_for(lambda: len(_by_key(flow)) == 6, 30, what="six keys run")
    b = flow.worker(STREAMJOBS_JOB_TYPES="once")
    wait_for(lambda: flow.members() == 2, 60, what="both workers assigned")
    for i in range(6):  # duplicates again, now spread over both workers, plus new keys
        flow.producer.emit("once", {"id": f"c{i}", "key": f"k{i}"})
        flow.producer.emit("once", {"id": f"n{i}", "key": f"new{i}"})
    flow.producer.flush(10)
    wait_for(lambda: len(_by_key(flow)) == 12, 30, what="the new keys run")
    time.sleep(3)  # room for a wrongly run duplicate to show up
    runs = _by_key(flow)
    assert runs == {**{f"k{i}": 1 for i in range(6)}, **{f"new{i}": 1 for i in range(6)}}
    assert {line["id"] for line in flow.lines()} == {*(f"a{i}" for i in range(6)),
                                                     *(f"n{i}" for i in range(6))}
    assert len({line["pid"] for line in flow.lines()}) == 2, "both workers ran jobs"
    for p in (a, b):
        p.signal(signal.SIGTERM)
        assert p.wait(40) == 0
    assert "job.duplicate" in a.output()
    assert "job.duplicate" in b.output(), "the newcomer dropped duplicates of keys run by a"


def test_restart_inside_the_window_still_drops_duplicates(flow: Flow) -> None:
    """Rule: the seen set survives a worker restart (it lives in the compacted <topic>.unique):
    a duplicate emitted after the only worker stopped and a new one started, within the window,
    is not run; a new key is."""
    flow.setup(CATALOGUE)
    w = flow.worker()
    for i in range(4):
        flow.producer.emit("once", {"id": f"a{i}", "key": f"k{i}"})
    flow.producer.flush(10)
    wait_for(lambda: len(_by_key(flow)) == 4, 60, what="four keys run")
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0
    for i in range(4):
        flow.producer.emit("once", {"id": f"b{i}", "key": f"k{i}"})
    flow.producer.emit("once", {"id": "fresh", "key": "fresh"})
    flow.producer.flush(10)
    w2 = flow.worker()
    wait_for(lambda: "fresh" in _by_key(flow), 60, what="the new key run")
    time.sleep(3)
    assert _by_key(flow) == {"k0": 1, "k1": 1, "k2": 1, "k3": 1, "fresh": 1}
    w2.signal(signal.SIGTERM)
    assert w2.wait(40) == 0
    assert w2.output().count("job.duplicate") == 4


def test_caller_job_id_unique_by_id_with_a_window(flow: Flow) -> None:
    """Rule: emit(job_id=...) puts the caller's id in sj-id; a type unique by job_id runs one
    job per id within the window (3 s here) and again after it; schedule ticks emitted twice
    with the same tick job id (a failover re-fire) run once."""
    flow.setup(CATALOGUE)
    w = flow.worker()
    assert flow.producer.emit("byid", {"id": "1"}, job_id="order-42") == "order-42"
    assert flow.producer.emit("byid", {"id": "2"}, job_id="order-42") == "order-42"
    flow.producer.emit("byid", {"id": "3"}, job_id="order-43")
    tick = 1_700_000_000_000
    for i in range(2):
        # As the scheduler emits a tick of a job type without key_field: keyed by its id.
        flow.producer.emit("beat", {"id": f"t{i}"}, job_id=tick_job_id("hourly", tick),
                           key=tick_job_id("hourly", tick),
                           headers={h.SCHEDULE: "hourly", h.TICK: str(tick)})
    flow.producer.flush(10)
    wait_for(lambda: len(flow.lines()) >= 3, 60, what="first runs")
    time.sleep(4)  # past the 3 s window
    flow.producer.emit("byid", {"id": "4"}, job_id="order-42")
    flow.producer.flush(10)
    wait_for(lambda: any(x["id"] == "4" for x in flow.lines()), 30, what="run after window")
    time.sleep(2)
    ids = sorted(x["id"] for x in flow.lines())
    assert ids == ["1", "3", "4", "t0"]
    assert {x["job_id"] for x in flow.lines() if x["type"] == "byid"} == {"order-42", "order-43"}
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0
