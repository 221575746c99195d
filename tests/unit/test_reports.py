"""Worker reports without a broker: the report format, ReportsView's live workers and
per-minute rates from synthetic reports, and the listener's cost model."""

from __future__ import annotations

import pytest

from streamjobs._config import KafkaConfig
from streamjobs._names import reports_topic
from streamjobs._reports import ReportsView, WorkerReport, worker_id
from streamjobs.events import EventBus, JobFailed, JobsSucceeded, JobSucceeded
from streamjobs.listeners import install_default_listeners

NOW = 1_800_000_000_000  # ms


def _rep(wid: str = "h:1:g", at: int = NOW, started: int = NOW - 600_000,
         succeeded: int = 0, failed: int = 0, retried: int = 0, dead: int = 0,
         stopped: bool = False, job_type: str = "email", in_flight: int = 0) -> WorkerReport:
    return WorkerReport(wid, "g", "h", 1, at, started, in_flight,
                        {job_type: {"succeeded": succeeded, "failed": failed,
                                    "retried": retried, "dead": dead}},
                        (("jobs", 0), ("jobs.retry.1s", 0)), stopped)


def _view(*reports: WorkerReport) -> ReportsView:
    view = ReportsView(KafkaConfig(), "streamjobs.workers", clock=lambda: NOW / 1000)
    for r in reports:
        view.ingest(r)
    return view


def test_topic_name_and_worker_id() -> None:
    """Rule: the topic takes the topic prefix; a worker id is host:pid:group."""
    assert reports_topic() == "streamjobs.workers"
    assert reports_topic("staging.") == "staging.streamjobs.workers"
    assert worker_id("web-1", 7, "streamjobs-demo") == "web-1:7:streamjobs-demo"


def test_report_round_trips_through_json_and_rejects_junk() -> None:
    """Rule: a report survives to_bytes/from_bytes unchanged; bytes that are not a report
    raise ValueError (the view skips them)."""
    rep = _rep(succeeded=3, dead=1, stopped=True, in_flight=2)
    assert WorkerReport.from_bytes(rep.to_bytes()) == rep
    for junk in (b"", b"not json", b"[]", b'{"worker_id": "x"}',
                 b'{"worker_id":"x","group":"g","host":"h","pid":"one","at_ms":1,'
                 b'"started_ms":1,"in_flight":0,"counters":{},"assigned":[]}'):
        with pytest.raises(ValueError):
            WorkerReport.from_bytes(junk)


def test_workers_are_the_recent_ones_not_stopped() -> None:
    """Rule: workers() lists each worker's latest report when heard from within the alive
    window and not stopped; an older report never replaces a newer one."""
    view = _view(_rep("a:1:g", at=NOW - 5_000), _rep("b:2:g", at=NOW - 40_000),
                 _rep("c:3:g", at=NOW - 1_000, stopped=True), _rep("d:4:g", at=NOW - 2_000),
                 _rep("d:4:g", at=NOW - 9_000, succeeded=99))
    assert [r.worker_id for r in view.workers()] == ["a:1:g", "d:4:g"]
    assert [r.worker_id for r in view.workers(alive_within_s=60)] == ["a:1:g", "b:2:g",
                                                                      "d:4:g"]
    assert view.workers()[1].counters["email"]["succeeded"] == 0
    view.forget("a:1:g")
    assert [r.worker_id for r in view.workers()] == ["d:4:g"]


def test_rate_of_a_worker_that_started_within_the_minute() -> None:
    """Rule: counters of a worker started within the last minute count from zero: 30 jobs
    in its 40 s are 30 per minute (not extrapolated to 45)."""
    view = _view(_rep(started=NOW - 40_000, at=NOW - 35_000, succeeded=2),
                 _rep(started=NOW - 40_000, at=NOW - 2_000, succeeded=30, failed=4, dead=1))
    assert view.rates_per_minute() == {"email": {"succeeded": 30.0, "failed": 4.0,
                                                 "retried": 0.0, "dead": 1.0}}


