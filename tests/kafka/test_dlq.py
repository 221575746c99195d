"""`streamjobs dlq stats|list|show|reprocess` against the real broker.

Dead letters are written in exactly the worker's format (``worker.failures.dead_letter_record``)
with a raw producer, so these tests do not depend on making a worker fail on purpose.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import dlq_topic
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker.failures import Failure, Origin, dead_letter_record
from tests.conftest import MakeTopic, RunCli, wait_for
from tests.kafka.worker_support import SCHEMAS as APP_SCHEMAS
from tests.kafka.worker_support import Env as WorkerEnv
from tests.kafka.worker_support import InProcess

NOW = time.time_ns() // 1_000_000  # module import; only for "long enough ago" cases


def _now_ms() -> int:
    # Not NOW: a long suite (fault injection first) may run this test minutes after import.
    return time.time_ns() // 1_000_000

EMAIL_V1 = {"type": "record", "name": "Email", "namespace": "t", "fields": [
    {"name": "user_id", "type": "string"}, {"name": "email", "type": "string"}]}
# v2 adds a field WITHOUT a default: v1 records no longer resolve into it.
EMAIL_V2_BREAKING = {**EMAIL_V1, "fields": [*EMAIL_V1["fields"],
                                            {"name": "locale", "type": "string"}]}
RESIZE_V1 = {"type": "record", "name": "Resize", "namespace": "t", "fields": [
    {"name": "image_id", "type": "string"}, {"name": "width", "type": "int"}]}


def write_schemas(path: Path, prefix: str, *, breaking: bool = False) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "catalogue.toml").write_text(f"""
[defaults]
partitions = 2
replication_factor = 1

[jobs.send_email]
schema = "t.Email"
topic = "{prefix}.emails"
key_field = "user_id"

