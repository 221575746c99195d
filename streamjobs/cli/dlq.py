"""``streamjobs dlq``: inspect dead-letter topics and re-publish their records.

Exit codes: 0 ok (every dry run), 1 some records could not be re-published (no longer fit the
schema, no target, delivery failed), 2 usage, 3 topic not found, 4 Kafka unreachable.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson

from .._avro.codec import Codec
from .._config import KafkaConfig
from .._ops import dlq
from .._ops.replay import parse_when
from .._ops.reprocess import Report, Reprocessor, load_progress
from .._schemas.catalogue import Catalogue
from .._schemas.registry import RegistryConfig, SchemaRegistry
from ..errors import CatalogueError, TopicNotFound
from ._common import (
    EXIT_FAILURE,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    exit_on_errors,
    fail,
    json_option,
    kafka_options,
    load_catalogue,
    print_json,
    registry_options,
    schemas_option,
    settings,
)

__all__ = ["group"]

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def _errors() -> Iterator[None]:
    """Library errors -> one line and the documented exit code, never a traceback."""
    with exit_on_errors((ValueError, EXIT_USAGE)):
        try:
            yield
        except TopicNotFound as exc:
            fail(f"{exc} (is the job topic right? its dead letters go to <topic>.dlq)",
                 EXIT_NOT_FOUND)


def _topic_options(func: F) -> F:
    func = click.option("--all", "all_topics", is_flag=True, envvar="STREAMJOBS_DLQ_ALL",
                        help="Every job topic of the catalogue (--schemas).")(func)
    return click.option("--topic", "topics", multiple=True, envvar="STREAMJOBS_DLQ_TOPIC",
                        help="Job topic (its <topic>.dlq is read) or a .dlq topic, under "
                             "--topic-prefix; repeatable.")(func)


def _filter_options(func: F) -> F:
    opts = [
        click.option("--job-type", multiple=True, envvar="STREAMJOBS_DLQ_JOB_TYPE",
                     help="Only this job type (sj-type); repeatable."),
        click.option("--reason", multiple=True, type=click.Choice(dlq.REASONS),
                     envvar="STREAMJOBS_DLQ_REASON", help="Only this reason; repeatable."),
        click.option("--exception-class", multiple=True, envvar="STREAMJOBS_DLQ_EXCEPTION",
                     help="Only this error class (TimeoutError matches "
                          "pkg.TimeoutError); repeatable."),
        click.option("--key", multiple=True, envvar="STREAMJOBS_DLQ_KEY",
                     help="Only records with this key; repeatable."),
        click.option("--since", default=None, envvar="STREAMJOBS_DLQ_SINCE",
                     help="Dead-lettered at or after: ISO 8601 or a duration ago (2h)."),
        click.option("--until", default=None, envvar="STREAMJOBS_DLQ_UNTIL",
                     help="Dead-lettered before: ISO 8601 or a duration ago (30m)."),
        click.option("--partition", type=int, default=None, envvar="STREAMJOBS_DLQ_PARTITION",
                     help="Only this partition of the dead-letter topic."),
        click.option("--from-offset", type=int, default=None,
                     envvar="STREAMJOBS_DLQ_FROM_OFFSET", help="First offset (with --partition)."),
        click.option("--to-offset", type=int, default=None, envvar="STREAMJOBS_DLQ_TO_OFFSET",
                     help="Last offset, inclusive (with --partition)."),
    ]
    for opt in reversed(opts):
        func = opt(func)
    return func


def _filter(kw: dict[str, Any]) -> dlq.Filter:
    try:
        return dlq.Filter(
            job_types=frozenset(kw.pop("job_type")), reasons=frozenset(kw.pop("reason")),
            exception_classes=frozenset(kw.pop("exception_class")), keys=frozenset(kw.pop("key")),
            since_ms=None if kw["since"] is None else parse_when(kw["since"]),
            until_ms=None if kw["until"] is None else parse_when(kw["until"]),
            partition=kw.pop("partition"), from_offset=kw.pop("from_offset"),
            to_offset=kw.pop("to_offset"))
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)


def _catalogue(schemas_dir: str, required: bool) -> Catalogue | None:
    try:
        return load_catalogue(schemas_dir)
    except CatalogueError as exc:
        if required:
            fail(str(exc), EXIT_FAILURE)
        click.echo(f"warning: payloads not decoded: {exc}", err=True)
        return None


def _codec(cat: Catalogue | None, registry: RegistryConfig | None) -> Codec | None:
    """The codec that decodes dead letters of either framing (registry ids: ``registry``)."""
    if cat is None:
        return None
    return Codec(cat, registry=SchemaRegistry(registry) if registry is not None else None)


def _dlq_topics(topics: tuple[str, ...], all_topics: bool, schemas_dir: str
                ) -> list[tuple[str, bool]]:
    """(dead-letter topic, explicitly named) pairs; a missing --all topic is only a note."""
    if all_topics == bool(topics):
        fail("give --topic JOB_TOPIC (repeatable) or --all", EXIT_USAGE)
    if topics:
        prefix = settings()
        return [(dlq.dlq_name(prefix.topic(t)), True) for t in topics]
    cat = _catalogue(schemas_dir, required=True)
    assert cat is not None
    return [(dlq.dlq_name(t), False) for t in cat.job_topics()]


def _skip_missing(topic: str, explicit: bool) -> bool:
    if explicit:
        return False
    click.echo(f"note: {topic} does not exist (no dead letters yet?), skipped", err=True)
    return True


def _ts(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m{s % 60}s"
    return f"{s}s"


@click.group("dlq")
def group() -> None:
    """Inspect dead-letter topics and re-publish their records. See docs/dlq.md."""


@group.command()
@_topic_options
@schemas_option
@json_option
@kafka_options
def stats(kafka: KafkaConfig, topics: tuple[str, ...], all_topics: bool, schemas_dir: str,
          as_json: bool) -> None:
    """Counts by job type and reason, reprocessed/pending, age of the oldest dead letter."""
    out = []
    with _errors():
        for topic, explicit in _dlq_topics(topics, all_topics, schemas_dir):
            try:
                done = load_progress(kafka, topic)
                out.append(dlq.stats(kafka, topic, done).as_dict())
            except TopicNotFound:
                if not _skip_missing(topic, explicit):
                    raise
    if as_json:
        print_json({"topics": out})
        return
    for s in out:
        click.echo(f"{s['topic']}: {s['total']} dead letter(s), {s['reprocessed']} reprocessed, "
                   f"{s['pending']} pending; oldest {_age(s['oldest_age_s'])} ago")
        rows = [(jt, reason, n) for jt, per in sorted(s["by_type"].items())
                for reason, n in sorted(per.items())]
        if rows:
            w = max(len("JOB TYPE"), *(len(r[0]) for r in rows))
            click.echo(f"  {'JOB TYPE'.ljust(w)}  {'REASON'.ljust(15)}  COUNT")
            for jt, reason, n in rows:
                click.echo(f"  {jt.ljust(w)}  {reason.ljust(15)}  {n}")


def _print_story(s: dict[str, Any], full: bool) -> None:
    err = s["error"]
    click.echo(f"{s['ref']}  {_ts(s['dlq_at_ms'])}  {s['job_type'] or '(no type)'}  "
               f"{s['reason']}  key={s['key'] if s['key'] is not None else s['key_hex']}")
    click.echo(f"  job {s['job_id'] or '(no id)'}, created {_ts(s['created_at_ms'])}")
    if err["class"] or err["message"]:
        click.echo(f"  error: {err['class']}: {err['message']}")
    o = s["origin"]
    click.echo(f"  attempt {s['attempt'] or '-'}, from {o['topic']}[{o['partition']}]@"
               f"{o['offset']}, first failed {_ts(s['first_failure_at_ms'])}, worker "
               f"{s['worker']['host']} ({s['worker']['group']})")
    v = s["value"]
    if "payload" in v:
        payload = orjson.dumps(v["payload"]).decode()
        click.echo(f"  payload ({v['schema']} v{v['version']}): {payload}")
    else:
        click.echo(f"  undecodable ({v['problem']}): {v.get('raw_size', 0)} bytes, "
                   f"hex {v.get('raw_hex')}")
        if full:
            click.echo(f"  base64 {v.get('raw_base64')}")
    if s["fits_current_schema"] is False:
        click.echo(f"  no longer fits: {s['fit_problem']}")
    if full:
        click.echo(f"  headers: {s['headers']}")
        if err.get("trace"):
            click.echo("  trace:\n    " + err["trace"].rstrip().replace("\n", "\n    "))


@group.command("list")
@_topic_options
@_filter_options
@click.option("--limit", type=int, default=100, show_default=True, envvar="STREAMJOBS_DLQ_LIMIT",
              help="Show at most N records (0: all).")
@schemas_option
@json_option
@kafka_options
@registry_options
def list_(kafka: KafkaConfig, topics: tuple[str, ...], all_topics: bool, schemas_dir: str,
          limit: int, as_json: bool, registry: RegistryConfig | None, **kw: Any) -> None:
    """Dead letters with their error story and decoded payload."""
    flt = _filter(kw)
    cat = _catalogue(schemas_dir, required=False)
    describer = dlq.Describer(_codec(cat, registry))
    stories: list[dict[str, Any]] = []
    truncated = False
    with _errors():
        for topic, explicit in _dlq_topics(topics, all_topics, schemas_dir):
            try:
                _, records = dlq.read(kafka, topic, flt)
            except TopicNotFound:
                if not _skip_missing(topic, explicit):
                    raise
                continue
            for dl in records:
                if limit and len(stories) >= limit:
                    truncated = True
                    break
                stories.append(describer.story(dl, trace=False))
    if as_json:
        print_json({"records": stories, "truncated": truncated})
        return
    for s in stories:
        _print_story(s, full=False)
    if truncated:
        click.echo(f"(first {limit} shown; use --limit or filters)")
    elif not stories:
        click.echo("no dead letters match")


@group.command()
@click.option("--topic", default=None, envvar="STREAMJOBS_DLQ_TOPIC",
              help="Job topic or its .dlq topic, under --topic-prefix (not needed when RECORD "
                   "names it).")
@click.argument("where", metavar="RECORD", envvar="STREAMJOBS_DLQ_RECORD")
@schemas_option
@json_option
@kafka_options
@registry_options
def show(kafka: KafkaConfig, topic: str | None, where: str, schemas_dir: str,
         as_json: bool, registry: RegistryConfig | None) -> None:
    """One dead letter in full: error and trace, origin, headers, payload. RECORD is what
    `dlq list` prints (TOPIC/PARTITION/OFFSET) or PARTITION:OFFSET with --topic."""
    try:
        named, part, off = dlq.parse_ref(where)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    if named is None and topic is None:
        fail(f"{where!r} names no topic: give --topic JOB_TOPIC or TOPIC/PARTITION/OFFSET",
             EXIT_USAGE)
    wanted = dlq.dlq_name(settings().topic(topic)) if topic is not None else None
    if named is not None and wanted is not None and named != wanted:
        fail(f"{where!r} is a record of {named}, but --topic means {wanted}", EXIT_USAGE)
    cat = _catalogue(schemas_dir, required=False)
    name = named or wanted
    assert name is not None
    with _errors():
        dl = dlq.fetch(kafka, name, part, off)
    if dl is None:
        fail(f"no record at {name} partition {part} offset {off}", EXIT_NOT_FOUND)
    story = dlq.Describer(_codec(cat, registry)).story(dl)
    if as_json:
        print_json(story)
    else:
        _print_story(story, full=True)


@group.command()
@_topic_options
@_filter_options
@click.option("--limit", type=int, default=None, envvar="STREAMJOBS_DLQ_LIMIT",
              help="Handle at most N matching records not yet reprocessed.")
@click.option("--execute", is_flag=True, envvar="STREAMJOBS_DLQ_EXECUTE",
              help="Re-publish. Without it: a dry run that changes nothing.")
@click.option("--rate", type=float, default=None, envvar="STREAMJOBS_DLQ_RATE",
              help="At most N records per second.")
@click.option("--force-raw", is_flag=True, envvar="STREAMJOBS_DLQ_FORCE_RAW",
              help="Also re-publish records that fail re-validation, bytes as they are.")
@schemas_option
@json_option
@kafka_options
@registry_options
def reprocess(kafka: KafkaConfig, topics: tuple[str, ...], all_topics: bool, schemas_dir: str,
              limit: int | None, execute: bool, rate: float | None, force_raw: bool,
              as_json: bool, registry: RegistryConfig | None, **kw: Any) -> None:
    """Re-publish matching dead letters to their job topic (attempt 1, original key and
    value, sj-reprocessed-from), each at most once across runs. Dry run by default."""
    flt = _filter(kw)
    cat = _catalogue(schemas_dir, required=True)
    codec = _codec(cat, registry)
    reports: list[Report] = []
    with _errors():
        for topic, explicit in _dlq_topics(topics, all_topics, schemas_dir):
            left = None if limit is None else limit - sum(_handled(r) for r in reports)
            run = Reprocessor(kafka, codec, topic, flt, execute=execute, limit=left, rate=rate,
                              force_raw=force_raw)
            try:
                total = run.open()
            except TopicNotFound:
                if not _skip_missing(topic, explicit):
                    raise
                continue
            with click.progressbar(length=total, label=f"scanning {topic}",
                                   file=sys.stderr) as bar:
                reports.append(run.run(progress=bar.update))
    if as_json:
        print_json({"executed": execute, "topics": [r.as_dict() for r in reports]})
    else:
        for r in reports:
            _print_report(r)
    if execute and not all(r.ok for r in reports):
        bad = sum(len(r.rejected) + len(r.failed) for r in reports)
        fail(f"{bad} record(s) could not be re-published (listed above)", EXIT_FAILURE)


def _handled(r: Report) -> int:
    return len(r.published) + len(r.rejected) + len(r.failed)


def _print_report(r: Report) -> None:
    click.echo(f"{r.topic}: scanned {r.scanned}, matched {r.matched}, already reprocessed "
               f"{r.already}")
    verb = "re-published" if r.executed else "would re-publish"
    click.echo(f"{verb} {len(r.published)}" + ("" if r.executed else
                                               " (dry run, nothing written; add --execute)"))
    for i in r.published:
        note = f"  [{i.problem}]" if i.problem else ""
        click.echo(f"  {i.ref} -> {i.target}  {i.job_type}  {i.reason}  key={i.key}{note}")
    if r.rejected:
        click.echo(f"not re-publishable {len(r.rejected)} (left in the dead-letter topic):")
        for i in r.rejected:
            click.echo(f"  {i.ref}  {i.job_type}: {i.problem}")
    if r.failed:
        click.echo(f"delivery failed {len(r.failed)} (will be retried by the next run):")
        for i in r.failed:
            click.echo(f"  {i.ref} -> {i.target}: {i.problem}")
    if r.limit_reached:
        click.echo("limit reached: more matching records remain")
