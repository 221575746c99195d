"""Failure path as pure functions: the decision (retry / dead-letter with reason) and the
retry and dead-letter records (bytes kept, provenance headers)."""

from __future__ import annotations

from streamjobs import _headers as h
from streamjobs._retry import RetryPolicy
from streamjobs._worker.failures import (
    MAX_TRACE,
    Failure,
    Origin,
    dead_letter_record,
    decide,
    describe,
    is_permanent,
    retry_record,
)
from streamjobs.errors import PermanentError, Retry

POLICY = RetryPolicy(delays=(1.0, 5.0), max_attempts=3)
ORIGIN = Origin("jobs", 2, 41, 1_700_000_000_000, "host-a", "grp")
FAIL = Failure("builtins.ValueError", "bad", "Traceback...")
ORIGINAL: h.Headers = [(h.JOB_ID, b"id-1"), (h.JOB_TYPE, b"t"), (h.ATTEMPT, b"1"),
                       ("custom", b"\x00\xff"), ("empty", None)]


class MyError(Exception):
    pass


class SubError(MyError):
    pass


def test_retryable_error_uses_policy_delay_then_max_attempts() -> None:
    assert decide(RuntimeError("x"), 1, POLICY).delay == 1.0
    assert decide(RuntimeError("x"), 2, POLICY).delay == 5.0
    d = decide(RuntimeError("x"), 3, POLICY)
    assert d.delay is None and d.reason == "max_attempts"


def test_retry_exception_sets_delay_within_attempts() -> None:
    assert decide(Retry(7.5), 1, POLICY).delay == 7.5
    assert decide(Retry(7.5), 3, POLICY).reason == "max_attempts"


def test_permanent_errors_dead_letter_at_once() -> None:
    assert decide(PermanentError("no"), 1, POLICY).reason == "permanent_error"
    qualified = f"{MyError.__module__}.MyError"
    assert decide(MyError(), 1, POLICY, ("MyError",)).reason == "permanent_error"
    assert decide(MyError(), 1, POLICY, (qualified,)).reason == "permanent_error"
    assert is_permanent(SubError(), (qualified,))  # subclasses count
    assert not is_permanent(ValueError(), (qualified,))
    assert decide(ValueError(), 1, POLICY, ("MyError",)).will_retry


def test_describe_bounds_trace_and_keeps_the_tail() -> None:
    def deep(n: int) -> None:
        if n == 0:
            raise ValueError("the real cause")
        deep(n - 1)

    try:
        deep(200)
    except ValueError as exc:
        f = describe(exc)
    assert f.error_class == "ValueError"
    assert f.message == "the real cause"
    assert len(f.trace.encode()) <= MAX_TRACE
    assert f.trace.rstrip().endswith("ValueError: the real cause")


def test_retry_record_bumps_attempt_and_sets_schedule_and_provenance() -> None:
    key, value, hdrs = retry_record(b"k", b"\xc3\x01body", ORIGINAL, origin=ORIGIN,
                                    failure=FAIL, attempt=1, target="jobs",
                                    due_at_ms=5000, now_ms=4000)
    assert (key, value) == (b"k", b"\xc3\x01body")
    assert h.get(hdrs, h.ATTEMPT) == "2"
    assert h.get(hdrs, h.DUE_AT) == "5000"
    assert h.get(hdrs, h.TARGET) == "jobs"
    assert h.get(hdrs, h.ORIG_TOPIC) == "jobs"
    assert h.get(hdrs, h.ORIG_OFFSET) == "41"
    assert h.get(hdrs, h.FIRST_FAILURE_AT) == "4000"
    assert h.get(hdrs, h.ERROR_CLASS) == "builtins.ValueError"
    assert h.get(hdrs, h.WORKER_GROUP) == "grp"
    assert ("custom", b"\x00\xff") in hdrs and ("empty", None) in hdrs
    assert sum(1 for k, _ in hdrs if k == h.ATTEMPT) == 1


def test_retry_chain_keeps_first_origin_and_latest_error() -> None:
    _, _, first = retry_record(b"k", b"v", ORIGINAL, origin=ORIGIN, failure=FAIL, attempt=1,
                               target="jobs", due_at_ms=5000, now_ms=4000)
    later = Origin("jobs.retry.1s", 0, 7, 1_700_000_009_000, "host-b", "grp")
    _, _, second = retry_record(b"k", b"v", first, origin=later,
                                failure=Failure("KeyError", "k", ""), attempt=2,
                                target="jobs", due_at_ms=9000, now_ms=8000)
    assert h.get(second, h.ORIG_TOPIC) == "jobs"
    assert h.get(second, h.ORIG_OFFSET) == "41"
    assert h.get(second, h.FIRST_FAILURE_AT) == "4000"
    assert h.get(second, h.ERROR_CLASS) == "KeyError"
    assert h.get(second, h.WORKER_HOST) == "host-b"
    assert h.get(second, h.ATTEMPT) == "3"


def test_dead_letter_record_keeps_original_headers_byte_for_byte() -> None:
    key, value, hdrs = dead_letter_record(None, b"\x00garbage", ORIGINAL, origin=ORIGIN,
                                          failure=FAIL, reason="decode_error", now_ms=123)
    assert key is None and value == b"\x00garbage"
    assert hdrs[: len(ORIGINAL)] == ORIGINAL
    added = dict(hdrs[len(ORIGINAL):])
    assert added[h.DLQ_REASON] == b"decode_error"
    assert added[h.DLQ_AT] == b"123"
    assert added[h.ORIG_PARTITION] == b"2"
    assert added[h.ERROR_MESSAGE] == b"bad"


def test_dead_letter_after_retries_does_not_repeat_first_failure_headers() -> None:
    _, _, retried = retry_record(b"k", b"v", ORIGINAL, origin=ORIGIN, failure=FAIL, attempt=1,
                                 target="jobs", due_at_ms=5000, now_ms=4000)
    _, _, dead = dead_letter_record(b"k", b"v", retried, origin=ORIGIN, failure=FAIL,
                                    reason="max_attempts", now_ms=9000)
    assert dead[: len(retried)] == retried
    assert sum(1 for k, _ in dead if k == h.ORIG_TOPIC) == 1
    assert h.get(dead, h.FIRST_FAILURE_AT) == "4000"
    assert h.get(dead, h.DLQ_REASON) == "max_attempts"


def test_failure_records_of_a_compact_job_carry_the_rich_headers() -> None:
    compact: h.Headers = [(h.META, b"id-9;t"), ("tenant", b"acme")]
    _, _, retry = retry_record(b"k", b"v", compact, origin=ORIGIN, failure=FAIL, attempt=1,
                               target="jobs", due_at_ms=5000, now_ms=4000)
    assert h.get(retry, h.META) is None
    assert (h.get(retry, h.JOB_ID), h.get(retry, h.JOB_TYPE), h.get(retry, h.ATTEMPT)) == \
        ("id-9", "t", "2")
    assert h.get_int(retry, h.CREATED_AT) == ORIGIN.timestamp_ms
    _, _, dead = dead_letter_record(b"k", b"v", compact, origin=ORIGIN, failure=FAIL,
                                    reason="permanent_error", now_ms=4000)
    assert dead[:5] == [(h.JOB_ID, b"id-9"), (h.JOB_TYPE, b"t"), (h.ATTEMPT, b"1"),
                        (h.CREATED_AT, str(ORIGIN.timestamp_ms).encode()), ("tenant", b"acme")]
    assert h.get(dead, h.DLQ_REASON) == "permanent_error"
