"""Fault scenarios e-f: brokers killed under load (on a private broker or cluster)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import ConfigResource, ResourceType  # type: ignore[attr-defined]

from streamjobs._config import KafkaConfig
from streamjobs._dev.broker import DevBroker
from tests.faults.checker import check
from tests.faults.conftest import MakeScenario
from tests.faults.harness import publish, size
from tests.faults.observe import describe_group

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


def test_broker_sigkill_mid_run_loses_and_duplicates_no_acknowledged_emit(
        own_broker: Callable[[int], DevBroker], make_scenario: MakeScenario,
        record_property: Any) -> None:
    """A single-node broker is SIGKILLed and restarted while producers emit and workers run:
    every emit the producer saw acknowledged is processed, and the idempotent producer wrote
    each job exactly once to its topic (records per job id == 1)."""
    t0 = time.monotonic()
    broker = own_broker(1)
    s = make_scenario("broker-kill", KafkaConfig(bootstrap_servers=broker.bootstrap))
    s.create_topics()
    s.sampler.start()
    [s.spawn_worker(concurrency=4) for _ in range(2)]
    s.wait_members(2)
    n = size(2000, 50_000)
    emitter = s.emit(n, rate=size(100, 1000), work_ms=1)
    time.sleep(6)
    broker.kill_node(1)
    down_at = time.monotonic()
    time.sleep(3)
    broker.restart_node(1, timeout=120)
    outage = time.monotonic() - down_at
    emitter.join()
    s.finish_emitting()
    assert s.wait_drained(180), s.not_drained()
    codes = s.stop_all()
    r = check(s.history())
    publish("e_broker_sigkill", r, "every acked emit processed; exactly one record per job",
            record_property, outage_s=round(outage, 1), delivery_failures=s.delivery_failures,
            unconfirmed_resent=len(s.unconfirmed), seconds=round(time.monotonic() - t0, 1))
    assert r.acked + s.delivery_failures == n
    assert r.missing == [] and r.lost == [], r.lost_detail
    # A delivery reported without an offset is sent again (a possible duplicate rather than a
    # possible loss): only such a job may have a second copy in the topic.
    assert set(r.producer_duplicates) <= {job for job, _, _ in s.unconfirmed}
    assert r.regressions == [] and r.skips == []
    assert set(codes.values()) == {0}, s.worker_logs()


def test_partition_leader_killed_in_three_broker_cluster_loses_nothing(
        own_broker: Callable[[int], DevBroker], make_scenario: MakeScenario,
        record_property: Any) -> None:
    """A 3-broker KRaft cluster, topics with replication factor 3 and min.insync.replicas 2:
    the broker that is both the group's coordinator and the leader of busy partitions is
    SIGKILLed mid-run (and restarted later): no acknowledged job is lost, committed offsets
    never regress or pass unfinished work, and the workers recover on their own."""
    t0 = time.monotonic()
    cluster = own_broker(3)
    config = KafkaConfig(bootstrap_servers=cluster.bootstrap)
    s = make_scenario("leader-kill", config, replication_factor=3)
    s.create_topics()
    res = ConfigResource(ResourceType.TOPIC, s.topic)
    cfg = s.admin.describe_configs([res])[res].result(timeout=30)
    assert cfg["min.insync.replicas"].value == "2"
    s.sampler.start()
    [s.spawn_worker(concurrency=4) for _ in range(2)]
    s.wait_members(2, timeout=90)
    n = size(2000, 50_000)
    emitter = s.emit(n, rate=size(100, 1000), work_ms=1)
    time.sleep(6)
    group = describe_group(cluster.bootstrap, s.group)
    assert group is not None
    leader = group["coordinator"]
    partitions = s.admin.list_topics(timeout=10).topics[s.topic].partitions.values()
    assert any(p.leader == leader for p in partitions)
    cluster.kill_node(leader)
    time.sleep(8)
    cluster.restart_node(leader, timeout=120)
    emitter.join()
    s.finish_emitting()
    assert s.wait_drained(180), s.not_drained()
    codes = s.stop_all()
    r = check(s.history())
    publish("f_leader_kill_3_nodes", r, "0 lost with RF 3 / min ISR 2", record_property,
            killed_node=leader, delivery_failures=s.delivery_failures,
            unconfirmed_resent=len(s.unconfirmed), seconds=round(time.monotonic() - t0, 1))
    assert r.acked + s.delivery_failures == n and s.delivery_failures == 0
    assert r.missing == [] and r.lost == [], r.lost_detail
    # A delivery reported without an offset is sent again (a possible duplicate rather than a
    # possible loss): only such a job may have a second copy in the topic.
    assert set(r.producer_duplicates) <= {job for job, _, _ in s.unconfirmed}
    assert r.regressions == [] and r.skips == []
    assert set(codes.values()) == {0}, s.worker_logs()
