"""Kafka header names: the single place job metadata lives.

All names are namespaced ``sj-`` (``traceparent`` keeps its W3C name so tracing tools find it).
Values are UTF-8 text; numbers are decimal ASCII so ``kcat -f '%h'`` shows them readably.

Job headers (every record ``emit`` writes):
    sj-id            time-ordered unique job id (UUIDv7, text)
    sj-type          job type name from the catalogue
    sj-attempt       attempt number, 1 for the first run
    sj-created-at    creation time, ms since the epoch
    sj-schema        writer schema fingerprint (CRC-64-AVRO, 16 hex chars)
    traceparent      W3C trace context, when the caller has one

Scheduling headers (records on retry/delay topics):
    sj-due-at        ms since the epoch before which the job must not run
    sj-target        topic the job belongs to (where it runs when due)

Provenance headers (retried and dead-lettered records; the first original-* set is kept
through a retry chain, the error set is the latest):
    sj-orig-topic, sj-orig-partition, sj-orig-offset, sj-orig-timestamp
    sj-first-failure-at   ms
    sj-error-class, sj-error-message, sj-error-trace (bounded)
    sj-worker-host, sj-worker-group
    sj-dlq-reason    reason code (see ``streamjobs.dlq.REASONS``)
    sj-dlq-at        ms when dead-lettered

Reprocess link (records re-published by ``streamjobs dlq reprocess``):
    sj-reprocessed-from   "<dlq topic>/<partition>/<offset>"

Replay link (records re-emitted by ``streamjobs replay range``):
    sj-replayed-from      "<topic>/<partition>/<offset>"
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable, Sequence

__all__ = [
    "ATTEMPT",
    "CREATED_AT",
    "DLQ_AT",
    "DLQ_REASON",
    "DUE_AT",
    "ERROR_CLASS",
    "ERROR_MESSAGE",
    "ERROR_TRACE",
    "FIRST_FAILURE_AT",
    "JOB_ID",
    "JOB_TYPE",
    "ORIG_OFFSET",
    "ORIG_PARTITION",
    "ORIG_TIMESTAMP",
    "ORIG_TOPIC",
    "REPLAYED_FROM",
    "REPROCESSED_FROM",
    "SCHEMA",
    "TARGET",
    "TRACEPARENT",
    "WORKER_GROUP",
    "WORKER_HOST",
    "Headers",
    "get",
    "get_int",
    "new_job_id",
    "replace",
]

JOB_ID = "sj-id"
JOB_TYPE = "sj-type"
ATTEMPT = "sj-attempt"
CREATED_AT = "sj-created-at"
SCHEMA = "sj-schema"
TRACEPARENT = "traceparent"
DUE_AT = "sj-due-at"
TARGET = "sj-target"
ORIG_TOPIC = "sj-orig-topic"
ORIG_PARTITION = "sj-orig-partition"
ORIG_OFFSET = "sj-orig-offset"
ORIG_TIMESTAMP = "sj-orig-timestamp"
FIRST_FAILURE_AT = "sj-first-failure-at"
ERROR_CLASS = "sj-error-class"
ERROR_MESSAGE = "sj-error-message"
ERROR_TRACE = "sj-error-trace"
WORKER_HOST = "sj-worker-host"
WORKER_GROUP = "sj-worker-group"
DLQ_REASON = "sj-dlq-reason"
DLQ_AT = "sj-dlq-at"
REPROCESSED_FROM = "sj-reprocessed-from"
REPLAYED_FROM = "sj-replayed-from"

# Kafka headers as confluent-kafka hands them over: ordered, repeatable, values may be None.
Headers = list[tuple[str, bytes | None]]


def get(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """Last value of ``name`` as text (later headers win), or None."""
    if not headers:
        return None
    value: bytes | None = None
    found = False
    for k, v in headers:
        if k == name:
            value, found = v, True
    if not found or value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return None


def get_int(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> int | None:
    text = get(headers, name)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def replace(
    headers: Iterable[tuple[str, bytes | None]], updates: dict[str, str | bytes]
) -> Headers:
    """Copy of ``headers`` with every name in ``updates`` set to one new value (appended last)."""
    out: Headers = [(k, v) for k, v in headers if k not in updates]
    for k, v in updates.items():
        out.append((k, v if isinstance(v, bytes) else v.encode("utf-8")))
    return out


def new_job_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit ms timestamp, then random bits; sorts by creation time."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand = int.from_bytes(secrets.token_bytes(10), "big")
    rand_a = rand >> 68 & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def hostname() -> str:
    return os.environ.get("HOSTNAME") or os.uname().nodename
