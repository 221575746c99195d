"""Two environments (topic prefixes) on one broker never touch each other's topics or consumer
groups: emit (CLI and Python API), worker, dlq, replay, and the lag KEDA would scale on, all
driven by STREAMJOBS_TOPIC_PREFIX alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streamjobs import Producer
from streamjobs._names import default_group_id
from streamjobs._worker import wait_group
from tests.conftest import ROOT, RunCli, wait_for

SCHEMAS = str(ROOT / "tests" / "apps" / "schemas")
APP_NAME = "tests-apps"  # tests/apps/tasks.py


def _topics(admin: AdminClient, prefix: str) -> set[str]:
    return {t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)}


def _committed(admin: AdminClient, group: str) -> dict[tuple[str, int], int]:
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
    tps = res[group].result(timeout=30).topic_partitions or []
    return {(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}


def _groups(admin: AdminClient) -> set[str]:
    listing = admin.list_consumer_groups().result(timeout=30)
    return {g.group_id for g in listing.valid}


def keda_lag(admin: AdminClient, group: str, topic: str) -> int:
    """What KEDA's kafka scaler computes for (consumerGroup, topic): the sum over the topic's
    partitions of log end - committed offset (offsetResetPolicy earliest: no commit counts
    from the log start)."""
    parts = list(admin.list_topics(topic, timeout=10).topics[topic].partitions)
    ends = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in parts})
    starts = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.earliest() for p in parts})
    committed = _committed(admin, group)
    lag = 0
    for p in parts:
        tp = TopicPartition(topic, p)
        end = ends[tp].result(timeout=30).offset
        lag += end - committed.get((topic, p), starts[tp].result(timeout=30).offset)
    return lag


@pytest.fixture
def prefixes(admin: AdminClient, unique: str) -> Iterator[tuple[str, str]]:
    pair = (f"{unique}-a.", f"{unique}-b.")
    yield pair
    mine = [t for p in pair for t in _topics(admin, p)]
    if mine:
        for fut in admin.delete_topics(mine).values():
            fut.result(timeout=60)
    groups = [g for p in pair for g in (default_group_id(APP_NAME, p),
                                        wait_group(default_group_id(APP_NAME, p)))]
    existing = _groups(admin)
    if any(g in existing for g in groups):
        for fut in admin.delete_consumer_groups([g for g in groups if g in existing]).values():
            fut.result(timeout=30)


def test_two_prefixes_share_nothing(run_cli: RunCli, admin: AdminClient, tmp_path: Path,
                                    prefixes: tuple[str, str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: with only STREAMJOBS_TOPIC_PREFIX differing, two environments on one broker get
    their own topics and consumer groups (<prefix>streamjobs-<app>, its .wait group): emits,
    the worker, dlq stats/reprocess/show, replay and the KEDA lag query of one environment see
    and change nothing of the other's, and catalogue names given to --topic resolve under
    the prefix."""
    a, b = prefixes
    jobs = {a: 3, b: 2}  # per prefix: one of them fails permanently (a dead letter)

    def env(prefix: str) -> dict[str, str]:
        return {"STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_METRICS_PORT": "0",
                "STREAMJOBS_TEST_LEDGER": str(tmp_path / f"{prefix}ledger.jsonl")}

    def cli(prefix: str, *args: str) -> str:
        res = run_cli(*args, env=env(prefix), timeout=120)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        return res.stdout

    for p in (a, b):
        cli(p, "topics", "apply", "--schemas", SCHEMAS)
        cli(p, "emit", "task", "--schemas", SCHEMAS, "--json",
            json.dumps({"id": f"{p}bad", "fail": "permanent", "fail_attempts": 9}))
        cli(p, "emit", "task", "--schemas", SCHEMAS, "--json", json.dumps({"id": f"{p}ok"}))
    # The Python API follows the same variable: no prefix passed by hand.
    monkeypatch.setenv("STREAMJOBS_TOPIC_PREFIX", a)
    with Producer(SCHEMAS) as producer:
        producer.emit("task", {"id": f"{a}py"})
    monkeypatch.delenv("STREAMJOBS_TOPIC_PREFIX")

    for p in (a, b):
        assert {t.removeprefix(p) for t in _topics(admin, p)} >= {
            "tasks", "tasks.dlq", "atasks", "tasks.retry.1s"}
        cli(p, "worker", "tests.apps.tasks:app", "--burst")
        ran = [json.loads(line) for line in (tmp_path / f"{p}ledger.jsonl").read_text()
               .splitlines()]
        assert sorted(r["id"] for r in ran) == sorted(
            f"{p}{n}" for n in (["ok", "py"] if p == a else ["ok"]))
        assert all(r["topic"] == f"{p}tasks" for r in ran)

    for p in (a, b):
        group = default_group_id(APP_NAME, p)
        assert group == f"{p}streamjobs-{APP_NAME}"
        offsets = _committed(admin, group)
        assert f"{p}tasks" in {t for t, _ in offsets}
        assert {t for t, _ in offsets} <= {f"{p}tasks", f"{p}atasks"}  # atasks: no records
        assert sum(o for (t, _), o in offsets.items() if t == f"{p}tasks") == jobs[p]
        assert all(t.startswith(p) for t, _ in _committed(admin, wait_group(group)))
        # dlq, by the catalogue's name and by the full name: only this prefix's dead letter.
        for name in ("tasks", f"{p}tasks", "tasks.dlq"):
            stats = json.loads(cli(p, "dlq", "stats", "--topic", name, "--schemas", SCHEMAS,
                                   "--json"))["topics"]
            assert [(s["topic"], s["total"]) for s in stats] == [(f"{p}tasks.dlq", 1)]
        listed = json.loads(cli(p, "dlq", "list", "--all", "--schemas", SCHEMAS, "--json"))
        [record] = listed["records"]
        assert record["ref"].startswith(f"{p}tasks.dlq/")
        shown = json.loads(cli(p, "dlq", "show", record["ref"], "--schemas", SCHEMAS, "--json"))
        assert shown["ref"] == record["ref"]
        cli(p, "dlq", "reprocess", "--topic", "tasks", "--schemas", SCHEMAS, "--execute")
        # KEDA's query on (this group, this topic): exactly the re-published record waits.
        # KEDA's query on (this group, this topic): the re-published record and the marker
        # of its transaction (docs/dlq.md); then a burst worker runs it and ends.
        wait_for(lambda: keda_lag(admin, group, f"{p}tasks") == 2, 30,  # noqa: B023
                 what="the re-published record and its commit marker")
        cli(p, "worker", "tests.apps.tasks:app", "--burst")
        assert keda_lag(admin, group, f"{p}tasks") <= 1  # at most the marker
        # replay: the catalogue's topic name under the prefix; the group committed there.
        res = run_cli("replay", "offsets", "--group", group, "--topic", "tasks",
                      "--to-earliest", "--json", env=env(p))
        assert res.returncode == 0, res.stderr
        plan = json.loads(res.stdout)
        assert {q["topic"] for q in plan["partitions"]} == {f"{p}tasks"}
        assert plan["warnings"] == [] and plan["rerun"] == jobs[p] + 1  # + the reprocessed one
        typo = run_cli("replay", "offsets", "--group", f"{group}x", "--topic", "tasks",
                       "--to-earliest", env=env(p))
        assert typo.returncode == 0, typo.stderr
        assert f"warning: group '{group}x' has never committed an offset on {p}tasks" in \
            typo.stderr
        range_ = json.loads(cli(p, "replay", "range", "--topic", "tasks", "--partition", "0",
                                "--from-offset", "0", "--json"))
        assert range_["topic"] == f"{p}tasks"

    # Nothing of one environment landed in the other's topics or groups.
    groups = _groups(admin)
    for p, other in ((a, b), (b, a)):
        mine = {g for g in groups if g.startswith(p)}
        assert mine == {default_group_id(APP_NAME, p), wait_group(default_group_id(APP_NAME, p))}
        assert not any(t.startswith(other) for g in mine for t, _ in _committed(admin, g))
