"""``streamjobs worker MODULE:APP``: run the handlers of an app.

Thin: builds ``WorkerSettings`` from options (each has a ``STREAMJOBS_*`` variable), loads and
checks the app (every mistake one line), installs the listeners ``--listeners`` asks for (logs,
metrics, health) and runs ``streamjobs._worker.run_worker``, or, with ``--processes P``,
supervises P such workers as child processes.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from .._config import KafkaConfig
from .._schemas.registry import RegistryConfig, SchemaRegistry
from .._settings import Settings
from ..errors import ConfigError, StreamjobsError
from ..listeners._health import HealthListener, LivenessFile
from ..listeners._logging import JOB_LEVELS
from ._common import (
    EXIT_FAILURE,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    fail,
    handle_errors,
    kafka_options,
    registry_options,
)

__all__ = ["command", "load_app"]


def load_app(target: str) -> Any:
    """Import ``module:attribute`` (``module`` alone means ``module:app``). Every failure is one
    line naming MODULE:APP or the file and line: exit 2 when the argument names nothing, 1 when
    the user's module fails to import."""
    module_name, _, attr = target.partition(":")
    attr = attr or "app"
    if not module_name or not all(p.isidentifier() for p in [*module_name.split("."), attr]):
        fail(f"invalid MODULE:APP {target!r}: expected e.g. myproject.jobs:app", EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the app lives in the project
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            fail(f"MODULE:APP {target!r}: no module named {exc.name!r} (run from the project "
                 "directory or set PYTHONPATH)", EXIT_USAGE)
        fail(_import_failure(module_name, exc), EXIT_FAILURE)
    except SyntaxError as exc:
        fail(f"cannot import {module_name!r}: syntax error in {exc.filename} line {exc.lineno}: "
             f"{exc.msg}", EXIT_FAILURE)
    except Exception as exc:  # the user's module raised while importing
        fail(_import_failure(module_name, exc), EXIT_FAILURE)
    from .._worker import App

    if not hasattr(module, attr):
        fail(f"MODULE:APP {target!r}: {getattr(module, '__file__', module_name)} has no "
             f"attribute {attr!r}", EXIT_USAGE)
    app = getattr(module, attr)
    if not isinstance(app, App):
        fail(f"MODULE:APP {target!r} is a {type(app).__name__}, not a streamjobs App",
             EXIT_USAGE)
    return app


def _import_failure(module_name: str, exc: BaseException) -> str:
    """Where the user's code raised (the innermost frame outside importlib and streamjobs: a
    check of ours that refused a handler names the user's line that registered it) and what."""
    ours = str(Path(__file__).resolve().parent.parent)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith(("<frozen ", ours))]
    where = f" ({frames[-1].filename} line {frames[-1].lineno})" if frames else ""
    return f"importing {module_name!r} failed{where}: {type(exc).__name__}: {exc}"


def _log_json(log_format: str) -> bool:
    if log_format == "auto":
        return not sys.stderr.isatty()
    return log_format == "json"


@click.command("worker")
@click.argument("app_target", metavar="MODULE:APP", envvar="STREAMJOBS_APP")
@click.option("--concurrency", "-c", type=int, default=8, show_default=True,
              envvar="STREAMJOBS_CONCURRENCY", help="Jobs run at once (threads / async tasks).")
@click.option("--job-types", envvar="STREAMJOBS_JOB_TYPES", default="",
              help="Comma-separated job types to run. [default: every handled type]")
@click.option("--group-id", envvar="STREAMJOBS_GROUP_ID", default=None,
              help="Consumer group. [default: <topic prefix>streamjobs-<app name or module>]")
@click.option("--grace-period", type=float, default=30.0, show_default=True,
              envvar="STREAMJOBS_GRACE_PERIOD",
              help="Seconds running jobs get to finish on shutdown or revocation.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=9400, show_default=True,
              envvar="STREAMJOBS_METRICS_PORT",
              help="Port of /metrics, /healthz, /readyz; 0 picks a free port (logged). With "
                   "--processes, child i uses port+i.")
