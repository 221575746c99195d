"""Job metadata on the real broker: the compact first-attempt form and the rich form."""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME

from streamjobs import _headers as h
from streamjobs._names import dlq_topic, retry_topic
from streamjobs._retry import pick_tier
from tests.conftest import wait_for

from .worker_support import Env, InProcess, env_fixture  # noqa: F401


def test_worker_runs_compact_and_legacy_records(env: Env,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker runs records with the compact ``sj`` header and records in the five-header
    form written before it (rolling deploys), interleaved in one partition: each with its
    id, attempt 1 and created-at (the record's CreateTime for compact ones, sj-created-at
    for legacy ones)."""
    env.create_topics("task", partitions=1)
    topic = env.topic()
    ids = [env.emit(legacy=i % 2 == 1) for i in range(6)]
    env.flush()
    records = {m.offset(): m for m in env.read(topic, 6)}
    assert [h.get(records[o].headers(), h.META) is not None for o in range(6)] == \
        [True, False] * 3
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= set(ids), 20, what="both forms")
    finally:
        w.stop()
    runs = {x["offset"]: x for x in env.lines()}
    assert sorted(runs) == list(range(6))
    for offset, m in records.items():
        kind, ts = m.timestamp()
        meta = h.JobMeta.from_headers(m.headers(), ts)
        run = runs[offset]
        assert (run["job_id"], run["attempt"]) == (meta.job_id, 1)
        if meta.compact:
            assert kind == TIMESTAMP_CREATE_TIME and run["created_at"] == ts
        else:
            assert run["created_at"] == h.get_int(m.headers(), h.CREATED_AT)


def test_retry_and_dead_letter_records_carry_the_rich_headers(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A compact first-attempt job that fails leaves the hot path: its retry record and its
    dead letter carry sj-id, sj-type, sj-attempt and sj-created-at (= the original record's
    timestamp) with the provenance, and no ``sj`` header; the retried run sees the same id
    and created-at. A legacy record's failure records read the same."""
    env.create_topics("task", partitions=1)
    topic = env.topic()
    retried = env.emit(fail="error", fail_attempts=1)
    env.emit(fail="permanent", fail_attempts=9)
    env.emit(fail="permanent", fail_attempts=9, legacy=True)
    env.flush()
    originals = env.read(topic, 3)
    metas = [h.JobMeta.from_headers(m.headers(), m.timestamp()[1]) for m in originals]
    assert [m.compact for m in metas] == [True, True, False]
    w = InProcess(env, monkeypatch)
    try:
        wait_for(lambda: any(x["id"] == retried for x in env.lines()), 30, what="retried job")
        dead = env.read(dlq_topic(topic), 2)
    finally:
        w.stop()
    job = env.catalogue.get("task")
    delay = job.retry.delay_for(1)
    assert delay is not None
    tier = pick_tier(delay, env.catalogue.wait_tiers(job.topic))
    (retry,) = env.read(retry_topic(topic, tier), 1)
    rh = retry.headers()
    assert h.get(rh, h.META) is None
    assert (h.get(rh, h.JOB_ID), h.get(rh, h.JOB_TYPE), h.get(rh, h.ATTEMPT)) == \
        (metas[0].job_id, "task", "2")
    assert h.get_int(rh, h.CREATED_AT) == metas[0].created_at_ms == originals[0].timestamp()[1]
    assert h.get(rh, h.ORIG_TOPIC) == topic and h.get(rh, h.ERROR_CLASS) == "RuntimeError"
    [run] = [x for x in env.lines() if x["id"] == retried]
    assert (run["job_id"], run["attempt"], run["created_at"]) == \
        (metas[0].job_id, 2, metas[0].created_at_ms)
    by_id = {h.get(m.headers(), h.JOB_ID): m for m in dead}
    for meta in metas[1:]:
        dh = by_id[meta.job_id].headers()
        assert h.get(dh, h.META) is None
        assert (h.get(dh, h.JOB_TYPE), h.get(dh, h.ATTEMPT)) == ("task", "1")
        assert h.get_int(dh, h.CREATED_AT) == meta.created_at_ms
        assert h.get(dh, h.DLQ_REASON) == "permanent_error"
        assert h.get(dh, h.ORIG_OFFSET) is not None
        again = h.JobMeta.from_headers(dh)
        assert (again.job_id, again.job_type, again.compact) == (meta.job_id, "task", False)
