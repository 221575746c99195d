"""Kafka header names: the single place job metadata lives.

All names are namespaced ``sj`` (``traceparent`` keeps its W3C name so tracing tools find it).
Values are UTF-8 text; numbers are decimal ASCII so ``kcat -f '%h'`` shows them readably.

Compact job header (a first-attempt job as ``emit`` writes it: the hot path):
    sj               "<job id>;<job type>"; attempt 1 is implied, created-at is the record's
                     timestamp (CreateTime, set by the producer) and the writer schema's
                     fingerprint is in the value
    traceparent      W3C trace context, when the caller has one

Rich job headers (delayed jobs, retries, dead letters, replays: the cold path; also every
record written before the compact form existed, which workers still run):
    sj-id            job id: a time-ordered UUIDv7 (text), or the caller's ``emit(job_id=...)``
    sj-type          job type name from the catalogue
    sj-attempt       attempt number, 1 for the first run
    sj-created-at    creation time, ms since the epoch
    sj-schema        writer schema fingerprint (CRC-64-AVRO, 16 hex chars)
    traceparent      W3C trace context, when the caller has one

``JobMeta.from_headers`` (and ``scan`` on the worker's hot path) is the one reader of both forms;
``expand`` turns the compact form into the rich one when a record leaves the hot path.

Scheduling headers (records on retry/delay topics):
    sj-due-at        ms since the epoch before which the job must not run
    sj-target        topic the job belongs to (where it runs when due)

Schedule headers (jobs fired by a schedule; their sj-id is ``schedules.tick_job_id``):
    sj-schedule      the schedule's name
    sj-tick          the tick's time, ms since the epoch

Provenance headers (retried and dead-lettered records; the first original-* set is kept
through a retry chain, the error set is the latest):
    sj-orig-topic, sj-orig-partition, sj-orig-offset, sj-orig-timestamp
    sj-first-failure-at   ms
    sj-error-class, sj-error-message, sj-error-trace (bounded)
    sj-worker-host, sj-worker-group
    sj-dlq-reason    reason code (see ``streamjobs._ops.dlq.REASONS``)
    sj-dlq-at        ms when dead-lettered

Reprocess link (records re-published by ``streamjobs dlq reprocess``):
    sj-reprocessed-from   "<dlq topic>/<partition>/<offset>"

Replay link (records re-emitted by ``streamjobs replay range``):
    sj-replayed-from      "<topic>/<partition>/<offset>"

Follow-up link (jobs a handler emitted with ``ctx.emit``):
    sj-parent-id          the job id of the job whose handler emitted it
"""

from __future__ import annotations

import itertools
import os
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
    "META",
    "ORIG_OFFSET",
    "ORIG_PARTITION",
    "ORIG_TIMESTAMP",
    "ORIG_TOPIC",
    "PARENT_ID",
    "REPLAYED_FROM",
    "REPROCESSED_FROM",
    "SCHEDULE",
    "SCHEMA",
    "TARGET",
    "TICK",
    "TRACEPARENT",
    "WORKER_GROUP",
    "WORKER_HOST",
    "Headers",
    "JobMeta",
    "check_job_id",
    "compact",
    "expand",
    "get",
    "get_int",
    "new_job_id",
    "new_job_ids",
    "replace",
    "scan",
]

META = "sj"
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
PARENT_ID = "sj-parent-id"
SCHEDULE = "sj-schedule"
TICK = "sj-tick"

_JOB_ID_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,199}")


def check_job_id(value: str) -> str:
    """``value`` if it can be a caller-given job id, else ValueError: 1-200 characters of
    letters, digits and ``. _ : @ / + = -``, starting with a letter or digit (a UUID, an order
    number, an idempotency key), so it is safe in headers, keys, logs and URLs."""
    if not isinstance(value, str) or not _JOB_ID_TEXT.fullmatch(value):
        raise ValueError(f"job_id {value!r}: 1-200 characters of letters, digits and "
                         f"'._:@/+=-', starting with a letter or digit")
    return value

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


# -- job metadata: the compact form and the rich form, one reader -------------------------------

RawMeta = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def compact(job_id: str, job_type: str) -> str:
    """The ``sj`` header's value: ``<job id>;<job type>`` (type names never contain ``;``)."""
    return f"{job_id};{job_type}"


def scan(headers: Sequence[tuple[str, bytes | None]] | None) -> RawMeta:
    """(type, id, attempt, created-at) of a record's job metadata, in either form, as the bytes
    sent; None where absent (the compact form has no attempt or created-at). Later headers win,
    as in ``get``. The worker's hot path calls this per record: one pass, no decoding."""
    type_b = id_b = attempt_b = created_b = None
    if headers:
        for k, v in headers:
            if k == META:
                if v is not None:
                    i = v.rfind(b";")  # the type has no ";": an id may
                    if i < 0:
                        id_b, type_b = v, None
                    else:
                        id_b, type_b = v[:i], v[i + 1:]
            elif k == JOB_TYPE:
                type_b = v
            elif k == JOB_ID:
                id_b = v
            elif k == ATTEMPT:
                attempt_b = v
            elif k == CREATED_AT:
                created_b = v
    return type_b, id_b, attempt_b, created_b


