"""Per-key order bookkeeping (``_worker/keyhold.py``) without Kafka."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from streamjobs._retry import RetryPolicy
from streamjobs._worker.app import Handler
from streamjobs._worker.keyhold import InPlace, KeyHeld, KeyHold
from streamjobs._worker.offsets import PartitionTracker
from streamjobs._worker.ordering import Lanes, dispatch
from streamjobs._worker.partition import Pauses
from streamjobs.errors import PermanentError


class _Job:
    retry = RetryPolicy(delays=(0.0,), max_attempts=2)
    permanent_errors = ()


class _Part:
    gone = revoked = False
    tracker: Any = None
    is_async = False
    tasks = 0
    pace = None  # never inline (inline.py)


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
    hold.fire(lambda p, jobs: sent.append(jobs), _idle, _no_dead)
    assert [[c.offset for c in jobs] for jobs in sent] == [[1, 3, 7]]
    assert first.attempt == 2 and not hold.is_blocked(part, b"k")


def test_a_dead_lettered_key_is_let_go_after_the_jobs_it_handed_back() -> None:
    """Rule: a final failure blocks the key until its dead letter is written (in both modes:
    the key's next job may not finish first); its waiting jobs are let go (to run, release,
    or to be dead-lettered behind it, hold) only once the jobs of its chunk handed back with
    KeyHeld are seen, so they go too, in offset order, never after later ones."""
    hold = KeyHold("hold")
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
    hold.wait(part, _Ctx(part, b"k", 9, _boom))  # taken after the block
    hold.dead_lettered(part, b"k", "job-1")
    dead: list[tuple[list[int], str]] = []

    def behind(p: Any, jobs: list[Any], job_id: str) -> None:
        dead.append(([c.offset for c in jobs], job_id))

    hold.fire(_never, _idle, behind)
    assert dead == [] and hold.is_blocked(part, b"k")  # offset 2 not seen yet
    assert hold.held(part, nxt) == "wait"
    time.sleep(0.005)
    hold.fire(_never, _idle, behind)
    assert dead == [([2, 9], "job-1")] and not hold.is_blocked(part, b"k")


def test_a_key_is_not_let_go_while_its_lane_still_runs() -> None:
    """Rule: a retried job's key is not let go while its lane still has a task (jobs
    dispatched before the block, which would otherwise run before the retried job)."""
    hold = KeyHold()
    part = _Part()
    first = _Ctx(part, b"k", 1, _boom)
    first._handler = hold.wrap(first._handler)
    with pytest.raises(InPlace):
        first._handler.func({}, first)
    hold.retry_later(part, first, 0.0)
    sent: list[list[Any]] = []
    busy = {(part, b"k")}
    hold.fire(lambda p, jobs: sent.append(jobs), busy.__contains__, _no_dead)
    assert sent == [] and hold.due is not None
    busy.clear()
    time.sleep(0.005)
    hold.fire(lambda p, jobs: sent.append(jobs), busy.__contains__, _no_dead)
    assert [[c.offset for c in jobs] for jobs in sent] == [[1]]


def _idle(lane: Any) -> bool:
    return False


def _never(part: Any, jobs: list[Any]) -> None:
    raise AssertionError("nothing may run")


def _no_dead(part: Any, jobs: list[Any], job_id: str) -> None:
    raise AssertionError("nothing was dead-lettered")


def test_waiting_jobs_stretch_the_in_flight_bound_up_to_their_own_bound() -> None:
    """Rule: jobs waiting behind a blocked key do not count against max_in_flight (a
    partition's other keys keep being taken), until max_waiting of them wait: then the
    bound drops to zero and every partition pauses until they drain below it."""
    hold = KeyHold(max_waiting=3)
    part = _Part()
    hold.retry_later(part, _Ctx(part, b"k", 1, _boom), 60.0)
    for offset in (2, 3):
        hold.wait(part, _Ctx(part, b"k", offset, _boom))
    assert hold.bounds(10, 5) == (12, 7)
    pauses = Pauses()  # 10 runnable + 2 waiting taken: no pause
    pauses.reconcile([], in_flight=12 - 1, max_in_flight=12, resume_at=7, stopping=False,
                     now_ms=1000.0)
    assert not pauses.holding
    hold.wait(part, _Ctx(part, b"k", 4, _boom))
    bound, resume_at = hold.bounds(10, 5)
    pauses.reconcile([], in_flight=3, max_in_flight=bound, resume_at=resume_at,
                     stopping=False, now_ms=1000.0)
    assert pauses.holding  # 3 waiting, nothing else: no record is taken (then paused)
    hold.dead_lettered(part, b"k", "job-1")
    released: list[list[int]] = []
    hold.fire(_never, _idle, lambda p, jobs, job_id: released.append([c.offset for c in jobs]))
    assert released == [[2, 3, 4]]
    assert hold.count == 0 and hold.bounds(10, 5) == (10, 5)


def test_dispatch_keeps_back_only_the_blocked_keys_jobs_and_counts_them() -> None:
    """Rule: at dispatch (key lanes), jobs of a key blocked in their partition wait
    (counted); other keys, other partitions, unkeyed and foreign jobs go to their lanes."""
    hold = KeyHold()
    part, other = _Part(), _Part()
    blocker = _Ctx(part, b"k", 1, _boom)
    blocker._handler = hold.wrap(blocker._handler)
    with pytest.raises(InPlace):
        blocker._handler.func({}, blocker)
    submitted: list[tuple[Any, list[int]]] = []

    def submit(p: Any, lane: Any, chunk: Any, is_async: bool) -> None:
        submitted.append((lane, list(chunk[1])))

    def run(p: Any, jobs: list[Any]) -> None:
        dispatch(p, jobs, [c.offset for c in jobs], "key", Lanes(), submit, 4,
                 hold.held_keys(p), hold.keep_back)

    run(part, [_Ctx(part, b"j", 5, _boom), _Ctx(part, b"k", 6, _boom), _Foreign(b"k", 7),
               _Ctx(part, None, 8, _boom)])  # type: ignore[arg-type]
    assert sorted(offsets for _, offsets in submitted) == [[5], [7], [8]]
    assert hold.count == 1 and [c.offset for _, _, c in hold.waiting[(part, b"k")]] == [6]
    submitted.clear()
    run(other, [_Ctx(other, b"k", 9, _boom)])
    assert submitted == [((other, b"k"), [9])]
    hold.forget(part)
    assert hold.count == 0 and not hold.is_blocked(part, b"k")


def test_only_a_keyed_retry_is_decided_in_place() -> None:
    """Rule: the wrapper turns a keyed job's retry decision into InPlace (no traceback:
    no record carries it); a last attempt or a permanent error raises the handler's own
    exception (its dead letter carries the traceback), and so does an unkeyed or foreign
    job, which is not blocked."""
    hold = KeyHold()
    part = _Part()
    last = _Ctx(part, b"k", 1, _boom)
    last.attempt = 2
    unkeyed = _Ctx(part, None, 2, _boom)  # type: ignore[arg-type]
    foreign = _Foreign(b"f", 3)
    for ctx in (last, unkeyed, foreign):
        handler = hold.wrap(Handler("t", _boom, False))
        with pytest.raises(RuntimeError):
            handler.func({}, ctx)

    def permanent(payload: Any, ctx: Any) -> None:
        raise PermanentError("bad input")

    with pytest.raises(PermanentError):
        hold.wrap(Handler("t", permanent, False)).func({}, _Ctx(part, b"p", 4, permanent))
    assert hold.is_blocked(part, b"k") and hold.is_blocked(part, b"p")  # until dead-lettered
    assert not hold.is_blocked(part, None) and not hold.is_blocked(part, b"f")  # type: ignore[arg-type]


class _Foreign:  # a foreign producer's record: a JobContext without ``_part``
    def __init__(self, key: bytes, offset: int) -> None:
        self.key, self.offset, self.attempt = key, offset, 1
        self._job = _Job()


def test_a_commit_position_held_behind_too_many_records_stalls_its_partition() -> None:
    """Rule: once max_span records sit at or above a partition's commit position while a
    blocked job holds it, the partition is reported (to pause) until that job's next retry;
    other partitions are not, and it is not once the blocked job finished."""
    hold = KeyHold(max_span=10)
    part, calm = _Part(), _Part()
    part.tracker, calm.tracker = PartitionTracker(), PartitionTracker()
    part.tracker.add_range(0, 10)
    part.tracker.done_range(1, 10)  # other keys finished above the blocked offset 0
    calm.tracker.add_range(0, 3)
    for p in (part, calm):
        blocker = _Ctx(p, b"k", 0, _boom)
        blocker._handler = hold.wrap(blocker._handler)
        with pytest.raises(InPlace):
            blocker._handler.func({}, blocker)
        hold.retry_later(p, blocker, 5.0)
    now = time.monotonic()
    [(stalled, until)] = hold.stalled()
    assert stalled is part and now + 4.0 < until < now + 6.0
    part.tracker.done(0)
    assert part.tracker.span == 0 and hold.stalled() == []


def test_an_async_handler_is_checked_and_decided_alike() -> None:
    """Rule: an async handler's wrapper hands a blocked key's job back and turns a keyed
    retry decision into InPlace, as the sync one does."""
    hold = KeyHold()
    part = _Part()

    async def boom(payload: Any, ctx: Any) -> None:
        raise RuntimeError("boom")

    handler = hold.wrap(Handler("t", boom, True))
    assert handler.is_async
    with pytest.raises(InPlace):
        asyncio.run(handler.func({}, _Ctx(part, b"k", 1, boom)))
    with pytest.raises(KeyHeld):
        asyncio.run(handler.func({}, _Ctx(part, b"k", 2, boom)))
