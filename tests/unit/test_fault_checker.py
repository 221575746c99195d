"""The fault-suite checker judges histories correctly (pure; no broker)."""

from __future__ import annotations

import os
from pathlib import Path

from tests.faults.checker import CommitSample, History, Kill, TopicRecord, check
from tests.faults.ledger import Ack, LedgerReader, LedgerWriter, Run, read_ledger

T = "f.jobs"
W = "f.jobs.retry.1s"


def run(kind: str, job: str, offset: int, t: float, *, attempt: int = 1, topic: str = T,
        partition: int = 0, group: int = 7, due: int | None = None) -> Run:
    return Run(kind, job, attempt, group, group, topic, partition, offset, t, due)


def rec(offset: int, job: str | None, t: float = 0.0, *, topic: str = T, partition: int = 0,
        attempt: int | None = 1, orig: tuple[str, int, int] | None = None,
        reason: str | None = None) -> TopicRecord:
    return TopicRecord(topic, partition, offset, t, job, attempt if job else None, None, orig,
                       reason)


def history(**kw: object) -> History:
    base: dict[str, object] = {"acks": [], "runs": [], "records": [], "dead_letters": [],
                               "job_topics": frozenset({T})}
    base.update(kw)
    return History(**base)  # type: ignore[arg-type]


def test_clean_history_has_no_findings() -> None:
    """Every acked job finished once, commits follow finishes: nothing to report."""
    h = history(acks=[Ack("a", 1), Ack("b", 1)],
                runs=[run("start", "a", 0, 10), run("ok", "a", 0, 11),
                      run("start", "b", 1, 12), run("ok", "b", 1, 13)],
                records=[rec(0, "a"), rec(1, "b")],
                commits=[CommitSample(12, T, 0, 1), CommitSample(20, T, 0, 2)])
    r = check(h)
    assert (r.lost, r.duplicates, r.early, r.regressions, r.skips) == ([], {}, [], [], [])
    assert r.summary()["succeeded"] == 2 and r.summary()["commit_samples"] == 2


def test_acked_but_never_finished_is_lost() -> None:
    """A started-but-unfinished job is lost; a dead-lettered one is finished."""
    h = history(acks=[Ack("a", 1), Ack("b", 1), Ack("c", 1)],
                runs=[run("start", "a", 0, 10), run("start", "b", 1, 10), run("ok", "b", 1, 11)],
                records=[rec(0, "a"), rec(1, "b"), rec(2, "c")],
                dead_letters=[rec(0, "c", topic="f.jobs.dlq", reason="max_attempts")])
    r = check(h)
    assert r.lost == ["a"]
    assert r.dead_lettered == 1


def test_finishing_twice_is_a_duplicate_and_rerun_counted() -> None:
    """Two ok finishes, or ok plus a dead letter, count as duplicates (extra finishes)."""
    h = history(acks=[Ack("a", 1), Ack("b", 1)],
                runs=[run("start", "a", 0, 1), run("ok", "a", 0, 2),
                      run("start", "a", 0, 3, group=8), run("ok", "a", 0, 4, group=8),
                      run("start", "b", 1, 5), run("ok", "b", 1, 6)],
                dead_letters=[rec(0, "b", topic="f.jobs.dlq")])
    r = check(h)
    assert r.duplicates == {"a": 1, "b": 1}
    assert r.duplicate_count == 2 and r.reruns == 1


def test_start_before_due_is_early_and_lateness_measured() -> None:
    """A start before sj-due-at is early; starts after it give the lateness figures."""
    h = history(runs=[run("start", "a", 0, 990, topic=W, attempt=2, due=1000),
                      run("start", "b", 1, 1250, topic=W, attempt=2, due=1000)])
    r = check(h)
    assert [x.job_id for x in r.early] == ["a"]
    assert r.lateness(0.99) == 250 and min(r.lateness_ms) == -10


def test_committed_offset_going_backwards_is_a_regression() -> None:
    """Per partition, committed offsets never decrease across samples."""
    h = history(commits=[CommitSample(1, T, 0, 10), CommitSample(2, T, 1, 3),
                         CommitSample(3, T, 0, 5), CommitSample(4, T, 0, 11)])
    r = check(h)
    assert r.regressions == [((T, 0), 10, 5, 3)]


def test_commit_over_unfinished_record_is_a_skip() -> None:
    """A commit of c at t while a record below c finishes only after t (or never) is a skip;
    the same commit sampled after the finish is fine."""
    h = history(runs=[run("ok", "a", 0, 10), run("ok", "b", 1, 150), run("ok", "c", 2, 11)],
                records=[rec(0, "a"), rec(1, "b"), rec(2, "c"), rec(3, "d")],
                commits=[CommitSample(100, T, 0, 3), CommitSample(200, T, 0, 3),
                         CommitSample(300, T, 0, 4)])
    r = check(h)
    assert r.skips == [((T, 0), 3, 1, 100), ((T, 0), 4, 3, 300)]


