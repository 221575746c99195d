"""`streamjobs replay offsets` and `streamjobs replay range` against the real broker."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka import Producer as RawProducer
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig
from tests.conftest import BOOTSTRAP, MakeTopic, RunCli, wait_for

H = 3600_000
NOW = time.time_ns() // 1_000_000  # for tests that need only "some time ago"


_P0_TIMES: dict[str, list[int]] = {}  # topic -> its partition 0 record timestamps


def _p0_times(now: int) -> list[int]:
    """Record timestamps of partition 0: 10 records, 10 minutes apart, from 3h05m before
    ``now``, so "2h ago" falls 5 minutes away from any record and both tools see the same
    boundary. Relative to the fixture's own clock: a suite may run long before this test."""
    return [now - 3 * H - 5 * 60_000 + i * 10 * 60_000 for i in range(10)]


def _produce(config: KafkaConfig, topic: str, records: list[tuple[int, int | None]],
             headers: list[tuple[str, bytes]] | None = None) -> None:
    """records: (partition, timestamp or None)."""
    p = RawProducer(config.client_settings())
    for i, (part, ts) in enumerate(records):
        p.produce(topic, value=f"v{i}".encode(), key=f"k{i}".encode(), partition=part,
                  timestamp=ts or 0, headers=headers or [])
    assert p.flush(30) == 0


def _commit(admin: AdminClient, group: str, offsets: dict[tuple[str, int], int]) -> None:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, o)
                                               for (t, p), o in offsets.items()])
    admin.alter_consumer_group_offsets([req])[group].result(timeout=30)


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group]
    return {(tp.topic, tp.partition): tp.offset for tp in res.result(timeout=30).topic_partitions}


