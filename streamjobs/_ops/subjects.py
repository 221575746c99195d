"""The catalogue's schemas in a schema registry: one subject per registry-framed job type.

``schemas/`` is the source of truth. ``register`` puts every version of each subject's record
into the registry in version order, so the registry's history (and its compatibility checks)
matches the files; re-running it changes nothing. ``check`` compares the two: versions the
registry lacks (and whether it would accept them), versions the registry has that ``schemas/``
does not.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from fastavro.schema import parse_schema, to_parsing_canonical_form

from .._avro.codec import registry_schema
from .._avro.framing import REGISTRY
from .._schemas.catalogue import Catalogue
from .._schemas.registry import SchemaRegistry

__all__ = ["Registered", "SubjectProblem", "check", "register", "subjects"]


@dataclass(frozen=True)
class Registered:
    subject: str
    schema: str  # record full name
    version: int  # the version in schemas/
    schema_id: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SubjectProblem:
    subject: str
    schema: str
    message: str

    def __str__(self) -> str:
        return f"subject {self.subject} ({self.schema}): {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def subjects(catalogue: Catalogue) -> dict[str, str]:
    """Subject -> record full name, for every job type with registry framing."""
    return {job.subject: job.schema for job in catalogue if job.framing == REGISTRY}


def register(registry: SchemaRegistry, catalogue: Catalogue) -> list[Registered]:
    """Registers every version of every subject's record, oldest first (idempotent)."""
    done: list[Registered] = []
    for subject, schema in sorted(subjects(catalogue).items()):
        for version in catalogue.versions(schema):
            schema_id = registry.register(subject, registry_schema(version))
            done.append(Registered(subject, schema, version.version, schema_id))
    return done


def check(registry: SchemaRegistry, catalogue: Catalogue) -> list[SubjectProblem]:
    """How the registry differs from ``schemas/``; empty when every version is registered in
    order. Versions not registered yet are a problem too (emit would refuse the current one),
    and the registry is asked whether it would accept them."""
    found: list[SubjectProblem] = []
    for subject, schema in sorted(subjects(catalogue).items()):
        local = _dedup([v.canonical for v in catalogue.versions(schema)])
        remote = _dedup([_canonical(v["schema"]) for v in registry.versions(subject)])
        if remote != local[:len(remote)]:
            extra = [i + 1 for i, c in enumerate(remote) if c not in local]
            what = (f"registry versions {', '.join(map(str, extra))} are not in schemas/"
                    if extra else "the registry holds the versions in another order")
            found.append(SubjectProblem(subject, schema, what))
            continue
        for version in catalogue.versions(schema):
            if version.canonical in remote:
                continue
            accepted = registry.compatible(subject, registry_schema(version))
            found.append(SubjectProblem(
                subject, schema, f"v{version.version} is not registered"
                + ("" if accepted else " and the registry's compatibility rule refuses it")
                + "; run `streamjobs schemas register`"))
    return found


def _canonical(text: str) -> str:
    return str(to_parsing_canonical_form(parse_schema(json.loads(text), named_schemas={})))


def _dedup(canonicals: list[str]) -> list[str]:
    """Consecutive equal canonical forms (only docs changed) are one registry version."""
    out: list[str] = []
    for c in canonicals:
        if not out or out[-1] != c:
            out.append(c)
    return out
