"""``streamjobs lag``: consumer-group lag per topic and partition, and the wait tiers' backlog,
without Kafka's Java tools (``streamjobs._ops.lag``).

With ``--group G``: G's members and, per partition, committed offset, end offset and lag, then
(with a catalogue) the jobs waiting in each wait tier and the next due time. Without: one line
per group that consumes the catalogue's topics (every group with ``--all-groups`` or without a
catalogue). Exit codes: 0 ok, 1 failure, 2 usage, 3 group not found, 4 Kafka unreachable.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .._config import KafkaConfig
from .._ops.lag import GroupLag, TierBacklog
from .._schemas.catalogue import Catalogue
from ..errors import GroupNotFound
from ._common import (
    EXIT_NOT_FOUND,
    exit_on_errors,
    json_option,
    kafka_options,
    load_catalogue,
    print_json,
    schemas_option,
)

__all__ = ["command"]


def _catalogue(schemas_dir: str) -> Catalogue | None:
    """The catalogue of ``--schemas``; None when the default directory is absent (lag works
    on any group, catalogue or not)."""
    ctx = click.get_current_context()
    given = ctx.get_parameter_source("schemas_dir") not in (
        click.core.ParameterSource.DEFAULT, None)
    if not given and not (Path(schemas_dir) / "catalogue.toml").is_file():
        return None
    return load_catalogue(schemas_dir)


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    """Columns padded to their widest cell; numbers (``right``) aligned right."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    out = []
    for row in [headers, *rows]:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
    return out


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    at = datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    delta = ms / 1000 - time.time()
    rel = f"in {delta:.0f}s" if delta >= 0 else f"{-delta:.0f}s overdue"
    return f"{at} ({rel})"


def _print_group(g: GroupLag, tiers: list[TierBacklog] | None) -> None:
    click.echo(f"group {g.group}  state {g.state}  members {len(g.members)}  "
               f"lag {g.total_lag}")
    rows = []
    for p in g.partitions:
        owner = g.owner(p.topic, p.partition)
        rows.append([p.topic, str(p.partition), "-" if p.committed is None else str(p.committed),
                     str(p.end), str(p.lag),
                     f"{owner.client_id}@{owner.host.lstrip('/')}" if owner else "-"])
    if rows:
        click.echo("")
        for line in _table(["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"], rows,
                           {1, 2, 3, 4}):
            click.echo(line)
    if tiers:  # None: no catalogue; []: none of its tier topics exists
        click.echo("")
        click.echo(f"wait tiers (group {g.group}.wait): "
                   f"{sum(t.waiting for t in tiers)} waiting")
        click.echo("")
        for line in _table(["TOPIC", "TIER", "WAITING", "NEXT DUE"],
                           [[t.topic, t.tier, str(t.waiting), _when(t.next_due_ms)]
                            for t in tiers], {2}):
            click.echo(line)


def _print_groups(groups: list[GroupLag]) -> None:
    if not groups:
        click.echo("no consumer groups")
        return
    rows = [[g.group, g.state, str(len(g.members)), str(len(g.partitions)), str(g.total_lag),
             ", ".join(g.topics) or "-"] for g in groups]
    for line in _table(["GROUP", "STATE", "MEMBERS", "PARTITIONS", "LAG", "TOPICS"], rows,
                       {2, 3, 4}):
        click.echo(line)


def _consumes(g: GroupLag, catalogue: Catalogue) -> bool:
    """The group reads a job topic or a wait tier of the catalogue."""
    from .._names import parse_wait_topic

    topics = set(catalogue.job_topics())
    for t in g.topics:
        wait = parse_wait_topic(t)
        if t in topics or (wait is not None and wait[0] in topics):
            return True
    return False


@click.command("lag")
@click.option("--group", default=None, envvar="STREAMJOBS_LAG_GROUP",
              help="Consumer group to describe. [default: a summary of every group consuming "
                   "the catalogue's topics]")
@click.option("--all-groups", is_flag=True, envvar="STREAMJOBS_LAG_ALL_GROUPS",
              help="Without --group: every group of the cluster, not only the catalogue's.")
@click.option("--timeout", type=float, default=10.0, show_default=True,
              envvar="STREAMJOBS_LAG_TIMEOUT", help="Seconds to wait for each admin request.")
@schemas_option
@json_option
@kafka_options
def command(group: str | None, all_groups: bool, timeout: float, schemas_dir: str,
            as_json: bool, kafka: KafkaConfig) -> None:
    """Committed offset, end offset and lag per partition; jobs waiting in the wait tiers."""
    from .._ops import lag

    with exit_on_errors((GroupNotFound, EXIT_NOT_FOUND)):
        catalogue = _catalogue(schemas_dir)
        if group is not None:
            g = lag.group_lag(kafka, group, timeout=timeout)
            tiers = (lag.wait_backlog(kafka, catalogue, group, timeout=timeout)
                     if catalogue is not None else None)
            if as_json:
                out: dict[str, Any] = g.as_dict()
                out["wait"] = None if tiers is None else [t.as_dict() for t in tiers]
                print_json(out)
            else:
                _print_group(g, tiers)
            return
        names = lag.list_groups(kafka, timeout=timeout)
        groups = lag.groups_lag(kafka, names, timeout=timeout)
        if catalogue is not None and not all_groups:
            groups = [g for g in groups if _consumes(g, catalogue)]
        if as_json:
            print_json({"groups": [g.as_dict() for g in groups]})
        else:
            _print_groups(groups)
