"""Status records, timelines and the in-memory index, without a broker."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamjobs._config import KafkaConfig
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._status import JobStatus, StatusIndex, Transition, partition_for, status_topic
from streamjobs._status.lookup import created_ms
from streamjobs._status.record import decode, encode, job_id_of, record_key, record_keys
from streamjobs._status.timeline import fold, fold_all
from streamjobs.errors import CatalogueError

JOB = "019ad3c1-1f2e-7a4b-9c3d-5e6f7a8b9c0d"


def test_status_topic_takes_the_prefix() -> None:
    assert status_topic() == "streamjobs.status"
    assert status_topic("staging.") == "staging.streamjobs.status"


def test_record_round_trip_keeps_every_field_and_omits_empty_ones() -> None:
    t = Transition("retrying", 1764500000123, 2, "host-1", "TimeoutError", "upstream slow",
                   "demo.emails.retry.10s", None, None, 1764500010123, None)
    value = encode("send_email", t)
    doc = orjson.loads(value)
    assert doc == {"state": "retrying", "type": "send_email", "at": 1764500000123,
                   "attempt": 2, "worker": "host-1", "error_class": "TimeoutError",
                   "error": "upstream slow", "topic": "demo.emails.retry.10s",
                   "due_at": 1764500010123}
    assert decode(value) == ("send_email", t)


@pytest.mark.parametrize("value", [None, b"", b"not json", b'{"state": "exploded", "at": 1}',
                                   b'{"at": 1}', b'{"state": "dead"}', b"[1, 2]"])
def test_decode_refuses_what_is_not_a_status_record(value: bytes | None) -> None:
    assert decode(value) is None


def test_partition_is_crc32_of_the_id_mod_partitions() -> None:
    assert partition_for(JOB, 6) == zlib.crc32(JOB.encode()) % 6
    assert partition_for(JOB.encode(), 12) == zlib.crc32(JOB.encode()) % 12
    assert {partition_for(f"job-{i}", 6) for i in range(100)} == set(range(6))


def test_keys_of_enqueue_steps_have_a_suffix_the_reader_strips() -> None:
    assert record_key(JOB, "succeeded") == JOB.encode()
    assert record_key(JOB, "emitted") == f"{JOB}/emitted".encode()
    assert record_key(JOB, "reprocessed") == f"{JOB}/reprocessed".encode()
    for state in ("succeeded", "emitted", "replayed"):
        assert job_id_of(record_key(JOB, state)) == JOB
        assert record_key(JOB, state) in record_keys(JOB)
    assert job_id_of(b"a/b/other") == "a/b/other"


def test_uuid7_creation_time_is_read_from_the_id() -> None:
    from streamjobs._headers import new_job_id

    assert created_ms(new_job_id(1764500000123)) == 1764500000123
    assert created_ms("not-a-uuid") is None
    assert created_ms("019ad3c1-1f2e-4a4b-9c3d-5e6f7a8b9c0d") is None  # a v4


def t(state: str, at: int, attempt: int = 1, **kw: object) -> Transition:
    return Transition(state, at, attempt, **kw)  # type: ignore[arg-type]


def test_fold_appends_in_log_order_and_the_last_state_wins() -> None:
    s = fold_all(JOB, [("x", t("emitted", 1)), ("x", t("started", 2)), ("x", t("retrying", 3)),
                       ("x", t("succeeded", 5, 2))])
    assert s is not None
    assert s.state == "succeeded" and s.final and s.attempts == 2
    assert [x.state for x in s.transitions] == ["emitted", "started", "retrying", "succeeded"]


def test_a_late_emitted_goes_first_and_never_becomes_the_state() -> None:
    s = fold_all(JOB, [("x", t("succeeded", 5)), ("x", t("emitted", 1)), ("x", t("emitted", 1))])
    assert s is not None and s.state == "succeeded"
    assert [x.state for x in s.transitions] == ["emitted", "succeeded"]


def test_dead_twice_in_a_row_is_one_transition_with_the_dlq_place() -> None:
    s = fold_all(JOB, [("x", t("dead", 3, reason="max_attempts")),
                       ("x", t("dead", 3, reason="max_attempts", partition=2, offset=41))])
    assert s is not None and len(s.transitions) == 1 and s.last.offset == 41


def test_reprocessed_is_placed_by_time_so_an_earlier_recorded_rerun_keeps_its_state() -> None:
    normal = fold_all(JOB, [("x", t("dead", 3)), ("x", t("reprocessed", 10))])
    assert normal is not None and normal.state == "reprocessed"
    late = fold_all(JOB, [("x", t("dead", 3)), ("x", t("succeeded", 12)),
                          ("x", t("reprocessed", 10))])
    assert late is not None and late.state == "succeeded"
    assert [x.state for x in late.transitions] == ["dead", "reprocessed", "succeeded"]


def test_as_dict_round_trips_through_json() -> None:
    s = fold(None, JOB, "send_email", t("dead", 3, worker="w", reason="permanent_error",
                                        topic="a.dlq", partition=1, offset=7))
    doc = orjson.loads(orjson.dumps(s.as_dict()))
    assert doc["state"] == "dead" and doc["transitions"][0]["reason"] == "permanent_error"
    assert JobStatus.from_dict(doc) == s


def _index(max_jobs: int = 100) -> StatusIndex:
    return StatusIndex(KafkaConfig(), "unused", max_jobs=max_jobs)


def _apply(index: StatusIndex, job_id: str, job_type: str, tr: Transition) -> None:
    index.apply(record_key(job_id, tr.state), encode(job_type, tr))


def test_index_folds_exactly_as_the_timeline_rules_do() -> None:
    steps = [("succeeded", t("succeeded", 12)), ("emitted", t("emitted", 1)),
             ("dead", t("dead", 3)), ("dead", t("dead", 3, partition=1, offset=2)),
             ("reprocessed", t("reprocessed", 10)), ("started", t("started", 11))]
    index = _index()
    for _, tr in steps:
        _apply(index, JOB, "send_email", tr)
    expected = fold_all(JOB, [("send_email", tr) for _, tr in steps])
    assert index.get(JOB) == expected
    assert index.get("unknown") is None


def test_index_tombstone_forgets_and_garbage_is_ignored() -> None:
    index = _index()
    _apply(index, JOB, "x", t("retrying", 1))
    index.apply(JOB.encode(), b"garbage")
    got = index.get(JOB)
    assert got is not None and got.state == "retrying"
    index.apply(JOB.encode(), None)
    assert index.get(JOB) is None and len(index) == 0


def test_index_evicts_oldest_finished_jobs_first() -> None:
    index = _index(max_jobs=3)
    _apply(index, "open-1", "x", t("retrying", 1))
    _apply(index, "done-1", "x", t("succeeded", 2))
    _apply(index, "done-2", "x", t("dead", 3))
    _apply(index, "open-2", "x", t("started", 4))  # over the bound: done-1 goes
    assert index.get("done-1") is None
    assert {j for j in ("open-1", "done-2", "open-2") if index.get(j)} == {
        "open-1", "done-2", "open-2"}
    _apply(index, "open-3", "x", t("started", 5))  # done-2, the last finished one, goes
    _apply(index, "open-4", "x", t("started", 6))  # none finished left: the oldest open goes
    assert [j for j in ("open-1", "done-2", "open-2", "open-3", "open-4") if index.get(j)] == [
        "open-2", "open-3", "open-4"]
    assert index.stats()["evicted"] == 3 and len(index) == 3


def test_index_recent_is_newest_first_and_filters_by_state() -> None:
    index = _index()
    for i, state in enumerate(["succeeded", "retrying", "dead", "succeeded", "started"]):
        _apply(index, f"job-{i}", "x", t(state, 100 + i))
    assert [s.job_id for s in index.recent(3)] == ["job-4", "job-3", "job-2"]
    assert [s.job_id for s in index.recent(state="succeeded")] == ["job-3", "job-0"]


def test_index_subscribers_see_every_change_until_they_unsubscribe() -> None:
    index = _index()
    seen: list[str] = []
    unsubscribe = index.subscribe(lambda s: seen.append(s.state))
    _apply(index, JOB, "x", t("started", 1))
    _apply(index, JOB, "x", t("succeeded", 2))
    unsubscribe()
    _apply(index, "other", "x", t("dead", 3))
    assert seen == ["started", "succeeded"]


def test_index_keeps_one_bytes_per_job_and_reports_its_size() -> None:
    index = _index()
    for i in range(50):
        _apply(index, f"job-{i}", "send_email", t("emitted", i))
        _apply(index, f"job-{i}", "send_email", t("succeeded", i + 1))
    assert all(type(e) is bytes and e.count(b"\n") == 1 for e in index._done.values())
    stats = index.stats()
    assert stats["jobs"] == 50 and stats["finished"] == 50 and stats["approx_bytes"] > 50 * 100


def _catalogue(tmp_path: Path, defaults: str, job: str) -> Catalogue:
    (tmp_path / "test.Task.v1.avsc").write_text(orjson.dumps({
        "type": "record", "name": "Task", "namespace": "test",
        "fields": [{"name": "id", "type": "string"}]}).decode())
    (tmp_path / "catalogue.toml").write_text(
        f"[defaults]\n{defaults}\n[jobs.a]\nschema = \"test.Task\"\ntopic = \"a\"\n{job}\n"
        "[jobs.b]\nschema = \"test.Task\"\ntopic = \"b\"\n")
    return Catalogue.load(tmp_path)


def test_catalogue_status_default_is_failures_and_can_be_set_per_type(tmp_path: Path) -> None:
    cat = _catalogue(tmp_path, "", 'status = "all"')
    assert cat.get("a").status == "all" and cat.get("b").status == "failures"
    cat = _catalogue(tmp_path, 'status = "none"', "")
    assert cat.get("a").status == "none" and cat.get("b").status == "none"
    with pytest.raises(CatalogueError, match="status must be one of all, failures, none"):
        _catalogue(tmp_path, "", 'status = "everything"')


def test_status_topic_is_in_the_desired_topics_with_the_prefix(tmp_path: Path) -> None:
    from streamjobs._ops.topics import STATUS_PARTITIONS, desired_topics

    cat = _catalogue(tmp_path, "", "").with_topic_prefix("env1.")
    specs = [s for s in desired_topics(cat) if s.role == "status"]
    assert [(s.name, s.partitions) for s in specs] == [("env1.streamjobs.status",
                                                        STATUS_PARTITIONS)]
    assert specs[0].config["cleanup.policy"] == "compact,delete"
    assert specs[0].config["message.timestamp.type"] == "LogAppendTime"


class _FakeClient:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []

    def produce(self, topic: str, value: bytes, key: bytes, partition: int = -1) -> None:
        self.sent.append((topic, value, key, partition))


def test_the_hot_paths_bytes_decode_as_records_and_land_on_the_ids_partition() -> None:
    """emit's `emitted` and the worker's `succeeded` values are formatted by hand: they must
    decode (index fast path and full decode alike) and go to partition_for(id)."""
    from types import SimpleNamespace as NS

    from streamjobs._status.index import _parse
    from streamjobs._status.writer import StatusWriter
    from streamjobs._worker.statuses import StatusRecorder

    client = _FakeClient()
    writer = StatusWriter(client, "p.streamjobs.status", 6)
    writer.emitted(writer.emitted_head("send_email", "p.emails"), JOB, 1764500000123)

    class Route:
        job = NS(status="all", name="send_email")

    recorder = StatusRecorder(None, "p.streamjobs.status", 6, 'host "1"', {})  # type: ignore[arg-type]
    recorder.producer = client  # type: ignore[assignment]
    part = NS(topic="p.emails", partition=4, status_every=True, route=None)
    recorder.succeeded(part, [_done(Route(), JOB.encode(), 2, 17)])
    (_, v1, k1, p1), (_, v2, k2, p2) = client.sent
    assert k1 == f"{JOB}/emitted".encode() and k2 == JOB.encode()
    assert p1 == p2 == partition_for(JOB, 6)
    assert decode(v1) == ("send_email", Transition("emitted", 1764500000123, topic="p.emails"))
    got = decode(v2)
    assert got is not None and got[0] == "send_email"
    assert (got[1].state, got[1].attempt, got[1].worker, got[1].topic, got[1].partition,
            got[1].offset) == ("succeeded", 2, 'host "1"', "p.emails", 4, 17)
    assert _parse(v1) == ("emitted", "send_email") and _parse(v2) == ("succeeded", "send_email")


def test_a_chunk_of_successes_is_one_batch_record_per_status_partition() -> None:
    """Many jobs finishing together: one record per status partition lists them (keyed
    `_batch/...`, unique); a job alone in its partition gets its own record; the index and
    decode_all give each job its own `succeeded`, the same as a single record would."""
    from types import SimpleNamespace as NS

    from streamjobs._status.record import decode_all
    from streamjobs._worker.statuses import StatusRecorder

    class Route:
        job = NS(status="all", name="send_email")

    client = _FakeClient()
    recorder = StatusRecorder(None, "st", 2, "host-1", {})  # type: ignore[arg-type]
    recorder.producer = client  # type: ignore[assignment]
    ids = [f"019ad3c1-1f2e-7a4b-9c3d-{i:012d}" for i in range(40)]
    by_partition: dict[int, list[str]] = {}
    for job_id in ids:
        by_partition.setdefault(partition_for(job_id, 2), []).append(job_id)
    assert all(len(v) > 1 for v in by_partition.values())
    part = NS(topic="emails", partition=1, status_every=True, route=None)
    route = Route()
    recorder.succeeded(part, [_done(route, j.encode(), 1, 100 + i) for i, j in enumerate(ids)])
    assert len(client.sent) == 2
    index = _index()
    seen: dict[str, Transition] = {}
    for _, value, key, partition in client.sent:
        assert key.startswith(b"_batch/host-1/")
        triples = decode_all(key, value)
        assert {j for j, _, _ in triples} == set(by_partition[partition])
        seen.update({j: tr for j, _, tr in triples})
        index.apply(key, value)
    assert len({k for _, _, k, _ in client.sent}) == 2
    for i, job_id in enumerate(ids):
        assert seen[job_id] == Transition("succeeded", seen[job_id].at_ms, 1, "host-1",
                                          topic="emails", partition=1, offset=100 + i)
        got = index.get(job_id)
        assert got is not None and got.transitions == (seen[job_id],)
    client.sent.clear()
    recorder.succeeded(part, [_done(route, ids[0].encode(), 3, 7)])
    (_, value, key, _), = client.sent
    assert key == ids[0].encode() and decode(value) is not None


def test_an_id_that_is_not_plain_json_text_leaves_the_batch() -> None:
    """A job id needing JSON escapes (a quote, say) gets a record of its own: the batch's
    value is built without escaping."""
    from types import SimpleNamespace as NS

    from streamjobs._status.record import decode_all
    from streamjobs._worker.statuses import StatusRecorder

    class Route:
        job = NS(status="all", name="x")

    client = _FakeClient()
    recorder = StatusRecorder(None, "st", 1, "h", {})  # type: ignore[arg-type]
    recorder.producer = client  # type: ignore[assignment]
    route = Route()
    ids = [b"plain-1", b'quo"ted', b"plain-2"]
    recorder.succeeded(NS(topic="t", partition=0, status_every=True, route=None),
                       [_done(route, i, 1, k) for k, i in enumerate(ids)])
    got = {j: tr.offset for _, v, key, _ in client.sent for j, _, tr in decode_all(key, v)}
    assert got == {"plain-1": 0, 'quo"ted': 1, "plain-2": 2}
    assert len(client.sent) == 2


def _done(route: Any, id_b: bytes, attempt: int, offset: int) -> Any:
    """A finished job as ``StatusRecorder.succeeded`` reads it."""
    from types import SimpleNamespace as NS

    return NS(_route=route, _ident=lambda: (id_b, attempt, offset))


def test_a_one_type_topics_ids_are_read_in_passes_as_each_context_reads_them() -> None:
    """``context.idents``: records carrying just their type's ``sj`` header are read in C-level
    passes; anything else (a legacy record, an id needing repair, an attempt set in place)
    job by job: the same (id, attempt, offset) either way."""
    from types import SimpleNamespace as NS

    from streamjobs import _headers as h
    from streamjobs._worker.context import TopicRecordContext, idents
    from streamjobs._worker.routes import Route

    from .test_intake_batch import _msg

    route = Route(NS(name="mail"), NS(), "t", b"mail", b";mail")  # type: ignore[arg-type]
    part = NS(topic="t", partition=0)

    def ctx(offset: int, headers: list[tuple[str, bytes]] | None) -> TopicRecordContext:
        return TopicRecordContext(_msg("t", offset, b"", headers), part, route, offset, {})

    def compact(offset: int) -> TopicRecordContext:
        return ctx(offset, [(h.META, f"id-{offset};mail".encode())])

    def each(jobs: list[TopicRecordContext]) -> list[tuple[bytes, int, int]]:
        return [c._ident() for c in jobs]

    fast = [compact(o) for o in range(5)]
    assert idents(fast, route) == [(f"id-{o}".encode(), 1, o) for o in range(5)]
    assert all(c._meta is None for c in fast)  # read in passes: nothing cached per job
    cases = [
        [*fast[:2], ctx(9, [(h.JOB_ID, b"legacy"), (h.JOB_TYPE, b"mail"), (h.ATTEMPT, b"3")])],
        [*fast[:2], ctx(9, [(h.META, b"a;b;mail")])],  # an id with a ';' reads the same
        [*fast[:2], ctx(9, [(h.META, "idé;mail".encode())])],  # not ASCII: repaired
        [*fast[:2], ctx(9, [(h.META, b"x;other")])],  # another type named: the topic's wins
        [*fast[:2], ctx(9, None)],  # a foreign record: an id from its position
    ]
    for jobs in cases:
        want = each([ctx(c.offset, c._msg.headers()) for c in jobs])
        assert idents(jobs, route) == want
    held = [compact(o) for o in range(3)]
    held[1].attempt = 2  # a key-strict retry in place
    assert idents(held, route) == [(b"id-0", 1, 0), (b"id-1", 2, 1), (b"id-2", 1, 2)]


def test_batch_records_of_both_forms_decode() -> None:
    from streamjobs._status.record import decode_all

    head = b'{"state":"succeeded","type":"x","worker":"h","topic":"t","partition":0,"at":5'
    new = head + b',"ids":["a","b"],"attempts":[1,2],"offsets":[7,8]}'
    old = head + b',"jobs":[["a",1,7],["b",2,8]]}'
    for value in (new, old):
        got = [(j, tr.attempt, tr.offset) for j, _, tr in decode_all(b"_batch/h/1", value)]
        assert got == [("a", 1, 7), ("b", 2, 8)]
    torn = head + b',"ids":["a","b"],"attempts":[1],"offsets":[7,8]}'
    assert decode_all(b"_batch/h/1", torn) == []
