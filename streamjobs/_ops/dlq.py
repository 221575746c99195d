"""Dead-letter topics: reading, filtering, stats and the story of each dead letter.

A dead-letter record (written by the worker, ``_worker/failures.py``) is the failed record's
key, value and original headers byte for byte, with provenance headers appended: where it was
first read (``sj-orig-*``), the latest error (``sj-error-*``), who failed it (``sj-worker-*``),
why it was dead-lettered (``sj-dlq-reason``, one of ``REASONS``) and when (``sj-dlq-at``).

Reading never joins a consumer group: partitions are assigned directly and read up to the
high watermarks captured at start (``streamjobs._scan``). Re-publishing lives in
``streamjobs._ops.reprocess``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from .. import _headers as h
from .._avro.codec import Codec
from .._avro.framing import parse
from .._config import KafkaConfig
from .._connection import Message
from .._connection import admin as admin_client
from .._names import dlq_topic, is_dlq_topic, parse_wait_topic
from .._scan import Range, partitions_of, scan, watermarks
from ..errors import DecodeError, PayloadError, UnknownJobType

__all__ = [
    "PROVENANCE",
    "REASONS",
    "DeadLetter",
    "Describer",
    "Filter",
    "Stats",
    "dlq_name",
    "fetch",
    "read",
    "stats",
]

REASONS = ("decode_error", "unknown_schema", "unknown_type", "missing_headers", "max_attempts",
           "permanent_error")

# Headers the failure path added: dropped when a dead letter is re-published, so the job runs
# as new (scheduling headers too: a dead letter read from a wait tier carries them).
PROVENANCE = frozenset({
    h.ORIG_TOPIC, h.ORIG_PARTITION, h.ORIG_OFFSET, h.ORIG_TIMESTAMP, h.FIRST_FAILURE_AT,
    h.ERROR_CLASS, h.ERROR_MESSAGE, h.ERROR_TRACE, h.WORKER_HOST, h.WORKER_GROUP,
    h.DLQ_REASON, h.DLQ_AT, h.DUE_AT, h.TARGET,
})


def dlq_name(topic: str) -> str:
    """The dead-letter topic for a job topic; a name ending in ``.dlq`` is taken as is."""
    return topic if is_dlq_topic(topic) else dlq_topic(topic)


def parse_ref(text: str) -> tuple[str | None, int, int]:
    """(dead-letter topic or None, partition, offset) of a record reference as ``dlq list``
    prints it (``<topic>/<partition>/<offset>``) or as ``PARTITION:OFFSET`` /
    ``PARTITION/OFFSET``. ValueError naming the accepted forms otherwise."""
    topic: str | None = None
    if ":" in text:
        part, _, off = text.partition(":")
    else:
        head, _, off = text.rpartition("/")
        topic, _, part = head.rpartition("/")
        topic = topic or None
        if topic is None and "/" in head:
            part = ""  # "/0/5": an empty topic
    if not (part.isdigit() and off.isdigit()):
        raise ValueError(f"expected PARTITION:OFFSET or TOPIC/PARTITION/OFFSET (as `dlq list` "
                         f"prints it), got {text!r}")
    return topic, int(part), int(off)


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, with its provenance read from the headers."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # ms, the record's own timestamp
    key: bytes | None
    value: bytes | None
    headers: h.Headers

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetter:
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        hdrs: h.Headers = [(k, v.encode() if isinstance(v, str) else v) for k, v in pairs]
        ts = msg.timestamp()[1]
        return cls(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0),
                   ts if ts and ts > 0 else 0, msg.key(), msg.value(), hdrs)

    @property
    def ref(self) -> str:
        """``<dlq topic>/<partition>/<offset>``: this record's identity."""
        return f"{self.topic}/{self.partition}/{self.offset}"

    def header(self, name: str) -> str | None:
        return h.get(self.headers, name)

    @cached_property
    def meta(self) -> h.JobMeta:
        """The job's id, type, attempt and creation time, whichever form its headers carry."""
        return h.JobMeta.from_headers(self.headers, self.timestamp)

    @property
    def reason(self) -> str:
        return self.header(h.DLQ_REASON) or "unknown"

    @property
    def job_type(self) -> str | None:
        return self.meta.job_type

    @property
    def error_class(self) -> str | None:
        return self.header(h.ERROR_CLASS)

    @property
    def dlq_at(self) -> int:
        """When it was dead-lettered (ms): ``sj-dlq-at``, else the record timestamp."""
        return h.get_int(self.headers, h.DLQ_AT) or self.timestamp

    @property
    def key_text(self) -> str | None:
        if self.key is None:
            return None
        try:
            return self.key.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def target_topic(self, job_topic: str | None = None) -> str | None:
        """Where the job runs: ``sj-orig-topic`` (a wait tier's job topic when a poison record
        was first read there), else ``job_topic`` (the job type's topic)."""
        orig = self.header(h.ORIG_TOPIC)
        if orig:
            wait = parse_wait_topic(orig)
            return wait[0] if wait else orig
        return job_topic

    def original_headers(self) -> h.Headers:
        """The headers the job had before it failed, provenance and scheduling removed."""
        return [(k, v) for k, v in self.headers if k not in PROVENANCE]