[jobs.resize]
schema = "t.Resize"
topic = "{prefix}.images"
key_field = "image_id"
""")
    (path / "t.Email.v1.avsc").write_text(json.dumps(EMAIL_V1))
    (path / "t.Resize.v1.avsc").write_text(json.dumps(RESIZE_V1))
    if breaking:
        (path / "t.Email.v2.avsc").write_text(json.dumps(EMAIL_V2_BREAKING))
    return path


@dataclass
class Env:
    config: KafkaConfig
    schemas: Path
    codec: Codec
    emails: str
    images: str

    def dead_letter(self, job_type: str | None, payload: dict[str, Any] | bytes, *,
                    reason: str = "max_attempts", error: str = "TimeoutError",
                    key: str | None = None, dlq_at: int | None = None, partition: int = 0,
                    topic: str | None = None, compact_id: str | None = None) -> None:
        """Write one dead letter in the worker's format to the DLQ of ``topic`` (dead-lettered
        at ``dlq_at``, default now); with ``compact_id``, of a first attempt that carried the
        compact header with that id."""
        if dlq_at is None:
            dlq_at = _now_ms()
        job_topic = topic or (self.images if job_type == "resize" else self.emails)
        value = payload if isinstance(payload, bytes) else self.codec.encode(
            job_type or "", payload)
        original: h.Headers = [(h.JOB_ID, h.new_job_id().encode()), (h.ATTEMPT, b"4"),
                               (h.CREATED_AT, str(dlq_at - 5000).encode()),
                               ("tenant", b"acme")]
        if job_type is not None:
            original.insert(1, (h.JOB_TYPE, job_type.encode()))
        if compact_id is not None:
            original = [(h.META, h.compact(compact_id, job_type or "").encode()),
                        ("tenant", b"acme")]
        k, v, hdrs = dead_letter_record(
            key.encode() if key else None, value, original,
            origin=Origin(job_topic, 1, 42, dlq_at - 5000, "host-a", "workers"),
            failure=Failure(error, f"{error} happened", f"Traceback...\n{error}: boom"),
            reason=reason, now_ms=dlq_at)
        p = RawProducer(self.config.client_settings())
        p.produce(f"{job_topic}.dlq", key=k, value=v, headers=hdrs, partition=partition)
        assert p.flush(30) == 0


@pytest.fixture
def env(kafka_config: KafkaConfig, make_topic: MakeTopic, admin: AdminClient, unique: str,
        tmp_path: Path) -> Iterator[Env]:
    """Job topics emails/images with their dead-letter topics (2 partitions each)."""
    names = [make_topic(s, partitions=2) for s in ("emails", "emails.dlq", "images",
                                                    "images.dlq")]
    schemas = write_schemas(tmp_path / "schemas", unique)
    yield Env(kafka_config, schemas, Codec(Catalogue.load(schemas)), names[0], names[2])
    progress = [f"{n}.reprocessed" for n in names if n.endswith(".dlq")]
    for fut in admin.delete_topics(progress).values():
        with contextlib.suppress(Exception):  # not created by this test
            fut.result(timeout=30)


def read_all(config: KafkaConfig, topic: str) -> list[Any]:
    """Every record of ``topic`` (independent of the code under test)."""
    md = AdminClient(config.client_settings()).list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    c = RawConsumer({**config.client_settings(), "group.id": "unused",
                     "enable.auto.commit": False, "enable.partition.eof": True})
    out: list[Any] = []
    try:
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        left = set(parts)
        while left:
            msg = c.poll(5)
            assert msg is not None, "timed out reading"
            if msg.error():
                left.discard(msg.partition())
                continue
            out.append(msg)
    finally:
        c.close()
    return out


def cli(run_cli: RunCli, env: Env, *args: str) -> Any:
    return run_cli("dlq", *args, "--schemas", str(env.schemas))


def test_stats_counts_by_type_and_reason(env: Env, run_cli: RunCli) -> None:
    """Rule: stats counts the dead letters of each topic by job type and reason and reports
    the age of the oldest; an empty dead-letter topic reports 0 without waiting."""
    for i in range(3):
        env.dead_letter("send_email", {"user_id": f"u{i}", "email": "x@y"}, partition=i % 2)
    env.dead_letter("send_email", {"user_id": "u9", "email": "x@y"}, reason="permanent_error",
                    dlq_at=_now_ms() - 3600_000)
    res = cli(run_cli, env, "stats", "--topic", env.emails, "--json")
    assert res.returncode == 0, res.stderr
    [s] = json.loads(res.stdout)["topics"]
    assert s["topic"] == f"{env.emails}.dlq"
    assert s["total"] == 4 and s["pending"] == 4 and s["reprocessed"] == 0
    assert s["by_type"] == {"send_email": {"max_attempts": 3, "permanent_error": 1}}
    assert s["by_reason"] == {"max_attempts": 3, "permanent_error": 1}
    assert 3600 <= s["oldest_age_s"] < 3600 + 120

    res = cli(run_cli, env, "stats", "--all", "--json")
    assert res.returncode == 0, res.stderr
    by_topic = {t["topic"]: t["total"] for t in json.loads(res.stdout)["topics"]}
    assert by_topic == {f"{env.emails}.dlq": 4, f"{env.images}.dlq": 0}
    text = cli(run_cli, env, "stats", "--topic", f"{env.emails}.dlq")
    assert "4 dead letter(s)" in text.stdout and "permanent_error" in text.stdout


def test_list_and_show_decode_payload_and_error_story(env: Env, run_cli: RunCli) -> None:
    """Rule: list/show decode the payload with its writer schema and tell the error story
    (class, message, origin, attempt, worker); undecodable values are shown as hex/base64 with
    the reason; show of an offset with no record exits 3."""
    env.dead_letter("send_email", {"user_id": "u1", "email": "a@b"}, key="u1", dlq_at=NOW)
    env.dead_letter("resize", b"\xffgarbage", reason="decode_error", error="DecodeError")
    res = cli(run_cli, env, "list", "--topic", env.emails, "--json")
    assert res.returncode == 0, res.stderr
    [story] = json.loads(res.stdout)["records"]
    assert story["value"]["payload"] == {"user_id": "u1", "email": "a@b"}
    assert (story["value"]["schema"], story["value"]["version"]) == ("t.Email", 1)
    assert story["key"] == "u1" and story["reason"] == "max_attempts"
    assert story["error"] == {"class": "TimeoutError", "message": "TimeoutError happened"}
    assert story["origin"] == {"topic": env.emails, "partition": 1, "offset": 42,
                               "timestamp_ms": NOW - 5000}
    assert story["worker"] == {"host": "host-a", "group": "workers"}
    assert story["attempt"] == "4" and story["fits_current_schema"] is True
    assert story["headers"]["tenant"] == "acme" and h.DLQ_REASON not in story["headers"]

    res = cli(run_cli, env, "show", "--topic", env.images, "0:0", "--json")
    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    assert shown["value"]["raw_hex"] == b"\xffgarbage".hex()
    assert shown["value"]["raw_base64"] == "/2dhcmJhZ2U="
    assert shown["value"]["problem"].startswith("bad_magic")
    assert shown["error"]["trace"] == "Traceback...\nDecodeError: boom"
    text = cli(run_cli, env, "show", "--topic", env.emails, "0:0")
    assert "TimeoutError: TimeoutError happened" in text.stdout
    assert '"user_id":"u1"' in text.stdout and "Traceback..." in text.stdout
    missing = cli(run_cli, env, "show", "--topic", env.emails, "0:99")
    assert missing.returncode == 3, missing.stdout


def test_reprocess_dry_run_publishes_nothing(env: Env, run_cli: RunCli,
                                              admin: AdminClient) -> None:
    """Rule: without --execute reprocess lists what it would re-publish, writes nothing (no
    job record, no progress topic) and exits 0."""
    for i in range(3):
        env.dead_letter("send_email", {"user_id": f"u{i}", "email": "x@y"}, key=f"u{i}")
    res = cli(run_cli, env, "reprocess", "--topic", env.emails, "--json")
    assert res.returncode == 0, res.stderr
    [r] = json.loads(res.stdout)["topics"]
    assert r["executed"] is False and len(r["published"]) == 3
    assert {i["target"] for i in r["published"]} == {env.emails}
    assert read_all(env.config, env.emails) == []
    assert f"{env.emails}.dlq.reprocessed" not in admin.list_topics(timeout=10).topics
    text = cli(run_cli, env, "reprocess", "--topic", env.emails)
    assert "would re-publish 3 (dry run" in text.stdout and text.returncode == 0


def test_reprocess_execute_twice_republishes_each_record_once(env: Env,
                                                              run_cli: RunCli) -> None:
    """Rule: reprocess --execute re-publishes each dead letter to its original topic with the
    original key and value bytes and headers, sj-attempt=1, provenance stripped and
    sj-reprocessed-from set; a second run re-publishes nothing (exactly one copy each)."""
    for i in range(5):
        env.dead_letter("send_email", {"user_id": f"u{i}", "email": "x@y"}, key=f"u{i}",
                        partition=i % 2)
    dead = {f"{m.topic()}/{m.partition()}/{m.offset()}": m
            for m in read_all(env.config, f"{env.emails}.dlq")}
    first = cli(run_cli, env, "reprocess", "--topic", env.emails, "--execute")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "re-published 5" in first.stdout
    second = cli(run_cli, env, "reprocess", "--topic", env.emails, "--execute", "--json")
    assert second.returncode == 0, second.stderr
    [r] = json.loads(second.stdout)["topics"]
    assert r["published"] == [] and r["already_reprocessed"] == 5

    jobs = read_all(env.config, env.emails)
    assert len(jobs) == 5
    assert sorted(h.get(m.headers(), h.REPROCESSED_FROM) for m in jobs) == sorted(dead)
    for m in jobs:
        src = dead[h.get(m.headers(), h.REPROCESSED_FROM)]
        assert (m.key(), m.value()) == (src.key(), src.value())
        names = [k for k, _ in m.headers()]
        assert h.get(m.headers(), h.ATTEMPT) == "1" and names.count(h.ATTEMPT) == 1
        assert h.get(m.headers(), "tenant") == "acme"
        meta, was = h.JobMeta.from_headers(m.headers()), h.JobMeta.from_headers(src.headers())
        assert meta.job_id == was.job_id
        assert not {h.DLQ_REASON, h.ERROR_CLASS, h.ORIG_TOPIC, h.WORKER_HOST} & set(names)
    stats = cli(run_cli, env, "stats", "--topic", env.emails, "--json")
    assert json.loads(stats.stdout)["topics"][0]["reprocessed"] == 5


def test_reprocess_filters_never_lose_unmatched_records(env: Env, run_cli: RunCli) -> None:
    """Rule: --reason, --job-type and --limit select records; runs with different filters in
    any order re-publish each dead letter exactly once and never skip one a filter left out."""
    env.dead_letter("send_email", {"user_id": "a", "email": "x"}, reason="permanent_error")
    env.dead_letter("send_email", {"user_id": "b", "email": "x"})
    env.dead_letter("send_email", {"user_id": "c", "email": "x"}, reason="permanent_error",
                    error="myapp.BadAddress")
    for i in range(3):
        env.dead_letter("resize", {"image_id": f"i{i}", "width": i})

    res = cli(run_cli, env, "reprocess", "--all", "--reason", "permanent_error",
              "--exception-class", "BadAddress", "--execute", "--json")
    assert res.returncode == 0, res.stderr
    assert [len(t["published"]) for t in json.loads(res.stdout)["topics"]] == [1, 0]
    res = cli(run_cli, env, "reprocess", "--topic", env.images, "--job-type", "resize",
              "--limit", "2", "--execute", "--json")
    [r] = json.loads(res.stdout)["topics"]
    assert len(r["published"]) == 2 and r["limit_reached"] is True
    assert len(read_all(env.config, env.emails)) == 1
    assert len(read_all(env.config, env.images)) == 2

    res = cli(run_cli, env, "reprocess", "--all", "--execute")
    assert res.returncode == 0, res.stdout + res.stderr
    emails = read_all(env.config, env.emails)
    images = read_all(env.config, env.images)
    for records in (emails, images):
        refs = [h.get(m.headers(), h.REPROCESSED_FROM) for m in records]
        assert len(refs) == len(set(refs))
    assert (len(emails), len(images)) == (3, 3)


def test_record_no_longer_fitting_is_reported_not_published(
        env: Env, run_cli: RunCli, tmp_path: Path, unique: str) -> None:
    """Rule: a dead letter whose payload no longer fits the current schema of its job type
    (or cannot be decoded, or whose type is gone) is reported and not published, and the
    run exits 1; --force-raw publishes such records' bytes as they are."""
    env.dead_letter("send_email", {"user_id": "old", "email": "x"}, key="old")
    env.dead_letter("send_email", b"\xc3\x01garbage", reason="decode_error")
    env.dead_letter("vanished_type", env.codec.encode("send_email", {"user_id": "v",
                                                                     "email": "x"}),
                    reason="unknown_type")
    breaking = write_schemas(tmp_path / "v2", unique, breaking=True)
    res = run_cli("dlq", "reprocess", "--topic", env.emails, "--execute", "--json",
                  "--schemas", str(breaking))
    assert res.returncode == 1, res.stdout + res.stderr
    [r] = json.loads(res.stdout)["topics"]
    assert r["published"] == []
    problems = {i["ref"].rsplit("/", 1)[1]: i["problem"] for i in r["rejected"]}
    assert "does not decode into the current schema" in problems["0"]
    assert "truncated" in problems["1"] or "bad_body" in problems["1"]
    assert "not in the catalogue" in problems["2"]
    assert read_all(env.config, env.emails) == []

    forced = run_cli("dlq", "reprocess", "--topic", env.emails, "--execute", "--force-raw",
                     "--partition", "0", "--to-offset", "0", "--from-offset", "0",
                     "--schemas", str(breaking))
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "published raw (--force-raw)" in forced.stdout
    [job] = read_all(env.config, env.emails)
    assert job.key() == b"old"


