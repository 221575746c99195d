"""Schedules: catalogue parsing, tick arithmetic (cron with time zones, fixed intervals), the
catch-up policy, deterministic tick ids and the state record."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamjobs._names import schedules_topic
from streamjobs._ops.topics import desired_topics
from streamjobs._schedules import (
    MAX_CATCH_UP,
    ON_TIME_MS,
    Schedule,
    ScheduleState,
    parse_schedule,
    plan_fires,
    tick_job_id,
)
from streamjobs._schemas.catalogue import Catalogue
from tests.unit.test_catalogue import GOOD, load_error, make_dir


def _ms(*args: int) -> int:
    return round(datetime(*args, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def test_every_ticks_are_aligned_to_the_epoch() -> None:
    s = Schedule("s", "a", every_s=30)
    assert s.next_after(0) == 30_000
    assert s.next_after(29_999) == 30_000
    assert s.next_after(30_000) == 60_000
    assert s.latest_at_or_before(59_999) == 30_000
    assert s.latest_at_or_before(60_000) == 60_000
    assert s.ticks(0, 100_000) == [30_000, 60_000, 90_000]
    assert s.spec == "every 30s"


def test_cron_in_a_time_zone_across_the_dst_change() -> None:
    """Rule: cron fields are read in the schedule's time zone; 02:30 Paris on the day clocks
    jump from 02:00 to 03:00 (2026-03-29) does not exist, so the daily 02:30 tick that day
    fires at 03:00 local (cronsim follows Debian cron), 01:00 UTC; the day before at 01:30 UTC."""
    s = Schedule("s", "a", cron="30 2 * * *", timezone="Europe/Paris")
    before = s.next_after(_ms(2026, 3, 27, 12, 0))
    assert before == _ms(2026, 3, 28, 1, 30)
    assert s.next_after(before) == _ms(2026, 3, 29, 1, 0)
    assert s.latest_at_or_before(_ms(2026, 3, 28, 1, 30)) == _ms(2026, 3, 28, 1, 30)
    assert s.latest_at_or_before(_ms(2026, 3, 28, 1, 29)) == _ms(2026, 3, 27, 1, 30)
    assert s.spec == "cron '30 2 * * *' Europe/Paris"


def test_cron_every_five_minutes() -> None:
    s = Schedule("s", "a", cron="*/5 * * * *", timezone="Europe/Paris")
    assert s.ticks(_ms(2026, 1, 1, 0, 0), _ms(2026, 1, 1, 0, 20)) == [
        _ms(2026, 1, 1, 0, m) for m in (5, 10, 15, 20)]


@pytest.mark.parametrize(("table", "reason"), [
    ({"cron": "* * * * *"}, "'job' is required"),
    ({"job": "a"}, "give cron or every"),
    ({"job": "a", "cron": "* * * * *", "every": "1s"}, "give cron or every"),
    ({"job": "a", "cron": "61 * * * *"}, r"cron '61 \* \* \* \*': Bad minute"),
    ({"job": "a", "cron": "* * * * *", "timezone": "Mars/Olympus"}, "unknown timezone"),
    ({"job": "a", "every": "1s", "timezone": "UTC"}, "timezone applies to cron"),
    ({"job": "a", "every": "1.5s"}, "whole number of seconds"),
    ({"job": "a", "every": "soon"}, "invalid duration"),
    ({"job": "a", "every": "1m", "catch_up": "some"}, "catch_up must be one of"),
    ({"job": "a", "every": "1m", "payload": 3}, "payload must be a table"),
    ({"job": "a", "every": "1m", "when": "now"}, "unknown key 'when'"),
])
def test_bad_schedules(table: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_schedule("s", table)


def test_catalogue_schedules_and_errors(tmp_path: Path) -> None:
    toml = GOOD + """
