"""EventBus dispatch rules and the shape of the event catalogue."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pytest

from streamjobs.events import (
    BrokerStatus,
    CommitDone,
    Event,
    EventBus,
    JobDeadLettered,
    JobEvent,
    JobFailed,
    JobReceived,
    JobStarted,
    JobSucceeded,
    LoopAlive,
    PartitionsAssigned,
    WorkerStarted,
)

JOB: dict[str, Any] = {
    "job_id": "j1",
    "job_type": "email",
    "topic": "demo.emails",
    "partition": 2,
    "offset": 41,
    "attempt": 1,
}


def started() -> JobStarted:
    return JobStarted(**JOB)


def test_listener_receives_only_its_types() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, JobStarted, LoopAlive)
    bus.emit(started())
    bus.emit(LoopAlive(at=1.0))
    bus.emit(JobReceived(**JOB))
    bus.emit(CommitDone(offsets=()))
    assert [type(e) for e in got] == [JobStarted, LoopAlive]


def test_subscribing_to_a_base_class_receives_its_subclasses() -> None:
    bus = EventBus()
    jobs: list[Event] = []
    bus.subscribe(jobs.append, JobEvent)
    bus.emit(JobReceived(**JOB))
    bus.emit(JobSucceeded(**JOB, duration_s=0.1, created_at_ms=None))
    bus.emit(JobDeadLettered(**JOB, reason="max_attempts", dlq_topic="demo.emails.dlq"))
    bus.emit(PartitionsAssigned(partitions=(("demo.emails", 0),)))
    assert [type(e) for e in jobs] == [JobReceived, JobSucceeded, JobDeadLettered]


def test_no_types_means_every_event_in_subscription_order() -> None:
    bus = EventBus()
    calls: list[str] = []
    bus.subscribe(lambda e: calls.append("all"))
    bus.subscribe(lambda e: calls.append("started"), JobStarted)
    bus.emit(started())
    bus.emit(BrokerStatus(reachable=True))
    assert calls == ["all", "started", "all"]


def test_wants_reflects_subscriptions_exactly() -> None:
    bus = EventBus()
    assert not bus.wants(JobStarted)
    bus.subscribe(lambda e: None, JobEvent)
    assert bus.wants(JobStarted)
    assert bus.wants(JobFailed)
    assert not bus.wants(LoopAlive)
    assert not bus.wants(WorkerStarted)
    bus.subscribe(lambda e: None)
    assert bus.wants(LoopAlive)


def test_event_classes_defined_after_subscribe_are_dispatched() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class PluginEvent(JobEvent):
        note: str

    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, JobEvent)
    assert bus.wants(PluginEvent)
    bus.emit(PluginEvent(**JOB, note="x"))
    assert len(got) == 1


def test_a_failing_listener_is_isolated_and_reported_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    after: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    bus.subscribe(broken)
    bus.subscribe(after.append)
    with caplog.at_level(logging.ERROR, logger="streamjobs.events"):
        bus.emit(started())
        bus.emit(started())
        bus.emit(LoopAlive(at=0.0))
    assert len(after) == 3, "the next listener still runs"
    # Deduplicate: pytest also hooks non-propagating loggers (configure_logging makes
    # "streamjobs" one), so a record can reach caplog twice.
    reports = list({id(r): r for r in caplog.records if r.name == "streamjobs.events"}.values())
    assert len(reports) == 1
    assert "RuntimeError" in reports[0].getMessage()
    assert reports[0].exc_info is not None


def test_subscribe_rejects_non_event_types() -> None:
    with pytest.raises(TypeError, match="not an Event subclass"):
        EventBus().subscribe(lambda e: None, int)  # type: ignore[type-var]


def test_events_are_frozen_and_slotted() -> None:
    e = started()
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.offset = 5  # type: ignore[misc]
    assert not hasattr(e, "__dict__")
    assert BrokerStatus(reachable=False).detail == ""
