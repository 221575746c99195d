"""``streamjobs schedules list``: each schedule of the catalogue, its last fire (read from the
schedule topic) and its next fire. Exit 3 when the schedule topic does not exist yet (create it
with ``streamjobs topics apply``), 4 when Kafka is unreachable. See docs/catalogue.md."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import click

from .._config import KafkaConfig
from ._common import (
    EXIT_NOT_FOUND,
    exit_on_errors,
    handle_errors,
    json_option,
    kafka_options,
    load_catalogue,
    print_json,
    schemas_option,
)

__all__ = ["group"]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


@click.group("schedules")
def group() -> None:
    """Recurring jobs of the catalogue ([schedules.NAME] tables)."""


@group.command("list")
@schemas_option
@kafka_options
@json_option
@handle_errors
def list_cmd(schemas_dir: str, kafka: KafkaConfig, as_json: bool) -> None:
    """Each schedule with its last fire (from the schedule topic) and its next fire."""
    from .._names import schedules_topic
    from .._schedules import read_states
    from ..errors import TopicNotFound

    catalogue = load_catalogue(schemas_dir)
    topic = schedules_topic(catalogue.topic_prefix)
    states = {}
    if catalogue.schedules:
        with exit_on_errors((TopicNotFound, EXIT_NOT_FOUND)):
            states = read_states(kafka, topic)
    now_ms = int(time.time() * 1000)
    rows: list[dict[str, Any]] = []
    for s in catalogue.schedules.values():
        st = states.get(s.name)
        rows.append({"schedule": s.name, "job_type": s.job_type, "spec": s.spec,
                     "catch_up": s.catch_up,
                     "last_tick": _iso(st.fired_tick_ms) if st else None,
                     "last_job_id": st.job_id if st else None,
                     "last_fired_at": _iso(st.fired_at_ms) if st else None,
                     "fired_by": st.owner if st else None,
                     "next_tick": _iso(s.next_after(now_ms))})
    if as_json:
        print_json({"topic": topic, "schedules": rows})
        return
    if not rows:
        click.echo("no schedules in the catalogue")
        return
    header = ("SCHEDULE", "JOB TYPE", "WHEN", "LAST TICK", "NEXT TICK")
    table = [(r["schedule"], r["job_type"], r["spec"], r["last_tick"] or "never",
              r["next_tick"]) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=False)]
    for line in (header, *table):
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
