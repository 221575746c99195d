"""`dlq reprocess --execute` is exactly-once per dead letter: concurrent runs fence each other
(one transactional id per dead-letter topic) and a run killed mid-transaction leaves nothing
visible behind. Target topics are read with ``isolation.level=read_committed``, as workers do.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import IsolationLevel, TopicPartition
from confluent_kafka import Producer as RawProducer
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import transactional_id
from streamjobs._ops.dlq import Filter
from streamjobs._ops.reprocess import Reprocessor
from streamjobs._ops.topics import STATUS_CONFIG, STATUS_PARTITIONS
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._status import lookup, status_topic
from streamjobs._worker.failures import Failure, Origin, dead_letter_record
from streamjobs.errors import ProducerFenced
from tests.conftest import BOOTSTRAP, ROOT, MakeTopic, RunCli, SpawnCli, wait_for
from tests.kafka.test_dlq import Env, write_schemas


@pytest.fixture
def env(kafka_config: KafkaConfig, make_topic: MakeTopic, admin: AdminClient, unique: str,
        tmp_path: Path) -> Iterator[Env]:
    names = [make_topic(s, partitions=2) for s in ("emails", "emails.dlq", "images",
                                                    "images.dlq")]
    schemas = write_schemas(tmp_path / "schemas", unique)
    yield Env(kafka_config, schemas, Codec(Catalogue.load(schemas, topic_prefix="")),
              names[0], names[2])
    for fut in admin.delete_topics([f"{names[1]}.reprocessed"]).values():
        try:
            fut.result(timeout=30)
        except Exception as exc:  # never created by a test that failed early
            if "UNKNOWN_TOPIC" not in str(exc):
                raise


def dead_letters(env: Env, n: int) -> set[str]:
    """``n`` dead letters of send_email over both partitions; returns their refs."""
    p = RawProducer(env.config.client_settings())
    now = int(time.time() * 1000)
    for i in range(n):
        value = env.codec.encode("send_email", {"user_id": f"u{i}", "email": "x@y"})
        k, v, hdrs = dead_letter_record(
            f"u{i}".encode(), value,
            [(h.JOB_ID, h.new_job_id().encode()), (h.JOB_TYPE, b"send_email"),
             (h.ATTEMPT, b"4"), (h.CREATED_AT, str(now).encode())],
            origin=Origin(env.emails, i % 2, i, now, "host-a", "workers"),
            failure=Failure("TimeoutError", "boom", "Traceback..."),
            reason="max_attempts", now_ms=now)
        p.produce(f"{env.emails}.dlq", key=k, value=v, headers=hdrs, partition=i % 2)
    assert p.flush(30) == 0
    return {f"{env.emails}.dlq/{i % 2}/{i // 2}" for i in range(n)}


def settled(admin: AdminClient, topic: str, parts: list[int]) -> bool:
    """No transaction open on ``topic``: the last stable offset is the log end everywhere.
    (A transaction's markers are written just after its commit or abort returns.)"""
    def ends(level: IsolationLevel) -> list[int]:
        futs = admin.list_offsets({TopicPartition(topic, p): OffsetSpec.latest() for p in parts},
                                  isolation_level=level)
        return [f.result(timeout=30).offset for f in futs.values()]
    return ends(IsolationLevel.READ_COMMITTED) == ends(IsolationLevel.READ_UNCOMMITTED)


def reprocessed_from(config: KafkaConfig, topic: str, isolation: str) -> Counter[str]:
    """sj-reprocessed-from of every record of ``topic`` a consumer with ``isolation`` sees
    (read_committed: once no transaction is open there)."""
    admin = AdminClient(config.client_settings())
    md = admin.list_topics(topic, timeout=10)
    parts = list(md.topics[topic].partitions)
    if isolation == "read_committed":
        wait_for(lambda: settled(admin, topic, parts), 60,
                 what=f"no open transaction on {topic}")
    c = RawConsumer({**config.client_settings(), "group.id": "unused",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "isolation.level": isolation})
    seen: Counter[str] = Counter()
    try:
        c.assign([TopicPartition(topic, p, 0) for p in parts])
        left = set(parts)
        while left:
            msg = c.poll(10)
            assert msg is not None, "timed out reading"
            if msg.error():
                left.discard(msg.partition())
                continue
            seen[str(h.get(msg.headers() or [], h.REPROCESSED_FROM))] += 1
    finally:
        c.close()
    return seen


def test_two_concurrent_runs_republish_each_dead_letter_once(env: Env, run_cli: RunCli,
                                                             spawn_cli: SpawnCli) -> None:
    """Rule: two `dlq reprocess --execute` started at once over the same 120 dead letters
    re-publish each exactly once (read_committed); the run that was fenced says so in one
    line and exits 1; a third run finds nothing left to do."""
    refs = dead_letters(env, 120)
    args = ("dlq", "reprocess", "--topic", env.emails, "--schemas", str(env.schemas),
            "--execute", "--rate", "10")  # ~12 s each: the two runs overlap
    first, second = spawn_cli(*args), spawn_cli(*args)
    codes = sorted([first.wait(90), second.wait(90)])
    outputs = first.output() + second.output()
    seen = reprocessed_from(env.config, env.emails, "read_committed")
    assert set(seen) == refs and set(seen.values()) == {1}, (seen.most_common(3), outputs)
    assert codes == [0, 1], outputs
    fenced = [line for line in outputs.splitlines() if line.startswith("error:")]
    assert len(fenced) == 1 and "took over" in fenced[0], outputs
    assert transactional_id(f"{env.emails}.dlq") in fenced[0]
    assert "Traceback" not in outputs and "Warning" not in outputs
    third = run_cli(*args[:-2])
    assert third.returncode == 0, third.stderr
    assert "re-published 0" in third.stdout and "already reprocessed 120" in third.stdout


def test_fenced_run_raises_and_writes_nothing_more(env: Env) -> None:
    """Rule: once another producer with the run's transactional id has started (what a second
    run does first), the running one raises ProducerFenced at its next batch; what it
    committed before stays, nothing after becomes visible, and a rerun does the rest once."""
    refs = dead_letters(env, 20)
    dlq = f"{env.emails}.dlq"
    rivals: list[RawProducer] = []

    def take_over(_: int) -> None:
        if first.report.published and not rivals:  # after its first committed batch
            rival = RawProducer({**env.config.client_settings(),
                                 "transactional.id": transactional_id(dlq)})
            rival.init_transactions(60)
            rivals.append(rival)

    first = Reprocessor(env.config, env.codec, dlq, Filter(), execute=True, rate=10)
    first.open()
    with pytest.raises(ProducerFenced) as info:
        first.run(progress=take_over)  # --rate commits a record or a few per transaction
    assert info.value.transactional_id == transactional_id(dlq)
    assert "took over" in str(info.value)
    committed = {i.ref for i in first.report.published}
    assert 1 <= len(committed) < 20
    assert Counter(committed) == reprocessed_from(env.config, env.emails, "read_committed")
    rerun = Reprocessor(env.config, env.codec, dlq, Filter(), execute=True)
    rerun.open()
    report = rerun.run()
    assert report.already == len(committed) and len(report.published) == 20 - len(committed)
    seen = reprocessed_from(env.config, env.emails, "read_committed")
    assert set(seen) == refs and set(seen.values()) == {1}


def test_crash_mid_transaction_leaves_no_duplicate(env: Env, run_cli: RunCli,
                                                   spawn_cli: SpawnCli, tmp_path: Path) -> None:
    """Rule: a reprocess SIGKILLed after its batch reached the broker but before the commit
    leaves those records invisible (aborted by the next run's fencing): after a rerun every
    dead letter is in the job topic exactly once for read_committed readers."""
    refs = dead_letters(env, 80)
    script = tmp_path / "hang_before_commit.py"
    # The real command, except that the first batch is flushed to the broker and then the
    # process waits to be killed instead of committing.
    script.write_text(textwrap.dedent("""
        import sys, time
        from streamjobs._ops import reprocess
        def hang(self):
            if self._batch:
                self._producer.flush(30)
                print("IN-TRANSACTION", flush=True)
                time.sleep(600)
        reprocess.Reprocessor._flush_batch = hang
        from streamjobs.cli import main
        sys.exit(main())
    """))
    env_vars = {"STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP, "PYTHONUNBUFFERED": "1",
                "PATH": str(Path(sys.executable).parent)}
    log = tmp_path / "killed.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(script), "dlq", "reprocess", "--topic", env.emails,
             "--schemas", str(env.schemas), "--execute"],
            cwd=str(ROOT), env=env_vars, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: "IN-TRANSACTION" in log.read_text(), 60,
                     what="the first batch to reach the broker uncommitted")
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
    uncommitted = reprocessed_from(env.config, env.emails, "read_uncommitted")
    assert sum(uncommitted.values()) == 80  # written, never committed
    rerun = run_cli("dlq", "reprocess", "--topic", env.emails, "--schemas", str(env.schemas),
                    "--execute")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    seen = reprocessed_from(env.config, env.emails, "read_committed")
    assert set(seen) == refs and set(seen.values()) == {1}
    assert sum(reprocessed_from(env.config, env.emails, "read_uncommitted").values()) == 160


