"""Checks a recorded history (pure: no Kafka). Jepsen-style: the scenario records what happened,
this module judges it.

Inputs: the ledger (acks, handler starts and finishes), the records read back from the job and
wait topics and the dead-letter topic after the run, the committed offsets sampled during the
run, and the kills. Verdicts:

lost            acknowledged by the broker to the producer, never finished (finished = a
                handler returned ``ok`` or a dead-letter record carries the job id)
duplicates      jobs finished more than once (extra finishes per job)
early           handler starts before the record's ``sj-due-at``
regressions     a partition's committed offset moved backwards between two samples
skips           a committed offset ``c`` sampled at ``t`` while some record below ``c`` was not
                finished by ``t`` (the worker would skip it after a crash)
exposure        per kill: jobs the killed worker had started and not finished, plus jobs it had
                finished at offsets at or above the committed offset right after the kill. Those
                (and only those) may run again, so duplicates <= the sum over kills.

When is a record (a topic/partition/offset) finished?
  - a handler returned ``ok`` for it;
  - a handler raised (``fail``) and the record that carries the failure exists: the next
    attempt in a wait topic (``sj-attempt`` + 1) or the job in the dead-letter topic. Its
    timestamp (LogAppendTime on wait topics, the worker's produce time on the DLQ) is when;
  - no handler ran it and a dead-letter record names it in ``sj-orig-*`` (poison);
  - no handler ran it, it sits in a wait topic and the same attempt was re-produced to a wait
    topic later (a record woken before its due time moves to the largest tier that fits, the
    same tier or a smaller one), or its next
    attempt / dead letter exists (a failure no handler saw, e.g. an unknown writer schema).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .ledger import FAIL, OK, START, Ack, Run

__all__ = ["CommitSample", "History", "Kill", "KillExposure", "Report", "TopicRecord", "check"]

TP = tuple[str, int]
Position = tuple[str, int, int]
# Broker timestamps are whole ms; ledger times are fractional ms.
SLACK_MS = 1.0


@dataclass(frozen=True, slots=True)
class TopicRecord:
    """A record read back from a topic after the run (headers decoded)."""

    topic: str
    partition: int
    offset: int
    t: float  # record timestamp, ms
    job_id: str | None = None
    attempt: int | None = None
    due: int | None = None
    orig: Position | None = None  # sj-orig-topic/partition/offset (retried, dead-lettered)
    reason: str | None = None  # sj-dlq-reason

    @property
    def position(self) -> Position:
        return (self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class CommitSample:
    t: float  # ms, taken after the answer arrived
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Kill:
    t: float
    group: int  # process group of the killed worker (Run.group)
    committed: Mapping[TP, int]  # the group's committed offsets sampled right after the kill


@dataclass(frozen=True, slots=True)
class KillExposure:
    t: float
    group: int
    in_flight: int
    finished_uncommitted: int

    @property
    def total(self) -> int:
        return self.in_flight + self.finished_uncommitted


@dataclass
class History:
    acks: list[Ack]
    runs: list[Run]
    records: list[TopicRecord]  # every record of the job and wait topics
    dead_letters: list[TopicRecord]  # every record of the dead-letter topic(s)
    commits: list[CommitSample] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    job_topics: frozenset[str] = frozenset()  # where emit writes (for producer duplicates)


@dataclass
class Report:
    acked: int
    succeeded: int
    dead_lettered: int
    lost: list[str]
    missing: list[str]  # acked jobs absent from their job topic (lost by the broker/producer)
    duplicates: dict[str, int]  # job id -> extra finishes
    reruns: int  # extra handler starts of the same (job, attempt)
    early: list[Run]
    lateness_ms: list[float]  # start - due, for every start with a due time
    regressions: list[tuple[TP, int, int, float]]  # (tp, before, after, t)
    skips: list[tuple[TP, int, int, float]]  # (tp, committed, first unfinished offset, t)
    exposure: list[KillExposure]
    producer_duplicates: dict[str, int]  # job id -> records in its job topic (when > 1)
    dlq_per_position: dict[Position, int]  # poison/original position -> dead letters
    commit_samples: int = 0
    lost_detail: list[str] = field(default_factory=list)

    @property
    def duplicate_count(self) -> int:
        return sum(self.duplicates.values())

    @property
    def exposure_total(self) -> int:
        return sum(e.total for e in self.exposure)

    def lateness(self, q: float) -> float | None:
        if not self.lateness_ms:
            return None
        ordered = sorted(self.lateness_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        return {
            "acked": self.acked,
            "succeeded": self.succeeded,
            "dead_lettered": self.dead_lettered,
            "lost": len(self.lost),
            "missing_from_topic": len(self.missing),
            "duplicates": self.duplicate_count,
            "duplicate_jobs": len(self.duplicates),
            "reruns": self.reruns,
            "early": len(self.early),
            "lateness_p50_ms": _round(self.lateness(0.50)),
            "lateness_p99_ms": _round(self.lateness(0.99)),
            "lateness_max_ms": _round(max(self.lateness_ms) if self.lateness_ms else None),
            "offset_regressions": len(self.regressions),
            "offset_skips": len(self.skips),
            "commit_samples": self.commit_samples,
            "kills": len(self.exposure),
            "exposure_in_flight": sum(e.in_flight for e in self.exposure),
            "exposure_finished_uncommitted": sum(e.finished_uncommitted for e in self.exposure),
            "producer_duplicates": len(self.producer_duplicates),
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def check(history: History) -> Report:
    runs = history.runs
    acked = {a.job_id for a in history.acks}
    ok_count: Counter[str] = Counter(r.job_id for r in runs if r.kind == OK)
    dlq_count: Counter[str] = Counter(d.job_id for d in history.dead_letters if d.job_id)
    finished_jobs = set(ok_count) | set(dlq_count)
    duplicates = {j: ok_count[j] + dlq_count[j] - 1 for j in finished_jobs
                  if ok_count[j] + dlq_count[j] > 1}
    starts: Counter[tuple[str, int]] = Counter((r.job_id, r.attempt) for r in runs
                                               if r.kind == START)
    early = [r for r in runs if r.kind == START and r.due is not None and r.t + SLACK_MS < r.due]
    lateness = [r.t - r.due for r in runs if r.kind == START and r.due is not None]
    finish = finish_times(runs, history.records, history.dead_letters)
    samples = sorted(history.commits, key=lambda s: s.t)
    per_job_topic: Counter[str] = Counter(
        r.job_id for r in history.records if r.job_id and r.topic in history.job_topics)
    return Report(
        acked=len(acked),
        succeeded=len(ok_count),
        dead_lettered=len(dlq_count),
        lost=sorted(acked - finished_jobs),
        missing=sorted(acked - set(per_job_topic)) if history.job_topics else [],
        duplicates=duplicates,
        reruns=sum(n - 1 for n in starts.values() if n > 1),
        early=early,
        lateness_ms=lateness,
        regressions=regressions(samples),
        skips=skips(samples, history.records, finish),
        exposure=[exposure(k, runs) for k in history.kills],
        producer_duplicates={j: n for j, n in per_job_topic.items() if n > 1},
        dlq_per_position=dict(Counter(d.orig for d in history.dead_letters if d.orig)),
        commit_samples=len(samples),
        lost_detail=explain_lost(history, acked - finished_jobs),
    )


def explain_lost(history: History, lost: set[str], limit: int = 10) -> list[str]:
    """For a post-mortem: where the producer was told each lost job went, what is there now,
    and whether any handler ever started it."""
    at = {r.position: r for r in history.records}
    acks = {a.job_id: a for a in history.acks}
    started = {r.job_id for r in history.runs if r.kind == START}
    out = []
    for job_id in sorted(lost)[:limit]:
        ack = acks[job_id]
        there = at.get(ack.position) if ack.position else None
        found = ("nothing read back there" if there is None
                 else f"record of job {there.job_id} there")
        out.append(f"{job_id}: acked at {ack.t:.0f} ms to {ack.position}: {found}; "
                   f"started: {job_id in started}")
    return out


def finish_times(runs: Iterable[Run], records: Iterable[TopicRecord],
                 dead_letters: Iterable[TopicRecord]) -> dict[Position, float]:
    """Earliest time each record position was finished (see the module docstring)."""
    records = list(records)
    successors: dict[tuple[str, int], list[float]] = defaultdict(list)  # (job, attempt)
    copies: dict[tuple[str, int], list[TopicRecord]] = defaultdict(list)
    for rec in records:
        if rec.job_id is not None and rec.attempt is not None:
            if ".retry." in rec.topic:
                successors[(rec.job_id, rec.attempt)].append(rec.t)
            copies[(rec.job_id, rec.attempt)].append(rec)
    dlq_at: dict[str, float] = {}
    dlq_orig: dict[Position, float] = {}
    for d in dead_letters:
        if d.job_id:
            dlq_at[d.job_id] = min(d.t, dlq_at.get(d.job_id, d.t))
        if d.orig:
            dlq_orig[d.orig] = min(d.t, dlq_orig.get(d.orig, d.t))
    out: dict[Position, float] = {}
    ran: set[Position] = set()

    def done(pos: Position, t: float) -> None:
        if t < out.get(pos, float("inf")):
            out[pos] = t

    for r in runs:
        ran.add(r.position)
        if r.kind == OK:
            done(r.position, r.t)
        elif r.kind == FAIL:
            carriers = [*successors.get((r.job_id, r.attempt + 1), ())]
            if r.job_id in dlq_at:
                carriers.append(dlq_at[r.job_id])
            if carriers:
                done(r.position, min(carriers))
    for rec in records:
        pos = rec.position
        if pos in ran:
            continue
        if pos in dlq_orig:
            done(pos, dlq_orig[pos])
        elif rec.job_id is not None and rec.attempt is not None and ".retry." in rec.topic:
            # The re-produced copy (same attempt, a wait topic, appended later: another tier,
            # or the same one when a delay hops down the fixed ladder, e.g. 2 s = two 1s
            # stays), or the record of a failure no handler saw (an unknown schema climbing
            # the ladder).
            carriers = [c.t for c in copies[(rec.job_id, rec.attempt)]
                        if c.position != rec.position and ".retry." in c.topic
                        and c.t >= rec.t]
            carriers += successors.get((rec.job_id, rec.attempt + 1), [])
            if rec.job_id in dlq_at:
                carriers.append(dlq_at[rec.job_id])
            if carriers:
                done(pos, min(carriers))
    return out


def regressions(samples: list[CommitSample]) -> list[tuple[TP, int, int, float]]:
    last: dict[TP, int] = {}
    out: list[tuple[TP, int, int, float]] = []
    for s in samples:
        tp = (s.topic, s.partition)
        before = last.get(tp)
        if before is not None and s.offset < before:
            out.append((tp, before, s.offset, s.t))
        last[tp] = s.offset if before is None else max(before, s.offset)
    return out


def skips(samples: list[CommitSample], records: Iterable[TopicRecord],
          finish: Mapping[Position, float]) -> list[tuple[TP, int, int, float]]:
    """Samples whose committed offset covers a record not finished at sampling time.

    Reported once per partition and committed offset (the first sample that shows it)."""
    offsets: dict[TP, list[int]] = defaultdict(list)
    for rec in records:
        offsets[(rec.topic, rec.partition)].append(rec.offset)
    # prefix[i] = latest finish time of the first i+1 records (inf: one is never finished)
    prefix: dict[TP, tuple[list[int], list[float]]] = {}
    for tp, offs in offsets.items():
        offs.sort()
        running, pm = 0.0, []
        for o in offs:
            running = max(running, finish.get((tp[0], tp[1], o), float("inf")))
            pm.append(running)
        prefix[tp] = (offs, pm)
    out: list[tuple[TP, int, int, float]] = []
    seen: set[tuple[TP, int]] = set()
    for s in samples:
        tp = (s.topic, s.partition)
        if tp not in prefix or (tp, s.offset) in seen:
            continue
        offs, pm = prefix[tp]
        i = bisect.bisect_left(offs, s.offset)
        if i == 0 or pm[i - 1] <= s.t + SLACK_MS:
            continue
        seen.add((tp, s.offset))
        first = next(o for o in offs[:i]
                     if finish.get((tp[0], tp[1], o), float("inf")) > s.t + SLACK_MS)
        out.append((tp, s.offset, first, s.t))
    return out


def exposure(kill: Kill, runs: Iterable[Run]) -> KillExposure:
    """What the killed worker leaves to be run again: started-unfinished + finished above the
    committed offset (measured from the ledger; the worker cannot commit after SIGKILL)."""
    started: set[tuple[str, int, Position]] = set()
    finished: set[tuple[str, int, Position]] = set()
    uncommitted = 0
    for r in runs:
        if r.group != kill.group or r.t > kill.t:
            continue
        key = (r.job_id, r.attempt, r.position)
        if r.kind == START:
            started.add(key)
        else:
            finished.add(key)
            committed = kill.committed.get((r.topic, r.partition), -1)
            if r.offset >= committed:
                uncommitted += 1
    return KillExposure(kill.t, kill.group, len(started - finished), uncommitted)
