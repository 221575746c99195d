"""``streamjobs schemas``: check and list the catalogue's job types and schema versions."""

from __future__ import annotations

from typing import Any

import click

from .._avro.framing import REGISTRY, fingerprint
from .._schemas.compatibility import pairs, problems
from .._schemas.registry import RegistryConfig, SchemaRegistry
from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    fail,
    handle_errors,
    json_option,
    load_catalogue,
    print_json,
    registry_options,
    schemas_option,
)

__all__ = ["group"]


@click.group(name="schemas")
def group() -> None:
    """Check and list job types and their Avro schema versions."""


@group.command()
@schemas_option
@registry_options
@json_option
@handle_errors
def check(schemas_dir: str, registry: RegistryConfig | None, as_json: bool) -> None:
    """Load the catalogue and every schema version; check every pair of versions both ways.

    Backward: the newer version reads data the older one wrote. Forward: the older version
    reads data the newer one wrote (old workers during a rolling deploy). With registry framing
    and a registry URL, also checks that the registry holds every version, in order. Exit 1 on
    any problem.
    """
    from .._ops import subjects

    catalogue = load_catalogue(schemas_dir)
    found: list[Any] = list(problems(catalogue))
    n_subjects = len(subjects.subjects(catalogue))
    if n_subjects and registry is not None:
        found += subjects.check(SchemaRegistry(registry), catalogue)
    n_versions = sum(len(catalogue.versions(n)) for n in catalogue.schema_names())
    summary = {"ok": not found, "job_types": len(catalogue),
               "schemas": len(catalogue.schema_names()), "versions": n_versions,
               "pairs_checked": sum(1 for _ in pairs(catalogue)),
               "registry_subjects_checked": n_subjects if registry is not None else 0,
               "problems": [p.as_dict() for p in found]}
    if as_json:
        print_json(summary)
    else:
        for p in found:
            click.echo(f"error: {p}", err=True)
        status = "ok" if not found else f"{len(found)} problem(s)"
        checked = (f", {n_subjects} registry subject(s) checked" if registry is not None
                   and n_subjects else ", registry not checked (no --registry-url)"
                   if n_subjects else "")
        click.echo(f"{status}: {summary['job_types']} job types, {summary['schemas']} schemas, "
                   f"{n_versions} versions, {summary['pairs_checked']} version pairs checked "
                   f"both ways{checked}")
    if found:
        raise SystemExit(EXIT_FAILURE)


@group.command()
@schemas_option
@registry_options
@json_option
@handle_errors
def register(schemas_dir: str, registry: RegistryConfig | None, as_json: bool) -> None:
    """Register every version of each registry-framed job type's schema under its subject,
    oldest first, so the registry's history matches schemas/ (idempotent)."""
    from .._ops import subjects

    if registry is None:
        fail("no schema registry: give --registry-url or STREAMJOBS_REGISTRY_URL", EXIT_USAGE)
    done = subjects.register(SchemaRegistry(registry), load_catalogue(schemas_dir))
    if as_json:
        print_json({"registered": [r.as_dict() for r in done]})
        return
    for r in done:
        click.echo(f"{r.subject}  {r.schema} v{r.version}  id {r.schema_id}")
    click.echo(f"{len(done)} version(s) registered in "
               f"{len({r.subject for r in done})} subject(s) at {registry.url}")


@group.command(name="list")
@schemas_option
@json_option
@handle_errors
def list_(schemas_dir: str, as_json: bool) -> None:
    """Job types with their topic, key and framing (registry subject), and every schema version
    with its fingerprint."""
    catalogue = load_catalogue(schemas_dir)
    jobs: list[dict[str, Any]] = [
        {"job_type": j.name, "topic": j.topic, "schema": j.schema, "key_field": j.key_field,
         "max_attempts": j.retry.max_attempts, "framing": j.framing,
         "subject": j.subject if j.framing == REGISTRY else None} for j in catalogue]
    schemas: list[dict[str, Any]] = [
        {"schema": v.name, "version": v.version, "file": str(v.file),
         "current": v.version == len(catalogue.versions(v.name)),
         "fingerprint": fingerprint(v.canonical).hex()}
        for name in catalogue.schema_names() for v in catalogue.versions(name)]
    if as_json:
        print_json({"job_types": jobs, "schemas": schemas})
        return
    _table(["JOB TYPE", "TOPIC", "SCHEMA", "KEY", "FRAMING"],
           [[j["job_type"], j["topic"], j["schema"], j["key_field"] or "-",
             j["framing"] + (f" ({j['subject']})" if j["subject"] else "")] for j in jobs])
    click.echo("")
    _table(["SCHEMA", "VERSION", "FINGERPRINT", "FILE"],
           [[s["schema"], f"v{s['version']}" + (" (current)" if s["current"] else ""),
             s["fingerprint"], s["file"]] for s in schemas])


def _table(header: list[str], rows: list[list[Any]]) -> None:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
