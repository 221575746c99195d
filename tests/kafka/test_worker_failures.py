"""Failure path on the real broker: poison, retries with due times, permanent errors."""

from __future__ import annotations

import time

import pytest

from streamjobs import _headers as h
from streamjobs._names import dlq_topic
from tests.conftest import wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def _dlq_by_reason(env: Env, n: int) -> dict[str, list]:
    out: dict[str, list] = {}
    for m in env.read(dlq_topic(env.topic()), n):
        out.setdefault(h.get(m.headers(), h.DLQ_REASON) or "", []).append(m)
    return out


def test_poison_goes_to_dlq_with_raw_bytes_and_partition_moves_on(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Undecodable bytes, unknown job type and bad headers are dead-lettered with their
    raw bytes, original headers and a reason; an unknown writer schema climbs the retry
    ladder first (reason unknown_schema); a record without headers on a topic of one job type
    is that type (here undecodable); the jobs after them in the partition still run."""
    env.create_topics("task", partitions=1)
    topic = env.topic()
    base = [(h.JOB_ID, b"p1"), (h.JOB_TYPE, b"task"), (h.ATTEMPT, b"1")]
    env.emit_raw(topic, b"\x01\x02garbage", base, key=b"kg")
    env.emit_raw(topic, b"\xc3\x01" + b"\x11" * 8 + b"\x02x", [*base[:1], (h.JOB_TYPE, b"task")])
    env.emit_raw(topic, b"whatever", [(h.JOB_ID, b"p3"), (h.JOB_TYPE, b"nope")])
    env.emit_raw(topic, b"no headers at all", None)
    env.emit_raw(topic, b"bad attempt", [(h.JOB_ID, b"p5"), (h.JOB_TYPE, b"task"),
                                         (h.ATTEMPT, b"x")])
    good = env.emit()
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: any(x["id"] == good for x in env.lines()), 20, what="good job")
        by_reason = _dlq_by_reason(env, 5)
        assert set(by_reason) == {"decode_error", "unknown_type", "missing_headers",
                                  "unknown_schema"}
        garbage, bare = by_reason["decode_error"]
        assert garbage.value() == b"\x01\x02garbage" and garbage.key() == b"kg"
        assert bare.value() == b"no headers at all"
        assert h.get(bare.headers(), h.JOB_TYPE) == "task"  # the topic's one job type
        assert garbage.headers()[:3] == base  # original headers first, byte for byte
        assert h.get(garbage.headers(), h.ORIG_OFFSET) == "0"
        unknown = by_reason["unknown_schema"][0]
        assert h.get(unknown.headers(), h.ATTEMPT) == "3"  # went through 2 retries first
        assert by_reason["missing_headers"][0].value() == b"bad attempt"
        end = env.end_offsets(topic, 1)
        wait_for(lambda: env.committed(topic, 1) == end, 15, what="commit past poison")
    finally:
        w.stop()


def test_retry_respects_due_time_then_succeeds(env: Env,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing job is retried after the policy's delays (1s, 2s) and Retry(after) delays,
    never before sj-due-at, with attempt+1 each time."""
    env.create_topics("task")
    t0 = time.time()
    a = env.emit(fail="error", fail_attempts=2)
    b = env.emit(fail="retry:3", fail_attempts=1)
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= {a, b}, 30, what="retried jobs")
    finally:
        w.stop()
    runs = {x["id"]: x for x in env.lines()}
    assert runs[a]["attempt"] == 3 and runs[b]["attempt"] == 2
    for run in runs.values():
        assert run["start"] * 1000 >= int(run["due_at"]), run  # never early
    assert runs[a]["start"] - t0 >= 3.0  # 1s + 2s
    assert runs[b]["start"] - t0 >= 3.0
    lateness = [x["start"] * 1000 - int(x["due_at"]) for x in runs.values()]
    assert max(lateness) < 1500, lateness


def test_permanent_errors_dead_letter_at_once(env: Env,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """PermanentError and a class listed in permanent_errors go to the DLQ on the first
    attempt with reason permanent_error and the error recorded; retries exhausted give
    max_attempts."""
    env.create_topics("task")
    env.emit(fail="permanent", fail_attempts=9)
    env.emit(fail="bad_input", fail_attempts=9)
    env.emit(fail="error", fail_attempts=9)
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        by_reason = _dlq_by_reason(env, 3)
    finally:
        w.stop()
    assert len(by_reason["permanent_error"]) == 2
    for m in by_reason["permanent_error"]:
        assert h.get(m.headers(), h.ATTEMPT) == "1"
    classes = {h.get(m.headers(), h.ERROR_CLASS) for m in by_reason["permanent_error"]}
    assert classes == {"streamjobs.errors.PermanentError", "tests.apps.tasks.BadInput"}
    (exhausted,) = by_reason["max_attempts"]
    assert h.get(exhausted.headers(), h.ATTEMPT) == "3"
    assert h.get(exhausted.headers(), h.ORIG_TOPIC) == env.topic()
    assert "boom on attempt 3" in (h.get(exhausted.headers(), h.ERROR_MESSAGE) or "")
    assert "RuntimeError" in (h.get(exhausted.headers(), h.ERROR_TRACE) or "")
    assert env.lines() == []
