"""`streamjobs lag` against the real broker: the same figures as Kafka's own
`kafka-consumer-groups --describe`, wait-tier backlog, exit codes."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._names import retry_topic
from streamjobs._ops.lag import group_lag, wait_backlog
from streamjobs._schemas.catalogue import Catalogue
from tests.conftest import BOOTSTRAP, MakeTopic, RunCli, wait_for, wait_visible

SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "schemas"


@pytest.fixture(autouse=True)
def _delete_groups(admin: AdminClient, unique: str) -> Iterator[None]:
    """The groups a test made (all named after ``unique``) go with it."""
    yield
    mine = [g.group_id for g in admin.list_consumer_groups().result().valid
            if g.group_id.startswith(unique)]
    if mine:
        for fut in admin.delete_consumer_groups(mine).values():
            with contextlib.suppress(Exception):
                fut.result(timeout=30)


def _produce(config: KafkaConfig, topic: str, counts: dict[int, int],
             headers: list[tuple[str, bytes]] | None = None) -> None:
    p = Producer(config.client_settings())
    for partition, n in counts.items():
        for i in range(n):
            p.produce(topic, value=b"x%d" % i, partition=partition, headers=headers)
    assert p.flush(30) == 0


def _commit(config: KafkaConfig, group: str, offsets: dict[tuple[str, int], int]) -> None:
    c = Consumer({**config.client_settings(), "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()


def _kafka_describe(run_cli: RunCli, group: str) -> dict[tuple[str, int], tuple[str, str, str]]:
    """(topic, partition) -> (CURRENT-OFFSET, LOG-END-OFFSET, LAG) as Kafka's tool prints them
    ("-" where it has none)."""
    r = run_cli("dev", "tool", "kafka-consumer-groups", "--bootstrap-server", BOOTSTRAP,
                "--describe", "--group", group, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out: dict[tuple[str, int], tuple[str, str, str]] = {}
    header: list[str] | None = None
    for line in r.stdout.splitlines():
        cols = line.split()
        if cols[:2] == ["GROUP", "TOPIC"]:
            header = cols
            continue
        if header is None or len(cols) < 6 or cols[0] != group:
            continue
        row = dict(zip(header, cols, strict=False))
        out[(row["TOPIC"], int(row["PARTITION"]))] = (
            row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"])
    return out


def _ours(run_cli: RunCli, group: str, *extra: str) -> dict[str, Any]:
    r = run_cli("lag", "--group", group, "--json", *extra)
    assert r.returncode == 0, r.stdout + r.stderr
    data: dict[str, Any] = orjson.loads(r.stdout)
    return data


def _as_kafka_prints(p: dict[str, Any]) -> tuple[str, str, str]:
    if p["committed"] is None:  # Kafka's tool shows no offset and no lag there
        return "-", str(p["end"]), "-"
    return str(p["committed"]), str(p["end"]), str(p["lag"])


def test_lag_matches_kafka_consumer_groups_on_a_partially_consumed_topic(
        kafka_config: KafkaConfig, make_topic: MakeTopic, unique: str, run_cli: RunCli) -> None:
    """Rule: for a group that committed part of a topic (one partition fully, one partly, one
    at 0) and of a second topic, `streamjobs lag --group G` gives per partition the committed
    offset, end offset and lag Kafka's own kafka-consumer-groups --describe gives; the human
    table shows the same figures."""
    a = make_topic("a", partitions=3)
    b = make_topic("b", partitions=2)
    _produce(kafka_config, a, {0: 10, 1: 7, 2: 4})
    _produce(kafka_config, b, {0: 5, 1: 3})
    group = f"{unique}-g"
    _commit(kafka_config, group, {(a, 0): 4, (a, 1): 7, (a, 2): 0, (b, 1): 2})
    ours = _ours(run_cli, group)
    theirs = _kafka_describe(run_cli, group)
    assert {(p["topic"], p["partition"]): _as_kafka_prints(p)
            for p in ours["partitions"]} == theirs
    assert theirs[(a, 0)] == ("4", "10", "6") and theirs[(b, 1)] == ("2", "3", "1")
    assert ours["total_lag"] == 6 + 0 + 4 + 1 and ours["state"] == "empty"
    assert ours["members"] == []
    table = run_cli("lag", "--group", group)
    assert table.returncode == 0, table.stderr
    rows = {tuple(line.split()[:5]) for line in table.stdout.splitlines()}
    assert (a, "0", "4", "10", "6") in rows and (b, "1", "2", "3", "1") in rows


def test_lag_of_a_group_with_a_live_member(kafka_config: KafkaConfig, make_topic: MakeTopic,
                                           unique: str, run_cli: RunCli) -> None:
    """Rule: with a consumer connected, the member and its assignment are listed, the
    partitions it owns without a commit show no committed offset (as in Kafka's tool, which
    prints "-") and a lag of the records it would still read; committed ones match Kafka's
    figures."""
    topic = make_topic("live", partitions=2)
    _produce(kafka_config, topic, {0: 6, 1: 3})
    group = f"{unique}-g"
    c = Consumer({**kafka_config.client_settings(), "group.id": group,
                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                  "client.id": "lag-test-member"})
    assigned = threading.Event()
    stop = threading.Event()
    c.subscribe([topic], on_assign=lambda _c, _tps: assigned.set())

    def poll() -> None:
        while not stop.is_set():
            c.poll(0.1)

    c.poll(0)
    wait_for(lambda: c.poll(0.2) is not None or assigned.is_set(), 30, what="assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    try:
        g = group_lag(kafka_config, group)
        assert g.state == "stable"
        [member] = g.members
        assert member.client_id == "lag-test-member"
        assert set(member.assignments) == {(topic, 0), (topic, 1)}
        by_tp = {(p.topic, p.partition): p for p in g.partitions}
        assert (by_tp[(topic, 0)].committed, by_tp[(topic, 0)].lag) == (2, 4)
        assert (by_tp[(topic, 1)].committed, by_tp[(topic, 1)].lag) == (None, 3)
        ours = _ours(run_cli, group)
        theirs = _kafka_describe(run_cli, group)
        assert {(p["topic"], p["partition"]): _as_kafka_prints(p)
                for p in ours["partitions"]} == theirs
    finally:
        stop.set()
        t.join(5)
        c.close()


def test_wait_tiers_backlog_and_next_due(kafka_config: KafkaConfig, admin: AdminClient,
                                         unique: str, run_cli: RunCli) -> None:
    """Rule: with the catalogue, `lag --group G` counts per wait tier the records the
    `<G>.wait` group has not committed past (uncommitted partitions from the log start) and
    gives as next due time the earliest sj-due-at at those committed positions."""
    prefix = f"{unique}."
    cat = Catalogue.load(SCHEMAS, topic_prefix=prefix)
    job = cat.get("task").topic
    tiers = [retry_topic(job, t) for t in cat.wait_tiers(job)]
    new = [NewTopic(t, 3, 1, config={"message.timestamp.type": "LogAppendTime"})
           for t in tiers] + [NewTopic(job, 3, 1)]
    for fut in admin.create_topics(new).values():
        fut.result(timeout=30)
    try:
        wait_visible(admin, [*tiers, job])
        one, ten = retry_topic(job, 1), retry_topic(job, 10)
        now = int(time.time() * 1000)
        for i, due in enumerate((now + 50_000, now + 20_000, now + 90_000)):
            _produce(kafka_config, one, {0: 1}, [(h.DUE_AT, str(due + i).encode())])
        _produce(kafka_config, ten, {1: 2, 2: 1}, [(h.DUE_AT, str(now + 600_000).encode())])
        group = f"{unique}-g"
        _commit(kafka_config, f"{group}.wait", {(one, 0): 1, (ten, 1): 2})
        _commit(kafka_config, group, {(job, 0): 0})
        backlog = {b.topic: b for b in wait_backlog(kafka_config, cat, group)}
        assert set(backlog) == set(tiers)
        assert (backlog[one].waiting, backlog[one].next_due_ms) == (2, now + 20_000 + 1)
        assert (backlog[ten].waiting, backlog[ten].next_due_ms) == (1, now + 600_000)
        assert backlog[ten].target == job and backlog[ten].tier == "10s"
        assert all(b.waiting == 0 and b.next_due_ms is None for t, b in backlog.items()
                   if t not in (one, ten))
        ours = _ours(run_cli, group, "--schemas", str(SCHEMAS), "--topic-prefix", prefix)
        assert {w["topic"]: w["waiting"] for w in ours["wait"] if w["waiting"]} == {
            one: 2, ten: 1}
        table = run_cli("lag", "--group", group, "--schemas", str(SCHEMAS),
                        "--topic-prefix", prefix)
        assert "wait tiers" in table.stdout and "3 waiting" in table.stdout, table.stdout
    finally:
        for fut in admin.delete_topics([*tiers, job]).values():
            fut.result(timeout=30)


def test_summary_of_the_catalogues_groups_and_exit_codes(
        kafka_config: KafkaConfig, admin: AdminClient, make_topic: MakeTopic, unique: str,
        run_cli: RunCli) -> None:
    """Rule: without --group, one line per group consuming the catalogue's topics (other
    groups only with --all-groups); an unknown group exits 3 in one line, an unreachable
    broker exits 4."""
    prefix = f"{unique}."
    topic = make_topic(name=f"{prefix}tasks", partitions=1)
    other = make_topic("other", partitions=1)
    _produce(kafka_config, topic, {0: 3})
    mine, foreign = f"{unique}-mine", f"{unique}-foreign"
    _commit(kafka_config, mine, {(topic, 0): 1})
    _commit(kafka_config, foreign, {(other, 0): 0})
    r = run_cli("lag", "--json", "--schemas", str(SCHEMAS), "--topic-prefix", prefix)
    assert r.returncode == 0, r.stderr
    groups = {g["group"]: g for g in orjson.loads(r.stdout)["groups"]}
    assert mine in groups and foreign not in groups
    assert groups[mine]["total_lag"] == 2
    r = run_cli("lag", "--all-groups", "--schemas", str(SCHEMAS), "--topic-prefix", prefix)
    assert r.returncode == 0 and mine in r.stdout and foreign in r.stdout, r.stdout
    r = run_cli("lag", "--group", f"{unique}-missing")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "not found" in r.stderr
    r = run_cli("lag", "--group", mine, "--connect-timeout", "2",
                env={"STREAMJOBS_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert r.returncode == 4 and r.stderr.count("\n") == 1, r.stderr
    assert "no Kafka broker answered at 127.0.0.1:1" in r.stderr
