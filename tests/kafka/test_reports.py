"""Worker reports on the real broker: a running `streamjobs worker` publishes its counters to
`<prefix>streamjobs.workers`, and `ReportsView` reads them back."""

from __future__ import annotations

import signal
import time

import pytest

from streamjobs._headers import hostname
from streamjobs._names import reports_topic
from streamjobs._ops.topics import WORKERS_CONFIG
from streamjobs._reports import ReportsView, WorkerReport
from tests.conftest import MakeTopic, SpawnCli, wait_for

from .worker_support import APP, Env, env_fixture  # noqa: F401


def _latest(view: ReportsView, pid: int) -> WorkerReport | None:
    with view._lock:  # the test reads the book directly to see stopped workers too
        found = [r for r in view._latest.values() if r.pid == pid]
    return found[0] if found else None


def _counts(rep: WorkerReport | None) -> dict[str, int]:
    return dict(rep.counters.get("task", {})) if rep is not None else {}


def test_a_worker_reports_its_counters_assignment_and_stop(
        env: Env, make_topic: MakeTopic, spawn_cli: SpawnCli) -> None:
    """Rule: after N jobs succeed, M fail permanently and K fail once then succeed, the
    worker's report (keyed host:pid:group) says succeeded N+K, failed M+K, retried K, dead M,
    names its host, pid, group and the job topic's partitions among its assignment; on
    SIGTERM it publishes a last report marked stopped, with nothing in flight or assigned,
    which `workers()` no longer lists."""
    env.create_topics("task")
    topic = make_topic(name=reports_topic(env.prefix), partitions=1,
                       config=dict(WORKERS_CONFIG))
    n, m, k = 20, 3, 2
    for _ in range(n):
        env.emit()
    for _ in range(m):
        env.emit(fail="permanent", fail_attempts=9)
    for _ in range(k):
        env.emit(fail="error", fail_attempts=1)
    env.flush()
    view = ReportsView(env.kafka, topic, lookback_s=600)
    view.start()
    proc = spawn_cli("worker", APP, "--job-types", "task", env=env.cli_env())
    try:
        expected = {"succeeded": n + k, "failed": m + k, "retried": k, "dead": m}
        wait_for(lambda: _counts(_latest(view, proc.pid)) == expected, 45,
                 what=f"a report with {expected}")
        rep = _latest(view, proc.pid)
        assert rep is not None and not rep.stopped
        assert rep.group == env.group and rep.pid == proc.pid
        assert rep.worker_id == f"{rep.host}:{proc.pid}:{env.group}"
        assert rep.host == hostname()
        assert {(env.topic(), p) for p in range(3)} <= set(rep.assigned)
        assert rep.started_ms <= rep.at_ms <= time.time() * 1000 + 5000
        assert [w.worker_id for w in view.workers()] == [rep.worker_id]
        rates = view.rates_per_minute()["task"]
        assert rates["succeeded"] == pytest.approx(n + k) and rates["dead"] == m
        proc.signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.output()
        wait_for(lambda: (r := _latest(view, proc.pid)) is not None and r.stopped, 20,
                 what="the stopped report")
        final = _latest(view, proc.pid)
        assert _counts(final) == expected
        assert final is not None and final.in_flight == 0 and final.assigned == ()
        assert view.workers() == []
    finally:
        view.close()


def test_a_missing_reports_topic_costs_one_warning(env: Env, spawn_cli: SpawnCli) -> None:
    """Rule: without the reports topic (`topics apply` not run) the worker says so once, in
    one log line naming the topic and the command that creates it, and runs its jobs."""
    env.create_topics("task")
    ids = [env.emit() for _ in range(5)]
    env.flush()
    proc = spawn_cli("worker", APP, "--job-types", "task", env=env.cli_env())
    wait_for(lambda: {x["id"] for x in env.lines()} >= set(ids), 45, what="the 5 jobs")
    proc.signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    out = proc.output()
    warnings = [line for line in out.splitlines() if reports_topic(env.prefix) in line]
    assert len(warnings) == 1 and "topics apply" in warnings[0], out
