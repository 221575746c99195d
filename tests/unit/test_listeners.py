"""Log, metrics and health listeners driven by synthetic events; the HTTP server over real HTTP."""

from __future__ import annotations

import io
import json
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry

from streamjobs.errors import ConfigError
from streamjobs.events import (
    BrokerStatus,
    CommitDone,
    CommitFailed,
    EventBus,
    InFlightChanged,
    JobDeadLettered,
    JobFailed,
    JobReceived,
    JobRetried,
    JobStarted,
    JobSucceeded,
    LagSampled,
    LoopAlive,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    WorkerStarted,
    WorkerStopping,
)
from streamjobs.listeners import (
    HealthListener,
    LogListener,
    MetricsListener,
    configure_logging,
    install_default_listeners,
    serve,
)

JOB: dict[str, Any] = {
    "job_id": "0190-aa",
    "job_type": "email",
    "topic": "demo.emails",
    "partition": 3,
    "offset": 17,
    "attempt": 2,
}


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    # configure_logging is process-global; leave no trace for other test files.
    stdlib = logging.getLogger("streamjobs")
    saved = (list(stdlib.handlers), stdlib.propagate, stdlib.level)
    yield
    structlog.reset_defaults()
    stdlib.handlers[:] = saved[0]
    stdlib.propagate, stdlib.level = saved[1], saved[2]


# --- logging -----------------------------------------------------------------------------


def logged_lines(level: str, *events: object) -> list[dict[str, object]]:
    out = io.StringIO()
    configure_logging(level, json=True, stream=out)
    bus = EventBus()
    LogListener().attach(bus)
    for e in events:
        bus.emit(e)  # type: ignore[arg-type]
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_log_lines_are_json_with_the_job_fields() -> None:
    lines = logged_lines(
        "debug",
        JobSucceeded(**JOB, duration_s=0.0125, created_at_ms=None),
        JobFailed(
            **JOB, duration_s=0.5, error_class="ValueError", error_message="bad", will_retry=True
        ),
        JobRetried(**JOB, delay_s=10.0, retry_topic="demo.emails.retry.10s"),
        JobDeadLettered(**JOB, reason="max_attempts", dlq_topic="demo.emails.dlq"),
    )
    assert [(x["event"], x["level"]) for x in lines] == [
        ("job.succeeded", "debug"),
        ("job.failed", "warning"),
        ("job.retried", "warning"),
        ("job.dead_lettered", "error"),
    ]
    ok = lines[0]
    assert {k: ok[k] for k in JOB} == JOB
    assert ok["duration_ms"] == 12.5
    assert "timestamp" in ok
    assert lines[1]["error_class"] == "ValueError" and lines[1]["will_retry"] is True
    assert lines[3]["reason"] == "max_attempts"


def test_debug_events_are_not_even_subscribed_at_info() -> None:
    configure_logging("info", stream=io.StringIO())
    bus = EventBus()
    LogListener().attach(bus)
    assert not bus.wants(JobReceived) and not bus.wants(JobStarted)
    assert not bus.wants(CommitDone)
    # job.succeeded is debug: at info a busy worker builds no per-job log event at all (the
    # stop line counts successes from summaries).
    assert not bus.wants_each(JobSucceeded) and bus.wants(JobFailed)
    configure_logging("error", stream=io.StringIO())
    quiet = EventBus()
    LogListener().attach(quiet)
    assert not quiet.wants(JobFailed) and quiet.wants(JobDeadLettered)


def test_debug_level_logs_received_and_started() -> None:
    lines = logged_lines("debug", JobReceived(**JOB), JobStarted(**JOB))
    assert [(x["event"], x["level"], x["offset"]) for x in lines] == [
        ("job.received", "debug", 17),
        ("job.started", "debug", 17),
    ]


def test_group_and_worker_events_are_logged_and_broker_status_only_on_change() -> None:
    lines = logged_lines(
        "info",
        WorkerStarted(group_id="g", topics=("demo.emails",), concurrency=4, pid=123),
        PartitionsAssigned(partitions=(("demo.emails", 0), ("demo.emails", 1))),
        BrokerStatus(reachable=True),
        BrokerStatus(reachable=False, detail="timeout"),
        BrokerStatus(reachable=False, detail="timeout"),
        BrokerStatus(reachable=True),
        CommitFailed(error="REBALANCE_IN_PROGRESS"),
        LoopAlive(at=1.0),
        InFlightChanged(count=3),
        WorkerStopping(reason="SIGTERM"),
    )
    assert [x["event"] for x in lines] == [
        "worker.started",
        "partitions.assigned",
        "broker.unreachable",
        "broker.reachable",
        "commit.failed",
        "worker.stopping",
    ]
    assert lines[1]["partitions"] == ["demo.emails[0-1]"]
    assert lines[2]["detail"] == "timeout"


