"""Rule: a delivery report that says success but carries no offset (librdkafka's implicit
ack, which may cover a record the broker never wrote) is sent again, as it was, to the same
partition, and logged with the job id; whoever asked to hear about the job hears about the
copy. Ordinary successes stay silent; failures are kept for flush()."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from streamjobs import headers as h
from streamjobs._delivery import DeliveryTracker
from streamjobs.errors import DeliveryFailed, KafkaError


class _Report:
    """The fields of a confluent_kafka.Message a delivery callback reads."""

    def __init__(self, offset: int | None, job_id: str = "job-1") -> None:
        self._offset = offset

    def offset(self) -> int | None:
        return self._offset

    def headers(self) -> None:
        return None  # a delivery report carries no headers: the callback keeps them

    def topic(self) -> str:
        return "jobs"

    def partition(self) -> int:
        return 7

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"\xc3\x01body"

    def timestamp(self) -> tuple[int, int]:
        return TIMESTAMP_CREATE_TIME, 1795820000000


class _Client:
    """Where the tracker sends records again; records the produce calls."""

    def __init__(self, full: bool = False) -> None:
        self.full = full
        self.produced: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def produce(self, *args: Any, **kwargs: Any) -> None:
        if self.full:
            raise BufferError("Local: Queue full")
        self.produced.append((args, kwargs))


def hdrs(job_id: str) -> list[tuple[str, str | bytes | None]]:
    return [(h.JOB_ID, job_id), ("sj-type", b"t")]


def _tracker(client: _Client | None = None) -> DeliveryTracker:
    tracker = DeliveryTracker()
    tracker.client = client or _Client()
    return tracker


class _Err:
    def name(self) -> str:
        return "_MSG_TIMED_OUT"

    def str(self) -> str:
        return "Local: Message timed out"


def test_success_with_offset_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    tracker = _tracker()
    with caplog.at_level(logging.WARNING, "streamjobs.producer"):
        tracker.for_record("job-1", hdrs("job-1"))(None, _Report(41))
    assert tracker.resent_count == 0 and caplog.records == []
    assert tracker.client.produced == []
    tracker.raise_failures()  # nothing kept


def test_success_without_offset_is_sent_again_as_it_was(
        caplog: pytest.LogCaptureFixture) -> None:
    tracker = _tracker()
    with caplog.at_level(logging.WARNING, "streamjobs.producer"):
        tracker.for_record("job-7", hdrs("job-7"))(None, _Report(None, "job-7"))
    assert tracker.resent_count == 1
    assert "job-7" in caplog.text and "jobs [7]" in caplog.text
    (args, kwargs), = tracker.client.produced
    assert args == ("jobs", b"\xc3\x01body", b"k")
    assert kwargs.pop("on_delivery") is not None
    assert kwargs == {"partition": 7, "headers": hdrs("job-7"), "timestamp": 1795820000000}
    tracker.raise_failures()  # sent again: nothing to raise


def test_per_message_caller_hears_about_the_copy_only() -> None:
    tracker = _tracker()
    heard: list[tuple[str, KafkaError | None]] = []
    cb = tracker.per_message("job-9", hdrs("job-9"), lambda j, e: heard.append((j, e)))
    cb(None, _Report(None, "job-9"))
    assert heard == []  # not yet: the copy is in flight
    (_, kwargs), = tracker.client.produced
    kwargs["on_delivery"](None, _Report(3, "job-9"))  # the copy's report
    assert heard == [("job-9", None)]
    assert tracker.resent_count == 1


def test_a_copy_that_cannot_be_queued_is_a_failure() -> None:
    tracker = _tracker(_Client(full=True))
    heard: list[tuple[str, KafkaError | None]] = []
    cb = tracker.per_message("job-4", hdrs("job-4"), lambda j, e: heard.append((j, e)))
    cb(None, _Report(None, "job-4"))
    assert heard[0][0] == "job-4" and isinstance(heard[0][1], DeliveryFailed)
    assert heard[0][1].code == "_UNCONFIRMED"
    tracker.for_record("job-5", hdrs("job-5"))(None, _Report(None, "job-5"))
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.code == "_UNCONFIRMED" and "2 record(s)" in str(info.value)


def test_failure_is_kept_for_flush() -> None:
    tracker = _tracker()
    err: Any = _Err()
    tracker.for_record("job-3", hdrs("job-3"))(err, _Report(None, "job-3"))
    assert tracker.resent_count == 0 and tracker.client.produced == []
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.job_id == "job-3" and info.value.code == "_MSG_TIMED_OUT"
