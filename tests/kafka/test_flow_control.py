"""Rate limits, concurrency limits and circuit breakers on the real broker: a group of two workers
keeps a job type's rate within its limit, a process runs at most `concurrency` jobs of a type,
and a tripped breaker pauses the type, probes, recovers and loses nothing."""

from __future__ import annotations

import re
import signal
import time

from tests.conftest import wait_for

from .flow_support import Flow, flow_fixture  # noqa: F401

LIMIT = 20.0  # jobs/s for the whole group

CATALOGUE = """
[jobs.limited]
schema = "test.Flow"
topic = "limited"
partitions = 4
key_field = "key"
rate_limit = "20/s"

[jobs.busy]
schema = "test.Flow"
topic = "busy"
partitions = 4
key_field = "key"
concurrency = 2

[jobs.flaky]
schema = "test.Flow"
topic = "flaky"
partitions = 1
retry = { delays = ["8s"], max_attempts = 3 }
breaker = { failures = 3, cooldown = "2s" }
"""


def _stop(flow: Flow) -> None:
    for p in flow.procs:
        p.signal(signal.SIGTERM)
    for p in flow.procs:
        assert p.wait(40) == 0, p.output()[-3000:]


def test_two_workers_keep_the_group_within_the_rate_limit(flow: Flow) -> None:
    """Rule: a job type's rate_limit holds for the whole group without coordination: two
    workers sharing the topic's partitions (each partition owning limit/partitions) run a
    backlog at no more than the limit +10%, measured over a 5 s window; both run jobs, and
    every job runs once, in key order."""
    flow.setup(CATALOGUE)
    flow.worker(STREAMJOBS_JOB_TYPES="limited")
    flow.worker(STREAMJOBS_JOB_TYPES="limited")
    wait_for(lambda: flow.members() == 2, 60, what="both workers assigned")
    total = 300
    t0 = time.time()
    for i in range(total):
        flow.producer.emit("limited", {"id": f"j{i}", "key": f"k{i % 16}"})
    flow.producer.flush(10)
    start, end = t0 + 1.0, t0 + 6.0
    wait_for(lambda: time.time() > end + 0.5, 20, what="the measuring window")
    runs = [x for x in flow.lines() if x["type"] == "limited"]
    window = [x for x in runs if start <= x["at"] < end]
    rate = len(window) / (end - start)
    print(f"observed {rate:.1f} jobs/s in [{start - t0:.0f}s, {end - t0:.0f}s) for a limit of "
          f"{LIMIT:g}/s ({len(window)} jobs; {len(runs)} run so far)")
    assert rate <= LIMIT * 1.10, f"{rate:.1f} jobs/s over the limit of {LIMIT}/s +10%"
    assert rate >= LIMIT * 0.5, f"{rate:.1f} jobs/s: far below the limit with a backlog"
    assert len({x["pid"] for x in window}) == 2, "both workers ran jobs"
    assert len(runs) < total, "the backlog was not simply run at full speed"
    _stop(flow)
    runs = [x for x in flow.lines() if x["type"] == "limited"]
    assert len({x["id"] for x in runs}) == len(runs), "a job ran twice"
    by_key: dict[str, list[int]] = {}
    for x in sorted(runs, key=lambda x: x["at"]):
        by_key.setdefault(x["key"], []).append(int(x["id"][1:]))
    assert all(ids == sorted(ids) for ids in by_key.values()), "a key's jobs ran out of order"


def test_concurrency_limit_per_process(flow: Flow) -> None:
    """Rule: `concurrency = 2` lets one worker (8 threads, 4 partitions with work) run at most
    two jobs of the type at once; the jobs beyond wait in Kafka (the partition is paused) and
    all of them run."""
    flow.setup(CATALOGUE)
    w = flow.worker(STREAMJOBS_JOB_TYPES="busy", STREAMJOBS_CONCURRENCY="8")
    wait_for(lambda: flow.members() == 1, 60, what="worker assigned")
    for i in range(16):
        flow.producer.emit("busy", {"id": f"b{i}", "key": f"k{i}"})
    flow.producer.flush(10)
    wait_for(lambda: len([x for x in flow.lines() if x["type"] == "busy"]) == 16, 40,
             what="16 busy jobs")
    spans = [(x["started"], x["at"]) for x in flow.lines() if x["type"] == "busy"]
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= 2, f"{most} jobs of the type ran at once"
    assert most == 2, "the limit let two run side by side"
    _stop(flow)
    assert "Traceback" not in w.output()


def test_breaker_trips_probes_and_recovers(flow: Flow) -> None:
    """Rule: after 3 consecutive failures the breaker opens: nothing of the type runs for the
    2 s cool-down; half-open, one probe runs: it fails (the handler fails its first 4 runs), so
    the circuit re-opens; the next probe succeeds and closes it. Every job eventually
    succeeds (the failed ones through their retry), first attempts run in offset order, and the
    log has a line at each transition."""
    flow.setup(CATALOGUE)
    w = flow.worker(STREAMJOBS_JOB_TYPES="flaky", STREAMJOBS_CONCURRENCY="1",
                    STREAMJOBS_TEST_FAIL_FIRST="4")
    wait_for(lambda: flow.members() == 1, 60, what="worker assigned")
    n = 10
    for i in range(n):
        flow.producer.emit("flaky", {"id": f"f{i}", "key": f"k{i}"})
    flow.producer.flush(10)

    def succeeded() -> set[str]:
        return {x["id"] for x in flow.lines() if x["type"] == "flaky" and not x.get("failed")}

    wait_for(lambda: len(succeeded()) == n, 50, what="every flaky job succeeded")
    runs = sorted((x for x in flow.lines() if x["type"] == "flaky"), key=lambda x: x["at"])
    failed = [x for x in runs if x.get("failed")]
    assert [x["id"] for x in failed] == ["f0", "f1", "f2", "f3"]
    assert failed[3]["at"] - failed[2]["at"] >= 1.8, "the probe ran before the cool-down"
    first_ok = next(x for x in runs if not x.get("failed"))
    assert first_ok["id"] == "f4"
    assert first_ok["at"] - failed[3]["at"] >= 1.8, "the second probe ran before the cool-down"
    firsts = [int(x["id"][1:]) for x in runs if x["attempt"] == 1]
    assert firsts == list(range(n)), "first attempts out of offset order"
    _stop(flow)
    out = w.output()
    states = re.findall(r"breaker\.(open|half_open|closed)", out)
    assert states == ["open", "half_open", "open", "half_open", "closed"], states
