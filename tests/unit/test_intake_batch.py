"""Intake's per-partition batches: the inlined path for compact first-attempt records and the
general path (rich headers, foreign records, poison) give the same jobs, in offset order, with
every taken offset in the partition's tracker; a contiguous run's offsets come as a ``range``
(retired as one); the in-flight bound leaves the rest for later. And the back-pressure of
``Pauses``: at the bound the loop first only stops taking, and pauses (seeking back) only when
the bound holds past ``SOFT_HOLD_S``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App
from streamjobs._worker.intake import Intake
from streamjobs._worker.partition import SOFT_HOLD_S, Part, Pauses
from streamjobs._worker.router import Router
from streamjobs._worker.routes import Routes
from streamjobs.events import EventBus
from tests.unit.fakekafka import Msg
from tests.unit.test_catalogue import USER, make_dir

TOML = """
[defaults]
status = "none"

[jobs.work]
schema = "t.User"
topic = "t.w"

[jobs.other]
schema = "t.User"
topic = "t.mixed"

[jobs.more]
schema = "t.User"
topic = "t.mixed"
"""


def _setup(tmp_path: Path) -> tuple[Intake, Routes, Codec]:
    cat = Catalogue.load(make_dir(tmp_path, TOML, **{"t.User.v1.avsc": USER}))
    app = App(cat, topic_prefix="")
    for name in ("work", "other", "more"):
        app.job(name)(lambda payload, ctx: None)
    routes = Routes(app, app.check(()))
    codec = Codec(cat)
    return Intake(routes, codec, Router(routes.tiers, "host", "g", False), EventBus(), 2.0), \
        routes, codec


def _msg(topic: str, offset: int, value: bytes | None, headers: h.Headers | None,
         partition: int = 0) -> Msg:
    return Msg(topic, partition, offset, b"k", value, headers, 1_700_000_000_000 + offset)


def _compact(job_id: str, job_type: str) -> h.Headers:
    return [(h.META, h.compact(job_id, job_type).encode())]


def test_compact_rich_foreign_and_poison_records_in_one_batch(tmp_path: Path) -> None:
    intake, routes, codec = _setup(tmp_path)
    part = Part("t.w", 0, routes, "partition")
    good = codec.encode("work", {"id": "u", "n": 1})
    rich = [(h.JOB_TYPE, b"work"), (h.JOB_ID, b"rich-1"), (h.ATTEMPT, b"1"),
            (h.CREATED_AT, b"1700000000123")]
    msgs = [
        _msg("t.w", 10, good, _compact("id;with;semicolons", "work")),
        _msg("t.w", 11, good, [*_compact("plain", "work"), ("traceparent", b"00-ab")]),
        _msg("t.w", 12, good, rich),
        _msg("t.w", 13, b"not avro", _compact("bad", "work")),  # poison: undecodable
        _msg("t.w", 14, good, None),  # foreign: no headers on a one-type topic
        # On a topic of one job type the topic names the type: a header naming another
        # is not read (the value is one of work's writer schemas).
        _msg("t.w", 15, good, _compact("nope", "unknown")),
        _msg("t.w", 16, good, _compact("last", "work")),
    ]
    taken = intake.take(msgs, {("t.w", 0): part}, 0, 100)
    assert [p for p, _, _ in taken.jobs] == [part]
    _, jobs, offsets = taken.jobs[0]
    assert [c.offset for c in jobs] == [10, 11, 12, 14, 15, 16] == list(offsets)
    assert [c.job_id for c in jobs[:3]] == ["id;with;semicolons", "plain", "rich-1"]
    assert [c.job_id for c in jobs[4:]] == ["nope", "last"]
    assert jobs[3].job_id  # the foreign one got a derived id
    assert {c.job_type for c in jobs} == {"work"}
    assert [c.payload for c in jobs] == [{"id": "u", "n": 1}] * 6
    assert jobs[0].created_at_ms == 1_700_000_000_010  # compact: the record's timestamp
    assert jobs[2].created_at_ms == 1_700_000_000_123  # rich: its sj-created-at
    assert [r.offset for _, r in taken.routed] == [13]  # dead-lettered
    assert taken.in_flight == 7 and part.next_fetch == 17
    assert part.tracker.in_flight == 7  # every offset taken, the poison one too
    part.tracker.done_many(offsets)
    assert part.tracker.commit_position() == 13  # the poison record at 13 is not finished
    part.tracker.done(13)
    assert part.tracker.commit_position() == 17


class _Counted(Msg):
    """A record that counts how often its headers were read."""

    reads = 0

    def headers(self) -> h.Headers | None:
        self.reads += 1
        return super().headers()


def test_a_one_type_topic_reads_no_headers_until_asked(tmp_path: Path) -> None:
    # Converting headers is the costliest step of taking a record: on a topic of one job
    # type the worker runs a job without them, and reads them once when first asked.
    intake, routes, codec = _setup(tmp_path)
    part = Part("t.w", 0, routes, "partition")
    good = codec.encode("work", {"id": "u", "n": 1})
    rich = [(h.JOB_ID, b"r"), (h.JOB_TYPE, b"work"), (h.ATTEMPT, b"3"),
            (h.CREATED_AT, b"1600000000000"), ("traceparent", b"00-cd")]
    foreign = [("traceparent", b"00-ef"), (h.ATTEMPT, b"x")]  # no id; attempt unreadable
    first = _Counted("t.w", 0, 9, b"k", good, _compact("seen", "work"), 1_700_000_000_000)
    intake.take([first], {("t.w", 0): part}, 0, 100)  # the first record compiles the reader
    msgs = [_Counted("t.w", 0, o, b"k", good, hdrs, 1_700_000_000_000 + o)
            for o, hdrs in ((10, _compact("c", "work")), (11, rich), (12, foreign))]
    taken = intake.take(msgs, {("t.w", 0): part}, 0, 100)
    jobs = taken.jobs[0][1]
    assert [m.reads for m in msgs] == [0, 0, 0]
    assert [c.payload for c in jobs] == [{"id": "u", "n": 1}] * 3  # ran without them
    assert [(c.job_id, c.attempt, c.created_at_ms) for c in jobs[:2]] == [
        ("c", 1, 1_700_000_000_010), ("r", 3, 1_600_000_000_000)]
    assert jobs[2].attempt == 1 and jobs[2].created_at_ms == 1_700_000_000_012
    assert jobs[2].job_id == jobs[2].job_id and len(jobs[2].job_id) == 36  # from its position
    assert h.get(jobs[2].headers, h.JOB_ID) == jobs[2].job_id  # kept by a retry
    assert h.get(jobs[2].headers, "traceparent") == "00-ef"
    assert h.get(jobs[1].headers, "traceparent") == "00-cd"
    assert [m.reads for m in msgs] == [1, 1, 1]  # once each, however often asked
    jobs[1].attempt += 1  # a retry in place (key-strict)
    assert (jobs[1].attempt, jobs[1].job_id) == (4, "r") and msgs[1].reads == 1


def test_a_one_type_topic_decides_alike_with_a_cold_or_a_warm_reader(tmp_path: Path) -> None:
    # The first record of a framing goes the slow way (it compiles the reader): what becomes
    # of a record must not depend on that. Headers the record runs despite are completed, so
    # that its retry (read strictly on the wait topic) carries what it ran as.
    good_headers = [
        _compact("nope", "unknown"),  # a type nobody runs
        [(h.JOB_ID, b"\xff\xfe"), (h.JOB_TYPE, b"work"), (h.ATTEMPT, b"x"),
         (h.CREATED_AT, b"soon")],  # nothing readable but the type
    ]
    for hdrs in good_headers:
        for warm in (False, True):
            intake, routes, codec = _setup(tmp_path)
            part = Part("t.w", 0, routes, "partition")
            good = codec.encode("work", {"id": "u", "n": 1})
            msgs = [_msg("t.w", 1, good, hdrs)]
            if warm:
                msgs.insert(0, _msg("t.w", 0, good, _compact("first", "work")))
            taken = intake.take(msgs, {("t.w", 0): part}, 0, 100)
            assert not taken.routed, (hdrs, warm)
            ctx = taken.jobs[0][1][-1]
            assert ctx.job_type == "work" and ctx.attempt == 1
            assert ctx.created_at_ms == 1_700_000_000_001
            type_b, id_b, _, c = h.scan(h.expand(ctx.headers, 1_700_000_000_001))
            assert type_b == b"work" and c is not None and c.isdigit()
            assert id_b is not None and id_b.decode("utf-8") == ctx.job_id


def test_a_contiguous_run_comes_as_a_range_per_partition(tmp_path: Path) -> None:
    intake, routes, codec = _setup(tmp_path)
    parts = {("t.mixed", p): Part("t.mixed", p, routes, "partition") for p in (0, 1)}
    value = codec.encode("other", {"id": "u", "n": 2})
    msgs = [_msg("t.mixed", o, value, _compact(f"j{p}-{o}", "other" if o % 2 else "more"), p)
            for p, o in [(0, 5), (0, 6), (1, 0), (1, 1), (0, 7), (1, 2)]]
    taken = intake.take(msgs, parts, 0, 100)
    by_part = {part.partition: (jobs, offsets) for part, jobs, offsets in taken.jobs}
    assert by_part[0][1] == range(5, 8) and by_part[1][1] == range(0, 3)
    assert [c.job_type for c in by_part[0][0]] == ["other", "more", "other"]
    assert [c.job_id for c in by_part[1][0]] == ["j1-0", "j1-1", "j1-2"]
    assert parts[("t.mixed", 0)].tracker.in_flight == 3


def test_the_in_flight_bound_leaves_the_rest_untaken(tmp_path: Path) -> None:
    intake, routes, codec = _setup(tmp_path)
    part = Part("t.w", 0, routes, "partition")
    value = codec.encode("work", {"id": "u", "n": 3})
    msgs = [_msg("t.w", o, value, _compact(f"j{o}", "work")) for o in range(5)]
    taken = intake.take(msgs, {("t.w", 0): part}, 7, 10)
    assert taken.pause and taken.in_flight == 10
    assert list(taken.jobs[0][2]) == [0, 1, 2] and part.next_fetch == 3  # the pause seeks here
    # Records before next_fetch (fetched again after a seek) are skipped.
    again = intake.take(msgs, {("t.w", 0): part}, 0, 10)
    assert list(again.jobs[0][2]) == [3, 4]


def test_records_handed_back_before_any_was_taken_get_a_place_to_seek_to(tmp_path: Path) -> None:
    # A partition with nothing taken yet (next_fetch -1) whose first records come at the
    # bound: without a place the pause would not seek, and they would be skipped.
    intake, routes, codec = _setup(tmp_path)
    part = Part("t.w", 0, routes, "partition")
    value = codec.encode("work", {"id": "u", "n": 3})
    msgs = [_msg("t.w", o, value, _compact(f"j{o}", "work")) for o in range(40, 43)]
    taken = intake.take(msgs, {("t.w", 0): part}, 10, 10)
    assert taken.pause and not taken.jobs
    assert part.next_fetch == 40


class _Consumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def pause(self, tps: Any) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in tps]))

    def resume(self, tps: Any) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in tps]))

    def seek(self, tp: Any) -> None:
        self.calls.append(("seek", (tp.topic, tp.partition, tp.offset)))


def test_at_the_bound_the_loop_holds_first_and_pauses_only_if_it_lasts(tmp_path: Path) -> None:
    _, routes, _ = _setup(tmp_path)
    consumer = _Consumer()
    part = Part("t.w", 0, routes, "partition", consumer)
    part.next_fetch = 42
    pauses = Pauses()
    t0 = 1_000_000.0

    def reconcile(in_flight: int, now_ms: float) -> None:
        pauses.reconcile([part], in_flight=in_flight, max_in_flight=100, resume_at=50,
                         stopping=False, now_ms=now_ms)

    reconcile(100, t0)
    assert pauses.holding and not consumer.calls  # pre-fetched records stay in librdkafka
    reconcile(60, t0 + 10)
    assert pauses.holding and not consumer.calls  # above resume_at: still holding
    reconcile(50, t0 + 20)
    assert not pauses.holding and not consumer.calls  # drained in time: never paused
    reconcile(100, t0 + 30)
    reconcile(99, t0 + 30 + SOFT_HOLD_S * 1000.0)  # held too long: pause and seek back
    assert consumer.calls == [("pause", [("t.w", 0)]), ("seek", ("t.w", 0, 42))]
    assert pauses.holding and part.paused_kafka and pauses.count == 1
    reconcile(10, t0 + 40 + SOFT_HOLD_S * 1000.0)
    assert not pauses.holding and not part.paused_kafka
    assert consumer.calls[2:] == [("resume", [("t.w", 0)]), ("seek", ("t.w", 0, 42))]


def test_records_taken_past_the_bound_pause_at_once(tmp_path: Path) -> None:
    _, routes, _ = _setup(tmp_path)
    consumer = _Consumer()
    part = Part("t.w", 0, routes, "partition", consumer)
    part.next_fetch = 7
    pauses = Pauses()
    pauses.request()  # intake handed records back: they must be fetched again (a seek)
    pauses.reconcile([part], in_flight=100, max_in_flight=100, resume_at=50, stopping=False,
                     now_ms=1.0)
    assert consumer.calls == [("pause", [("t.w", 0)]), ("seek", ("t.w", 0, 7))]


def test_records_handed_back_are_fetched_again_even_if_in_flight_drops_first(
        tmp_path: Path) -> None:
    # The jobs in flight can finish before the loop reconciles; the handed-back records are
    # still behind librdkafka's position: without the pause's seek they would be skipped.
    _, routes, _ = _setup(tmp_path)
    consumer = _Consumer()
    part = Part("t.w", 0, routes, "partition", consumer)
    part.next_fetch = 7
    pauses = Pauses()
    pauses.request()
    pauses.reconcile([part], in_flight=0, max_in_flight=100, resume_at=50, stopping=False,
                     now_ms=1.0)
    assert consumer.calls == [("pause", [("t.w", 0)]), ("seek", ("t.w", 0, 7))]
    pauses.reconcile([part], in_flight=0, max_in_flight=100, resume_at=50, stopping=False,
                     now_ms=2.0)
    assert not pauses.holding and not part.paused_kafka
    assert consumer.calls[2:] == [("resume", [("t.w", 0)]), ("seek", ("t.w", 0, 7))]


def test_a_hold_that_ran_out_before_the_pause_seeks_back(tmp_path: Path) -> None:
    # A wait tier's hold ending before the loop reconciles: the partition never paused in
    # Kafka, but intake dropped its records after delivery: it must seek back, not stay
    # marked paused (every record of it dropped from then on).
    _, routes, _ = _setup(tmp_path)
    consumer = _Consumer()
    part = Part("t.w", 0, routes, "partition", consumer)
    part.next_fetch = 9
    part.hold(5.0)
    pauses = Pauses()
    pauses.dirty = True
    pauses.reconcile([part], in_flight=0, max_in_flight=100, resume_at=50, stopping=False,
                     now_ms=6.0)
    assert not part.paused
    assert consumer.calls == [("resume", [("t.w", 0)]), ("seek", ("t.w", 0, 9))]


def test_summaries_report_when_each_job_was_queued(tmp_path: Path) -> None:
    # A job topic's record: its timestamp (a replayed or reprocessed job's is when it went
    # back on the topic); a wait topic's (a retry, a delayed job): its created-at, so that
    # the waits count. Handlers see each job's own created-at either way.
    from streamjobs._worker.executor import created_at
    from streamjobs._worker.intake import Taken

    intake, routes, codec = _setup(tmp_path)
    part = Part("t.w", 0, routes, "partition")
    good = codec.encode("work", {"id": "u", "n": 1})
    rich = [(h.JOB_TYPE, b"work"), (h.JOB_ID, b"r"), (h.ATTEMPT, b"1"),
            (h.CREATED_AT, b"1700000000999")]
    msgs = [_msg("t.w", o, good, _compact(f"j{o}", "work")) for o in range(3)]
    jobs = intake.take(msgs, {("t.w", 0): part}, 0, 100).jobs[0][1]
    expected = (1_700_000_000_000, 1_700_000_000_001, 1_700_000_000_002)
    assert created_at(jobs, part) == expected == tuple(c.created_at_ms for c in jobs)
    more = [_msg("t.w", 3, good, rich), _msg("t.w", 4, good, _compact("z", "work"))]
    more.append(Msg("t.w", 0, 5, None, good, _compact("y", "work"), 0))  # no timestamp
    later = intake.take(more, {("t.w", 0): part}, 0, 100).jobs[0][1]
    assert created_at(later, part) == (1_700_000_000_003, 1_700_000_000_004, None)
    assert later[0].created_at_ms == 1_700_000_000_999
    wait_topic = next(t for t, (job_topic, _) in routes.wait.items() if job_topic == "t.w")
    wait = Part(wait_topic, 0, routes, "partition")
    retried = [*rich[:2], (h.ATTEMPT, b"2"), rich[3], (h.DUE_AT, b"1700000000500")]
    taken = intake.take([_msg(wait_topic, 7, good, retried)], {(wait_topic, 0): wait}, 0, 100)
    assert not taken.jobs  # it waits in the timer heap
    intake.fire(1_700_000_001_000.0, fired := Taken(0))
    [(_, woken, _)] = fired.jobs
    assert created_at(woken, wait) == (1_700_000_000_999,)
