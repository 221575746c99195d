"""``streamjobs replay``: re-run jobs by moving a group's offsets or re-emitting a range.

Both subcommands are dry runs unless ``--execute`` is given. Exit codes: 0 ok, 1 refused
(active group) or failed, 2 usage, 3 topic not found, 4 Kafka unreachable.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

import click

from .._config import KafkaConfig
from .._durations import parse_ago
from .._ops import replay as rp
from ..errors import TopicNotFound
from ._common import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    exit_on_errors,
    fail,
    json_option,
    kafka_options,
    print_json,
    settings,
    topic_prefix_option,
)

__all__ = ["command"]


def _errors() -> AbstractContextManager[None]:
    # GroupActive is a StreamjobsError: exit 1 like the rest.
    return exit_on_errors((TopicNotFound, EXIT_NOT_FOUND), (ValueError, EXIT_USAGE))


@click.group("replay")
def command() -> None:
    """Re-run jobs: move a stopped group's offsets back (`offsets`), or re-emit a range of
    records while workers keep running (`range`). See docs/replay.md."""


def _spec(to_offset: int | None, to_datetime: str | None, by_duration: str | None,
          shift_by: int | None, to_earliest: bool, to_latest: bool) -> rp.ResetSpec:
    given = [n for n, v in (("--to-offset", to_offset), ("--to-datetime", to_datetime),
                            ("--by-duration", by_duration), ("--shift-by", shift_by),
                            ("--to-earliest", to_earliest or None),
                            ("--to-latest", to_latest or None)) if v is not None]
    if len(given) != 1:
        fail("give exactly one of --to-offset, --to-datetime, --by-duration, --shift-by, "
             f"--to-earliest, --to-latest (got {', '.join(given) or 'none'})", EXIT_USAGE)
    try:
        if to_offset is not None:
            return rp.ResetSpec("to_offset", to_offset)
        if shift_by is not None:
            return rp.ResetSpec("shift_by", shift_by)
        if to_datetime is not None:
            return rp.ResetSpec("to_datetime", rp.parse_datetime(to_datetime))
        if by_duration is not None:
            return rp.ResetSpec("to_datetime",
                                rp.now_ms() - round(parse_ago(by_duration) * 1000))
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    return rp.ResetSpec("to_earliest" if to_earliest else "to_latest")


@command.command("offsets")
@click.option("--group", required=True, envvar="STREAMJOBS_REPLAY_GROUP",
              help="Consumer group whose committed offsets move (the workers' group).")
@click.option("--topic", "topics", required=True, multiple=True, envvar="STREAMJOBS_REPLAY_TOPIC",
              help="TOPIC or TOPIC:P[,P...], under --topic-prefix; repeatable. Without "
                   "partitions: all of them.")
@click.option("--to-offset", type=int, default=None, envvar="STREAMJOBS_REPLAY_TO_OFFSET",
              help="Move to this offset (clamped to the log).")
@click.option("--to-datetime", default=None, envvar="STREAMJOBS_REPLAY_TO_DATETIME",
              help="Move to the first record at or after this ISO 8601 time (UTC if no offset).")
@click.option("--by-duration", default=None, envvar="STREAMJOBS_REPLAY_BY_DURATION",
              help="Move to the first record of this long ago: 2h, 30m, PT2H.")
@click.option("--shift-by", type=int, default=None, envvar="STREAMJOBS_REPLAY_SHIFT_BY",
              help="Move by N (negative: back) from the committed offset.")
@click.option("--to-earliest", is_flag=True, envvar="STREAMJOBS_REPLAY_TO_EARLIEST",
              help="Move to the log start.")
@click.option("--to-latest", is_flag=True, envvar="STREAMJOBS_REPLAY_TO_LATEST",
              help="Move to the log end (skip everything pending).")
@click.option("--execute", is_flag=True, envvar="STREAMJOBS_REPLAY_EXECUTE",
              help="Apply the plan. Without it nothing changes.")
@topic_prefix_option
@json_option
@kafka_options
def offsets(kafka: KafkaConfig, group: str, topics: tuple[str, ...], to_offset: int | None,
            to_datetime: str | None, by_duration: str | None, shift_by: int | None,
            to_earliest: bool, to_latest: bool, execute: bool, as_json: bool) -> None:
    """Move GROUP's committed offsets (its workers must be stopped) and print the plan:
    per partition current -> new and the jobs that will run again."""
    spec = _spec(to_offset, to_datetime, by_duration, shift_by, to_earliest, to_latest)
    try:
        parsed = [(settings().topic(t), parts) for t, parts in map(rp.parse_topic_spec, topics)]
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    with _errors():
        plan = rp.plan_reset(kafka, group, parsed, spec)
        if execute:
            rp.apply_reset(kafka, plan)
    warnings = [f"group {group!r} has never committed an offset on {t} (is the group or the "
                f"topic misspelt? `streamjobs dev tool kafka-consumer-groups --list` shows the "
                f"groups)" for t in plan.never_committed()]
    for warning in warnings:
        click.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json({
            "group": group, "mode": spec.mode, "executed": execute, "rerun": plan.rerun,
            "warnings": warnings,
            "partitions": [{"topic": p.topic, "partition": p.partition, "current": p.current,
                            "new": p.new, "low": p.low, "high": p.high, "rerun": p.rerun,
                            "skipped": p.skipped} for p in plan.partitions],
        })
        return
    rows = [("TOPIC", "PARTITION", "CURRENT", "NEW", "LOG-START", "LOG-END", "RE-RUN")]
    rows += [(p.topic, str(p.partition), "-" if p.current is None else str(p.current),
              str(p.new), str(p.low), str(p.high), str(p.rerun)) for p in plan.partitions]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    skipped = sum(p.skipped for p in plan.partitions)
    tail = f"; {skipped} skipped" if skipped else ""
    if execute:
        click.echo(f"group {group}: offsets moved; {plan.rerun} job(s) will run again{tail}")
    else:
        click.echo(f"group {group}: dry run, nothing changed ({plan.rerun} job(s) would run "
                   f"again{tail}); add --execute to apply")


@command.command("range")
@click.option("--topic", required=True, envvar="STREAMJOBS_REPLAY_TOPIC",
              help="Job topic, under --topic-prefix.")
@click.option("--partition", type=int, required=True, envvar="STREAMJOBS_REPLAY_PARTITION")
@click.option("--from-offset", type=int, default=None, envvar="STREAMJOBS_REPLAY_FROM_OFFSET",
              help="First offset (inclusive). Default: log start.")
@click.option("--to-offset", type=int, default=None, envvar="STREAMJOBS_REPLAY_TO_OFFSET",
              help="Last offset (inclusive). Default: the last record now.")
@click.option("--since", default=None, envvar="STREAMJOBS_REPLAY_SINCE",
              help="From the first record at or after this time (ISO 8601 or 2h ago).")
@click.option("--until", default=None, envvar="STREAMJOBS_REPLAY_UNTIL",
              help="Up to the last record before this time (ISO 8601 or 2h ago).")
@click.option("--execute", is_flag=True, envvar="STREAMJOBS_REPLAY_EXECUTE",
              help="Re-emit the records. Without it nothing is written.")
@topic_prefix_option
@json_option
@kafka_options
def range_(kafka: KafkaConfig, topic: str, partition: int, from_offset: int | None,
           to_offset: int | None, since: str | None, until: str | None, execute: bool,
           as_json: bool) -> None:
    """Re-emit the records of a range of one partition to the end of that partition (same
    key, value and headers; sj-attempt=1, sj-replayed-from=T/P/OFFSET) while workers run."""
    if from_offset is None and to_offset is None and since is None and until is None:
        fail("give the range: --from-offset/--to-offset and/or --since/--until", EXIT_USAGE)
    topic = settings().topic(topic)
    try:
        since_ms = None if since is None else rp.parse_when(since)
        until_ms = None if until is None else rp.parse_when(until)
    except ValueError as exc:
        fail(str(exc), EXIT_USAGE)
    with _errors():
        plan = rp.plan_range(kafka, topic, partition, from_offset=from_offset,
                             to_offset=to_offset, since_ms=since_ms, until_ms=until_ms)
    written = 0
    if execute and plan.count:
        with (_errors(),
              click.progressbar(length=plan.count, label="re-emitting", file=sys.stderr) as bar):
            written = rp.emit_range(kafka, plan, progress=bar.update,
                                    status_prefix=settings().topic_prefix)
    if as_json:
        print_json({"topic": topic, "partition": partition, "from_offset": plan.start,
                    "to_offset": plan.end, "count": plan.count, "executed": execute,
                    "written": written, "log_start": plan.low, "log_end": plan.high})
        return
    where = f"{topic}[{partition}] offsets {plan.start}..{plan.end}"
    if not plan.count:
        click.echo(f"{where}: no records in range (log {plan.low}..{plan.high - 1})")
    elif execute:
        click.echo(f"{where}: re-emitted {written} record(s) to the end of the partition")
    else:
        click.echo(f"{where}: {plan.count} record(s) would be re-emitted; add --execute")
