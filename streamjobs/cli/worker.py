"""``streamjobs worker MODULE:APP``: run the handlers of an app.

Thin: builds ``WorkerSettings`` from options (each has a ``STREAMJOBS_*`` variable), installs
the default listeners (logs, metrics, health) and runs ``streamjobs.worker.run_worker``, or,
with ``--processes P``, supervises P such workers as child processes.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

from ..config import KafkaConfig
from ..errors import ConfigError
from ._common import EXIT_USAGE, fail, handle_errors, kafka_options

__all__ = ["command", "load_app"]


def load_app(target: str) -> Any:
    """Import ``module:attribute`` (``module`` alone means ``module:app``)."""
    module_name, _, attr = target.partition(":")
    if not module_name:
        fail(f"invalid app {target!r}: expected MODULE:APP", EXIT_USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the app lives in the project
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            fail(f"cannot import {module_name!r}: {exc}", EXIT_USAGE)
        raise
    from ..worker import App

    app = getattr(module, attr or "app", None)
    if not isinstance(app, App):
        fail(f"{target!r} is not a streamjobs App", EXIT_USAGE)
    return app


@click.command("worker")
@click.argument("app_target", metavar="MODULE:APP", envvar="STREAMJOBS_APP")
@click.option("--concurrency", "-c", type=int, default=8, show_default=True,
              envvar="STREAMJOBS_CONCURRENCY", help="Jobs run at once (threads / async tasks).")
@click.option("--job-types", envvar="STREAMJOBS_JOB_TYPES", default="",
              help="Comma-separated job types to run. [default: every handled type]")
@click.option("--group-id", envvar="STREAMJOBS_GROUP_ID", default=None,
              help="Consumer group. [default: streamjobs-<app name or module>]")
@click.option("--grace-period", type=float, default=30.0, show_default=True,
              envvar="STREAMJOBS_GRACE_PERIOD",
              help="Seconds running jobs get to finish on shutdown or revocation.")
@click.option("--metrics-port", type=int, default=9400, show_default=True,
              envvar="STREAMJOBS_METRICS_PORT",
              help="Port of /metrics, /healthz, /readyz; 0 disables the server. With "
                   "--processes, child i uses port+i.")
@click.option("--ordering", type=click.Choice(["partition", "key", "unordered"]),
              default="partition", show_default=True, envvar="STREAMJOBS_ORDERING",
              help="partition: one job of a partition at a time, in order; key: same key "
                   "never concurrent; unordered.")
@click.option("--max-in-flight", type=int, default=None, envvar="STREAMJOBS_MAX_IN_FLIGHT",
              help="Records taken and not finished before partitions pause. "
                   "[default: max(5000, 4 x concurrency)]")
@click.option("--group-protocol", type=click.Choice(["classic", "consumer"]), default="classic",
              show_default=True, envvar="STREAMJOBS_GROUP_PROTOCOL",
              help="classic (cooperative-sticky) or consumer (KIP-848).")
@click.option("--max-poll-interval-ms", type=int, default=300_000, show_default=True,
              envvar="STREAMJOBS_MAX_POLL_INTERVAL_MS")
@click.option("--session-timeout-ms", type=int, default=45_000, show_default=True,
              envvar="STREAMJOBS_SESSION_TIMEOUT_MS",
              help="Classic protocol: a silent member is expelled after this long.")
@click.option("--topic-prefix", envvar="STREAMJOBS_TOPIC_PREFIX", default=None,
              help="Prefix of every catalogue topic (overrides the app's).")
@click.option("--processes", "-p", type=int, default=1, show_default=True,
              envvar="STREAMJOBS_PROCESSES",
              help="Run P worker processes under a supervisor that replaces crashed ones.")
@click.option("--burst", is_flag=True, envvar="STREAMJOBS_BURST",
              help="Exit 0 once all assigned partitions are drained and nothing is in flight.")
@click.option("--schedules/--no-schedules", default=True, show_default=True,
              envvar="STREAMJOBS_SCHEDULES",
              help="Take part in firing the catalogue's schedules (one worker fires each tick).")
@click.option("--log-level", default="info", show_default=True, envvar="STREAMJOBS_LOG_LEVEL",
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@kafka_options
@handle_errors
def command(app_target: str, concurrency: int, job_types: str, group_id: str | None,
            grace_period: float, metrics_port: int, ordering: str, max_in_flight: int | None,
            group_protocol: str, max_poll_interval_ms: int, session_timeout_ms: int,
            topic_prefix: str | None,
            processes: int, burst: bool, schedules: bool, log_level: str,
            kafka: KafkaConfig) -> None:
    """Run the job handlers of MODULE:APP until SIGTERM/SIGINT (a second signal exits at
    once)."""
    if processes < 1:
        fail("invalid option processes: must be >= 1", EXIT_USAGE)
    if processes > 1:
        from ..worker.supervisor import supervise

        sys.exit(supervise(processes, sys.argv[1:], metrics_port=metrics_port,
                           grace_period=grace_period))
    from ..events import EventBus
    from ..worker import WorkerSettings, run_worker

    app = load_app(app_target)
    if topic_prefix is not None:
        app.topic_prefix = topic_prefix
    name = app.name or app_target.partition(":")[0]
    try:
        settings = WorkerSettings(
            concurrency=concurrency, max_in_flight=max_in_flight, ordering=ordering,
            group_id=group_id or f"streamjobs-{name}",
            job_types=tuple(t.strip() for t in job_types.split(",") if t.strip()),
            grace_period=grace_period, group_protocol=group_protocol,
            max_poll_interval_ms=max_poll_interval_ms,
            session_timeout_ms=session_timeout_ms, burst=burst, schedules=schedules)
    except ConfigError as exc:
        fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
    from ..listeners import install_default_listeners

    bus = EventBus()
    obs = install_default_listeners(bus, metrics_port=metrics_port or None,
                                    log_level=log_level.lower())
    from ..worker.process import tune_gc

    tune_gc()
    try:
        code = run_worker(app, settings, kafka, bus)
    finally:
        obs.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Handler threads that outlived the grace period must not hold the exit.
    os._exit(code)
