"""Rule: a delivery report that says success but carries no offset (librdkafka's implicit
ack, which may cover a record the broker never wrote) is never taken as delivered. Where the
callback knows the record's headers it is sent again, as it was, to the same partition, and
logged with the job id; whoever asked to hear about the job hears about the copy. Otherwise it
is a failure for flush(). Ordinary successes stay silent; failures are kept for flush()."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from streamjobs import _headers as h
from streamjobs._delivery import DeliveryTracker
from streamjobs.errors import DeliveryFailed, KafkaError


class _Report:
    """The fields of a confluent_kafka.Message a delivery callback reads."""

    def __init__(self, offset: int | None) -> None:
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
        tracker.callback(None, _Report(41))
        tracker.per_message("job-1", hdrs("job-1"), lambda j, e: None)(None, _Report(41))
    assert tracker.unconfirmed_count == 0 and caplog.records == []
    assert tracker.client.produced == []
    tracker.raise_failures()  # nothing kept


def test_unconfirmed_success_of_a_record_nobody_asked_about_is_a_failure() -> None:
    """The shared callback has no headers to send a copy with: flush() reports it."""
    tracker = _tracker()
    tracker.callback(None, _Report(None))
    assert tracker.unconfirmed_count == 1 and tracker.client.produced == []
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.code == "_UNCONFIRMED" and "jobs [7]" in str(info.value)


def test_unconfirmed_success_is_sent_again_as_it_was(caplog: pytest.LogCaptureFixture) -> None:
    tracker = _tracker()
    heard: list[tuple[str, KafkaError | None]] = []
    cb = tracker.per_message("job-9", hdrs("job-9"), lambda j, e: heard.append((j, e)))
    with caplog.at_level(logging.WARNING, "streamjobs.producer"):
        cb(None, _Report(None))
    assert "job-9" in caplog.text and "jobs [7]" in caplog.text
    assert heard == []  # not yet: the copy is in flight
    (args, kwargs), = tracker.client.produced
    assert args == ("jobs", b"\xc3\x01body", b"k")
    copy_cb = kwargs.pop("on_delivery")
    assert kwargs == {"partition": 7, "headers": hdrs("job-9"), "timestamp": 1795820000000}
    copy_cb(None, _Report(3))  # the copy's report
    assert heard == [("job-9", None)]
    assert tracker.unconfirmed_count == 1
    tracker.raise_failures()  # sent again: nothing to raise


def test_a_copy_that_cannot_be_queued_is_a_failure() -> None:
    tracker = _tracker(_Client(full=True))
    heard: list[tuple[str, KafkaError | None]] = []
    cb = tracker.per_message("job-4", hdrs("job-4"), lambda j, e: heard.append((j, e)))
    cb(None, _Report(None))
    assert heard[0][0] == "job-4" and isinstance(heard[0][1], DeliveryFailed)
    assert heard[0][1].code == "_UNCONFIRMED"
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.code == "_UNCONFIRMED" and info.value.job_id == "job-4"


def test_failure_is_kept_for_flush() -> None:
    tracker = _tracker()
    err: Any = _Err()
    tracker.callback(err, _Report(None))
    assert tracker.unconfirmed_count == 0 and tracker.client.produced == []
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.job_id is None and info.value.code == "_MSG_TIMED_OUT"
    assert str(info.value).startswith("1 record(s) not delivered; first: a job to jobs")