@dataclass(frozen=True)
class Filter:
    """Which dead letters to act on. Empty sets match everything; times are ms (``since``
    inclusive, ``until`` exclusive) compared with ``sj-dlq-at``; offsets are inclusive and
    need ``partition``."""

    job_types: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    exception_classes: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None

    def __post_init__(self) -> None:
        bad = self.reasons - set(REASONS)
        if bad:
            raise ValueError(f"unknown reason {sorted(bad)[0]!r} (one of {', '.join(REASONS)})")
        if (self.from_offset is not None or self.to_offset is not None) and \
                self.partition is None:
            raise ValueError("--from-offset/--to-offset need --partition")

    def matches(self, dl: DeadLetter) -> bool:
        if self.partition is not None and dl.partition != self.partition:
            return False
        if self.from_offset is not None and dl.offset < self.from_offset:
            return False
        if self.to_offset is not None and dl.offset > self.to_offset:
            return False
        if self.job_types and dl.job_type not in self.job_types:
            return False
        if self.reasons and dl.reason not in self.reasons:
            return False
        if self.exception_classes and not _class_matches(dl.error_class,
                                                         self.exception_classes):
            return False
        if self.keys and dl.key_text not in self.keys:
            return False
        at = dl.dlq_at
        if self.since_ms is not None and at < self.since_ms:
            return False
        return not (self.until_ms is not None and at >= self.until_ms)

    def ranges(self, topic: str, marks: Mapping[tuple[str, int], tuple[int, int]]
               ) -> list[Range]:
        """The offsets worth reading: every partition, or the one chosen, narrowed to the
        offset bounds and to the records present when the read started."""
        out = []
        for (t, p), (low, high) in sorted(marks.items()):
            if t != topic or (self.partition is not None and p != self.partition):
                continue
            start = max(low, self.from_offset or 0)
            end = high if self.to_offset is None else min(high, self.to_offset + 1)
            out.append(Range(t, p, start, max(start, end)))
        return out


def _class_matches(value: str | None, wanted: frozenset[str]) -> bool:
    """``TimeoutError`` matches ``TimeoutError`` and ``pkg.mod.TimeoutError``."""
    if value is None:
        return False
    return value in wanted or value.rpartition(".")[2] in wanted


def read(config: KafkaConfig, topic: str, flt: Filter | None = None) -> tuple[
        list[Range], Iterator[DeadLetter]]:
    """The ranges that will be read (for progress bars) and the matching dead letters.
    TopicNotFound / BrokerUnavailable are raised here, before iteration."""
    flt = flt or Filter()
    admin = admin_client(config)
    parts = partitions_of(admin, config, topic)
    if flt.partition is not None and flt.partition not in parts:
        raise ValueError(f"topic {topic!r} has no partition {flt.partition}")
    ranges = flt.ranges(topic, watermarks(admin, config, [(topic, p) for p in parts]))

    def records() -> Iterator[DeadLetter]:
        for msg in scan(config, ranges):
            dl = DeadLetter.from_message(msg)
            if flt.matches(dl):
                yield dl

    return ranges, records()


def fetch(config: KafkaConfig, topic: str, partition: int, offset: int) -> DeadLetter | None:
    """The record at ``partition:offset``, or None when there is none."""
    flt = Filter(partition=partition, from_offset=offset, to_offset=offset)
    _, records = read(config, topic, flt)
    return next(records, None)


# -- stats ----------------------------------------------------------------------------------

@dataclass
class Stats:
    topic: str
    total: int = 0
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    by_reason: dict[str, int] = field(default_factory=dict)
    oldest_ms: int | None = None
    newest_ms: int | None = None
    reprocessed: int = 0  # of the records present, how many were already re-published

    def add(self, dl: DeadLetter, done: bool) -> None:
        self.total += 1
        jt = dl.job_type or "(none)"
        per = self.by_type.setdefault(jt, {})
        per[dl.reason] = per.get(dl.reason, 0) + 1
        self.by_reason[dl.reason] = self.by_reason.get(dl.reason, 0) + 1
        at = dl.dlq_at
        self.oldest_ms = at if self.oldest_ms is None else min(self.oldest_ms, at)
        self.newest_ms = at if self.newest_ms is None else max(self.newest_ms, at)
        self.reprocessed += done

    def as_dict(self, now_ms: int | None = None) -> dict[str, Any]:
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return {
            "topic": self.topic, "total": self.total, "by_type": self.by_type,
            "by_reason": self.by_reason, "oldest_at_ms": self.oldest_ms,
            "newest_at_ms": self.newest_ms, "reprocessed": self.reprocessed,
            "pending": self.total - self.reprocessed,
            "oldest_age_s": None if self.oldest_ms is None else (now - self.oldest_ms) / 1000,
        }