def test_invalid_log_level_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging("verbose")
    assert info.value.field == "log_level"


# --- metrics -----------------------------------------------------------------------------


@pytest.fixture
def metrics() -> tuple[EventBus, CollectorRegistry]:
    bus, registry = EventBus(), CollectorRegistry()
    MetricsListener(registry).attach(bus)
    return bus, registry


def test_job_outcomes_are_counted_per_job_type(metrics: tuple[EventBus, CollectorRegistry]) -> None:
    bus, reg = metrics
    now_ms = int(time.time() * 1000)
    bus.emit(JobReceived(**JOB))
    bus.emit(JobReceived(**JOB))
    bus.emit(JobSucceeded(**JOB, duration_s=0.002, created_at_ms=now_ms - 3000))
    bus.emit(JobFailed(**JOB, duration_s=0.2, error_class="E", error_message="", will_retry=True))
    bus.emit(JobRetried(**JOB, delay_s=1.0, retry_topic="demo.emails.retry.1s"))
    bus.emit(JobDeadLettered(**JOB, reason="max_attempts", dlq_topic="demo.emails.dlq"))
    poison = {**JOB, "job_id": "", "job_type": ""}
    bus.emit(JobDeadLettered(**poison, reason="decode_error", dlq_topic="demo.emails.dlq"))

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, labels)

    assert value("streamjobs_jobs_received_total", job_type="email") == 2
    for outcome in ("succeeded", "failed", "retried", "dead_lettered"):
        assert value("streamjobs_jobs_total", job_type="email", outcome=outcome) == 1
    assert value("streamjobs_jobs_total", job_type="unknown", outcome="dead_lettered") == 1
    assert value("streamjobs_dead_lettered_total", job_type="email", reason="max_attempts") == 1
    assert value("streamjobs_dead_lettered_total", job_type="unknown", reason="decode_error") == 1
    assert value("streamjobs_job_duration_seconds_count", job_type="email") == 2
    assert value("streamjobs_job_duration_seconds_bucket", job_type="email", le="0.0025") == 1
    assert value("streamjobs_job_end_to_end_seconds_count", job_type="email") == 1
    assert value("streamjobs_job_end_to_end_seconds_bucket", job_type="email", le="2.5") == 0
    assert value("streamjobs_job_end_to_end_seconds_bucket", job_type="email", le="5.0") == 1


def test_gauges_follow_assignment_lag_and_worker_state(
    metrics: tuple[EventBus, CollectorRegistry],
) -> None:
    bus, reg = metrics
    get = reg.get_sample_value
    bus.emit(WorkerStarted(group_id="g", topics=("t",), concurrency=2, pid=1))
    assert get("streamjobs_worker_up") == 1
    bus.emit(PartitionsAssigned(partitions=(("t", 0), ("t", 1), ("t", 2))))
    assert get("streamjobs_assigned_partitions") == 3
    bus.emit(LagSampled(topic="t", partition=0, lag=5))
    bus.emit(LagSampled(topic="t", partition=1, lag=7))
    assert get("streamjobs_consumer_lag", {"topic": "t", "partition": "1"}) == 7
    bus.emit(PartitionsRevoked(partitions=(("t", 1), ("t", 2))))  # t-2 never had a sample
    bus.emit(PartitionsLost(partitions=(("t", 0),)))
    assert get("streamjobs_assigned_partitions") == 0
    assert get("streamjobs_consumer_lag", {"topic": "t", "partition": "1"}) is None
    assert get("streamjobs_consumer_lag", {"topic": "t", "partition": "0"}) is None
    bus.emit(LagSampled(topic="t", partition=1, lag=9))  # late sample after revoke
    assert get("streamjobs_consumer_lag", {"topic": "t", "partition": "1"}) is None
    bus.emit(InFlightChanged(count=4))
    assert get("streamjobs_in_flight") == 4
    bus.emit(CommitDone(offsets=(("t", 0, 10),)))
    bus.emit(CommitDone(offsets=()))
    bus.emit(CommitFailed(error="x"))
    assert get("streamjobs_commits_total", {"outcome": "succeeded"}) == 2
    assert get("streamjobs_commits_total", {"outcome": "failed"}) == 1
    assert math.isnan(get("streamjobs_broker_reachable") or 0.0)  # not checked yet
    bus.emit(BrokerStatus(reachable=False))
    assert get("streamjobs_broker_reachable") == 0
    bus.emit(WorkerStopping(reason="SIGTERM"))
    assert get("streamjobs_worker_up") == 0