def test_failed_record_is_finished_when_its_retry_record_exists() -> None:
    """A handler failure finishes its offset only when the retry (or DLQ) record was written:
    a commit between the failure and the retry record's append time is a skip."""
    h = history(acks=[Ack("a", 1)],
                runs=[run("start", "a", 0, 10), run("fail", "a", 0, 11),
                      run("start", "a", 0, 1100, topic=W, attempt=2, due=1090),
                      run("ok", "a", 0, 1101, topic=W, attempt=2, due=1090)],
                records=[rec(0, "a"), rec(0, "a", 40, topic=W, attempt=2)],
                commits=[CommitSample(30, T, 0, 1), CommitSample(50, T, 0, 1),
                         CommitSample(1200, W, 0, 1)])
    r = check(h)
    assert r.skips == [((T, 0), 1, 0, 30)]
    assert r.lost == [] and r.duplicates == {} and r.early == []


def test_failure_without_any_carrier_stays_unfinished() -> None:
    """A failure whose retry record never appeared leaves the offset unfinished."""
    h = history(runs=[run("fail", "a", 0, 11)], records=[rec(0, "a")],
                commits=[CommitSample(5000, T, 0, 1)])
    assert check(h).skips == [((T, 0), 1, 0, 5000)]


def test_poison_record_is_finished_by_its_dead_letter() -> None:
    """A record no handler ran (undecodable) is finished by the DLQ record naming it."""
    h = history(records=[rec(0, None), rec(1, None)],
                dead_letters=[rec(0, None, 20, topic="f.jobs.dlq", orig=(T, 0, 0),
                                  reason="decode_error")],
                commits=[CommitSample(30, T, 0, 1), CommitSample(40, T, 0, 2)])
    r = check(h)
    assert r.skips == [((T, 0), 2, 1, 40)]
    assert r.dlq_per_position == {(T, 0, 0): 1}


def test_wait_record_moved_to_a_smaller_tier_is_finished_by_the_copy() -> None:
    """A wait record woken early and re-produced to another tier is finished at the copy."""
    w10 = "f.jobs.retry.10s"
    h = history(records=[rec(0, "a", 100, topic=w10, attempt=2),
                         rec(0, "a", 300, topic=W, attempt=2)],
                commits=[CommitSample(200, w10, 0, 1), CommitSample(400, w10, 0, 1)])
    assert check(h).skips == [((w10, 0), 1, 0, 200)]


def test_wait_record_hopping_within_its_tier_is_finished_by_the_later_copy() -> None:
    """A 2 s delay on the fixed ladder stays twice in the 1s tier: the first record is finished
    by the copy appended later to the same topic, and only by it."""
    h = history(records=[rec(0, "a", 100, topic=W, attempt=2),
                         rec(1, "a", 1100, topic=W, attempt=2)],
                commits=[CommitSample(600, W, 0, 1), CommitSample(1200, W, 0, 1)])
    assert check(h).skips == [((W, 0), 1, 0, 600)]


def test_kill_exposure_counts_in_flight_and_finished_above_commit() -> None:
    """After a kill, the exposure is the worker's unfinished starts plus its finishes at or
    above the committed offset; other workers' runs and later runs do not count."""
    runs = [run("start", "a", 0, 1), run("ok", "a", 0, 2),  # committed below
            run("start", "b", 1, 3), run("ok", "b", 1, 4),  # finished, not committed
            run("start", "c", 2, 5),  # in flight
            run("start", "d", 0, 5, partition=1), run("ok", "d", 0, 6, partition=1),
            run("start", "e", 3, 5, group=9),  # another worker
            run("start", "f", 4, 50)]  # after the kill
    h = history(runs=runs, kills=[Kill(10, 7, {(T, 0): 1})])
    (e,) = check(h).exposure
    assert (e.in_flight, e.finished_uncommitted, e.total) == (1, 2, 3)


def test_records_per_job_in_job_topic() -> None:
    """A job id found twice in its job topic is a producer duplicate; wait topics don't count."""
    h = history(records=[rec(0, "a"), rec(1, "a"), rec(2, "b"), rec(0, "b", topic=W)])
    assert check(h).producer_duplicates == {"a": 2}


def test_ledger_round_trip_and_incremental_reads(tmp_path: Path) -> None:
    """Lines written by writers come back in order; a torn last line is read once complete."""
    w = LedgerWriter(tmp_path, "producer")
    w.ack("a")
    w.run("start", "a", 1, T, 0, 5, None)
    reader = LedgerReader(tmp_path)
    assert reader.poll() == 2
    with open(tmp_path / "producer.jsonl", "ab") as f:
        f.write(b'{"k":"ack","id":"b","t":1')  # half a line
    assert reader.poll() == 0
    with open(tmp_path / "producer.jsonl", "ab") as f:
        f.write(b"}\n")
    assert reader.poll() == 1
    runs, acks = read_ledger(tmp_path)
    assert [a.job_id for a in acks] == ["a", "b"]
    assert runs[0].position == (T, 0, 5) and runs[0].worker == os.getpid()
    w.close()