[schedules.nightly]
job = "a"
cron = "0 3 * * *"
timezone = "Europe/Paris"
payload = { id = "x", n = 1 }
catch_up = "all"
"""
    cat = Catalogue.load(make_dir(tmp_path, toml), topic_prefix="dev.")
    s = cat.schedules["nightly"]
    assert (s.job_type, s.catch_up, dict(s.payload)) == ("a", "all", {"id": "x", "n": 1})
    assert cat.topic_prefix == "dev."
    specs = {t.name: t for t in desired_topics(cat)}
    sched = specs[schedules_topic("dev.")]
    assert (sched.partitions, sched.role, sched.config["cleanup.policy"]) == (
        1, "schedules", "compact")
    # Ticks of a schedule are deduplicated by job id: the target topic gets a seen-set topic.
    assert specs["dev.t.users.unique"].role == "unique"

    err = load_error(make_dir(tmp_path, GOOD + '[schedules.x]\njob = "nope"\nevery = "1m"\n'))
    assert err.entry == "schedules.x" and "not a job type" in err.reason
    err = load_error(make_dir(tmp_path, GOOD + '[schedules.x]\njob = "a"\n'))
    assert err.entry == "schedules.x" and "give cron or every" in err.reason


def test_plan_fires_catch_up_policies() -> None:
    """Rule: one due tick fires however late; several due ticks were missed and the policy
    decides: latest fires the newest once, all fires each, none fires only an on-time one."""
    every = {p: Schedule("s", "a", every_s=2, catch_up=p) for p in ("latest", "all", "none")}
    # nothing due
    assert plan_fires(every["latest"], 100_000, 101_000) == ([], 100_000)
    # one due tick: fired by every policy when on time
    for s in every.values():
        assert plan_fires(s, 98_000, 100_500) == ([100_000], 100_000)
    # a single tick 20 s late: none skips it, the others fire it
    minutely = {p: Schedule("m", "a", every_s=60, catch_up=p) for p in ("latest", "none")}
    assert plan_fires(minutely["none"], 60_000, 140_000) == ([], 120_000)
    assert plan_fires(minutely["latest"], 60_000, 140_000) == ([120_000], 120_000)
    # downtime: ticks 92..100 s missed
    assert plan_fires(every["latest"], 90_000, 100_000) == ([100_000], 100_000)
    assert plan_fires(every["all"], 90_000, 100_000) == (
        [92_000, 94_000, 96_000, 98_000, 100_000], 100_000)
    assert plan_fires(every["none"], 90_000, 100_000) == ([100_000], 100_000)  # on time
    assert plan_fires(minutely["none"], 0, 180_000 + ON_TIME_MS + 1) == ([], 180_000)
    # never fired: only the look-back window counts
    assert plan_fires(every["all"], None, 10_000) == ([6_000, 8_000, 10_000], 10_000)
    assert plan_fires(every["latest"], None, 10_000) == ([10_000], 10_000)
    # a very long outage with "all": bounded per pass, continued from the last fired
    fire, last = plan_fires(every["all"], 0, 10_000_000)
    assert len(fire) == MAX_CATCH_UP and last == fire[-1] == 2_000 * MAX_CATCH_UP


def test_tick_job_id_is_deterministic_time_ordered_uuidv8() -> None:
    a = tick_job_id("nightly", 1_700_000_000_000)
    assert a == tick_job_id("nightly", 1_700_000_000_000)
    assert a != tick_job_id("nightly", 1_700_000_001_000)
    assert a != tick_job_id("weekly", 1_700_000_000_000)
    u = uuid.UUID(a)
    assert (u.version, u.variant) == (8, uuid.RFC_4122)
    assert int(a.replace("-", "")[:12], 16) == 1_700_000_000_000  # the tick's ms first
    assert tick_job_id("n", 1_000) < tick_job_id("n", 2_000)


def test_state_record_round_trip_and_garbage() -> None:
    st = ScheduleState(10, 8, "id", 9, "host/1")
    assert ScheduleState.from_bytes(st.to_bytes()) == st
    assert ScheduleState.from_bytes(b"not json") is None
    assert ScheduleState.from_bytes(b'{"x": 1}') is None


def test_schedule_name_rules() -> None:
    with pytest.raises(ValueError, match="schedule name"):
        Schedule("a b", "a", every_s=1)
