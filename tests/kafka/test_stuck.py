"""Sync handler timeouts on the real broker: a sync handler past its timeout fails its job into
the retry path (reason timeout) while its thread is counted stuck; a worker whose slots are all
stuck is not live; under ``--processes`` a stuck child is killed and replaced."""

from __future__ import annotations

import re
import signal
import time
import urllib.error
import urllib.request

from tests.conftest import wait_for

from .flow_support import Flow, flow_fixture  # noqa: F401

CATALOGUE = """
[jobs.stuck]
schema = "test.Flow"
topic = "stuck"
partitions = 2
timeout = "1s"
retry = { delays = ["1s"], max_attempts = 3 }
"""


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _port(output: str) -> int:
    m = re.search(r'"address":"[^"]*:(\d+)"', output)
    assert m, output[-2000:]
    return int(m.group(1))


def test_sync_handler_past_its_timeout_is_retried_and_its_late_return_ignored(flow: Flow) -> None:
    """Rule: a sync handler running past its timeout fails its job with JobTimeout into the
    retry topic (job.timed_out, slot.stuck with replaced=true); the retry runs on the
    replacement thread and succeeds; the late return of the stuck thread (slot.freed) neither
    finishes nor retries the job again, and a job within its timeout is untouched."""
    flow.setup(CATALOGUE)
    w = flow.worker(STREAMJOBS_CONCURRENCY="1")
    flow.producer.emit("stuck", {"id": "h", "key": "hang-4"})
    flow.producer.emit("stuck", {"id": "f", "key": "fast"})
    flow.producer.flush(10)
    # attempt 2 of h succeeds, f succeeds, and h's attempt 1 returns late (~4 s in)
    wait_for(lambda: len(flow.lines()) == 3 and "slot.freed" in w.output(), 60,
             what="the retry, the fast job and the late return")
    runs = sorted((x["id"], x["attempt"]) for x in flow.lines())
    assert runs == [("f", 1), ("h", 1), ("h", 2)]
    time.sleep(2)  # a double finish would show up as another retry or run
    assert len(flow.lines()) == 3
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0
    out = w.output()
    assert out.count('"event":"job.timed_out"') == 1
    assert out.count('"event":"job.retried"') == 1
    assert '"error_class":"streamjobs.errors.JobTimeout"' in out
    assert '"replaced":true' in out
    assert ".stuck.retry.1s" in out  # the retry tier of the job's own topic
    assert "job.dead_lettered" not in out


def test_a_worker_whose_only_slot_is_stuck_is_not_live(flow: Flow) -> None:
    """Rule: with one slot and a stuck limit of 1, a sync handler stuck past its timeout makes
    /healthz answer 503 naming the stuck threads (its job still goes to the retry path and
    succeeds there); /healthz is 200 again once the stuck thread returns."""
    flow.setup(CATALOGUE)
    w = flow.worker(STREAMJOBS_CONCURRENCY="1", STREAMJOBS_STUCK_LIMIT="1")
    wait_for(lambda: "metrics.listening" in w.output(), 30, what="the health server")
    port = _port(w.output())
    assert _healthz(port) == 200
    flow.producer.emit("stuck", {"id": "h", "key": "hang-12"})
    flow.producer.flush(10)
    wait_for(lambda: _healthz(port) == 503, 30, what="not live")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert "streamjobs_stuck_threads 1.0" in r.read().decode()
    wait_for(lambda: [x["attempt"] for x in flow.lines()] == [2], 30, what="the retry")
    wait_for(lambda: _healthz(port) == 200, 30, what="live again once the thread returned")
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0


def test_processes_replace_a_stuck_child(flow: Flow) -> None:
    """Rule: under --processes 2, a child whose slots are all stuck is killed by the supervisor
    and replaced by a new child; the stuck job was retried (at-least-once) and every job ran."""
    flow.setup(CATALOGUE)
    w = flow.worker(STREAMJOBS_CONCURRENCY="1", STREAMJOBS_STUCK_LIMIT="1",
                    STREAMJOBS_PROCESSES="2", STREAMJOBS_LIVENESS_TTL="3")
    wait_for(lambda: w.output().count("started (pid") == 2, 30, what="two children")
    wait_for(lambda: flow.members() == 2, 60, what="both children in the group")
    flow.producer.emit("stuck", {"id": "h", "key": "hang-120"})
    flow.producer.emit("stuck", {"id": "f", "key": "fast"})
    flow.producer.flush(10)
    wait_for(lambda: "killing it" in w.output(), 60, what="the stuck child killed")
    wait_for(lambda: w.output().count("started (pid") == 3, 30, what="a replacement child")
    wait_for(lambda: {(x["id"], x["attempt"]) for x in flow.lines()} >= {("h", 2), ("f", 1)},
             60, what="every job ran")
    w.signal(signal.SIGTERM)
    assert w.wait(60) == 0