@pytest.fixture
def history(kafka_config: KafkaConfig, make_topic: MakeTopic, admin: AdminClient,
            unique: str) -> tuple[str, str]:
    """A 3-partition topic: p0 10 records (log start moved to 2), p1 4 old records, p2 empty;
    group committed at p0=7, p1=3, p2=0."""
    topic = make_topic("jobs", partitions=3)
    now = time.time_ns() // 1_000_000
    old = now - 5 * H
    _P0_TIMES[topic] = _p0_times(now)
    _produce(kafka_config, topic, [(0, ts) for ts in _P0_TIMES[topic]]
             + [(1, old + i) for i in range(4)])
    fut = admin.delete_records([TopicPartition(topic, 0, 2)])[TopicPartition(topic, 0, 2)]
    fut.result(timeout=30)
    group = f"{unique}-g"
    _commit(admin, group, {(topic, 0): 7, (topic, 1): 3, (topic, 2): 0})
    return topic, group


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.parametrize("ours,theirs", [
    (["--to-offset", "1"], ["--to-offset", "1"]),
    (["--to-offset", "6"], ["--to-offset", "6"]),
    (["--to-offset", "50"], ["--to-offset", "50"]),
    (["--shift-by", "-4"], ["--shift-by", "-4"]),
    (["--shift-by", "5"], ["--shift-by", "5"]),
    (["--to-datetime", "<record 4 + 1ms>"], ["--to-datetime", "<record 4 + 1ms>"]),
    (["--by-duration", "2h"], ["--to-datetime", "<2h ago>"]),
    (["--to-earliest"], ["--to-earliest"]),
])
def test_plan_matches_kafka_consumer_groups_dry_run(
        history: tuple[str, str], run_cli: RunCli, ours: list[str], theirs: list[str]) -> None:
    """Rule: the per-partition new offsets of `replay offsets` equal those of Kafka's own
    `kafka-consumer-groups --reset-offsets --dry-run` on the same input, including clamping
    to [log start, log end] and the timestamp-without-record fallback to the log end."""
    topic, group = history
    record4 = _iso(_P0_TIMES[topic][4] + 1)
    # Kafka is given the fixed datetime that "2h ago" means now (records are 5 min from it).
    resolve = {"<record 4 + 1ms>": record4, "<2h ago>": _iso(time.time_ns() // 1_000_000 - 2 * H)}
    ours = [resolve.get(a, a) for a in ours]
    theirs = [resolve.get(a, a) for a in theirs]
    mine = run_cli("replay", "offsets", "--group", group, "--topic", topic, *ours, "--json")
    assert mine.returncode == 0, mine.stderr
    got = {p["partition"]: p["new"] for p in json.loads(mine.stdout)["partitions"]}
    kafka = run_cli("dev", "tool", "kafka-consumer-groups", "--bootstrap-server",
                    BOOTSTRAP, "--group", group, "--topic", topic, "--reset-offsets",
                    *theirs, "--dry-run")
    assert kafka.returncode == 0, kafka.stdout + kafka.stderr
    expected = {}
    for line in kafka.stdout.splitlines():
        cols = line.split()
        if len(cols) == 4 and cols[0] == group and cols[1] == topic:
            expected[int(cols[2])] = int(cols[3])
    assert len(expected) == 3, kafka.stdout
    assert got == expected


def test_dry_run_changes_nothing(history: tuple[str, str], run_cli: RunCli,
                                 admin: AdminClient) -> None:
    """Rule: without --execute the committed offsets stay exactly as they were, and the plan
    still reports current -> new and the jobs that would run again."""
    topic, group = history
    before = _committed(admin, group)
    res = run_cli("replay", "offsets", "--group", group, "--topic", topic, "--to-earliest")
    assert res.returncode == 0, res.stderr
    assert "dry run, nothing changed (8 job(s) would run again)" in res.stdout  # 7-2 + 3-0
    assert _committed(admin, group) == before


def test_execute_moves_offsets(history: tuple[str, str], run_cli: RunCli,
                               admin: AdminClient, kafka_config: KafkaConfig) -> None:
    """Rule: --execute commits the planned offsets for the listed partitions only, and a
    worker of the group then starts from them."""
    topic, group = history
    res = run_cli("replay", "offsets", "--group", group, "--topic", f"{topic}:0",
                  "--shift-by", "-3", "--execute", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["executed"] is True
    assert out["partitions"] == [{"topic": topic, "partition": 0, "current": 7, "new": 4,
                                  "low": 2, "high": 10, "rerun": 3, "skipped": 0}]
    assert _committed(admin, group) == {(topic, 0): 4, (topic, 1): 3, (topic, 2): 0}
    c = RawConsumer({**kafka_config.client_settings(), "group.id": group,
                     "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0)])  # no offset given: start at the committed one
        msg = wait_for(lambda: c.poll(0.5), what="first record after the reset")
        assert msg.offset() == 4  # type: ignore[attr-defined]
    finally:
        c.close()


def test_refuses_while_group_has_active_members(history: tuple[str, str], run_cli: RunCli,
                                                admin: AdminClient,
                                                kafka_config: KafkaConfig) -> None:
    """Rule: while a member of the group is connected, replay refuses (exit 1, clear message,
    dry run or not) and the committed offsets stay unchanged."""
    topic, group = history
    before = _committed(admin, group)
    c = RawConsumer({**kafka_config.client_settings(), "group.id": group,
                     "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        wait_for(lambda: c.poll(0.2) is not None or bool(c.assignment()),
                 what="the consumer to join the group")
        for extra in ([], ["--execute"]):
            res = run_cli("replay", "offsets", "--group", group, "--topic", topic,
                          "--to-earliest", *extra)
            assert res.returncode == 1, res.stdout + res.stderr
            assert "is active" in res.stderr and "stop its workers first" in res.stderr
            assert "Traceback" not in res.stderr
        assert _committed(admin, group) == before
    finally:
        c.close()


def _read_partition(config: KafkaConfig, topic: str, partition: int) -> list[object]:
    c = RawConsumer({**config.client_settings(), "group.id": "unused",
                     "enable.auto.commit": False, "enable.partition.eof": True})
    out: list[object] = []
    try:
        c.assign([TopicPartition(topic, partition, 0)])
        while True:
            msg = c.poll(5)
            assert msg is not None, "timed out reading"
            if msg.error():
                break
            out.append(msg)
    finally:
        c.close()
    return out


def test_range_re_emits_exactly_the_range(kafka_config: KafkaConfig, make_topic: MakeTopic,
                                          run_cli: RunCli, admin: AdminClient) -> None:
    """Rule: `replay range` re-emits exactly the records [from, to] of that partition to its
    end, with original key, value and headers, sj-attempt reset to 1 and sj-replayed-from
    naming the source; the dry run writes nothing; other partitions are untouched; --since/
    --until select the same records by time."""
    topic = make_topic("jobs", partitions=2)
    base = NOW - H
    hdrs = [("sj-type", b"demo"), ("sj-attempt", b"3"), ("custom", b"\x00\xff")]
    _produce(kafka_config, topic, [(1, base + i * 1000) for i in range(10)] + [(0, None)],
             headers=hdrs)
    dry = run_cli("replay", "range", "--topic", topic, "--partition", "1", "--from-offset", "3",
                  "--to-offset", "6", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["count"] == 4
    by_time = run_cli("replay", "range", "--topic", topic, "--partition", "1", "--since",
                      _iso(base + 3000), "--until", _iso(base + 6500), "--json")
    assert by_time.returncode == 0, by_time.stderr
    assert (json.loads(by_time.stdout)["from_offset"], json.loads(by_time.stdout)["to_offset"]
            ) == (3, 6)
    assert len(_read_partition(kafka_config, topic, 1)) == 10  # dry runs wrote nothing

    res = run_cli("replay", "range", "--topic", topic, "--partition", "1", "--from-offset", "3",
                  "--to-offset", "6", "--execute")
    assert res.returncode == 0, res.stderr
    assert "re-emitted 4 record(s)" in res.stdout
    records = _read_partition(kafka_config, topic, 1)
    assert len(records) == 14
    for src, copy in zip(records[3:7], records[10:14], strict=True):
        assert (copy.key(), copy.value()) == (src.key(), src.value())  # type: ignore[attr-defined]
        got = copy.headers()  # type: ignore[attr-defined]
        assert got == [("sj-type", b"demo"), ("custom", b"\x00\xff"), ("sj-attempt", b"1"),
                       ("sj-replayed-from", f"{topic}/1/{src.offset()}".encode())]  # type: ignore[attr-defined]
    assert len(_read_partition(kafka_config, topic, 0)) == 1


def test_unknown_topic_and_unreachable_broker_exit_codes(run_cli: RunCli, unique: str) -> None:
    """Rule: a topic that does not exist exits 3 and an unreachable broker exits 4, each with
    a one-line message and no traceback."""
    res = run_cli("replay", "offsets", "--group", f"{unique}-g", "--topic", f"{unique}.nope",
                  "--to-earliest")
    assert res.returncode == 3, res.stderr
    assert "not found" in res.stderr and "Traceback" not in res.stderr
    res = run_cli("replay", "range", "--topic", "x", "--partition", "0", "--from-offset", "0",
                  "--bootstrap-servers", "127.0.0.1:1")
    assert res.returncode == 4, res.stderr
    assert res.stderr.startswith("error: no Kafka broker answered at 127.0.0.1:1") and len(
        res.stderr.splitlines()) == 1, res.stderr