@click.option("--listeners", type=click.Choice(["default", "logs", "none"]), default="default",
              show_default=True, envvar="STREAMJOBS_LISTENERS",
              help="default: logs, metrics and the HTTP server; logs: logs only, no port; "
                   "none: nothing observes the worker (fastest).")
@click.option("--ordering", type=click.Choice(["partition", "key", "key-strict", "unordered"]),
              default="partition", show_default=True, envvar="STREAMJOBS_ORDERING",
              help="partition: one job of a partition at a time, in order; key: same key "
                   "never concurrent; key-strict: key, and a retried job keeps its key's "
                   "order; unordered.")
@click.option("--key-dead-letter", type=click.Choice(["release", "hold"]), default="release",
              show_default=True, envvar="STREAMJOBS_KEY_DEAD_LETTER",
              help="key-strict: once the job they wait for is dead-lettered, the jobs behind "
                   "it run (release) or are dead-lettered behind it (hold).")
@click.option("--exactly-once", is_flag=True, envvar="STREAMJOBS_EXACTLY_ONCE",
              help="Kafka transactions: follow-ups, retry/dead-letter records and offsets "
                   "commit atomically per batch (read_committed consumers); also "
                   "App(exactly_once=True).")
@click.option("--max-in-flight", type=int, default=None, envvar="STREAMJOBS_MAX_IN_FLIGHT",
              help="Records taken and not finished before the worker stops taking more "
                   "(partitions pause if that lasts 0.5 s). "
                   "[default: max(5000, 20 x concurrency)]")
@click.option("--group-protocol", type=click.Choice(["classic", "consumer"]), default="classic",
              show_default=True, envvar="STREAMJOBS_GROUP_PROTOCOL",
              help="classic (cooperative-sticky) or consumer (KIP-848).")
@click.option("--max-poll-interval-ms", type=int, default=300_000, show_default=True,
              envvar="STREAMJOBS_MAX_POLL_INTERVAL_MS")
@click.option("--session-timeout-ms", type=int, default=45_000, show_default=True,
              envvar="STREAMJOBS_SESSION_TIMEOUT_MS",
              help="Classic protocol: a silent member is expelled after this long.")
@click.option("--topic-prefix", envvar="STREAMJOBS_TOPIC_PREFIX", default=None,
              help="Prefix of every catalogue topic and of the default group id (overrides "
                   "the app's).")
@click.option("--processes", "-p", type=int, default=1, show_default=True,
              envvar="STREAMJOBS_PROCESSES",
              help="Run P worker processes under a supervisor that replaces crashed ones.")
@click.option("--stuck-limit", type=click.IntRange(0), default=0, show_default=True,
              envvar="STREAMJOBS_STUCK_LIMIT",
              help="Sync handler threads stuck past their timeout that are replaced; at this "
                   "many the worker is not live. 0: --concurrency.")
@click.option("--inline-under", type=click.FloatRange(0, 10_000), default=20.0,
              show_default=True, envvar="STREAMJOBS_INLINE_UNDER", metavar="MICROSECONDS",
              help="Sync handlers (no timeout) measured under this many µs per job run on "
                   "the poll thread, not the pool. 0: never.")
@click.option("--liveness-ttl", type=click.FloatRange(0, min_open=True), default=30.0,
              show_default=True, envvar="STREAMJOBS_LIVENESS_TTL",
              help="Seconds without a live heartbeat before /healthz fails (and --processes "
                   "replaces the child).")
@click.option("--burst", is_flag=True, envvar="STREAMJOBS_BURST",
              help="Exit 0 once all assigned partitions are drained and nothing is in flight.")
@click.option("--schedules/--no-schedules", default=True, show_default=True,
              envvar="STREAMJOBS_SCHEDULES",
              help="Take part in firing the catalogue's schedules (one worker fires each tick).")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto",
              show_default=True, envvar="STREAMJOBS_LOG_FORMAT",
              help="console (readable) or json (one object per line); auto: console on a "
                   "terminal, json otherwise.")
@click.option("--job-log-level", type=click.Choice(JOB_LEVELS), default="debug",
              show_default=True, envvar="STREAMJOBS_JOB_LOG_LEVEL",
              help="Level of the line per succeeded job (off: none). Failures are always "
                   "logged: warning, dead letters error.")
