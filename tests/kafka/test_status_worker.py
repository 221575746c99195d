"""Status records written by emit and the worker, read back with ``lookup``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka import Producer as RawProducer

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._status import Follower, Transition, partition_for, watch
from streamjobs._status.record import decode_all, encode
from tests.conftest import wait_for
from tests.kafka.status_support import InProcessWorker, StatusEnv, status_env


@pytest.fixture(scope="module")
def env(kafka_config: KafkaConfig) -> Iterator[StatusEnv]:
    with status_env(kafka_config, "worker") as e:
        yield e


@pytest.fixture(scope="module")
def jobs(env: StatusEnv) -> Iterator[dict[str, str]]:
    """One worker run over jobs of every outcome and status setting."""
    ids = {"ok": env.emit("stask"),
           "retried": env.emit("stask", fail="error", fail_attempts=1),
           "dead": env.emit("stask", fail="permanent", fail_attempts=1),
           "f_ok": env.emit("ftask"),
           "f_dead": env.emit("ftask", fail="error", fail_attempts=5),
           "n_dead": env.emit("ntask", fail="permanent", fail_attempts=1)}
    ids["delayed"] = env.producer.emit("stask", {"id": "delayed"}, delay=1.5)
    ids["async_slow"] = env.producer.emit("satask", {"id": "async-slow", "sleep_ms": 3000})
    ids["poison"] = "019ad3c1-0000-7000-8000-00000000dead"
    p = RawProducer(env.kafka.client_settings())
    p.produce(env.topic("stask"), b"not avro at all", headers=[
        (h.JOB_ID, ids["poison"].encode()), (h.JOB_TYPE, b"stask"), (h.ATTEMPT, b"1")])
    assert p.flush(10) == 0
    # Taken together: their successes are written as batches.
    many = [env.producer.emit("stask", {"id": f"many-{i}"}) for i in range(40)]
    env.producer.flush(30)
    mp = pytest.MonkeyPatch()
    worker = InProcessWorker(env, mp)
    try:
        for name in ("ok", "retried", "delayed", "async_slow"):
            env.wait_state(ids[name], "succeeded")
        env.wait_state(ids["poison"], "dead")
        try:
            wait_for(lambda: len(_batched(env)) >= 40, 60, 0.3, "40 batched successes")
        except BaseException:  # say what became of them
            batched = _batched(env)
            pytest.fail(f"{len(batched)} ids in batch records, {sum(j in batched for j in many)}"
                        f" of the 40; their states: {[env.states(j) for j in many]}")
        for name in ("dead", "f_dead"):
            env.wait_state(ids[name], "dead")
    finally:
        worker.stop()
        mp.undo()
    yield ids


def _batched(env: StatusEnv) -> dict[str, tuple[str, Transition]]:
    """job id -> (job type, transition) of every batch record in the status topic."""
    c = Consumer({**env.kafka.client_settings(), "group.id": "status-test-batches",
                  "auto.offset.reset": "earliest", "enable.partition.eof": True})
    out: dict[str, tuple[str, Transition]] = {}
    try:
        c.assign([TopicPartition(env.status_topic, p, 0) for p in range(6)])
        eof: set[int] = set()
        while len(eof) < 6:
            for m in c.consume(500, 1):
                if m.error() is not None:
                    eof.add(m.partition())
                elif m.key().startswith(b"_batch/"):
                    out.update({j: (jt, t) for j, jt, t in decode_all(m.key(), m.value())})
    finally:
        c.close()
    return out


def test_successes_taken_together_are_batched_and_each_looks_up(env: StatusEnv,
                                                                jobs: dict[str, str]) -> None:
    """Jobs finishing in one chunk share a batch record per status partition (in the job's
    partition), and each one's lookup shows it succeeded."""
    batched = _batched(env)
    assert len(batched) >= 40
    some = sorted(batched)[:5]
    for job_id in some:
        s = env.status(job_id)
        assert s is not None and [t.state for t in s.transitions] == ["emitted", "succeeded"]
        assert s.last == batched[job_id][1]


def test_emitted_then_succeeded_for_an_all_type(env: StatusEnv, jobs: dict[str, str]) -> None:
    """An `all` job type records `emitted` at emit and `succeeded` (worker, where it ran) after
    its handler returned; a job shown succeeded has succeeded."""
    s = env.status(jobs["ok"])
    assert s is not None and s.job_type == "stask" and s.final
    assert [t.state for t in s.transitions] == ["emitted", "succeeded"]
    emitted, ok = s.transitions
    assert emitted.topic == env.topic("stask")
    assert ok.worker == h.hostname() and ok.topic == env.topic("stask")
    assert ok.partition is not None and ok.offset is not None and ok.at_ms >= emitted.at_ms


def test_retried_job_shows_retrying_with_due_time_then_succeeded(env: StatusEnv,
                                                                 jobs: dict[str, str]) -> None:
    """A retried job's `retrying` carries the error, the wait tier and the due time; the
    second attempt's `succeeded` follows."""
    s = env.status(jobs["retried"])
    assert s is not None
    assert [t.state for t in s.transitions] == ["emitted", "retrying", "succeeded"]
    retrying, ok = s.transitions[1:]
    assert retrying.attempt == 1 and retrying.error_class == "RuntimeError"
    assert retrying.error_message == "boom on attempt 1"
    assert retrying.topic == env.topic("stask") + ".retry.1s"
    assert retrying.due_at_ms == retrying.at_ms + 1000
    assert ok.attempt == 2 and ok.topic == retrying.topic and s.attempts == 2


