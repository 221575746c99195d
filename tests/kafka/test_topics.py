"""topics plan/apply against the real broker: creation, idempotence, growth, drift, limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType  # type: ignore[attr-defined]

from streamjobs._config import KafkaConfig
from streamjobs._names import dlq_topic, retry_topic
from streamjobs._ops import topics
from streamjobs._schemas.catalogue import Catalogue
from streamjobs.errors import ConfigError

from .jobs_catalogue import delete_topics_with_prefix, write_catalogue


@pytest.fixture(autouse=True)
def _drop_topics(admin: AdminClient, unique: str) -> Iterator[None]:
    yield
    delete_topics_with_prefix(admin, unique)


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    res = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([res])[res].result(timeout=30)
    return {k: e.value for k, e in entries.items()}


def _partitions(admin: AdminClient, topic: str) -> int:
    return len(admin.list_topics(topic, timeout=10).topics[topic].partitions)


def test_plan_apply_plan_via_cli(run_cli: object, tmp_path: Path, unique: str,
                                 admin: AdminClient) -> None:
    """`topics plan` exits 2 with changes pending, `apply` creates them, then `plan` exits 0."""
    schemas = str(write_catalogue(tmp_path / "schemas", unique))
    r = run_cli("topics", "plan", "--json", "--schemas", schemas)  # type: ignore[operator]
    assert r.returncode == 2, r.stderr
    plan = orjson.loads(r.stdout)
    wanted = {c["topic"] for c in plan["changes"]}
    assert {f"{unique}.emails", dlq_topic(f"{unique}.emails"),
            retry_topic(f"{unique}.emails", 1)} <= wanted
    assert all(c["action"] == "create" for c in plan["changes"])
    r = run_cli("topics", "apply", "--schemas", schemas)  # type: ignore[operator]
    assert r.returncode == 0, r.stderr
    assert wanted <= set(admin.list_topics(timeout=10).topics)
    r = run_cli("topics", "plan", "--schemas", schemas)  # type: ignore[operator]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing to do" in r.stdout


def test_apply_is_idempotent_and_sets_topic_configs(kafka_config: KafkaConfig, tmp_path: Path,
                                                    unique: str, admin: AdminClient) -> None:
    """A second apply does nothing; wait tiers use LogAppendTime, the DLQ keeps 30 days,
    the job topic gets the catalogue's retention and partitions."""
    cat = Catalogue.load(write_catalogue(tmp_path / "schemas", unique, retention="2d"))
    first = topics.apply(kafka_config, cat)
    # The status and worker reports topics of an unprefixed catalogue are shared with every
    # other test: they may exist already.
    shared = {"status", "workers"}
    assert ({c.topic for c in first if c.role not in shared}
            == {s.name for s in topics.desired_topics(cat) if s.role not in shared})
    assert topics.apply(kafka_config, cat) == []
    job = f"{unique}.emails"
    assert _partitions(admin, job) == 2
    assert _config(admin, job)["retention.ms"] == str(2 * 86_400_000)
    tier = _config(admin, retry_topic(job, 1))
    assert tier["message.timestamp.type"] == "LogAppendTime"
    assert int(tier["retention.ms"]) >= 7 * 86_400_000
    assert _config(admin, dlq_topic(job))["retention.ms"] == str(30 * 86_400_000)


def test_partitions_grow_never_shrink(kafka_config: KafkaConfig, tmp_path: Path, unique: str,
                                      admin: AdminClient) -> None:
    """More partitions in the catalogue -> add_partitions; fewer -> a warning, no change."""
    topics.apply(kafka_config, Catalogue.load(write_catalogue(tmp_path / "a", unique)))
    bigger = Catalogue.load(write_catalogue(tmp_path / "b", unique, partitions=3))
    plan = topics.plan(kafka_config, bigger)
    assert plan and {c.action for c in plan} == {"add_partitions"}
    topics.apply(kafka_config, bigger)
    assert _partitions(admin, f"{unique}.emails") == 3
    smaller = Catalogue.load(write_catalogue(tmp_path / "c", unique, partitions=1))
    plan = topics.plan(kafka_config, smaller)
    assert plan and {c.action for c in plan} == {"warning"}
    topics.apply(kafka_config, smaller)
    assert _partitions(admin, f"{unique}.emails") == 3


def test_config_drift_is_planned_and_fixed(kafka_config: KafkaConfig, tmp_path: Path,
                                           unique: str, admin: AdminClient) -> None:
    """A changed retention in the catalogue shows as alter_config and apply sets it, leaving
    other topic settings alone."""
    topics.apply(kafka_config, Catalogue.load(write_catalogue(tmp_path / "a", unique)))
    cat = Catalogue.load(write_catalogue(tmp_path / "b", unique, retention="1d"))
    plan = topics.plan(kafka_config, cat)
    job = f"{unique}.emails"
    assert [c.config for c in plan if c.topic == job] == [{"retention.ms": "86400000"}]
    assert all(c.action == "alter_config" for c in plan)
    topics.apply(kafka_config, cat)
    assert _config(admin, job)["retention.ms"] == "86400000"
    assert _config(admin, retry_topic(job, 1))["message.timestamp.type"] == "LogAppendTime"
    assert topics.plan(kafka_config, cat) == []


def test_replication_factor_above_broker_count_is_a_clear_error(
        kafka_config: KafkaConfig, tmp_path: Path, unique: str, admin: AdminClient,
        run_cli: object) -> None:
    """replication_factor 3 on a one-broker cluster: ConfigError naming the topic, and the
    CLI exits 1 without a traceback; nothing is created."""
    cat = Catalogue.load(write_catalogue(tmp_path / "s", unique, replication_factor=3))
    with pytest.raises(ConfigError) as info:
        topics.apply(kafka_config, cat)
    assert info.value.field == "replication_factor" and unique in info.value.reason
    r = run_cli("topics", "apply", "--schemas", str(tmp_path / "s"))  # type: ignore[operator]
    assert r.returncode == 1 and "replication" in r.stderr and "Traceback" not in r.stderr
    assert not [t for t in admin.list_topics(timeout=10).topics if t.startswith(unique)]


def test_worker_reports_topic_is_created_under_the_topic_prefix(
        kafka_config: KafkaConfig, tmp_path: Path, unique: str, admin: AdminClient) -> None:
    """Rule: plan lists `<prefix>streamjobs.workers` (role workers) for a prefixed catalogue and
    apply creates it with one partition, compact,delete and an hour of retention; a second
    plan has nothing to do."""
    cat = Catalogue.load(write_catalogue(tmp_path / "s", "jobs"), topic_prefix=f"{unique}.")
    name = f"{unique}.streamjobs.workers"
    [change] = [c for c in topics.plan(kafka_config, cat) if c.topic == name]
    assert (change.action, change.role, change.partitions) == ("create", "workers", 1)
    topics.apply(kafka_config, cat)
    assert _partitions(admin, name) == 1
    cfg = _config(admin, name)
    assert cfg["cleanup.policy"] == "compact,delete" and cfg["retention.ms"] == "3600000"
    assert topics.plan(kafka_config, cat) == []
