"""The status record: one job transition as it sits in the compacted status topic.

Topic ``<prefix>streamjobs.status``; key = the job id (UTF-8); value = one JSON object (orjson,
``kcat -t <prefix>streamjobs.status -f '%k %s\\n'`` shows it as is)::

    {"state": "retrying", "type": "send_email", "at": 1764500000123, "attempt": 1,
     "worker": "host-1", "error_class": "TimeoutError", "error": "upstream slow",
     "topic": "demo.emails.retry.10s", "due_at": 1764500010123}

Keys with no value are left out. ``topic``/``partition``/``offset`` say where the job's record
sits now (job topic, wait tier, or dead-letter topic). Records of the steps that put a job in a
queue from outside the worker (``emitted``, ``reprocessed``, ``replayed``) are keyed
``<job id>/<state>``: their producer is not the worker's, so such a record may reach the topic
after the worker's next one; a key of its own keeps compaction from dropping the later state in
favour of it (``timeline`` places them by time). Every record of a job goes to the partition
``partition_for`` computes from the id (CRC-32 mod partitions), so a reader finds a job's
partition without librdkafka's partitioner.

Batches: a worker finishing many jobs at once writes their ``succeeded`` as one record per job
type and status partition, keyed ``_batch/<worker>/...`` (unique: never compacted away, deleted
by retention), whose value lists the jobs in three columns, ``ids``, ``attempts`` and
``offsets`` (built in C-level joins, no text formatted per job)::

    {"state": "succeeded", "type": "send_email", "worker": "host-1", "topic": "demo.emails",
     "partition": 3, "at": 1764500000123, "ids": ["019a...", "019b..."], "attempts": [1, 1],
     "offsets": [17, 18]}

Batch records of earlier versions list the jobs as ``"jobs": [[id, attempt, offset],
...]`` instead; both are read.

``decode_all`` turns any record into (job id, job type, transition) triples. See
docs/status.md.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "BATCH_PREFIX",
    "EMITTED_SUFFIX",
    "ENQUEUED",
    "FINAL",
    "MODES",
    "STATES",
    "Transition",
    "decode",
    "decode_all",
    "encode",
    "job_id_of",
    "partition_for",
    "record_key",
    "record_keys",
]

STATES = ("emitted", "started", "succeeded", "retrying", "dead", "reprocessed", "replayed")
FINAL = frozenset({"succeeded", "dead"})
# Catalogue ``status`` setting: which transitions of a job type are recorded.
MODES = ("all", "failures", "none")
EMITTED_SUFFIX = "/emitted"
BATCH_PREFIX = "_batch/"
_BATCH = BATCH_PREFIX.encode()
# Written by emit, dlq reprocess and replay range, not by the worker.
ENQUEUED = frozenset({"emitted", "reprocessed", "replayed"})
_SUFFIXES = tuple(f"/{s}" for s in sorted(ENQUEUED))
_STATES = frozenset(STATES)


def partition_for(job_id: str | bytes, partitions: int) -> int:
    """The status partition of ``job_id``: CRC-32 of its UTF-8 bytes mod ``partitions``."""
    raw = job_id.encode("utf-8") if isinstance(job_id, str) else job_id
    return zlib.crc32(raw) % partitions


def record_key(job_id: str, state: str) -> bytes:
    return (f"{job_id}/{state}" if state in ENQUEUED else job_id).encode("utf-8")


def record_keys(job_id: str) -> frozenset[bytes]:
    """Every key the records of ``job_id`` may have."""
    return frozenset(record_key(job_id, s) for s in ("started", *ENQUEUED))


def job_id_of(key: bytes) -> str:
    text = key.decode("utf-8", "replace")
    if text.endswith(_SUFFIXES):
        return text[: text.rindex("/")]
    return text


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of a job's timeline. ``topic``/``partition``/``offset``: where the job's
    record sits after this step (partition/offset when known); ``due_at_ms`` for ``retrying``,
    ``reason`` for ``dead`` (a DLQ reason) and for ``reprocessed``/``replayed`` (the source
    record, ``topic/partition/offset``)."""

    state: str
    at_ms: int
    attempt: int = 1
    worker: str | None = None
    error_class: str | None = None
    error_message: str | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    due_at_ms: int | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "at_ms": self.at_ms, "attempt": self.attempt,
                "worker": self.worker, "error_class": self.error_class,
                "error_message": self.error_message, "topic": self.topic,
                "partition": self.partition, "offset": self.offset,
                "due_at_ms": self.due_at_ms, "reason": self.reason}

    @property
    def final(self) -> bool:
        return self.state in FINAL


# Transition field -> JSON key in the record value (short, readable in kcat).
_FIELDS = (("attempt", "attempt"), ("worker", "worker"), ("error_class", "error_class"),
           ("error_message", "error"), ("topic", "topic"), ("partition", "partition"),
           ("offset", "offset"), ("due_at_ms", "due_at"), ("reason", "reason"))


def encode(job_type: str, t: Transition) -> bytes:
    """The record value of ``t`` for a job of ``job_type``."""
    doc: dict[str, Any] = {"state": t.state, "type": job_type, "at": t.at_ms}
    for attr, name in _FIELDS:
        value = getattr(t, attr)
        if value is not None:
            doc[name] = value
    return orjson.dumps(doc)


def decode(value: bytes | None) -> tuple[str, Transition] | None:
    """(job type, transition) of a record value; None for anything else (a tombstone, a
    record a newer version wrote with a state this one does not know, garbage)."""
    if not value:
        return None
    try:
        doc = orjson.loads(value)
        state = doc["state"]
        if state not in _STATES or not isinstance(doc, dict):
            return None
        return str(doc.get("type") or ""), Transition(
            state, int(doc["at"]), int(doc.get("attempt", 1)), doc.get("worker"),
            doc.get("error_class"), doc.get("error"), doc.get("topic"), doc.get("partition"),
            doc.get("offset"), doc.get("due_at"), doc.get("reason"))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def decode_all(key: bytes | None, value: bytes | None) -> list[tuple[str, str, Transition]]:
    """(job id, job type, transition) of every job a record speaks of: one, or a batch's."""
    if key is None:
        return []
    if not key.startswith(_BATCH):
        got = decode(value)
        return [] if got is None else [(job_id_of(key), got[0], got[1])]
    got = decode(value)
    if got is None:
        return []
    job_type, t = got
    try:
        doc = orjson.loads(value or b"{}")
        jobs = doc.get("jobs")  # the earlier form: [[id, attempt, offset], ...]
        if jobs is None:
            ids, attempts, offsets = doc["ids"], doc["attempts"], doc["offsets"]
            if not len(ids) == len(attempts) == len(offsets):
                return []
            jobs = zip(ids, attempts, offsets, strict=True)
        return [(str(j[0]), job_type, Transition(
            t.state, t.at_ms, int(j[1]), t.worker, t.error_class, t.error_message, t.topic,
            t.partition, int(j[2]), t.due_at_ms, t.reason)) for j in jobs]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):
        return []