def test_dead_job_shows_reason_and_its_dead_letter_record(env: StatusEnv,
                                                          jobs: dict[str, str]) -> None:
    """`dead` names the reason and error, and once acknowledged the dead-letter record's
    partition:offset, which holds that very job."""
    s = env.status(jobs["dead"])
    assert s is not None
    assert [t.state for t in s.transitions] == ["emitted", "dead"]
    dead = s.last
    assert dead.reason == "permanent_error"
    assert dead.error_class == "streamjobs.errors.PermanentError"
    assert dead.topic == env.topic("stask") + ".dlq"
    assert dead.partition is not None and dead.offset is not None
    c = Consumer({**env.kafka.client_settings(), "group.id": "status-test-dlq-read"})
    try:
        c.assign([TopicPartition(dead.topic, dead.partition, dead.offset)])
        msg = c.consume(1, 10)[0]
    finally:
        c.close()
    assert h.JobMeta.from_headers(msg.headers()).job_id == jobs["dead"]


def test_failures_types_record_failures_only_and_none_types_nothing(
        env: StatusEnv, jobs: dict[str, str]) -> None:
    """`failures` (the default) writes nothing for a job that succeeds, every retry and the
    dead letter for one that fails; `none` writes nothing at all."""
    assert env.status(jobs["f_ok"]) is None
    assert env.states(jobs["f_dead"]) == ["retrying", "dead"]
    assert env.status(jobs["n_dead"]) is None


def test_lookup_reads_only_the_partition_the_id_hashes_to(env: StatusEnv,
                                                          jobs: dict[str, str]) -> None:
    """The reader assigns one partition, partition_for(id); a record for the id in any other
    partition is never seen."""
    job_id = jobs["ok"]
    right = partition_for(job_id, 6)
    wrong = (right + 1) % 6
    p = RawProducer(env.kafka.client_settings())
    p.produce(env.status_topic, encode("stask", Transition("dead", 2**41, reason="fake")),
              job_id.encode(), partition=wrong)
    assert p.flush(10) == 0
    with Follower(env.kafka, job_id, topic=env.status_topic) as f:
        status = f.read_to_end(10)
        assert f.partition == right
        assert [(tp.topic, tp.partition) for tp in f._consumer.assignment()] == [
            (env.status_topic, right)]
    assert status is not None and status.state == "succeeded"


def test_records_go_to_the_prefixed_status_topic(env: StatusEnv, jobs: dict[str, str]) -> None:
    """The status topic carries the environment's topic prefix."""
    assert env.status_topic == f"{env.prefix}streamjobs.status"
    c = Consumer({**env.kafka.client_settings(), "group.id": "status-test-count"})
    try:
        lows_highs = [c.get_watermark_offsets(TopicPartition(env.status_topic, p), timeout=10)
                      for p in range(6)]
    finally:
        c.close()
    assert sum(hi - lo for lo, hi in lows_highs) >= 10


def test_watch_returns_a_final_status_and_times_out_on_others(env: StatusEnv,
                                                              jobs: dict[str, str]) -> None:
    """`watch` resolves with the job's status once it is final, and raises TimeoutError when
    the job never gets there within the timeout (a `failures` type that succeeded)."""
    done = asyncio.run(watch(env.kafka, jobs["retried"], topic=env.status_topic, timeout=10))
    assert done.state == "succeeded" and done.attempts == 2
    with pytest.raises(TimeoutError, match="unknown"):
        asyncio.run(watch(env.kafka, jobs["f_ok"], topic=env.status_topic, timeout=1.5))


def test_a_delayed_job_is_emitted_to_its_wait_tier_with_its_due_time(
        env: StatusEnv, jobs: dict[str, str]) -> None:
    """`emitted` of a delayed job names the wait tier and the due time; it ran after it."""
    s = env.status(jobs["delayed"])
    assert s is not None and [t.state for t in s.transitions] == ["emitted", "succeeded"]
    emitted, ok = s.transitions
    assert emitted.topic == env.topic("stask") + ".retry.1s"
    assert emitted.due_at_ms == emitted.at_ms + 1500 and ok.at_ms >= emitted.due_at_ms


def test_a_long_async_job_shows_started_before_succeeded(env: StatusEnv,
                                                         jobs: dict[str, str]) -> None:
    """An async handler still running after a second gets `started` (dated when first seen
    running), then `succeeded`."""
    s = env.status(jobs["async_slow"])
    assert s is not None
    assert [t.state for t in s.transitions] == ["emitted", "started", "succeeded"]
    started, ok = s.transitions[1:]
    assert started.worker == h.hostname() and ok.at_ms - started.at_ms >= 1500


def test_a_poison_record_with_a_job_id_is_recorded_dead(env: StatusEnv,
                                                        jobs: dict[str, str]) -> None:
    """An undecodable record that names its job shows `dead` with reason decode_error."""
    s = env.status(jobs["poison"])
    assert s is not None and s.state == "dead" and s.last.reason == "decode_error"
    assert s.last.partition is not None


def test_a_failures_only_worker_records_dead_with_its_place(kafka_config: KafkaConfig) -> None:
    """A worker whose job types record failures only (no producer of successes of its own)
    still writes `retrying`, `dead` and then the dead letter's partition:offset."""
    with status_env(kafka_config, "fonly") as env:
        job_id = env.emit("ftask", fail="error", fail_attempts=5)
        mp = pytest.MonkeyPatch()
        worker = InProcessWorker(env, mp, job_types=("ftask",))
        try:
            dead = wait_for(lambda: (s := env.status(job_id)) is not None
                            and s.state == "dead" and s.last.offset is not None and s,
                            60, 0.3, "dead with its place")
            assert worker.worker.status is not None and not worker.worker.status.own
        finally:
            worker.stop()
            mp.undo()
    assert [t.state for t in dead.transitions] == ["retrying", "dead"]  # type: ignore[attr-defined]
