"""The local broker is a real Apache Kafka: what streamjobs creates, Kafka's own tools see."""

from __future__ import annotations

import json
import os

from confluent_kafka.admin import AdminClient

from tests.conftest import BOOTSTRAP, MakeTopic, RunCli


def test_topics_created_through_the_broker_are_listed_by_kafka_topics(
    make_topic: MakeTopic, run_cli: RunCli
) -> None:
    """Rule: a topic created through the broker is seen by Kafka's own `kafka-topics --list`."""
    a = make_topic("alpha", partitions=2)
    b = make_topic("beta", partitions=5)
    out = run_cli("dev", "tool", "kafka-topics", "--bootstrap-server", BOOTSTRAP, "--list")
    assert out.returncode == 0, out.stderr
    listed = set(out.stdout.split())
    assert {a, b} <= listed
    desc = run_cli("dev", "tool", "kafka-topics", "--bootstrap-server", BOOTSTRAP,
                   "--describe", "--topic", b)
    assert desc.returncode == 0, desc.stderr
    assert "PartitionCount: 5" in desc.stdout


def test_broker_is_kraft_kafka_4(admin: AdminClient, run_cli: RunCli) -> None:
    """Rule: the dev broker runs Kafka 4.x in KRaft mode (a metadata quorum answers)."""
    out = run_cli("dev", "tool", "kafka-metadata-quorum", "--bootstrap-server", BOOTSTRAP,
                  "describe", "--status")
    assert out.returncode == 0, out.stderr
    assert "LeaderId" in out.stdout
    md = admin.list_topics(timeout=10)
    assert len(md.brokers) >= 1


def test_status_json_reports_up(run_cli: RunCli) -> None:
    """Rule: `dev status --json` tells scripts whether the broker is up and where."""
    port = BOOTSTRAP.rsplit(":", 1)[1]
    out = run_cli("dev", "status", "--port", port, "--json")
    data = json.loads(out.stdout)
    if os.environ.get("CI"):  # CI starts the broker with `streamjobs dev up`
        assert data["up"] is True
    if data["up"]:
        assert out.returncode == 0 and data["pid"] > 0
    else:  # a broker started some other way (e.g. a developer's own): status must say down
        assert out.returncode == 3
    assert data["bootstrap"] == BOOTSTRAP