@kafka_options
@registry_options
@handle_errors
def command(app_target: str, concurrency: int, job_types: str, group_id: str | None,
            grace_period: float, metrics_port: int, ordering: str, key_dead_letter: str,
            exactly_once: bool,
            max_in_flight: int | None,
            group_protocol: str, max_poll_interval_ms: int, session_timeout_ms: int,
            topic_prefix: str | None, processes: int, stuck_limit: int, inline_under: float,
            liveness_ttl: float,
            burst: bool, schedules: bool, listeners: str,
            log_format: str, job_log_level: str, log_level: str, connect_timeout: float,
            kafka: KafkaConfig, registry: RegistryConfig | None) -> None:
    """Run the job handlers of MODULE:APP until SIGTERM/SIGINT (a second signal exits at
    once)."""
    if processes < 1:
        fail("invalid option processes: must be >= 1", EXIT_USAGE)
    from .._worker import WorkerSettings, run_worker
    from ..events import EventBus

    app = load_app(app_target)
    if topic_prefix is not None:
        try:
            app.topic_prefix = Settings(topic_prefix).topic_prefix
        except ConfigError as exc:
            fail(f"invalid option topic-prefix: {exc.reason}", EXIT_USAGE)
    try:
        settings = WorkerSettings(
            concurrency=concurrency, max_in_flight=max_in_flight, ordering=ordering,
            group_id=group_id or app.default_group_id(app_target.partition(":")[0]),
            job_types=tuple(t.strip() for t in job_types.split(",") if t.strip()),
            grace_period=grace_period, group_protocol=group_protocol,
            max_poll_interval_ms=max_poll_interval_ms,
            session_timeout_ms=session_timeout_ms, burst=burst, connect_timeout=connect_timeout,
            schedules=schedules, stuck_limit=stuck_limit, inline_under=inline_under,
            exactly_once=bool(exactly_once), key_dead_letter=key_dead_letter)
    except ConfigError as exc:
        fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
    try:
        app.check(settings.job_types)  # before any port is taken or client created
    except StreamjobsError as exc:
        fail(f"app {app_target!r}: {exc}", EXIT_FAILURE)
    # Wrong registry credentials or CA would send every registry-framed record down the retry
    # ladder to the dead-letter topic; an unreachable registry is left to that ladder.
    refused = SchemaRegistry(registry).refusal() if registry is not None else None
    if refused is not None:
        fail(refused, EXIT_UNREACHABLE)
    if processes > 1:  # checked here, so a broken app is one line, not a crash loop
        from .._worker.supervisor import supervise

        sys.exit(supervise(processes, sys.argv[1:], metrics_port=metrics_port,
                           grace_period=grace_period, liveness_ttl=liveness_ttl))
    from ..listeners import install_default_listeners, install_log_listener

    bus = EventBus()
    obs = None
    log_json = _log_json(log_format)
    if listeners == "default":
        try:
            obs = install_default_listeners(bus, metrics_port=metrics_port, log_level=log_level,
                                            log_json=log_json, job_log_level=job_log_level,
                                            kafka=kafka, topic_prefix=app.topic_prefix,
                                            liveness_ttl=liveness_ttl)
        except ConfigError as exc:
            fail(f"--metrics-port {exc.reason}", EXIT_USAGE)
    elif listeners == "logs":
        install_log_listener(bus, log_level=log_level, log_json=log_json,
                             job_log_level=job_log_level)
    from .._worker.supervisor import LIVENESS_FILE_ENV

    liveness_file = os.environ.get(LIVENESS_FILE_ENV)
    if liveness_file:  # a child of --processes: its supervisor reads liveness from this file
        health = obs.health if obs is not None else HealthListener(liveness_ttl)
        if obs is None:
            health.attach(bus)
        LivenessFile(liveness_file, health).attach(bus)
    from .._worker.process import tune_gc

    tune_gc()
    try:
        code = run_worker(app, settings, kafka, bus, registry=registry)
    finally:
        if obs is not None:
            obs.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Handler threads that outlived the grace period must not hold the exit.
    os._exit(code)
