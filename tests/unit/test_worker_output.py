"""What a worker writes: the per-job line at a chosen level, the stop line with counts, wait-tier
summaries, the metrics address; librdkafka's lines rate-limited on ``streamjobs.kafka``;
handler checks; ``--consumer-config`` / ``--producer-config`` parsing and validation."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from streamjobs import _kafka_log
from streamjobs._config import KafkaConfig
from streamjobs._worker import App
from streamjobs._worker.app import check_handler
from streamjobs.cli._common import _Settings
from streamjobs.errors import ConfigError
from streamjobs.events import (
    EventBus,
    JobDeadLettered,
    JobRetried,
    JobsSucceeded,
    JobSucceeded,
    PartitionsAssigned,
    WorkerStarted,
    WorkerStopped,
)
from streamjobs.listeners import LogListener, configure_logging, install_default_listeners
from streamjobs.listeners._logging import summarise_partitions

JOB: dict[str, Any] = {"job_id": "j1", "job_type": "email", "topic": "demo.emails",
                       "partition": 0, "offset": 1, "attempt": 1}


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    loggers = [logging.getLogger("streamjobs"), _kafka_log.LOGGER]
    saved = [(list(lg.handlers), lg.propagate, lg.level) for lg in loggers]
    yield
    structlog.reset_defaults()
    for lg, (handlers, propagate, level) in zip(loggers, saved, strict=True):
        lg.handlers[:] = handlers
        lg.propagate, lg.level = propagate, level


def _lines(level: str, job_level: str, *events: object) -> tuple[EventBus, list[dict[str, Any]]]:
    out = io.StringIO()
    configure_logging(level, json=True, stream=out)
    bus = EventBus()
    LogListener(job_level=job_level).attach(bus)
    for e in events:
        bus.emit(e)  # type: ignore[arg-type]
    return bus, [json.loads(x) for x in out.getvalue().splitlines()]


# --- the line per job ----------------------------------------------------------------------

def test_job_log_level_info_shows_each_success_at_info() -> None:
    bus, lines = _lines("info", "info", JobSucceeded(**JOB, duration_s=0.001, created_at_ms=None))
    assert [(x["event"], x["level"]) for x in lines] == [("job.succeeded", "info")]
    assert bus.wants_each(JobSucceeded)


def test_job_log_level_off_builds_no_per_job_event_even_at_debug() -> None:
    bus, lines = _lines("debug", "off", JobSucceeded(**JOB, duration_s=0.001, created_at_ms=None))
    assert lines == []
    assert not bus.wants_each(JobSucceeded)  # the stop line's count comes from summaries


def test_default_job_log_level_is_debug() -> None:
    _, at_info = _lines("info", "debug", JobSucceeded(**JOB, duration_s=0.001, created_at_ms=None))
    _, at_debug = _lines("debug", "debug",
                         JobSucceeded(**JOB, duration_s=0.001, created_at_ms=None))
    assert at_info == [] and [x["level"] for x in at_debug] == ["debug"]


def test_unknown_job_log_level_is_refused() -> None:
    with pytest.raises(ConfigError, match="job_log_level"):
        LogListener(job_level="loud")


# --- start and stop ------------------------------------------------------------------------

def test_stop_line_counts_outcomes_since_start() -> None:
    _, lines = _lines(
        "info", "debug",
        WorkerStarted(group_id="g", topics=("demo.emails", "demo.emails.retry.1s"),
                      concurrency=2, pid=1),
        JobsSucceeded("email", "demo.emails", 0, 0.0, (0.1, 0.2, 0.3), (None, None, None)),
        JobSucceeded(**JOB, duration_s=0.001, created_at_ms=None),  # per-job: counted once
        JobRetried(**JOB, delay_s=1.0, retry_topic="demo.emails.retry.1s"),
        JobDeadLettered(**JOB, reason="max_attempts", dlq_topic="demo.emails.dlq"),
        WorkerStopped("burst: drained", 2.345),
    )
    started, stopped = lines[0], lines[-1]
    assert started["topics"] == ["demo.emails", "demo.emails.retry.*: 1 topic"]
    assert stopped["event"] == "worker.stopped"
    assert {k: stopped[k] for k in ("reason", "succeeded", "retried", "dead_lettered",
                                    "seconds")} == {
        "reason": "burst: drained", "succeeded": 4, "retried": 1, "dead_lettered": 1,
        "seconds": 2.3}


def test_console_format_is_one_readable_line_per_event() -> None:
    out = io.StringIO()
    configure_logging("info", json=False, stream=out)
    bus = EventBus()
    LogListener().attach(bus)
    bus.emit(WorkerStopped("burst: drained", 1.0))
    [line] = out.getvalue().splitlines()
    assert "worker.stopped" in line and "succeeded=0 retried=0 dead_lettered=0" in line
    assert not line.startswith("{")


def test_wait_tier_partitions_are_summarised() -> None:
    parts = tuple(("demo.emails", p) for p in (0, 1, 2, 5)) + tuple(
        (f"demo.emails.retry.{t}", p) for t in ("1s", "10s", "500ms", "1m", "1h", "2h", "5m")
        for p in range(6)) + (("demo.images.retry.30s", 0),)
    assert summarise_partitions(parts) == [
        "demo.emails[0-2,5]",
        "demo.emails.retry.*: 7 topics, 42 partitions",
        "demo.images.retry.*: 1 topic, 1 partition",
    ]
    _, lines = _lines("info", "debug", PartitionsAssigned(parts))
    assert lines[0]["partitions"] == summarise_partitions(parts) and lines[0]["count"] == 47


def test_metrics_address_is_logged_and_a_port_in_use_names_the_option(
        capsys: pytest.CaptureFixture[str]) -> None:
    obs = install_default_listeners(EventBus(), metrics_port=0, log_level="info")
    try:
        assert obs.port
        err = capsys.readouterr().err
        assert "metrics.listening" in err and f":{obs.port}" in err
        with socket.socket() as s:
            s.bind(("0.0.0.0", 0))
            s.listen()
            taken = s.getsockname()[1]
            with pytest.raises(ConfigError) as info:
                install_default_listeners(EventBus(), metrics_port=taken)
        assert info.value.field == "metrics_port" and "already in use" in info.value.reason
    finally:
        obs.close()


# --- librdkafka's lines --------------------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_forwarder_lets_a_burst_through_then_counts_what_it_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    logger = logging.getLogger("streamjobs.kafka.test")
    fwd = _kafka_log.KafkaLogForwarder(logger, burst=3, window_s=10, clock=clock)
    caplog.set_level(logging.DEBUG, logger="streamjobs.kafka.test")
    for _ in range(50):
        fwd.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "refused")
    fwd.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-2", "refused")
    assert len(caplog.records) == 4  # 3 of client 1, 1 of client 2
    clock.now = 11
    fwd.log(logging.ERROR, "%s [%s] %s", "FAIL", "rdkafka#producer-1", "refused")
    assert caplog.records[-1].getMessage() == (
        "FAIL [rdkafka#producer-1] refused (47 similar lines left out)")


def test_forwarder_formats_nothing_when_the_logger_is_off() -> None:
    logger = logging.getLogger("streamjobs.kafka.off")
    logger.setLevel(logging.CRITICAL + 10)
    fwd = _kafka_log.KafkaLogForwarder(logger)

    class Boom:
        def __str__(self) -> str:
            raise AssertionError("formatted")

    fwd.log(logging.ERROR, "%s [%s] %s", Boom(), Boom(), Boom())


def test_every_client_gets_the_forwarder() -> None:
    conf = KafkaConfig().client_settings()
    assert conf["logger"] is _kafka_log.FORWARDER and conf["error_cb"] is _kafka_log.on_error
    assert logging.NullHandler in [type(h) for h in logging.getLogger("streamjobs").handlers]


def test_cli_shows_kafka_lines_only_at_debug() -> None:
    _kafka_log.show("info")
    assert not _kafka_log.LOGGER.isEnabledFor(logging.CRITICAL)
    _kafka_log.show("debug")
    assert _kafka_log.LOGGER.isEnabledFor(logging.DEBUG)


# --- handlers ------------------------------------------------------------------------------

def test_bad_handlers_are_refused_at_registration() -> None:
    app = App(name="t")
    with pytest.raises(ConfigError, match=r"handlers\.x: 42 is not callable"):
        app.job("x")(42)  # type: ignore[type-var]
    with pytest.raises(ConfigError, match=r"one_arg\(payload.*\) cannot be called as handler"):
        @app.job("y")
        def one_arg(payload: dict[str, Any]) -> None: ...
    check_handler("z", lambda payload, ctx, extra=None: None)  # defaults are fine
    check_handler("z", print)  # signature-less builtins are let through


# --- librdkafka settings from the CLI -----------------------------------------------------

def test_settings_env_var_splits_on_commas_and_whitespace() -> None:
    t = _Settings()
    assert t.split_envvar_value("a.b=1, c.d=2\ne.f=x,y") == ["a.b=1", "c.d=2", "e.f=x,y"]
    assert t.convert("fetch.queue.backoff.ms = 10", None, None) == ("fetch.queue.backoff.ms",
                                                                      "10")


def test_bad_librdkafka_key_names_the_field_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        KafkaConfig(consumer_config={"fetch.queue.backof.ms": "10"})
    assert info.value.field == "consumer_config" and "fetch.queue.backof.ms" in info.value.reason
    with pytest.raises(ConfigError, match=r"producer_config: linger\.ms=soon: Invalid value"):
        KafkaConfig(producer_config={"linger.ms": "soon"})
    with pytest.raises(ConfigError, match=r"consumer_config: .*fetch.max.bytes.*must be >="):
        KafkaConfig(consumer_config={"fetch.max.bytes": "500"})  # < message.max.bytes
    ok = KafkaConfig(consumer_config={"fetch.max.bytes": "5000", "message.max.bytes": "4000"},
                     producer_config={"linger.ms": "20"})
    assert ok.role_settings("consumer") == {"fetch.max.bytes": "5000", "message.max.bytes": "4000"}
    assert ok.role_settings("producer") == {"linger.ms": "20"}
    assert ok.role_settings("admin") == {}


def test_worker_consumer_defaults_are_the_benchmarks_and_user_settings_win() -> None:
    from streamjobs._worker import Worker, WorkerSettings
    from tests.apps.tasks import app

    plain = Worker(app, WorkerSettings(job_types=("task",)), KafkaConfig()).consumer_settings()
    assert plain["fetch.queue.backoff.ms"] == 10  # as bench/worker_throughput.py measures
    cli = KafkaConfig(consumer_config={"fetch.queue.backoff.ms": "50", "fetch.wait.max.ms": "99"})
    conf = Worker(app, WorkerSettings(job_types=("task",)), cli).consumer_settings()
    assert conf["fetch.queue.backoff.ms"] == "50" and conf["fetch.wait.max.ms"] == "99"
    code = WorkerSettings(job_types=("task",), consumer_config={"fetch.queue.backoff.ms": 7})
    assert Worker(app, code, cli).consumer_settings()["fetch.queue.backoff.ms"] == 7


def test_log_format_auto_is_console_on_a_terminal_and_json_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from streamjobs.cli.worker import _log_json

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert (_log_json("auto"), _log_json("json"), _log_json("console")) == (False, True, False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert _log_json("auto") is True


def test_library_reads_the_same_settings_variables_as_the_cli() -> None:
    env = {"STREAMJOBS_CONSUMER_CONFIG": "fetch.wait.max.ms=50, fetch.min.bytes=1",
           "STREAMJOBS_PRODUCER_CONFIG": "linger.ms=20"}
    config = KafkaConfig.from_env(env)
    assert config.role_settings("consumer") == {"fetch.wait.max.ms": "50",
                                                "fetch.min.bytes": "1"}
    assert config.role_settings("producer") == {"linger.ms": "20"}
    with pytest.raises(ConfigError, match="consumer_config: 'oops' is not KEY=VALUE"):
        KafkaConfig.from_env({"STREAMJOBS_CONSUMER_CONFIG": "oops"})
