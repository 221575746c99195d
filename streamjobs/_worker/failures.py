"""What happens to a job that failed: the decision and the records that carry it.

Pure functions, no Kafka: ``decide`` turns a handler's exception into "retry after N seconds"
or "dead-letter with reason R"; ``retry_record`` and ``dead_letter_record`` build the
(key, value, headers) to produce. The value bytes are never re-encoded, so a record survives
a retry chain and the dead-letter topic exactly as it was emitted.

A first-attempt job carries the compact ``sj`` header; its retry and dead-letter records carry
the rich headers instead (``headers.expand``: id, type, attempt, created-at from the record's
timestamp), so the cold path reads like it always did.

Provenance (see ``streamjobs._headers``): the ``sj-orig-*`` set and ``sj-first-failure-at``
describe the FIRST failure and are kept through a retry chain; the error set
(``sj-error-class/message/trace``) and worker set describe the latest failure.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from dataclasses import dataclass

from .. import _headers as h
from .._retry import RetryPolicy
from ..errors import PermanentError, Retry

__all__ = [
    "MAX_MESSAGE",
    "MAX_TRACE",
    "Decision",
    "Failure",
    "Origin",
    "dead_letter_record",
    "decide",
    "describe",
    "is_permanent",
    "retry_record",
]

MAX_TRACE = 4096  # bytes of traceback kept in sj-error-trace (the tail: where it raised)
MAX_MESSAGE = 1024

Record = tuple[bytes | None, bytes | None, h.Headers]


@dataclass(frozen=True, slots=True)
class Failure:
    """An error as headers describe it."""

    error_class: str
    message: str
    trace: str = ""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where the failed record was read and who failed it."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    host: str
    group: str


@dataclass(frozen=True, slots=True)
class Decision:
    """``delay`` seconds until the next attempt, or ``reason`` to dead-letter (exactly one)."""

    delay: float | None = None
    reason: str | None = None

    @property
    def will_retry(self) -> bool:
        return self.delay is not None


def class_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(exc: BaseException, *, trace: bool = True) -> Failure:
    """Class, bounded message and bounded traceback (its tail) of ``exc``; ``trace=False``
    for a failure that no record carries (formatting one stats every source file in it)."""
    message = str(exc)
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    if not trace:
        return Failure(class_name(exc), message)
    trace_s = "".join(traceback.format_exception(exc))
    encoded = trace_s.encode("utf-8", "replace")
    if len(encoded) > MAX_TRACE:
        trace_s = "...\n" + encoded[-(MAX_TRACE - 4):].decode("utf-8", "ignore")
    return Failure(class_name(exc), message, trace_s)


def is_permanent(exc: BaseException, permanent_errors: Sequence[str]) -> bool:
    """``PermanentError``, or a class (or base class) named in ``permanent_errors``, either
    bare (``ValueError``) or module-qualified (``myapp.errors.BadAddress``)."""
    if isinstance(exc, PermanentError):
        return True
    if not permanent_errors:
        return False
    names = set(permanent_errors)
    for cls in type(exc).__mro__:
        if cls.__qualname__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
            return True
    return False


def decide(exc: BaseException, attempt: int, policy: RetryPolicy,
           permanent_errors: Sequence[str] = ()) -> Decision:
    """The failure path of one failed attempt (``attempt`` is 1-based)."""
    if is_permanent(exc, permanent_errors):
        return Decision(reason="permanent_error")
    if attempt >= policy.max_attempts:
        return Decision(reason="max_attempts")
    if isinstance(exc, Retry):
        return Decision(delay=exc.after)
    delay = policy.delay_for(attempt)
    if delay is None:
        return Decision(reason="max_attempts")
    return Decision(delay=delay)


def _provenance(original: h.Headers, origin: Origin, failure: Failure,
                now_ms: int) -> dict[str, str]:
    """Provenance headers: first-failure values kept when present, error/worker set new."""
    out: dict[str, str] = {}
    first = {
        h.ORIG_TOPIC: origin.topic,
        h.ORIG_PARTITION: str(origin.partition),
        h.ORIG_OFFSET: str(origin.offset),
        h.ORIG_TIMESTAMP: str(origin.timestamp_ms),
        h.FIRST_FAILURE_AT: str(now_ms),
    }
    if h.get(original, h.ORIG_TOPIC) is not None:
        # A retry chain: keep the whole original-* set of the first failure together.
        for name in first:
            kept = h.get(original, name)
            out[name] = kept if kept is not None else first[name]
    else:
        out.update(first)
    out[h.ERROR_CLASS] = failure.error_class
    out[h.ERROR_MESSAGE] = failure.message
    out[h.ERROR_TRACE] = failure.trace
    out[h.WORKER_HOST] = origin.host
    out[h.WORKER_GROUP] = origin.group
    return out


def retry_record(key: bytes | None, value: bytes | None, original: h.Headers, *,
                 origin: Origin, failure: Failure, attempt: int, target: str, due_at_ms: int,
                 now_ms: int) -> Record:
    """The record for the next attempt: same key and value; ``sj-attempt`` = attempt + 1,
    ``sj-due-at``, ``sj-target`` and provenance replace their previous values."""
    updates: dict[str, str | bytes] = {
        h.ATTEMPT: str(attempt + 1),
        h.DUE_AT: str(due_at_ms),
        h.TARGET: target,
    }
    updates.update(_provenance(original, origin, failure, now_ms))
    return key, value, h.replace(h.expand(original, origin.timestamp_ms), updates)


def dead_letter_record(key: bytes | None, value: bytes | None, original: h.Headers, *,
                       origin: Origin, failure: Failure, reason: str, now_ms: int) -> Record:
    """The dead-letter record: key, value and the original headers byte for byte (a compact
    ``sj`` header expanded into the rich set), then the provenance, ``sj-dlq-reason`` and
    ``sj-dlq-at`` appended (readers take the last value of a name). First-failure headers
    already present are not repeated."""
    out: h.Headers = h.expand(original, origin.timestamp_ms)
    present = {name for name, _ in original}
    for name, text in _provenance(original, origin, failure, now_ms).items():
        keep_first = name in (h.ORIG_TOPIC, h.ORIG_PARTITION, h.ORIG_OFFSET, h.ORIG_TIMESTAMP,
                              h.FIRST_FAILURE_AT)
        if keep_first and name in present:
            continue
        out.append((name, text.encode("utf-8")))
    out.append((h.DLQ_REASON, reason.encode("utf-8")))
    out.append((h.DLQ_AT, str(now_ms).encode("utf-8")))
    return key, value, out
