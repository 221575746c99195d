"""``streamjobs schemas``: check and list the catalogue's job types and schema versions."""

from __future__ import annotations

from typing import Any

import click

from ..codec import crc64_avro
from ..compatibility import pairs, problems
from ._common import (
    EXIT_FAILURE,
    handle_errors,
    json_option,
    load_catalogue,
    print_json,
    schemas_option,
)

__all__ = ["group"]


@click.group(name="schemas")
def group() -> None:
    """Check and list job types and their Avro schema versions."""


@group.command()
@schemas_option
@json_option
@handle_errors
def check(schemas_dir: str, as_json: bool) -> None:
    """Load the catalogue and every schema version; check every pair of versions both ways.

    Backward: the newer version reads data the older one wrote. Forward: the older version
    reads data the newer one wrote (old workers during a rolling deploy). Exit 1 on any problem.
    """
    catalogue = load_catalogue(schemas_dir)
    found = problems(catalogue)
    n_versions = sum(len(catalogue.versions(n)) for n in catalogue.schema_names())
    summary = {"ok": not found, "job_types": len(catalogue),
               "schemas": len(catalogue.schema_names()), "versions": n_versions,
               "pairs_checked": sum(1 for _ in pairs(catalogue)),
               "problems": [p.as_dict() for p in found]}
    if as_json:
        print_json(summary)
    else:
        for p in found:
            click.echo(f"error: {p}", err=True)
        status = "ok" if not found else f"{len(found)} problem(s)"
        click.echo(f"{status}: {summary['job_types']} job types, {summary['schemas']} schemas, "
                   f"{n_versions} versions, {summary['pairs_checked']} version pairs checked "
                   f"both ways")
    if found:
        raise SystemExit(EXIT_FAILURE)


@group.command(name="list")
@schemas_option
@json_option
@handle_errors
def list_(schemas_dir: str, as_json: bool) -> None:
    """Job types with their topic and key, and every schema version with its fingerprint."""
    catalogue = load_catalogue(schemas_dir)
    jobs: list[dict[str, Any]] = [
        {"job_type": j.name, "topic": j.topic, "schema": j.schema, "key_field": j.key_field,
         "max_attempts": j.retry.max_attempts} for j in catalogue]
    schemas: list[dict[str, Any]] = [
        {"schema": v.name, "version": v.version, "file": str(v.file),
         "current": v.version == len(catalogue.versions(v.name)),
         "fingerprint": crc64_avro(v.canonical.encode()).to_bytes(8, "little").hex()}
        for name in catalogue.schema_names() for v in catalogue.versions(name)]
    if as_json:
        print_json({"job_types": jobs, "schemas": schemas})
        return
    _table(["JOB TYPE", "TOPIC", "SCHEMA", "KEY"],
           [[j["job_type"], j["topic"], j["schema"], j["key_field"] or "-"] for j in jobs])
    click.echo("")
    _table(["SCHEMA", "VERSION", "FINGERPRINT", "FILE"],
           [[s["schema"], f"v{s['version']}" + (" (current)" if s["current"] else ""),
             s["fingerprint"], s["file"]] for s in schemas])


def _table(header: list[str], rows: list[list[Any]]) -> None:
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