def _create_status_topic(admin: AdminClient, topic: str) -> None:
    admin.create_topics([NewTopic(topic, STATUS_PARTITIONS, 1, config=dict(STATUS_CONFIG))]
                        )[topic].result(timeout=30)


def test_status_topic_churn_does_not_stop_a_run(env: Env, admin: AdminClient,
                                                unique: str) -> None:
    """Rule: `reprocessed` status records are not part of the re-publishing transactions: a
    run whose status topic is deleted and re-created while it runs (as other tests do to the
    unprefixed one) re-publishes every dead letter exactly once and ends ok; what it wrote
    after the topic came back has its status."""
    refs = dead_letters(env, 80)
    prefix = f"{unique}-st."
    topic = status_topic(prefix)
    _create_status_topic(admin, topic)
    run = Reprocessor(env.config, Codec(Catalogue.load(env.schemas, topic_prefix=prefix)),
                      f"{env.emails}.dlq", Filter(), execute=True, rate=20)  # ~4 s
    run.open()
    churned = threading.Event()

    def churn() -> None:
        admin.delete_topics([topic])[topic].result(timeout=30)
        time.sleep(1.5)  # batches go on meanwhile
        with contextlib.suppress(Exception):  # deletion may still be under way: once more
            _create_status_topic(admin, topic)
        wait_for(lambda: topic in admin.list_topics(timeout=10).topics, 30,
                 what="status topic back")
        churned.set()

    def start_churn(_: int) -> None:
        if run.report.published and not hasattr(start_churn, "thread"):
            start_churn.thread = threading.Thread(target=churn, daemon=True)  # type: ignore
            start_churn.thread.start()  # type: ignore[attr-defined]

    try:
        report = run.run(progress=start_churn)
        assert churned.wait(30), "the status topic was never re-created"
        assert report.ok and len(report.published) == 80, report.as_dict()
        seen = reprocessed_from(env.config, env.emails, "read_committed")
        assert set(seen) == refs and set(seen.values()) == {1}
        last = report.published[-1].ref
        dl = next(d for d in dead_letter_ids(env) if d[0] == last)
        wait_for(lambda: lookup(env.config, dl[1], topic=topic), 30,
                 what="status of the last re-published dead letter")
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([topic])[topic].result(timeout=30)


def dead_letter_ids(env: Env) -> list[tuple[str, str]]:
    """(ref, job id) of every dead letter of send_email."""
    from streamjobs._ops.dlq import read

    _, records = read(env.config, f"{env.emails}.dlq", Filter())
    return [(d.ref, d.meta.job_id) for d in records]
