"""Rule: a delivery report that says success but carries no offset (librdkafka's answer when
the broker takes a retried batch as already written) is counted and logged with the job id;
ordinary successes stay silent, failures are kept for flush()."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from streamjobs import headers as h
from streamjobs._delivery import DeliveryTracker
from streamjobs.errors import DeliveryFailed, KafkaError


class _Report:
    """The fields of a confluent_kafka.Message a delivery callback reads."""

    def __init__(self, offset: int | None, job_id: str = "job-1") -> None:
        self._offset = offset
        self._headers = [(h.JOB_ID, job_id.encode())]

    def offset(self) -> int | None:
        return self._offset

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def topic(self) -> str:
        return "jobs"

    def partition(self) -> int:
        return 7


class _Err:
    def name(self) -> str:
        return "_MSG_TIMED_OUT"

    def str(self) -> str:
        return "Local: Message timed out"


def test_success_with_offset_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    tracker = DeliveryTracker()
    with caplog.at_level(logging.WARNING, "streamjobs.producer"):
        tracker.callback(None, _Report(41))
    assert tracker.unplaced_count == 0 and caplog.records == []
    tracker.raise_failures()  # nothing kept


def test_success_without_offset_is_counted_and_names_the_job(
        caplog: pytest.LogCaptureFixture) -> None:
    tracker = DeliveryTracker()
    with caplog.at_level(logging.WARNING, "streamjobs.producer"):
        tracker.callback(None, _Report(None, "job-7"))
    assert tracker.unplaced_count == 1
    assert "job-7" in caplog.text and "jobs [7]" in caplog.text
    tracker.raise_failures()  # still a success: nothing to raise


def test_per_message_callback_hears_success_and_the_tracker_warns() -> None:
    tracker = DeliveryTracker()
    heard: list[tuple[str, KafkaError | None]] = []
    cb = tracker.per_message("job-9", lambda j, e: heard.append((j, e)))
    cb(None, _Report(None, "job-9"))
    cb(None, _Report(3, "job-9"))
    assert heard == [("job-9", None), ("job-9", None)]
    assert tracker.unplaced_count == 1


def test_failure_is_kept_for_flush() -> None:
    tracker = DeliveryTracker()
    err: Any = _Err()
    tracker.callback(err, _Report(None, "job-3"))
    assert tracker.unplaced_count == 0
    with pytest.raises(DeliveryFailed) as info:
        tracker.raise_failures()
    assert info.value.job_id == "job-3" and info.value.code == "_MSG_TIMED_OUT"
