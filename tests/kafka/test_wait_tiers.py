"""The fixed wait-tier ladder on a real broker: records left on the topic of an old tier (one
an earlier version made for a retry delay) are still drained, never early, and move on to the
current tiers; `topics plan` lists such topics as removable without counting them as pending
changes, and shows each job topic's footprint."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs import _headers as h
from streamjobs._names import retry_topic
from tests.conftest import RunCli, wait_for, wait_visible

from .jobs_catalogue import delete_topics_with_prefix, write_catalogue
from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def test_old_tier_records_run_at_their_due_time_and_move_to_current_tiers(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: a worker also reads `<topic>.retry.5s` (not a tier any more) when it exists; a
    record there whose due time passed runs at once, one due in 7 s wakes after its 5 s stay,
    moves to the current 1s tier and runs at or after its due time; the old tier gets no new
    record."""
    env.create_topics("task", partitions=1)
    topic = env.topic()
    old = retry_topic(topic, 5)
    assert 5.0 not in env.catalogue.wait_tiers(env.catalogue.get("task").topic)
    env.admin.create_topics([NewTopic(old, 1, 1, config={
        "message.timestamp.type": "LogAppendTime"})])[old].result(30)
    env.created.append(old)
    wait_visible(env.admin, [old])
    now = int(time.time() * 1000)
    job = {"key": "k", "fail": "", "fail_attempts": 0, "sleep_ms": 0}
    env.emit(topic=old, id="overdue", headers={h.DUE_AT: str(now - 1000), h.TARGET: topic},
             **job)
    env.emit(topic=old, id="later", headers={h.DUE_AT: str(now + 7000), h.TARGET: topic},
             **job)
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= {"overdue", "later"}, 40,
                 what="both jobs of the old tier")
    finally:
        w.stop()
    runs = {x["id"]: x for x in env.lines()}
    for jid in ("overdue", "later"):
        assert runs[jid]["start"] * 1000 >= int(runs[jid]["due_at"]), f"{jid} ran early"
    assert runs["later"]["start"] * 1000 - (now + 7000) < 2500
    assert env.end_offsets(old, 1) == {0: 2}  # nothing written to the old tier
    assert env.end_offsets(retry_topic(topic, 1), 1)[0] >= 1  # "later" hopped to 1s


def test_plan_lists_old_tiers_as_removable_and_shows_the_footprint(
        run_cli: RunCli, tmp_path: Path, unique: str, admin: AdminClient) -> None:
    """Rule: after `topics apply`, an extra `<topic>.retry.30s` is reported as `removable`
    (plan still exits 0: nothing pending, nothing deleted), and the plan shows 7 topics per
    job topic (job, tiers 1s 10s 1m 10m 1h, dlq)."""
    schemas = str(write_catalogue(tmp_path / "schemas", unique))
    try:
        assert run_cli("topics", "apply", "--schemas", schemas).returncode == 0
        old = retry_topic(f"{unique}.emails", 30)
        admin.create_topics([NewTopic(old, 2, 1)])[old].result(30)
        wait_visible(admin, [old])
        r = run_cli("topics", "plan", "--json", "--schemas", schemas)
        assert r.returncode == 0, r.stdout + r.stderr
        plan = orjson.loads(r.stdout)
        assert plan["pending"] == 0 and plan["removable"] == 1
        assert [(c["topic"], c["action"]) for c in plan["changes"]] == [(old, "removable")]
        assert plan["footprint"][f"{unique}.emails"] == {
            "topics": 7, "wait_tiers": ["1s", "10s", "1m", "10m", "1h"], "partitions": 14,
            "wait_partitions": 10}
        text = run_cli("topics", "plan", "--schemas", schemas)
        assert text.returncode == 0
        assert f"removable       {old}" in text.stdout
        assert "nothing to do, 1 removable old tier(s)" in text.stdout
        assert f"{unique}.emails: 7 topics (job, wait tiers 1s 10s 1m 10m 1h, dlq)" in text.stdout
        assert old in admin.list_topics(timeout=10).topics  # never deleted
    finally:
        delete_topics_with_prefix(admin, unique)
