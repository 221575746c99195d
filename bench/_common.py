"""Shared set-up of the worker benchmarks: a throw-away catalogue and its topics."""

from __future__ import annotations

import contextlib
import json
import tempfile
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs._names import dlq_topic, retry_topic
from streamjobs._schemas.catalogue import Catalogue

SCHEMA = {"type": "record", "name": "Noop", "namespace": "bench",
          "fields": [{"name": "n", "type": "long"}, {"name": "name", "type": "string"}]}


def make_catalogue(partitions: int, status: str | None = None,
                   framing: str = "single-object") -> Catalogue:
    """One job type ``noop`` on topic ``noop``; ``status``: its catalogue status setting."""
    return Catalogue.load(catalogue_dir(partitions, status, framing))


def catalogue_dir(partitions: int, status: str | None = None,
                  framing: str = "single-object") -> Path:
    """The directory ``make_catalogue`` loads (for a `streamjobs worker` subprocess)."""
    d = Path(tempfile.mkdtemp(prefix="sj-bench-"))
    (d / "bench.Noop.v1.avsc").write_text(json.dumps(SCHEMA))
    line = "" if status is None else f'status = "{status}"\n'
    (d / "catalogue.toml").write_text(
        f'[jobs.noop]\nschema = "bench.Noop"\ntopic = "noop"\npartitions = {partitions}\n'
        + line + f'framing = "{framing}"\n')
    return d


def create_topics(admin: AdminClient, catalogue: Catalogue, prefix: str,
                  partitions: int) -> list[str]:
    topic = prefix + "noop"
    names = [topic, dlq_topic(topic),
             *(retry_topic(topic, t) for t in catalogue.wait_tiers("noop"))]
    new = [NewTopic(n, partitions, 1, config={"message.timestamp.type": "LogAppendTime"}
                    if ".retry." in n else {}) for n in names]
    for fut in admin.create_topics(new).values():
        fut.result(30)
    return names


def create_reports_topic(admin: AdminClient, prefix: str) -> str:
    """The worker reports topic under ``prefix`` (what ``topics apply`` creates)."""
    from streamjobs._names import reports_topic

    name = reports_topic(prefix)
    admin.create_topics([NewTopic(name, 1, 1)])[name].result(30)
    return name


def delete_topics(admin: AdminClient, names: list[str]) -> None:
    for fut in admin.delete_topics(names).values():
        with contextlib.suppress(Exception):
            fut.result(30)


def prefix() -> str:
    return f"bench-{uuid.uuid4().hex[:8]}."
