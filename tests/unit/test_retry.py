"""Retry policies, durations, tiers and topic names (pure logic)."""

from __future__ import annotations

import random

import pytest

from streamjobs._durations import format_duration, parse_duration
from streamjobs._names import dlq_topic, parse_wait_topic, retry_topic
from streamjobs._retry import DEFAULT_DELAY_TIERS, Exponential, RetryPolicy, pick_tier
from streamjobs.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [
    ("250ms", 0.25), ("1s", 1.0), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5),
    ("7d", 604800.0), ("0s", 0.0), (" 2m ", 120.0), ("10", 10.0), (3, 3.0), (0.5, 0.5),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "s", "1x", "-1s", "1 s s", "1e3s", "abc", "nan", True, -2])
def test_parse_duration_rejects_and_names_the_text(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration(bad)  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(("seconds", "text"), [
    (1, "1s"), (30, "30s"), (300, "5m"), (3600, "1h"), (0.5, "500ms"), (90, "90s"),
    (0, "0s"), (7200, "2h"), (5400, "90m"), (1.5, "1500ms"), (86400, "24h"),
])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0.001, 0.25, 1, 2, 59, 60, 61, 600, 3599, 3600, 3601, 86400])
def test_format_then_parse_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_delays_sequence_and_last_delay_repeats() -> None:
    policy = RetryPolicy(delays=(1.0, 5.0), max_attempts=5)
    assert [policy.delay_for(n) for n in range(1, 7)] == [1.0, 5.0, 5.0, 5.0, None, None]


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert [policy.delay_for(n) for n in range(1, 5)] == [1.0, 5.0, 30.0, None]
    assert policy.tiers() == (1.0, 5.0, 30.0)


def test_single_attempt_never_retries() -> None:
    assert RetryPolicy(delays=(), max_attempts=1).delay_for(1) is None


def test_exponential_sequence_caps() -> None:
    policy = RetryPolicy(exponential=Exponential(base=1, factor=2, cap=10), max_attempts=7)
    assert [policy.delay_for(n) for n in range(1, 8)] == [1, 2, 4, 8, 10, 10, None]
    assert policy.tiers() == (1.0, 2.0, 4.0, 8.0, 10.0)


def test_exponential_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(exponential=Exponential(base=1, factor=10, cap=60), max_attempts=10**6)
    assert policy.delay_for(10**5) == 60


def test_jitter_only_shortens_within_the_fraction() -> None:
    policy = RetryPolicy(exponential=Exponential(base=10, factor=2, cap=100, jitter=0.25),
                         max_attempts=4)
    rng = random.Random(7)
    seen = set()
    for _ in range(500):
        d = policy.delay_for(2, rng)
        assert d is not None and 15.0 <= d <= 20.0
        seen.add(round(d, 3))
    assert len(seen) > 100  # really random, not a constant
    # The same seed gives the same sequence (reproducible tests of callers).
    a = [policy.delay_for(1, random.Random(1)) for _ in range(3)]
    assert a == [policy.delay_for(1, random.Random(1)) for _ in range(3)]


def test_tiers_round_to_whole_seconds_and_at_least_one() -> None:
    policy = RetryPolicy(delays=(0.2, 1.4, 1.6, 0.0), max_attempts=5)
    assert policy.tiers() == (1.0, 2.0)