def _text(v: bytes | None) -> str | None:
    if v is None:
        return None
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _int(v: bytes | None) -> int | None:
    if not v or not v.isdigit():
        return None
    return int(v)


@dataclass(frozen=True, slots=True)
class JobMeta:
    """A record's job metadata, whichever form it carries. Fields a record lacks (or carries
    unreadably) are None; ``attempt`` defaults to 1 and ``created_at_ms`` to the record's
    timestamp, as the compact form implies."""

    job_id: str | None
    job_type: str | None
    attempt: int
    created_at_ms: int | None
    compact: bool

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes | None]] | None,
                     timestamp_ms: int | None = None) -> JobMeta:
        type_b, id_b, attempt_b, created_b = scan(headers)
        created = _int(created_b)
        return cls(_text(id_b), _text(type_b), _int(attempt_b) or 1,
                   created if created is not None else
                   (timestamp_ms if timestamp_ms is not None and timestamp_ms > 0 else None),
                   any(k == META for k, _ in headers or ()))


def expand(headers: Iterable[tuple[str, bytes | None]], timestamp_ms: int) -> Headers:
    """The rich form of a record's headers, for a record leaving the hot path (a retry, a dead
    letter, a replay): each ``sj`` header becomes ``sj-id``, ``sj-type``, ``sj-attempt`` 1 and
    ``sj-created-at`` (``timestamp_ms``, the record's own timestamp) in its place. Other headers,
    and rich headers, are kept as they are."""
    out: Headers = []
    for k, v in headers:
        if k == META and v is not None:
            type_b, id_b, _, _ = scan(((k, v),))  # the one parser of the compact form
            if type_b is not None and id_b is not None:
                out += [(JOB_ID, id_b), (JOB_TYPE, type_b), (ATTEMPT, b"1"),
                        (CREATED_AT, str(timestamp_ms).encode())]
                continue
        out.append((k, v))
    return out


# os.urandom releases the GIL on every call, which hands it to other threads (the producer's
# poll thread); a private generator does not. Both it and the id block below are renewed in
# forked children, so processes never share a stream or a counter.
_rng = random.Random(os.urandom(32))

# Ids of one millisecond (RFC 9562 section 6.2, method 2, "monotonic random"): the 48-bit time,
# the version, 62 random bits (rand_a and most of rand_b) drawn once per block, then a 12-bit
# count that starts at a random value below 2048 and goes up by one per id; a block ends with
# its millisecond or at a count of 4096. So an id is a list lookup and one concatenation: no
# uuid.UUID object, no random draw, no int formatting per id.
# (ms, "tttttttt-tttt-7aaa-Vbbb-ccccccccc", count): one tuple, so a thread never pairs one
# block's prefix with another's count; ``next`` on an itertools.count is atomic under the GIL.
_Block = tuple[int, str, "itertools.count[int]"]
_block: _Block = (-1, "", itertools.count(4096))
_HEX3 = [f"{i:03x}" for i in range(4096)]


def _block_start(ms: int) -> tuple[str, int]:
    """A new block's prefix (33 characters) and first count (below 2048)."""
    t = f"{ms & 0xFFFFFFFFFFFF:012x}"
    r = _rng.getrandbits(26 + 36 + 11)
    return (f"{t[:8]}-{t[8:]}-7{r & 0xFFF:03x}-{0x8000 | (r >> 12) & 0x3FFF:04x}"
            f"-{(r >> 26) & 0xFFFFFFFFF:09x}", r >> 62)


def _new_block(ms: int) -> _Block:
    global _block
    prefix, start = _block_start(ms)
    block = _block = (ms, prefix, itertools.count(start))
    return block


def _after_fork() -> None:
    global _block
    _rng.seed(os.urandom(32))
    _block = (-1, "", itertools.count(4096))


os.register_at_fork(after_in_child=_after_fork)


def new_job_id(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit ms timestamp, version 7, variant 10, random and counter bits
    (see ``_block``); sorts by creation time. emit's hot path."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    block = _block
    if block[0] != ms:
        block = _new_block(ms)
    n = next(block[2])
    if n > 4095:
        block = _new_block(ms)
        n = next(block[2])
    return block[1] + _HEX3[n]


def new_job_ids(count: int, now_ms: int) -> list[str]:
    """``count`` UUIDv7s of one millisecond (``emit_many``'s batch), laid out as
    ``new_job_id``'s, from blocks of the batch's own (no other caller counts in them)."""
    out: list[str] = []
    while len(out) < count:
        prefix, start = _block_start(now_ms)
        out += [prefix + n for n in _HEX3[start:start + count - len(out)]]
    return out


def hostname() -> str:
    return os.environ.get("HOSTNAME") or os.uname().nodename
