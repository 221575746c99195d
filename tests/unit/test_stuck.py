"""Sync handler timeouts (_worker/stuck.py): the call past its timeout raises JobTimeout, its
thread is counted stuck and replaced up to the limit, the late return is ignored and frees it,
and the health listener is not live while the stuck threads reach the limit."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streamjobs._worker.stuck import StuckSlots
from streamjobs.errors import JobTimeout
from streamjobs.events import EventBus, SlotFreed, SlotStuck
from streamjobs.listeners._health import HealthListener
from tests.unit.test_timeouts import _Ctx


def _bus() -> tuple[EventBus, list[Any], HealthListener]:
    bus = EventBus()
    seen: list[Any] = []
    bus.subscribe(seen.append, SlotStuck, SlotFreed)
    health = HealthListener(60)
    health.attach(bus)
    return bus, seen, health


def test_a_call_within_its_timeout_returns_or_raises_the_handlers_error() -> None:
    bus, seen, _ = _bus()
    slots = StuckSlots(1, bus)
    ran: list[int] = []
    slots.call(0, _Ctx(lambda p, c: ran.append(1), None, 1.0), 1.0)  # type: ignore[arg-type]

    def boom(payload: Any, ctx: Any) -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        slots.call(0, _Ctx(boom, None, 1.0), 1.0)  # type: ignore[arg-type]
    assert ran == [1] and seen == [] and slots.stuck == 0


def test_a_stuck_call_is_replaced_up_to_the_limit_and_freed_when_it_returns() -> None:
    bus, seen, health = _bus()
    slots = StuckSlots(2, bus, limit=1)
    release = threading.Event()
    late: list[str] = []

    def hang(payload: Any, ctx: Any) -> str:
        release.wait(10)
        late.append("returned")
        return "ignored"

    with pytest.raises(JobTimeout):
        slots.call(0, _Ctx(hang, None, 0.05), 0.05)  # type: ignore[arg-type]
    assert slots.stuck == 1
    stuck = seen[-1]
    assert isinstance(stuck, SlotStuck) and stuck.replaced and stuck.limit == 1
    assert health.live() == (False, "1 handler threads stuck past their timeout "
                                    "(stuck limit 1)")
    # the slot has a new thread: the next timed call runs at once
    ran: list[int] = []
    slots.call(0, _Ctx(lambda p, c: ran.append(1), None, 1.0), 1.0)  # type: ignore[arg-type]
    assert ran == [1]
    release.set()
    for _ in range(200):
        if slots.stuck == 0:
            break
        threading.Event().wait(0.01)
    assert slots.stuck == 0 and late == ["returned"]
    assert isinstance(seen[-1], SlotFreed) and seen[-1].stuck == 0
    assert health.live() == (True, "")


def test_beyond_the_limit_the_stuck_thread_is_kept() -> None:
    bus, seen, _ = _bus()
    slots = StuckSlots(1, bus, limit=1)
    release = threading.Event()
    for _ in range(2):
        with pytest.raises(JobTimeout):
            slots.call(0, _Ctx(lambda p, c: release.wait(10), None, 0.05),  # type: ignore[arg-type]
                       0.05)
    assert [e.replaced for e in seen] == [True, False]
    assert slots.stuck == 2
    release.set()