def test_tiers_only_for_delays_that_can_happen() -> None:
    assert RetryPolicy(delays=(1.0, 5.0, 30.0), max_attempts=2).tiers() == (1.0,)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 1.5}, "max_attempts"),
    ({"delays": (1.0, -1.0)}, "delays[1]"),
    ({"delays": (), "max_attempts": 3}, "delays"),
])
def test_policy_validation_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"base": -1}, "exponential.base"),
    ({"base": 1, "factor": 0.5}, "exponential.factor"),
    ({"base": 10, "cap": 5}, "exponential.cap"),
    ({"base": 1, "jitter": 1.5}, "exponential.jitter"),
    ({"base": 1, "jitter": -0.1}, "exponential.jitter"),
])
def test_exponential_validation_names_the_field(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Exponential(**kwargs)
    assert info.value.field == field


def test_from_mapping_delays() -> None:
    policy = RetryPolicy.from_mapping({"delays": ["1s", "500ms", 2], "max_attempts": 3}, "r")
    assert policy == RetryPolicy(delays=(1.0, 0.5, 2.0), max_attempts=3)


def test_from_mapping_exponential() -> None:
    policy = RetryPolicy.from_mapping(
        {"exponential": {"base": "1s", "factor": 2, "cap": "1m", "jitter": 0.1},
         "max_attempts": 5}, "r")
    assert policy.exponential == Exponential(base=1.0, factor=2.0, cap=60.0, jitter=0.1)
    assert policy.max_attempts == 5


def test_from_mapping_empty_is_the_default_policy() -> None:
    assert RetryPolicy.from_mapping({}, "r") == RetryPolicy()


@pytest.mark.parametrize(("data", "field"), [
    ({"delays": ["1s", "soon"]}, "jobs.x.retry.delays[1]"),
    ({"delays": "1s"}, "jobs.x.retry.delays"),
    ({"max_attempts": 0}, "jobs.x.retry.max_attempts"),
    ({"tries": 3}, "jobs.x.retry.tries"),
    ({"delays": ["1s"], "exponential": {"base": "1s"}}, "jobs.x.retry"),
    ({"exponential": {"factor": 2}}, "jobs.x.retry.exponential.base"),
    ({"exponential": {"base": "1s", "factor": "2"}}, "jobs.x.retry.exponential.factor"),
    ({"exponential": {"base": "1m", "cap": "1s"}}, "jobs.x.retry.exponential.cap"),
    ({"exponential": {"base": "x"}}, "jobs.x.retry.exponential.base"),
    ({"exponential": {"base": "1s", "jitter": 2}}, "jobs.x.retry.exponential.jitter"),
    ({"exponential": {"base": "1s", "foo": 1}}, "jobs.x.retry.exponential.foo"),
    ("fast", "jobs.x.retry"),
])
def test_from_mapping_errors_name_where_and_field(data: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryPolicy.from_mapping(data, "jobs.x.retry")  # type: ignore[arg-type]
    assert info.value.field == field


def test_topic_names() -> None:
    assert retry_topic("demo.emails", 30) == "demo.emails.retry.30s"
    assert retry_topic("demo.emails", 600) == "demo.emails.retry.10m"
    assert dlq_topic("demo.emails") == "demo.emails.dlq"


@pytest.mark.parametrize("tier", [*DEFAULT_DELAY_TIERS, 0.5, 2, 90, 7200])
def test_parse_wait_topic_inverts_retry_topic(tier: float) -> None:
    assert parse_wait_topic(retry_topic("a.b-c_d", tier)) == ("a.b-c_d", tier)


@pytest.mark.parametrize("name", [
    "demo.emails", "demo.emails.dlq", "demo.emails.retry.", "demo.emails.retry.x",
    "demo.emails.retry.60s",  # not canonical: 60s is written 1m
    ".retry.1s", "demo.emails.retry.1s.dlq",
])
def test_parse_wait_topic_rejects_other_names(name: str) -> None:
    assert parse_wait_topic(name) is None


def test_pick_tier() -> None:
    tiers = (1.0, 10.0, 60.0, 600.0, 3600.0)
    assert pick_tier(45, tiers) == 10.0
    assert pick_tier(60, tiers) == 60.0
    assert pick_tier(10_000, tiers) == 3600.0
    assert pick_tier(0.3, tiers) == 1.0  # below every tier: the smallest
    assert pick_tier(5, (60.0, 1.0, 10.0)) == 1.0  # order does not matter
    with pytest.raises(ValueError):
        pick_tier(5, ())