def test_missing_topic_exits_3(run_cli: RunCli, unique: str, tmp_path: Path) -> None:
    """Rule: a dead-letter topic that does not exist exits 3 with a one-line message."""
    schemas = write_schemas(tmp_path / "s", unique)
    for cmd in ("stats", "list", "reprocess"):
        res = run_cli("dlq", cmd, "--topic", f"{unique}.nope", "--schemas", str(schemas))
        assert res.returncode == 3, (cmd, res.stdout, res.stderr)
        assert "not found" in res.stderr and "Traceback" not in res.stderr


@pytest.fixture
def worker_env(kafka_config: KafkaConfig, admin: AdminClient, unique: str,
               tmp_path: Path) -> Iterator[WorkerEnv]:
    e = WorkerEnv(kafka_config, admin, prefix=f"{unique}.", ledger=tmp_path / "ledger.jsonl",
                  group=f"{unique}-group")
    yield e
    e.created.append(f"{dlq_topic(e.topic())}.reprocessed")
    e.delete_topics()


def test_end_to_end_with_the_real_worker(worker_env: WorkerEnv, run_cli: RunCli,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: dead letters written by the real worker are counted by stats, and after the bug
    is fixed `reprocess --execute` makes the worker run each job once more, as attempt 1
    with its original job id; reprocessing again re-publishes nothing."""
    env = worker_env
    env.create_topics("task", partitions=1)
    ids = [env.emit(fail="permanent", fail_attempts=9), env.emit(fail="bad_input",
                                                                 fail_attempts=9)]
    env.flush()
    w = InProcess(env, monkeypatch)
    try:
        assert len(env.read(dlq_topic(env.topic()), 2)) == 2
    finally:
        w.stop()
    schemas = str(APP_SCHEMAS)
    res = run_cli("dlq", "stats", "--topic", env.topic(), "--schemas", schemas, "--json")
    assert json.loads(res.stdout)["topics"][0]["by_type"] == {"task": {"permanent_error": 2}}
    res = run_cli("dlq", "reprocess", "--topic", env.topic(), "--schemas", schemas, "--execute")
    assert res.returncode == 0, res.stdout + res.stderr

    import tests.apps.tasks as tasks
    monkeypatch.setattr(tasks, "_maybe_fail", lambda payload, ctx: None)  # the fix deployed
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: len(env.lines()) >= 2, 30, what="reprocessed jobs to run")
    finally:
        w.stop()
    runs = env.lines()
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert all(r["attempt"] == 1 for r in runs)
    again = run_cli("dlq", "reprocess", "--topic", env.topic(), "--schemas", schemas,
                    "--execute", "--json")
    assert json.loads(again.stdout)["topics"][0]["already_reprocessed"] == 2
    assert len(read_all(env.kafka, env.topic())) == 4  # 2 originals + 2 re-published


def test_dead_letter_of_a_compact_job_shows_its_id_type_and_created_at(
        env: Env, run_cli: RunCli) -> None:
    """Rule: a first attempt that carried the compact ``sj`` header is dead-lettered with the
    rich headers (id, type, attempt 1, created-at = its record's timestamp), and ``dlq show``
    prints them (JSON and text)."""
    job_id = h.new_job_id()
    env.dead_letter("send_email", {"user_id": "u9", "email": "c@d"}, dlq_at=NOW,
                    compact_id=job_id)
    res = cli(run_cli, env, "show", "--topic", env.emails, "0:0", "--json")
    assert res.returncode == 0, res.stderr
    story = json.loads(res.stdout)
    assert (story["job_id"], story["job_type"], story["attempt"]) == (job_id, "send_email", "1")
    assert story["created_at_ms"] == NOW - 5000  # the original record's timestamp
    assert h.META not in story["headers"] and story["headers"][h.JOB_ID] == job_id
    text = cli(run_cli, env, "show", "--topic", env.emails, "0:0")
    assert f"job {job_id}, created " in text.stdout
