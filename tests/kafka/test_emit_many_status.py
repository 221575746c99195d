"""emit_many on the real broker: status records and record timestamps of a batch."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._producer import Job
from tests.kafka.jobs_catalogue import read
from tests.kafka.status_support import StatusEnv, status_env


@pytest.fixture(scope="module")
def env(kafka_config: KafkaConfig) -> Iterator[StatusEnv]:
    with status_env(kafka_config, "many") as e:
        yield e


def test_emit_many_records_emitted_for_each_job_like_emit(env: StatusEnv) -> None:
    """Every job of a batch of an ``all`` type gets its ``emitted`` status at the record's
    CreateTime (its created-at) on its topic; a delayed ``Job`` value's carries its due time and
    its wait topic, and the job itself the rich headers; a ``none`` type records nothing."""
    p = env.producer
    plain = [("stask", {"id": f"m{i}", "key": f"k{i}"}) for i in range(3)]
    ids = p.emit_many([*plain, Job("stask", {"id": "d", "key": "kd"}, delay=60),
                       ("ntask", {"id": "n", "key": "kn"})])
    p.flush(30)
    assert len(set(ids)) == 5
    records = {h.JobMeta.from_headers(m.headers()).job_id: m
               for m in read(env.kafka, env.topic("stask"), 3)}
    assert set(records) == set(ids[:3])
    for job_id in ids[:3]:
        s = env.wait_state(job_id, "emitted")
        [t] = s.transitions
        assert t.topic == env.topic("stask") and t.due_at_ms is None
        assert t.at_ms == records[job_id].timestamp()[1]
    delayed = env.wait_state(ids[3], "emitted").transitions[0]
    assert delayed.due_at_ms is not None and delayed.due_at_ms - delayed.at_ms == 60_000
    assert delayed.topic is not None and ".retry." in delayed.topic
    (waiting,) = read(env.kafka, delayed.topic, 1)
    assert h.get(waiting.headers(), h.JOB_ID) == ids[3]
    assert h.get(waiting.headers(), h.META) is None
    assert env.status(ids[4]) is None
