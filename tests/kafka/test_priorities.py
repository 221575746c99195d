"""Priority lanes on the real broker: each lane is its own topic, chosen by emit(priority=) or
`emit --priority`; a worker with a backlog of low jobs runs high jobs first; a retry stays in
its lane."""

from __future__ import annotations

import signal

import pytest

from tests.conftest import wait_for

from .flow_support import Flow, flow_fixture  # noqa: F401

CATALOGUE = """
[jobs.lane]
schema = "test.Flow"
topic = "lane"
partitions = 2
priorities = ["high", "normal", "low"]
retry = { delays = ["1s"], max_attempts = 3 }

[jobs.alane]
schema = "test.Flow"
topic = "alane"
partitions = 2
priorities = ["high", "normal", "low"]
"""


def test_async_high_jobs_overtake_a_low_backlog(flow: Flow) -> None:
    """Rule: the same for async handlers (20 ms each, 2 at once): high jobs emitted once the
    worker is busy with 300 low ones run while most of the low backlog still waits."""
    flow.setup(CATALOGUE)
    for i in range(300):
        flow.producer.emit("alane", {"id": f"low{i}", "key": f"k{i}"}, priority="low")
    flow.producer.flush(10)
    w = flow.worker(STREAMJOBS_CONCURRENCY="2", STREAMJOBS_JOB_TYPES="alane")
    wait_for(lambda: len(flow.lines()) >= 20, 60, what="the worker busy with the backlog")
    for i in range(5):
        flow.producer.emit("alane", {"id": f"high{i}", "key": f"h{i}"}, priority="high")
    flow.producer.flush(10)
    wait_for(lambda: len(flow.lines()) == 305, 90, what="every job")
    ids = [x["id"] for x in flow.lines()]
    lows_before = [sum(1 for x in ids[:ids.index(f"high{i}")] if x.startswith("low"))
                   for i in range(5)]
    assert max(lows_before) < 200, lows_before
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0


def test_high_jobs_overtake_a_low_backlog_and_retry_in_their_lane(flow: Flow) -> None:
    """Rule: with 300 low jobs waiting (20 ms each, 2 threads: ~3 s of work), high jobs
    emitted once the worker is busy all finish while most of the low backlog is still
    waiting; a failing high job retries through its own lane's tier (<topic>.p-high.retry.1s)
    and `streamjobs emit --priority high` writes to the high lane's topic; an unknown lane is
    refused with nothing sent (ValueError; exit 2 from the CLI)."""
    flow.setup(CATALOGUE)
    for i in range(300):
        flow.producer.emit("lane", {"id": f"low{i}", "key": f"k{i}"}, priority="low")
    flow.producer.flush(10)
    w = flow.worker(STREAMJOBS_CONCURRENCY="2", STREAMJOBS_JOB_TYPES="lane")
    wait_for(lambda: len(flow.lines()) >= 20, 60, what="the worker busy with the backlog")
    for i in range(5):
        flow.producer.emit("lane", {"id": f"high{i}", "key": f"h{i}"}, priority="high")
    flow.producer.emit("lane", {"id": "highfail", "key": "fail-1"}, priority="high")
    flow.producer.flush(10)
    done = flow.run_cli("emit", "lane", "--json", '{"id": "cli", "key": "c"}', "--priority",
                        "high", env=flow.env())
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(flow.lines()) == 307, 90, what="every job")
    ids = [x["id"] for x in flow.lines()]
    lows_before = [ids.index(f"high{i}") - sum(1 for x in ids[:ids.index(f"high{i}")]
                                                if not x.startswith("low"))
                   for i in range(5)]
    assert max(lows_before) < 200, lows_before  # each high job ran with >100 low ones left
    retried = [x for x in flow.lines() if x["id"] == "highfail"]
    assert [x["attempt"] for x in retried] == [2]
    assert retried[0]["topic"] == f"{flow.prefix}lane.p-high.retry.1s"
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        flow.producer.emit("lane", {"id": "x", "key": "x"}, priority="urgent")
    bad = flow.run_cli("emit", "lane", "--json", '{"id": "x", "key": "x"}', "--priority",
                       "urgent", env=flow.env())
    assert bad.returncode == 2 and "unknown priority 'urgent'" in bad.stderr
    topics = {x["id"]: x["topic"] for x in flow.lines()}
    assert topics["cli"] == f"{flow.prefix}lane.p-high"
    assert topics["low0"] == f"{flow.prefix}lane.p-low"
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0
