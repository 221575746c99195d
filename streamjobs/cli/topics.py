"""``streamjobs topics``: plan and apply the job, wait-tier and dead-letter topics.

``plan`` exits 0 when the cluster matches the catalogue and 2 when changes are pending (so CI can
gate on it); ``apply`` makes the changes. Both exit 1 on errors and 4 when Kafka is unreachable.
Warnings (partitions that cannot shrink, a different replication factor) never fail.
See docs/topics.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .._config import KafkaConfig
from .._schemas.registry import RegistryConfig, SchemaRegistry
from ._common import (
    EXIT_OK,
    EXIT_USAGE,
    handle_errors,
    json_option,
    kafka_options,
    load_catalogue,
    print_json,
    registry_options,
    schemas_option,
)

__all__ = ["group"]


def _timeout_option(default: float) -> Callable[[Any], Any]:
    return click.option("--timeout", type=float, default=default, show_default=True,
                        envvar="STREAMJOBS_TOPICS_TIMEOUT",
                        help="Seconds to wait for each admin request.")


def _print(changes: list[Any], verb: str) -> None:
    from .._ops.topics import INFORMATIONAL

    width = max((len(c.topic) for c in changes), default=0)
    for c in changes:
        click.echo(f"{c.action:<15} {c.topic:<{width}}  {c.detail}")
    done = [c for c in changes if c.action not in INFORMATIONAL]
    warned = sum(c.action == "warning" for c in changes)
    removable = sum(c.action == "removable" for c in changes)
    tail = f", {warned} warning(s)" if warned else ""
    tail += f", {removable} removable old tier(s)" if removable else ""
    click.echo(f"{len(done)} change(s) {verb}{tail}" if done else f"nothing to do{tail}")


def _print_footprint(footprint: dict[str, dict[str, Any]]) -> None:
    for topic, f in footprint.items():
        click.echo(f"{topic}: {f['topics']} topics (job, wait tiers {' '.join(f['wait_tiers'])}"
                   f", dlq), {f['partitions']} partitions, the wait consumer reads "
                   f"{f['wait_partitions']}")


@click.group("topics")
def group() -> None:
    """Create and update the topics the catalogue needs (job, retry tiers, dead letters)."""


@group.command("plan")
@schemas_option
@kafka_options
@json_option
@_timeout_option(10.0)
@handle_errors
def plan_cmd(schemas_dir: str, kafka: KafkaConfig, as_json: bool, timeout: float) -> None:
    """Show what `apply` would change. Exit 0: up to date; 2: changes pending."""
    from .._ops import topics

    catalogue = load_catalogue(schemas_dir)
    changes = topics.plan(kafka, catalogue, timeout=timeout)
    pending = [c for c in changes if c.action not in topics.INFORMATIONAL]
    footprint = topics.footprint(catalogue)
    if as_json:
        print_json({"changes": [c.as_dict() for c in changes], "pending": len(pending),
                    "warnings": sum(c.action == "warning" for c in changes),
                    "removable": sum(c.action == "removable" for c in changes),
                    "footprint": footprint})
    else:
        _print(changes, "pending")
        _print_footprint(footprint)
    raise SystemExit(EXIT_USAGE if pending else EXIT_OK)


@group.command("apply")
@schemas_option
@kafka_options
@registry_options
@json_option
@_timeout_option(30.0)
@handle_errors
def apply_cmd(schemas_dir: str, kafka: KafkaConfig, registry: RegistryConfig | None,
              as_json: bool, timeout: float) -> None:
    """Create missing topics, add partitions and set managed configs; register the schemas of
    registry-framed job types (with --registry-url). Idempotent."""
    from .._ops import subjects, topics

    catalogue = load_catalogue(schemas_dir)
    changes = topics.apply(kafka, catalogue, timeout=timeout)
    registered: list[subjects.Registered] = []
    if subjects.subjects(catalogue) and registry is not None:
        registered = subjects.register(SchemaRegistry(registry), catalogue)
    if as_json:
        print_json({"applied": [c.as_dict() for c in changes
                                if c.action not in topics.INFORMATIONAL],
                    "warnings": [c.as_dict() for c in changes if c.action == "warning"],
                    "removable": [c.as_dict() for c in changes if c.action == "removable"],
                    "registered": [r.as_dict() for r in registered]})
    else:
        _print(changes, "applied")
        if registered and registry is not None:
            click.echo(f"{len(registered)} schema version(s) registered at {registry.url}")
        elif subjects.subjects(catalogue):
            click.echo("registry framing: schemas not registered (no --registry-url)")