def stats(config: KafkaConfig, topic: str, done: Iterable[tuple[int, int]] = ()) -> Stats:
    """Counts of one dead-letter topic; ``done``: (partition, offset) already re-published."""
    finished = set(done)
    out = Stats(topic)
    _, records = read(config, topic)
    for dl in records:
        out.add(dl, (dl.partition, dl.offset) in finished)
    return out


# -- the story of one dead letter -------------------------------------------------------------

class Describer:
    """Turns dead letters into JSON-ready stories: provenance, error, and the payload decoded
    with its writer schema (as written), or the raw bytes and why they cannot be decoded."""

    def __init__(self, codec: Codec | None) -> None:
        self.codec = codec

    def payload(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            return {"raw": None, "problem": "no value (null record)"}
        if self.codec is None:
            return {**_raw(raw), "problem": "no catalogue loaded (--schemas)"}
        try:
            decoded = self.codec.as_written(raw)
        except DecodeError as exc:
            return {**_raw(raw), "problem": f"{exc.reason}: {exc.detail}".rstrip(": ")}
        frame = parse(raw)
        return {"payload": jsonable(decoded.payload), "schema": decoded.schema,
                "version": decoded.version, "fingerprint": decoded.fingerprint.hex(),
                "framing": frame.framing, "schema_id": frame.schema_id}

    def fits(self, dl: DeadLetter) -> str | None:
        """None when the payload still fits the current schema of its job type, else why."""
        return revalidate(self.codec, dl)

    def story(self, dl: DeadLetter, *, trace: bool = True) -> dict[str, Any]:
        g = dl.header
        out: dict[str, Any] = {
            "ref": dl.ref, "partition": dl.partition, "offset": dl.offset,
            "timestamp_ms": dl.timestamp, "key": dl.key_text,
            "key_hex": dl.key.hex() if dl.key is not None and dl.key_text is None else None,
            "job_type": dl.job_type, "job_id": dl.meta.job_id, "attempt": str(dl.meta.attempt),
            "created_at_ms": dl.meta.created_at_ms,
            "reason": dl.reason, "dlq_at_ms": dl.dlq_at,
            "first_failure_at_ms": h.get_int(dl.headers, h.FIRST_FAILURE_AT),
            "error": {"class": g(h.ERROR_CLASS), "message": g(h.ERROR_MESSAGE)},
            "origin": {"topic": g(h.ORIG_TOPIC), "partition": h.get_int(dl.headers,
                                                                        h.ORIG_PARTITION),
                       "offset": h.get_int(dl.headers, h.ORIG_OFFSET),
                       "timestamp_ms": h.get_int(dl.headers, h.ORIG_TIMESTAMP)},
            "worker": {"host": g(h.WORKER_HOST), "group": g(h.WORKER_GROUP)},
            "headers": {k: _text(v) for k, v in dl.original_headers()},
            "value": self.payload(dl.value),
            "fits_current_schema": None,
        }
        if trace:
            out["error"]["trace"] = g(h.ERROR_TRACE)
        if self.codec is not None:
            problem = self.fits(dl)
            out["fits_current_schema"] = problem is None
            out["fit_problem"] = problem
        return out


def revalidate(codec: Codec | None, dl: DeadLetter) -> str | None:
    """None if the value decodes (writer schema resolved into the current one of its job
    type) and re-encodes with the current schema; else a one-line reason."""
    if codec is None:
        return "no catalogue loaded"
    jt = dl.job_type
    if jt is None:
        return "no sj-type header: the job type is unknown"
    if dl.value is None:
        return "no value"
    try:
        decoded = codec.decode(dl.value, jt)
        codec.check(jt, decoded.payload)
    except UnknownJobType:
        return f"job type {jt!r} is not in the catalogue"
    except DecodeError as exc:
        return f"does not decode into the current schema: {exc.reason}: {exc.detail}"
    except PayloadError as exc:
        return f"does not fit the current schema: {exc}"
    return None


def _raw(raw: bytes) -> dict[str, Any]:
    return {"raw_hex": raw.hex(), "raw_base64": base64.b64encode(raw).decode("ascii"),
            "raw_size": len(raw)}


def _text(v: bytes | None) -> str | None:
    if v is None:
        return None
    try:
        return v.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + v.hex()


def jsonable(value: Any) -> Any:
    """Avro values as JSON: bytes as base64 text, decimals as text."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Decimal):
        return str(value)
    return value
