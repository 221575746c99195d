"""Per-key order bookkeeping (``_worker/keyhold.py``) without Kafka."""

from __future__ import annotations

from typing import Any

import pytest

from streamjobs._retry import RetryPolicy
from streamjobs._worker.app import Handler
from streamjobs._worker.keyhold import InPlace, KeyHeld, KeyHold


class _Job:
    retry = RetryPolicy(delays=(0.0,), max_attempts=2)
    permanent_errors = ()


class _Part:
    gone = revoked = False


class _Ctx:
    def __init__(self, part: Any, key: bytes, offset: int, func: Any) -> None:
        self._part, self.key, self.offset, self.attempt = part, key, offset, 1
        self._job = _Job()
        self._handler = Handler("t", func, False)


def _boom(payload: Any, ctx: Any) -> None:
    raise RuntimeError("boom")


def test_a_retried_failure_blocks_its_key_on_the_handler_thread() -> None:
    """Rule: once a job of key K fails with a retry decision, the next job of K (same
    partition) raises KeyHeld without running; other keys and partitions run."""
    hold = KeyHold()
    part, other = _Part(), _Part()
    ran: list[int] = []
    first = _Ctx(part, b"k", 1, _boom)
    later = _Ctx(part, b"k", 2, lambda p, c: ran.append(c.offset))
    free = [_Ctx(part, b"j", 3, lambda p, c: ran.append(c.offset)),
            _Ctx(other, b"k", 4, lambda p, c: ran.append(c.offset))]
    for ctx in (first, later, *free):
        ctx._handler = hold.wrap(ctx._handler)
    with pytest.raises(InPlace) as raised:
        first._handler.func({}, first)
    # decided on the handler thread, without formatting a traceback
    assert raised.value.decision.will_retry and raised.value.failure.trace == ""
    assert raised.value.failure.error_class == "RuntimeError"
    with pytest.raises(KeyHeld):
        later._handler.func({}, later)
    for ctx in free:
        ctx._handler.func({}, ctx)
    assert ran == [3, 4] and hold.is_blocked(part, b"k")


def test_retry_runs_the_blocked_job_first_then_the_waiting_ones_in_offset_order() -> None:
    """Rule: the blocked job runs again (attempt + 1) followed by its key's waiting jobs,
    sorted by offset, in one dispatch; the key is unblocked for them."""
    hold = KeyHold()
    part = _Part()
    first = _Ctx(part, b"k", 1, _boom)
    first._handler = hold.wrap(first._handler)
    with pytest.raises(InPlace):
        first._handler.func({}, first)
    hold.wait(part, _Ctx(part, b"k", 7, _boom))
    hold.wait(part, _Ctx(part, b"k", 3, _boom))
    hold.retry_later(part, first, 0.0)
    sent: list[list[Any]] = []
    hold.fire(lambda p, jobs: sent.append(jobs))
    assert [[c.offset for c in jobs] for jobs in sent] == [[1, 3, 7]]
    assert first.attempt == 2 and not hold.is_blocked(part, b"k")


def test_hold_mode_sends_late_waiters_after_the_dead_letter() -> None:
    """Rule: a final failure blocks the key until its dead letter is written (in both modes:
    the key's next job may not finish first), and a job that raised KeyHeld after its key's
    dead letter follows it with ``hold`` (``dead``); with ``release`` it runs (``run``)."""
    for mode, expected in (("hold", "dead"), ("release", "run")):
        hold = KeyHold(mode)
        part = _Part()
        ctx = _Ctx(part, b"k", 1, _boom)
        ctx.attempt = 2  # the last attempt: a dead letter
        ctx._handler = hold.wrap(ctx._handler)
        with pytest.raises(RuntimeError):
            ctx._handler.func({}, ctx)
        assert hold.is_blocked(part, b"k")
        nxt = _Ctx(part, b"k", 2, lambda payload, ctx: None)  # the key's next job, same chunk
        nxt._handler = hold.wrap(nxt._handler)
        with pytest.raises(KeyHeld):
            nxt._handler.func({}, nxt)
        assert hold.dead_lettered(part, b"k") == []
        assert hold.held(part, _Ctx(part, b"k", 2, _boom)) == expected
