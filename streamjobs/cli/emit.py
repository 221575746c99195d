"""``streamjobs emit``: send one job (``TYPE --json '{...}'``) or a JSON Lines file of jobs.

Everything is parsed and validated before anything is sent, so a bad line sends nothing.
Prints the job ids, one per line (``--format json``: one JSON object per line), once the broker
acknowledged every record: exit 0 means the broker has them.
Exit codes: 0 ok; 1 invalid payload, record too large or delivery failed; 2 bad usage or
unparseable JSON (with the line number); 3 unknown job type; 4 Kafka unreachable.
See docs/producer.md.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import click
import orjson

from .._avro.codec import Codec
from .._config import KafkaConfig
from .._durations import parse_duration
from .._schemas.catalogue import Catalogue
from .._schemas.registry import RegistryConfig, SchemaRegistry
from ..errors import (
    BrokerUnavailable,
    PayloadError,
    RegistryUnavailable,
    StreamjobsError,
    UnknownJobType,
)
from ._common import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    fail,
    kafka_options,
    load_catalogue,
    registry_options,
    schemas_option,
)

__all__ = ["command"]

_LINE_KEYS = frozenset({"type", "payload", "key", "headers", "delay", "job_id", "priority"})


@dataclass
class _Line:
    number: int | None  # line in --file; None for --json
    job_type: str
    payload: dict[str, Any]
    key: str | None = None
    headers: dict[str, str] | None = None
    delay: float | None = None
    job_id: str = ""
    priority: str | None = None  # a priority lane of the job type


def _where(line: _Line) -> str:
    return "" if line.number is None else f"line {line.number}: "


def _duration(text: Any, where: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        fail(f"{where}{exc}", EXIT_USAGE)


def _parse_file(stream: IO[str], default_type: str | None) -> list[_Line]:
    lines: list[_Line] = []
    for number, text in enumerate(stream, 1):
        if not text.strip():
            continue
        where = f"line {number}: "
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            fail(f"{where}invalid JSON: {exc}", EXIT_USAGE)
        if not isinstance(doc, dict):
            fail(f"{where}expected a JSON object like "
                 '{"type": ..., "payload": {...}}', EXIT_USAGE)
        unknown = set(doc) - _LINE_KEYS
        if unknown:
            fail(f"{where}unknown key {sorted(unknown)[0]!r} (allowed: "
                 f"{', '.join(sorted(_LINE_KEYS))})", EXIT_USAGE)
        job_type = doc.get("type", default_type)
        if not isinstance(job_type, str):
            fail(f"{where}'type' missing (or give TYPE as the default)", EXIT_USAGE)
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            fail(f"{where}'payload' must be a JSON object", EXIT_USAGE)
        key = doc.get("key")
        if key is not None and not isinstance(key, str):
            fail(f"{where}'key' must be a string", EXIT_USAGE)
        headers = doc.get("headers")
        if headers is not None and not (isinstance(headers, dict) and all(
                isinstance(v, str) for v in headers.values())):
            fail(f"{where}'headers' must be an object of strings", EXIT_USAGE)
        delay = None if doc.get("delay") is None else _duration(doc["delay"], where)
        job_id = doc.get("job_id")
        if job_id is not None:
            _check_job_id(job_id, where)
        priority = doc.get("priority")
        if priority is not None and not isinstance(priority, str):
            fail(f"{where}'priority' must be a string", EXIT_USAGE)
        lines.append(_Line(number, job_type, payload, key, headers, delay, job_id=job_id or "",
                           priority=priority))
    return lines


def _check_job_id(value: Any, where: str) -> None:
    from .._headers import check_job_id

    try:
        check_job_id(value)
    except ValueError as exc:
        fail(f"{where}{exc}", EXIT_USAGE)


def _parse_headers(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            fail(f"--header {pair!r}: expected NAME=VALUE", EXIT_USAGE)
        out[name] = value
    return out


def _validate(catalogue: Catalogue, lines: list[_Line], registry: SchemaRegistry | None) -> None:
    """Encode every payload once before connecting: errors name the line and the field."""
    codec = Codec(catalogue, registry=registry)
    for line in lines:
        try:
            codec.encode(line.job_type, line.payload)
        except UnknownJobType as exc:
            fail(f"{_where(line)}{exc}", EXIT_NOT_FOUND)
        except PayloadError as exc:
            fail(f"{_where(line)}{exc}", EXIT_FAILURE)


def _show_progress(progress: bool | None, count: int) -> bool:
    if progress is not None:
        return progress
    return count > 1 and sys.stderr.isatty()


@click.command("emit")
@click.argument("job_type", metavar="[TYPE]", required=False, envvar="STREAMJOBS_EMIT_TYPE")
@click.option("--json", "payload_json", metavar="JSON", envvar="STREAMJOBS_EMIT_JSON",
              help="The payload: a JSON object (needs TYPE).")
@click.option("--file", "file", type=click.File("r", encoding="utf-8"),
              envvar="STREAMJOBS_EMIT_FILE",
              help='JSON Lines, one job per line: {"type": ..., "payload": {...}, "key": ..., '
                   '"headers": {...}, "delay": "30s"}; "-" reads stdin. TYPE is the default '
                   "type.")
@click.option("--key", envvar="STREAMJOBS_EMIT_KEY",
              help="Record key. [default: the job type's key_field]")
@click.option("--header", "header", multiple=True, metavar="NAME=VALUE",
              envvar="STREAMJOBS_EMIT_HEADERS", help="Extra header; repeatable.")
@click.option("--delay", envvar="STREAMJOBS_EMIT_DELAY",
              help="Run no earlier than this from now: 250ms, 30s, 5m, 1h, 2d.")
@click.option("--job-id", envvar="STREAMJOBS_EMIT_JOB_ID", metavar="ID",
              help="The job's id instead of a new UUIDv7 (an idempotency key: a type unique "
                   "by job_id runs one job per id within its window). With --json only; a "
                   "--file line gives its own \"job_id\".")
@click.option("--priority", envvar="STREAMJOBS_EMIT_PRIORITY", default=None,
              help="Priority lane of the job type (catalogue `priorities`); default: its "
                   "default lane. A --file line's \"priority\" wins.")
@click.option("--traceparent", envvar=["STREAMJOBS_TRACEPARENT", "TRACEPARENT"],
              help="W3C trace context to propagate.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              envvar="STREAMJOBS_FORMAT", show_default=True,
              help="text: one job id per line; json: one JSON object per job and line.")
@click.option("--progress/--no-progress", default=None, envvar="STREAMJOBS_PROGRESS",
              help="Progress bar on stderr. [default: when stderr is a terminal]")
@click.option("--delivery-timeout", type=float, default=30.0, show_default=True,
              envvar="STREAMJOBS_DELIVERY_TIMEOUT",
              help="Seconds a record may wait for the broker's acknowledgement.")
@schemas_option
@kafka_options
@registry_options
def command(job_type: str | None, payload_json: str | None, file: IO[str] | None,
            key: str | None, header: tuple[str, ...], delay: str | None, job_id: str | None,
            priority: str | None, traceparent: str | None, fmt: str, progress: bool | None,
            connect_timeout: float,
            delivery_timeout: float, schemas_dir: str, kafka: KafkaConfig,
            registry: RegistryConfig | None) -> None:
    """Emit jobs: `streamjobs emit TYPE --json '{...}'` or `streamjobs emit --file jobs.jsonl`."""
    from .._producer import check_traceparent  # keeps `streamjobs --help` light

    if (payload_json is None) == (file is None):
        fail("give either TYPE --json '{...}' or --file FILE", EXIT_USAGE)
    if job_id is not None:
        if file is not None:
            fail("--job-id goes with --json (a --file line gives its own \"job_id\")",
                 EXIT_USAGE)
        _check_job_id(job_id, "--job-id: ")
    extra_headers = _parse_headers(header)
    delay_s = None if delay is None else _duration(delay, "--delay: ")
    if traceparent is not None:
        try:
            check_traceparent(traceparent)
        except ValueError as exc:
            fail(str(exc), EXIT_USAGE)
    if payload_json is not None:
        if job_type is None:
            fail("TYPE is required with --json", EXIT_USAGE)
        try:
            payload = orjson.loads(payload_json)
        except orjson.JSONDecodeError as exc:
            fail(f"--json: invalid JSON: {exc}", EXIT_USAGE)
        if not isinstance(payload, dict):
            fail("--json: the payload must be a JSON object", EXIT_USAGE)
        lines = [_Line(None, job_type, payload, key, None, delay_s, job_id=job_id or "",
                       priority=priority)]
    else:
        assert file is not None
        lines = _parse_file(file, job_type)
        for line in lines:
            line.key = line.key if line.key is not None else key
            line.delay = line.delay if line.delay is not None else delay_s
            line.priority = line.priority if line.priority is not None else priority
    try:
        catalogue = load_catalogue(schemas_dir)
        schema_registry = SchemaRegistry(registry) if registry is not None else None
        _validate(catalogue, lines, schema_registry)
        _emit(catalogue, kafka, lines, extra_headers, traceparent,
              _show_progress(progress, len(lines)), connect_timeout, delivery_timeout,
              registry)
    except (BrokerUnavailable, RegistryUnavailable) as exc:
        fail(str(exc), EXIT_UNREACHABLE)
    except UnknownJobType as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    except ValueError as exc:  # a reserved header name and the like
        fail(str(exc), EXIT_USAGE)
    except StreamjobsError as exc:
        fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    for line in lines:
        if fmt == "json":
            click.echo(orjson.dumps({"id": line.job_id, "type": line.job_type,
                                     "line": line.number}).decode())
        else:
            click.echo(line.job_id)


def _emit(catalogue: Catalogue, kafka: KafkaConfig, lines: list[_Line],
          extra_headers: Mapping[str, str], traceparent: str | None, progress: bool,
          connect_timeout: float, delivery_timeout: float,
          registry: RegistryConfig | None) -> None:
    from .._producer import Producer

    producer = Producer(catalogue, kafka, connect_timeout=connect_timeout,
                        delivery_timeout=delivery_timeout, registry=registry)
    try:
        with click.progressbar(lines, label="emitting", file=sys.stderr,
                               show_pos=True) if progress else _Plain(lines) as bar:
            for line in bar:
                headers = {**extra_headers, **(line.headers or {})} or None
                try:
                    line.job_id = producer.emit(line.job_type, line.payload, key=line.key,
                                                headers=headers, traceparent=traceparent,
                                                delay=line.delay,
                                                job_id=line.job_id or None,
                                                priority=line.priority)
                except (StreamjobsError, ValueError) as exc:
                    raise _at(exc, line) from None
        producer.flush(delivery_timeout)
    finally:
        producer.close()


def _at(exc: Exception, line: _Line) -> Exception:
    if line.number is not None:
        exc.args = (f"{_where(line)}{exc}",)
    return exc


class _Plain:
    """Stands in for click.progressbar when no bar is shown."""

    def __init__(self, items: list[_Line]) -> None:
        self.items = items

    def __enter__(self) -> list[_Line]:
        return self.items

    def __exit__(self, *exc: object) -> None:
        return None
