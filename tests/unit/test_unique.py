"""Unique jobs: the catalogue's policy, the per-partition seen set, caller job ids, the topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjobs._headers import check_job_id
from streamjobs._names import unique_topic
from streamjobs._ops.topics import desired_topics
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._unique import SeenEntry, SeenSet, UniquePolicy, parse_unique
from streamjobs.events import EventBus, JobDuplicate
from streamjobs.listeners._metrics import MetricsListener
from tests.unit.test_catalogue import GOOD, load_error, make_dir


def test_policy_from_the_catalogue(tmp_path: Path) -> None:
    toml = GOOD.replace('key_field = "id"', 'key_field = "id"\nunique = { window = "10m" }')
    cat = Catalogue.load(make_dir(tmp_path, toml))
    assert cat.get("a").unique == UniquePolicy(by="key", window_s=600)
    assert cat.unique_topics() == {"t.users": 600}
    spec = {t.name: t for t in desired_topics(cat)}[unique_topic("t.users")]
    assert spec.partitions == cat.get("a").partitions  # partition p keeps partition p's set
    assert spec.config == {"cleanup.policy": "compact,delete", "retention.ms": "3600000",
                           "segment.ms": "1800000"}


@pytest.mark.parametrize(("value", "reason"), [
    ('"10m"', "unique must be a table"),
    ('{ by = "key" }', "unique.window is required"),
    ('{ by = "payload", window = "1m" }', "unique.by must be one of key, job_id"),
    ('{ window = "0s" }', "unique.window must be > 0"),
    ('{ window = "soon" }', "unique.window: invalid duration"),
    ('{ window = "1m", scope = "all" }', "unknown key 'scope'"),
])
def test_bad_policies(tmp_path: Path, value: str, reason: str) -> None:
    err = load_error(make_dir(tmp_path, GOOD + f"unique = {value}\n"))
    assert err.entry == "jobs.a" and reason in err.reason


def test_parse_defaults_to_by_key() -> None:
    assert parse_unique({"window": "30s"}) == UniquePolicy("key", 30.0)


def test_seen_set_duplicates_within_the_window_only() -> None:
    seen = SeenSet(keep_ms=10_000)
    assert seen.check("k", SeenEntry(5, 1_000, "a"), 10_000) is None  # first
    first = seen.check("k", SeenEntry(9, 5_000, "b"), 10_000)
    assert first == SeenEntry(5, 1_000, "a")  # duplicate of offset 5
    # Read again after a restart (offset not committed): itself, not a duplicate.
    assert seen.check("k", SeenEntry(5, 1_000, "a"), 10_000) is None
    # Emitted after the window: runs, and becomes the new first.
    assert seen.check("k", SeenEntry(20, 11_000, "c"), 10_000) is None
    assert seen.check("k", SeenEntry(21, 12_000, "d"), 10_000) == SeenEntry(20, 11_000, "c")
    # A producer with a slow clock: created "before" the first, still within the window.
    assert seen.check("k", SeenEntry(22, 10_500, "e"), 10_000) == SeenEntry(20, 11_000, "c")
    assert seen.check("other", SeenEntry(23, 12_000, "f"), 10_000) is None


def test_seen_set_forgets_entries_older_than_the_longest_window() -> None:
    seen = SeenSet(keep_ms=1_000)
    seen.load("old", SeenEntry(1, 0, "a"))
    seen.load("new", SeenEntry(2, 5_000, "b"))
    seen.prune(5_500)
    assert len(seen) == 1
    assert seen.check("old", SeenEntry(3, 5_600, "c"), 1_000) is None


def test_entry_record_round_trip() -> None:
    e = SeenEntry(7, 123, "id-1")
    assert SeenEntry.from_bytes(e.to_bytes()) == e
    assert SeenEntry.from_bytes(b"{}") is None
    assert SeenEntry.from_bytes(None) is None


@pytest.mark.parametrize("good", ["order-42", "0190b6d2-7c1e-7b3a-9c4e-1f2a3b4c5d6e",
                                  "tenant/a:b@c+d=e.f_g", "x" * 200])
def test_caller_job_ids_accepted(good: str) -> None:
    assert check_job_id(good) == good


@pytest.mark.parametrize("bad", ["", "-x", "has space", "x" * 201, "é", "a\nb", "ab\n"])
def test_caller_job_ids_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="job_id"):
        check_job_id(bad)


def test_duplicates_counted_by_job_type() -> None:
    bus = EventBus()
    metrics = MetricsListener()
    metrics.attach(bus)
    bus.emit(JobDuplicate("id", "a", "t", 0, 3, 1, "a/k:x", 1))
    bus.emit(JobDuplicate("id", "a", "t", 0, 4, 1, "a/k:x", 1))
    value = metrics.registry.get_sample_value("streamjobs_jobs_duplicate_total",
                                              {"job_type": "a"})
    assert value == 2
