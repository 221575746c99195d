"""Every topic and group name comes from ``streamjobs._names``; durations from
``streamjobs._durations``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamjobs import _names as names
from streamjobs._durations import format_duration, parse_ago, parse_duration

PACKAGE = Path(names.__file__).parent


def test_names_of_one_job_topic_and_prefix() -> None:
    assert names.retry_topic("p.demo.emails", 600) == "p.demo.emails.retry.10m"
    assert names.parse_wait_topic("p.demo.emails.retry.10m") == ("p.demo.emails", 600.0)
    assert names.parse_wait_topic("p.demo.emails.retry.600s") is None  # not canonical
    assert names.dlq_topic("p.demo.emails") == "p.demo.emails.dlq"
    assert names.is_dlq_topic("p.demo.emails.dlq") and not names.is_dlq_topic("p.demo")
    assert names.progress_topic("p.demo.emails.dlq") == "p.demo.emails.dlq.reprocessed"
    assert names.unique_topic("p.demo.emails") == "p.demo.emails.unique"
    assert names.status_topic("p.") == "p.streamjobs.status"
    assert names.reports_topic("p.") == "p.streamjobs.workers"
    assert names.schedules_topic("p.") == "p.streamjobs.schedules"
    assert names.default_group_id("app", "p.") == "p.streamjobs-app"
    assert names.wait_group("p.streamjobs-app") == "p.streamjobs-app.wait"
    assert names.transactional_id("x.dlq") == "streamjobs-reprocess-x.dlq"


def test_durations_parse_and_format() -> None:
    assert parse_duration("250ms") == 0.25 and parse_duration(3) == 3.0
    assert parse_ago("PT2H") == 7200.0 and parse_ago("2h") == 7200.0
    assert format_duration(0.5) == "500ms" and format_duration(3600) == "1h"
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("soon")


def test_no_topic_or_group_name_is_built_outside_names() -> None:
    built = re.compile(r'f"\{[^}]+\}\.(retry\.\{|(dlq|unique|wait|reprocessed)")'
                       r'|streamjobs\.(workers|schedules)"|streamjobs-reprocess-'
                       r'|STATUS_TOPIC = ')
    found = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "_names.py" and built.search(p.read_text())]
    assert found == []


def test_one_duration_parser() -> None:
    parser = re.compile(r"_DURATION = re\.compile|_ISO_DURATION|\"d\": 86400")
    found = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
             if p.name != "_durations.py" and parser.search(p.read_text())]
    assert found == []