def test_rate_from_the_baseline_before_the_window() -> None:
    """Rule: a long-running worker's rate is the difference to its last report at or before
    the window's start, over the time between the two: 60 jobs in 65 s."""
    view = _view(_rep(at=NOW - 75_000, succeeded=50),
                 _rep(at=NOW - 65_000, succeeded=100),
                 _rep(at=NOW - 30_000, succeeded=130),
                 _rep(at=NOW, succeeded=160, retried=13))
    rates = view.rates_per_minute()["email"]
    assert rates["succeeded"] == pytest.approx(60 * 60 / 65)
    assert rates["retried"] == pytest.approx(13 * 60 / 65)


def test_rates_add_up_over_workers_and_job_types() -> None:
    """Rule: rates are summed over workers per job type; a worker whose last report is older
    than a minute adds nothing."""
    view = _view(_rep("a:1:g", at=NOW - 61_000, succeeded=10),
                 _rep("a:1:g", at=NOW - 1_000, succeeded=70),
                 _rep("b:2:g", at=NOW - 62_000, succeeded=0, job_type="sms"),
                 _rep("b:2:g", at=NOW - 2_000, succeeded=120, job_type="sms"),
                 _rep("c:3:g", at=NOW - 62_000, succeeded=5),
                 _rep("c:3:g", at=NOW - 61_000, succeeded=500))
    rates = view.rates_per_minute()
    assert rates["email"]["succeeded"] == pytest.approx(60.0)
    assert rates["sms"]["succeeded"] == pytest.approx(120.0)


def test_a_stopped_worker_counts_for_the_part_of_the_minute_it_ran() -> None:
    """Rule: a worker that stopped 30 s ago after 30 jobs in its last 31 s counts 30 per
    minute, not 58 (no extrapolation past its stop)."""
    view = _view(_rep(at=NOW - 61_000, succeeded=100),
                 _rep(at=NOW - 30_000, succeeded=130, stopped=True))
    assert view.rates_per_minute()["email"]["succeeded"] == pytest.approx(30.0)


def test_a_restarted_worker_with_the_same_id_never_counts_negative() -> None:
    """Rule: a worker restarted under the same id (pid 1 in a container) is a new run: its
    counters restart from zero and the old run's last minute still counts."""
    old, new = NOW - 3_600_000, NOW - 20_000
    view = _view(_rep(started=old, at=NOW - 70_000, succeeded=1000),
                 _rep(started=old, at=NOW - 25_000, succeeded=1010),
                 _rep(started=new, at=NOW - 15_000, succeeded=1),
                 _rep(started=new, at=NOW - 1_000, succeeded=5))
    assert view.rates_per_minute()["email"]["succeeded"] == pytest.approx(10 + 5)
    [alive] = view.workers()
    assert alive.started_ms == new


def test_a_gap_in_reports_is_extrapolated_from_what_was_seen() -> None:
    """Rule: a worker started long ago but first heard within the window (the view missed
    its earlier reports) is rated from the reports seen: 10 jobs in 20 s, 30 per minute."""
    view = _view(_rep(at=NOW - 25_000, succeeded=500), _rep(at=NOW - 5_000, succeeded=510))
    assert view.rates_per_minute()["email"]["succeeded"] == pytest.approx(30.0)
    single = _view(_rep(at=NOW - 5_000, succeeded=510))
    assert single.rates_per_minute() == {}


def test_reports_listener_counts_from_summaries_only() -> None:
    """Rule: with the default listeners and reports on, no listener wants per-job success
    events (the worker keeps batching them); failures are counted per event as before."""
    bus = EventBus()
    obs = install_default_listeners(bus, metrics_port=None, log_level="warning",
                                    kafka=KafkaConfig(), topic_prefix="p.")
    try:
        assert obs.reports is not None and obs.reports.topic == "p.streamjobs.workers"
        assert bus.wants(JobsSucceeded) and not bus.wants_each(JobSucceeded)
        assert bus.wants(JobFailed)
        bus.emit(JobsSucceeded("email", "jobs", 0, 0.0, (0.1, 0.2, 0.3), (None, None, None)))
        bus.emit(JobFailed("id", "email", "jobs", 0, 3, 1, 0.1, "E", "boom", True))
        assert obs.reports.report() is None  # not started: nothing to publish yet
        assert obs.reports.counts() == {"email": {"succeeded": 3, "failed": 1, "retried": 0,
                                                  "dead": 0}}
    finally:
        obs.close()
