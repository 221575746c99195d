"""Rule: a worker reads its job topics with one consumer in its group G and the wait tiers with
a second one in ``G.wait``: G is never assigned a tier partition, and a retried job's tier
offset is committed in ``G.wait`` (docs/worker.md, "Two consumers")."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient

from streamjobs._names import parse_wait_topic, retry_topic
from streamjobs._worker import wait_group
from streamjobs.events import PartitionsAssigned
from tests.conftest import wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def _assigned_topics(admin: AdminClient, group: str) -> set[str]:
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    return {tp.topic for m in desc.members for tp in m.assignment.topic_partitions}


def test_wait_tiers_have_their_own_consumer_and_group(
        env: Env, admin: AdminClient, monkeypatch: pytest.MonkeyPatch) -> None:
    env.create_topics("task", partitions=1)
    job = env.emit(fail="error", fail_attempts=1)  # fails once: one trip through the 1 s tier
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: any(x["id"] == job for x in env.lines()), 30, what="retried job")
        tier = retry_topic(env.topic(), 1.0)
        wait_for(lambda: env.committed(tier, 1, group=wait_group(env.group)) == {0: 1}, 15,
                 what="tier offset committed in the wait group")
        jobs_group = _assigned_topics(admin, env.group)
        waits_group = _assigned_topics(admin, wait_group(env.group))
    finally:
        w.stop()
    assert jobs_group == {env.topic()}
    assert waits_group and all(parse_wait_topic(t) is not None for t in waits_group)
    assert tier in waits_group
    assert env.committed(tier, 1) == {0: -1001}  # nothing of the tier in G
    assert env.committed(env.topic(), 1) == {0: 1}
    # Both consumers reported their assignments through the same event catalogue.
    topics = {t for e in w.of(PartitionsAssigned) for t, _ in e.partitions}
    assert topics == jobs_group | waits_group
