"""Pure logic of replay: Kafka's reset semantics per partition, parsing, replay headers."""

from __future__ import annotations

import pytest

from streamjobs import _headers as h
from streamjobs._durations import parse_ago
from streamjobs._ops.replay import (
    PartitionPlan,
    ResetSpec,
    parse_datetime,
    parse_topic_spec,
    parse_when,
    replay_headers,
    resolve,
)


@pytest.mark.parametrize("spec,current,expected", [
    (ResetSpec("to_offset", 5), 8, 5),
    (ResetSpec("to_offset", 1), 8, 2),  # below the log start: clamped up
    (ResetSpec("to_offset", 99), 8, 10),  # past the log end: clamped down
    (ResetSpec("shift_by", -3), 8, 5),
    (ResetSpec("shift_by", -30), 8, 2),
    (ResetSpec("shift_by", 30), 8, 10),
    (ResetSpec("to_earliest"), 8, 2),
    (ResetSpec("to_latest"), None, 10),
])
def test_resolve_clamps_like_kafka(spec: ResetSpec, current: int | None, expected: int) -> None:
    assert resolve(spec, current, low=2, high=10) == expected


def test_resolve_datetime_uses_found_offset_else_log_end() -> None:
    spec = ResetSpec("to_datetime", 123)
    assert resolve(spec, 4, 0, 10, at_time=6) == 6
    assert resolve(spec, 4, 0, 10, at_time=None) == 10


def test_shift_without_committed_offset_is_an_error() -> None:
    with pytest.raises(ValueError, match="no committed offset"):
        resolve(ResetSpec("shift_by", -1), None, 0, 10)


def test_rerun_counts_only_backward_moves() -> None:
    assert PartitionPlan("t", 0, current=9, new=4, low=0, high=10).rerun == 5
    forward = PartitionPlan("t", 0, current=4, new=9, low=0, high=10)
    assert (forward.rerun, forward.skipped) == (0, 5)
    assert PartitionPlan("t", 0, current=None, new=4, low=0, high=10).rerun == 0


def test_parse_topic_spec() -> None:
    assert parse_topic_spec("jobs") == ("jobs", None)
    assert parse_topic_spec("jobs:2,0,2") == ("jobs", (0, 2))
    for bad in ("jobs:", "jobs:a", ":1", "jobs:-1"):
        with pytest.raises(ValueError):
            parse_topic_spec(bad)


def test_parse_datetime_is_utc_without_offset() -> None:
    assert parse_datetime("1970-01-01T00:00:01Z") == 1000
    assert parse_datetime("1970-01-01T00:00:01") == 1000
    assert parse_datetime("1970-01-01T01:00:01+01:00") == 1000
    assert parse_datetime("1970-01-01T00:00:01.250Z") == 1250
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_datetime("yesterday")


def test_parse_ago_accepts_ours_and_kafkas_durations() -> None:
    assert parse_ago("2h") == 7200
    assert parse_ago("PT2H") == 7200
    assert parse_ago("P1DT30M") == 86400 + 1800
    assert parse_ago("pt0.5s") == 0.5
    with pytest.raises(ValueError):
        parse_ago("P")


def test_parse_when() -> None:
    assert parse_when("2h", now=10_000_000) == 10_000_000 - 7_200_000
    assert parse_when("1970-01-01T00:00:02Z", now=5) == 2000
    with pytest.raises(ValueError, match="duration ago"):
        parse_when("soon")


def test_replay_headers_reset_attempt_and_link_source() -> None:
    out = replay_headers([(h.JOB_ID, b"id"), (h.ATTEMPT, b"3"), (h.REPLAYED_FROM, b"a/0/1")],
                         "t/1/7")
    assert out == [(h.JOB_ID, b"id"), (h.ATTEMPT, b"1"), (h.REPLAYED_FROM, b"t/1/7")]


def test_replayed_compact_record_carries_the_rich_headers() -> None:
    """A replayed copy gets a new timestamp: its created-at travels as sj-created-at."""
    out = replay_headers([(h.META, b"id-1;send"), ("tenant", b"acme")], "t/1/7", 1795820000123)
    assert out == [(h.JOB_ID, b"id-1"), (h.JOB_TYPE, b"send"), (h.CREATED_AT, b"1795820000123"),
                   ("tenant", b"acme"), (h.ATTEMPT, b"1"), (h.REPLAYED_FROM, b"t/1/7")]
