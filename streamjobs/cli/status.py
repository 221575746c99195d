"""``streamjobs status JOB_ID``: a job's timeline from the status topic (or the dashboard).

Without ``--url`` it reads only the status partition the id hashes to; with it, it asks the
dashboard server's index (``GET {url}/api/jobs/{id}``). Exit 3 when nothing is known of the job.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

import click
import orjson

from .._config import KafkaConfig
from .._names import status_topic
from .._status.lookup import Follower
from .._status.record import Transition
from .._status.timeline import JobStatus
from ..errors import TopicNotFound
from ._common import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    exit_on_errors,
    fail,
    json_option,
    kafka_options,
    print_json,
)

__all__ = ["command", "describe_where", "render"]

EXIT_INTERRUPTED = 130


@click.command()
@click.argument("job_id", envvar="STREAMJOBS_STATUS_JOB_ID")
@click.option("--watch", is_flag=True, envvar="STREAMJOBS_STATUS_WATCH",
              help="Follow the job until it succeeds or is dead-lettered (or Ctrl-C).")
@click.option("--url", envvar="STREAMJOBS_WEB_URL", default=None,
              help="Ask the dashboard server at this URL instead of reading Kafka.")
@click.option("--token", envvar="STREAMJOBS_WEB_TOKEN", default=None,
              help="The dashboard's access token (prefer the environment variable).")
@click.option("--topic-prefix", envvar="STREAMJOBS_TOPIC_PREFIX", default="",
              help="Prefix of the status topic (as of every catalogue topic).")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              envvar="STREAMJOBS_STATUS_TIMEOUT",
              help="Seconds to wait for Kafka or the dashboard to answer.")
@json_option
@kafka_options
def command(kafka: KafkaConfig, require_broker: Callable[[], None], job_id: str, watch: bool,
            url: str | None, token: str | None, topic_prefix: str, timeout: float,
            as_json: bool) -> None:
    """Show the timeline of job JOB_ID (state, attempts, times, worker, error, where its
    record is now). --json: the status as JSON (with --watch: one JSON line per change)."""
    try:
        if url:
            _from_server(url.rstrip("/"), job_id, token, watch, timeout, as_json)
        else:
            require_broker()  # --url needs no Kafka
            _from_kafka(kafka, job_id, status_topic(topic_prefix), watch, timeout, as_json)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


def _unknown(job_id: str) -> None:
    fail(f"job {job_id} is not known to the status topic (job types recording `failures` "
         f"appear once they fail; `none` never)", EXIT_NOT_FOUND)


def _from_kafka(kafka: KafkaConfig, job_id: str, topic: str, watch: bool, timeout: float,
                as_json: bool) -> None:
    with exit_on_errors():
        try:
            follower = Follower(kafka, job_id, topic=topic, timeout=timeout)
        except TopicNotFound:
            fail(f"status topic {topic!r} not found (created by `streamjobs topics apply`; "
                 f"is --topic-prefix right?)", EXIT_NOT_FOUND)
    with follower, exit_on_errors():
        _report(job_id, follower.read_to_end(timeout), lambda: follower.poll(0.5), watch,
                as_json)


def _from_server(url: str, job_id: str, token: str | None, watch: bool, timeout: float,
                 as_json: bool) -> None:
    def later() -> JobStatus | None:
        time.sleep(1.0)
        return _fetch(url, job_id, token, timeout)

    _report(job_id, _fetch(url, job_id, token, timeout), later, watch, as_json)


def _report(job_id: str, status: JobStatus | None, updates: Callable[[], JobStatus | None],
            watch: bool, as_json: bool) -> None:
    """Show ``status``; with ``watch``, also each change ``updates()`` brings until a final
    state."""
    if not watch:
        if status is None:
            _unknown(job_id)
        assert status is not None
        _show(status, as_json)
        return
    shown = _show_changes(None, status, as_json)
    if status is None and not as_json:
        click.echo(f"waiting for job {job_id} ...", err=True)
    while status is None or not status.final:
        changed = updates()
        if changed is not None and changed != status:
            shown = _show_changes(shown, changed, as_json)
            status = changed


def _fetch(url: str, job_id: str, token: str | None, timeout: float) -> JobStatus | None:
    req = urllib.request.Request(f"{url}/api/jobs/{urllib.parse.quote(job_id, safe='')}",
                                 headers={"Accept": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return JobStatus.from_dict(orjson.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        fail(f"{url} answered {exc.code} {exc.reason}"
             f"{' (check STREAMJOBS_WEB_TOKEN)' if exc.code in (401, 403) else ''}",
             EXIT_FAILURE)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"dashboard at {url} unreachable: {reason}", EXIT_UNREACHABLE)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        fail(f"{url} did not answer with a job status ({exc})", EXIT_FAILURE)


# -- output ---------------------------------------------------------------------------------

def _show(status: JobStatus, as_json: bool) -> None:
    if as_json:
        print_json(status.as_dict())
    else:
        for line in render(status):
            click.echo(line)


def _show_changes(shown: JobStatus | None, status: JobStatus | None,
                  as_json: bool) -> JobStatus | None:
    """Print what ``status`` adds to ``shown`` (all of it the first time)."""
    if status is None:
        return shown
    if as_json:
        click.echo(orjson.dumps(status.as_dict()).decode())
        return status
    if shown is None:
        _show(status, False)
        return status
    for t in status.transitions[len(shown.transitions):]:
        click.echo(_line(t))
    if len(status.transitions) <= len(shown.transitions) and status.transitions:
        click.echo(_line(status.transitions[-1]))  # a dead-letter record's place, say
    click.echo(f"now: {describe_where(status)}")
    return status


def _ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _line(t: Transition) -> str:
    parts = [f"  {_ts(t.at_ms)}  {t.state:<11}  attempt {t.attempt}"]
    if t.worker:
        parts.append(f"worker {t.worker}")
    if t.error_class:
        parts.append(f"{t.error_class}: {t.error_message or ''}")
    if t.state == "dead" and t.reason:
        parts.append(f"reason {t.reason}")
    if t.state in ("reprocessed", "replayed") and t.reason:
        parts.append(f"from {t.reason}")
    if t.topic:
        where = t.topic
        if t.partition is not None:
            where += f" {t.partition}:{t.offset}" if t.state == "dead" else (
                f"[{t.partition}]@{t.offset}")
        parts.append(where)
    if t.due_at_ms is not None:
        parts.append(f"due {_ts(t.due_at_ms)}")
    return "  ".join(parts)


def describe_where(status: JobStatus) -> str:
    """Where the job's record is now, in words."""
    t = status.last
    if t.state == "succeeded":
        return f"succeeded (ran from {t.topic}[{t.partition}]@{t.offset})"
    if t.state == "started":
        return f"running on {t.worker} (attempt {t.attempt})"
    if t.state == "retrying":
        return f"waiting in {t.topic} until {_ts(t.due_at_ms)} for attempt {t.attempt + 1}"
    if t.state == "dead":
        if t.partition is None:
            return f"dead-lettered to {t.topic} ({t.reason})"
        return (f"dead-lettered ({t.reason}): `streamjobs dlq show {t.partition}:{t.offset} "
                f"--topic {t.topic}`")
    if t.due_at_ms is not None:
        return f"waiting in {t.topic} until {_ts(t.due_at_ms)}"
    return f"queued in {t.topic}" if t.topic else "queued"


def render(status: JobStatus) -> list[str]:
    head = (f"job {status.job_id}  type {status.job_type or '?'}  state {status.state}  "
            f"attempts {status.attempts}")
    return [head, *(_line(t) for t in status.transitions), f"now: {describe_where(status)}"]