# --- health ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_liveness_goes_stale_after_the_ttl_and_recovers_on_heartbeat() -> None:
    clock = FakeClock()
    health = HealthListener(liveness_ttl=5.0, clock=clock)
    bus = EventBus()
    health.attach(bus)
    assert health.live() == (True, "")  # construction grants one TTL to reach the loop
    clock.now += 6
    alive, reason = health.live()
    assert not alive and "no poll-loop heartbeat for 6.0s" in reason
    bus.emit(LoopAlive(at=clock.now))
    assert health.live()[0]
    clock.now += 4.9
    assert health.live()[0]


def test_liveness_with_the_real_monotonic_clock() -> None:
    health = HealthListener(liveness_ttl=0.2)
    health.on_loop_alive(LoopAlive(at=time.monotonic()))
    assert health.live()[0]
    time.sleep(0.3)
    assert not health.live()[0]


def test_readiness_needs_an_assignment_and_a_reachable_broker() -> None:
    health = HealthListener()
    bus = EventBus()
    health.attach(bus)
    assert health.ready() == (False, "no partition assignment received yet")
    bus.emit(PartitionsAssigned(partitions=()))  # empty assignment: joined, nothing to do
    assert health.ready() == (True, "")
    bus.emit(BrokerStatus(reachable=False, detail="all brokers down"))
    assert health.ready() == (False, "broker unreachable: all brokers down")
    bus.emit(BrokerStatus(reachable=True))
    assert health.ready()[0]
    bus.emit(WorkerStopping(reason="SIGTERM"))
    assert health.ready() == (False, "worker stopping: SIGTERM")


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_http_server_serves_healthz_readyz_and_metrics() -> None:
    clock = FakeClock()
    health = HealthListener(liveness_ttl=5.0, clock=clock)
    bus, registry = EventBus(), CollectorRegistry()
    health.attach(bus)
    MetricsListener(registry).attach(bus)
    server = serve(0, health, registry)
    try:
        assert server.port > 0
        base = f"http://127.0.0.1:{server.port}"
        assert http_get(f"{base}/healthz")[::2] == (200, "ok\n")
        status, ctype, body = http_get(f"{base}/readyz")
        assert (status, ctype) == (503, "application/json")
        assert json.loads(body) == {
            "ready": False,
            "reason": "no partition assignment received yet",
        }
        bus.emit(PartitionsAssigned(partitions=(("t", 0),)))
        bus.emit(JobSucceeded(**JOB, duration_s=0.01, created_at_ms=None))
        assert http_get(f"{base}/readyz")[::2] == (200, '{"ready":true}')
        status, ctype, body = http_get(f"{base}/metrics")
        assert status == 200 and ctype.startswith("text/plain")
        assert 'streamjobs_jobs_total{job_type="email",outcome="succeeded"} 1.0' in body
        assert "streamjobs_assigned_partitions 1.0" in body
        clock.now += 10
        status, _, body = http_get(f"{base}/healthz")
        assert status == 503 and "heartbeat" in body
        assert http_get(f"{base}/nope")[0] == 404
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def test_install_default_listeners_wires_everything_with_a_fresh_registry() -> None:
    first = install_default_listeners(EventBus(), metrics_port=0, log_level="warning")
    second = install_default_listeners(EventBus(), metrics_port=None)
    try:
        assert first.registry is not second.registry  # two workers in one process
        assert first.port is not None and second.port is None and second.server is None
        first.bus.emit(PartitionsAssigned(partitions=()))
        assert first.bus.wants(LoopAlive) and first.bus.wants(JobSucceeded)
        assert first.health.ready()[0]
        status, _, body = http_get(f"http://127.0.0.1:{first.port}/metrics")
        assert status == 200 and "streamjobs_worker_up" in body
    finally:
        first.close()
        second.close()
