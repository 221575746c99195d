"""Job summaries (JobsReceived, JobsSucceeded): a summary listener sees every job exactly once,
whether the emitter batches or not, and the metrics from a summary equal the metrics from the
same jobs as per-job events."""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from streamjobs.events import (
    Event,
    EventBus,
    JobReceived,
    JobsReceived,
    JobsSucceeded,
    JobSucceeded,
)
from streamjobs.listeners._metrics import MetricsListener

JOB: dict[str, Any] = dict(job_id="j", job_type="email", topic="t", partition=0, offset=1,
                           attempt=1)


def test_summary_listeners_get_per_job_events_as_one_job_summaries() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe(got.append, JobsSucceeded, JobsReceived)
    assert bus.wants(JobSucceeded) and bus.wants(JobReceived)
    assert not bus.wants_each(JobSucceeded) and not bus.wants_each(JobReceived)
    bus.emit(JobSucceeded(**JOB, duration_s=0.5, created_at_ms=123))
    bus.emit(JobReceived(**JOB))
    assert [type(e) for e in got] == [JobsSucceeded, JobsReceived]
    ok = got[0]
    assert isinstance(ok, JobsSucceeded)
    assert (ok.job_type, ok.durations_s, ok.created_at_ms) == ("email", (0.5,), (123,))
    assert abs(ok.started_at + 0.5 - time.time()) < 1.0


def test_a_per_job_listener_makes_the_emitter_go_per_job_without_double_delivery() -> None:
    bus = EventBus()
    summaries: list[Event] = []
    everything: list[Event] = []
    bus.subscribe(summaries.append, JobsSucceeded)
    bus.subscribe(everything.append)  # no types: every event, one by one
    assert bus.wants_each(JobSucceeded)
    bus.emit(JobSucceeded(**JOB, duration_s=0.1, created_at_ms=None))
    assert [type(e) for e in everything] == [JobSucceeded]
    assert [type(e) for e in summaries] == [JobsSucceeded]


def test_metrics_from_a_summary_equal_metrics_from_per_job_events() -> None:
    rng = random.Random(3)
    now_ms = int(time.time() * 1000)
    durations = [rng.choice([0.0001, 0.001, 0.0025, 0.003, 0.2, 7.0]) for _ in range(50)]
    created = [rng.choice([None, now_ms - rng.randrange(0, 20_000)]) for _ in durations]
    per_job, batched = CollectorRegistry(), CollectorRegistry()
    a, b = EventBus(), EventBus()
    MetricsListener(per_job).attach(a)
    MetricsListener(batched).attach(b)
    started = time.time()
    for d, c in zip(durations, created, strict=True):
        a.emit(JobSucceeded(**JOB, duration_s=d, created_at_ms=c))
    b.emit(JobsSucceeded("email", "t", 0, started - sum(durations), tuple(durations),
                         tuple(created)))
    b.emit(JobsReceived("email", "t", 0, 50))
    for _ in durations:
        a.emit(JobReceived(**JOB))

    def samples(reg: CollectorRegistry, name: str) -> dict[tuple[Any, ...], float]:
        # Sums are added in another order: equal up to float rounding.
        return {(s.name, tuple(sorted(s.labels.items()))): round(s.value, 9)
                for m in reg.collect() if m.name == name for s in m.samples
                if not s.name.endswith("_created")}

    for name in ("streamjobs_jobs", "streamjobs_jobs_received",
                 "streamjobs_job_duration_seconds"):
        assert samples(per_job, name) == samples(batched, name)
    # End-to-end: per-job events are observed when emitted, the summary at the jobs' end
    # times: same buckets except for values within a few ms of a bound.
    e2e_a = samples(per_job, "streamjobs_job_end_to_end_seconds")
    e2e_b = samples(batched, "streamjobs_job_end_to_end_seconds")
    assert e2e_a.keys() == e2e_b.keys()
    count = ("streamjobs_job_end_to_end_seconds_count", (("job_type", "email"),))
    assert e2e_a[count] == e2e_b[count] == sum(c is not None for c in created)


def test_metrics_use_finished_at_when_jobs_ran_concurrently() -> None:
    # Async jobs summarised per loop iteration: they ran side by side, so each one's end is
    # its own finished_at, not started_at + the durations before it.
    reg = CollectorRegistry()
    bus = EventBus()
    MetricsListener(reg).attach(bus)
    now = time.time()
    now_ms = int(now * 1000)
    bus.emit(JobsSucceeded("email", "t", 0, now - 0.02, (0.02, 0.02, 0.02, 0.02),
                           (now_ms - 3000, now_ms - 30, now_ms - 30, now_ms - 30),
                           (now, now, now, now)))

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"job_type": "email", **labels})

    # Back to back the last three would have ended 40-80 ms later (le=0.1): concurrently, at
    # 30 ms they all fall in le=0.05.
    assert value("streamjobs_job_end_to_end_seconds_bucket", le="0.05") == 3
    assert value("streamjobs_job_end_to_end_seconds_bucket", le="2.5") == 3
    assert value("streamjobs_job_end_to_end_seconds_bucket", le="5.0") == 4
    assert value("streamjobs_job_duration_seconds_bucket", le="0.025") == 4
    assert value("streamjobs_jobs_total", outcome="succeeded") == 4


def test_histogram_values_in_one_bucket_and_across_buckets_match_observe() -> None:
    from streamjobs.listeners._metrics import _observe_many

    rng = random.Random(11)
    for values in ([0.0002] * 10, [0.001, 0.001, 0.0010001, 0.0009],
                   [rng.uniform(0, 3) for _ in range(200)], [0.0005] * 5):
        a, b = CollectorRegistry(), CollectorRegistry()
        ha, hb = MetricsListener(a).job_duration.labels(job_type="x"), \
            MetricsListener(b).job_duration.labels(job_type="x")
        for v in values:
            ha.observe(v)
        _observe_many(hb, values)
        samples = [{(s.name, tuple(sorted(s.labels.items()))): round(s.value, 9)
                    for m in reg.collect() for s in m.samples
                    if m.name == "streamjobs_job_duration_seconds"
                    and not s.name.endswith("_created")} for reg in (a, b)]
        assert samples[0] == samples[1]


def test_end_to_end_of_a_chunk_in_one_bucket_is_one_increment_equal_to_each_value() -> None:
    # A chunk's jobs created and run close together: observed without a value per job, and
    # the histogram is the one value-by-value observation gives.
    from prometheus_client import Histogram

    from streamjobs.listeners._metrics import END_TO_END_BUCKETS, _end_to_end_at_once

    now = time.time()
    now_ms = int(now * 1000)
    durations = tuple(0.0001 * (i % 7 + 1) for i in range(500))
    created = tuple(now_ms - 3000 + i // 50 for i in range(500))
    back_to_back = JobsSucceeded("email", "t", 0, now, durations, created)
    concurrent = JobsSucceeded("email", "t", 0, now, durations, created,
                               tuple(now + d for d in durations))
    for e, ends in ((back_to_back, [now + sum(durations[:i + 1]) for i in range(500)]),
                    (concurrent, list(concurrent.finished_at))):
        fast, slow = CollectorRegistry(), CollectorRegistry()
        hf = Histogram("e2e", "", buckets=END_TO_END_BUCKETS, registry=fast)
        hs = Histogram("e2e", "", buckets=END_TO_END_BUCKETS, registry=slow)
        assert _end_to_end_at_once(hf, e)
        for end, ms in zip(ends, created, strict=True):
            hs.observe(end - ms / 1000.0)
        got = {s.name + str(s.labels): s.value for m in fast.collect() for s in m.samples
               if s.name != "e2e_created"}
        want = {s.name + str(s.labels): s.value for m in slow.collect() for s in m.samples
                if s.name != "e2e_created"}
        # Each value observed alone carries the rounding of epoch-seconds arithmetic
        # (~1e-7 s): the sums agree to well under a millisecond.
        assert abs(got.pop("e2e_sum{}") - want.pop("e2e_sum{}")) < 1e-3
        assert got == want
    # Spread over buckets, or clock skew to clamp: left to the value-by-value path.
    spread = JobsSucceeded("email", "t", 0, now, (0.001, 0.001), (now_ms - 3000, now_ms - 20))
    skewed = JobsSucceeded("email", "t", 0, now, (0.001,), (now_ms + 5000,))
    h = Histogram("e2e", "", buckets=END_TO_END_BUCKETS, registry=CollectorRegistry())
    assert not _end_to_end_at_once(h, spread) and not _end_to_end_at_once(h, skewed)


def test_run_durations_are_the_tuple_of_end_differences() -> None:
    from streamjobs.events import RunDurations

    start = 100.0
    ends = [100.25, 100.5, 101.0, 103.0]
    run = RunDurations(start, ends)
    want = (0.25, 0.25, 0.5, 2.0)
    assert len(run) == 4 and run.total == 3.0 and run.ends_sum() == 0.25 + 0.5 + 1.0 + 3.0
    assert run == want and want == run and hash(run) == hash(want)
    assert tuple(run) == want and run[2] == 0.5 and run[1:3] == (0.25, 0.5)
    assert run == RunDurations(0.0, [0.25, 0.5, 1.0, 3.0]) and run != (0.25,)
    empty = RunDurations(start, [])
    assert len(empty) == 0 and empty.total == 0.0 and empty == ()


def _histogram(reg: CollectorRegistry, name: str) -> dict[tuple[Any, ...], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): round(s.value, 9)
            for m in reg.collect() if m.name == name for s in m.samples
            if not s.name.endswith("_created")}


def test_metrics_of_a_run_summary_equal_observing_each_of_its_jobs() -> None:
    # Runs shorter than the first duration bucket fill it from the run's length alone; longer
    # ones are observed value by value: either way the histograms are those of per-job
    # events with the same durations and created-at.
    from streamjobs.events import RunDurations

    rng = random.Random(5)
    now = time.time()
    now_ms = int(now * 1000)
    runs = [
        [0.000001] * 170,  # a fast handler: the whole run within le=0.0005
        [0.0005 / 4] * 4,  # exactly at the bound
        [0.000001] * 100 + [0.004],  # one slow job
        [rng.choice([0.00001, 0.0003, 0.002, 0.03, 1.5]) for _ in range(60)],
        [0.0002],
    ]
    for durations in runs:
        per_job, batched = CollectorRegistry(), CollectorRegistry()
        a, b = EventBus(), EventBus()
        MetricsListener(per_job).attach(a)
        MetricsListener(batched).attach(b)
        created = tuple(now_ms - 2000 - rng.randrange(0, 3) for _ in durations)
        start = 5000.0  # perf_counter time of the run's start
        ends = list(itertools.accumulate(durations, initial=start))[1:]
        run = RunDurations(start, ends)
        b.emit(JobsSucceeded("email", "t", 0, now, run, created))
        for end, c in zip(ends, created, strict=True):
            d = RunDurations(start, ends)[ends.index(end)]
            a.emit(JobSucceeded(**JOB, duration_s=d, created_at_ms=c))
        assert run._values is None or run.total > 0.0005  # short runs never computed values
        assert (_histogram(per_job, "streamjobs_job_duration_seconds")
                == _histogram(batched, "streamjobs_job_duration_seconds"))
        count = ("streamjobs_job_end_to_end_seconds_count", (("job_type", "email"),))
        assert _histogram(batched, "streamjobs_job_end_to_end_seconds")[count] == len(durations)
        # Each job's end-to-end time from the run's end times, value by value.
        slow = CollectorRegistry()
        child = MetricsListener(slow).job_end_to_end.labels(job_type="email")
        for end, c in zip(ends, created, strict=True):
            child.observe(now + (end - start) - c / 1000.0)
        got = _histogram(batched, "streamjobs_job_end_to_end_seconds")
        want = _histogram(slow, "streamjobs_job_end_to_end_seconds")
        # Each value observed alone carries the rounding of epoch-seconds arithmetic.
        sums = [k for k in got if k[0].endswith("_sum")]
        assert all(abs(got.pop(k) - want.pop(k)) < 1e-3 for k in sums)
        assert got == want


def _chunk_run(tmp_path: Any, usual: float, failing: set[int], block_s: float = 0.0,
               on_failed: Any = None) -> tuple[list[Event], list[Any], CollectorRegistry,
                                                float]:
    """Seven jobs (n = 0..6) of one chunk through ``Executor._run_chunk`` with the metrics
    listener: jobs in ``failing`` raise after blocking ``block_s``; ``on_failed`` also
    listens to ``JobFailed``. Returns the summaries and failures in order, the completions,
    the registry and the chunk's wall time."""
    from collections import deque

    from streamjobs._avro.codec import Codec
    from streamjobs._schemas.catalogue import Catalogue
    from streamjobs._worker import App
    from streamjobs._worker.executor import Executor
    from streamjobs._worker.intake import Intake
    from streamjobs._worker.ordering import Lanes
    from streamjobs._worker.partition import Part
    from streamjobs._worker.router import Router
    from streamjobs._worker.routes import Routes
    from streamjobs.events import JobFailed
    from tests.unit.test_catalogue import USER, make_dir

    from .test_intake_batch import _compact, _msg

    cat = Catalogue.load(make_dir(tmp_path, '[defaults]\nstatus = "none"\n[jobs.work]\n'
                                  'schema = "t.User"\ntopic = "t.w"\n', **{"t.User.v1.avsc": USER}))
    app = App(cat, topic_prefix="")

    @app.job("work")
    def work(payload: dict[str, Any], ctx: Any) -> None:
        if payload["n"] in failing:
            time.sleep(block_s)
            raise ValueError("no")

    routes = Routes(app, app.check(()))
    codec = Codec(cat)
    bus = EventBus()
    reg = CollectorRegistry()
    MetricsListener(reg).attach(bus)
    got: list[Event] = []
    bus.subscribe(got.append, JobsSucceeded, JobFailed)
    if on_failed is not None:
        bus.subscribe(on_failed, JobFailed)
    intake = Intake(routes, codec, Router(routes.tiers, "host", "g", False), bus, 2.0)
    part = Part("t.w", 0, routes, "partition")
    msgs = [_msg("t.w", o, codec.encode("work", {"id": "u", "n": o}), _compact(f"j{o}", "work"))
            for o in range(7)]
    (_, jobs, offsets), = intake.take(msgs, {("t.w", 0): part}, 0, 100).jobs
    completions: deque[Any] = deque()
    ex = Executor(1, bus, Lanes(), completions, use_async=False)
    try:
        t0 = time.perf_counter()
        assert not ex._run_chunk(0, part, jobs, offsets, usual)
        took = time.perf_counter() - t0
    finally:
        ex.shutdown()
    return got, list(completions), reg, took


@pytest.mark.parametrize("usual", [0.0, 1e-6])
@pytest.mark.parametrize("failing", [{0, 1, 6}, {2, 3}, {0, 1, 2, 3, 4, 5, 6}, set()])
def test_every_success_is_in_one_summary_and_every_failure_in_one_event(
        tmp_path: Any, usual: float, failing: set[int]) -> None:
    # Job by job or timed as a whole: a failure ends a run; each job is reported once.
    from streamjobs.events import JobFailed, RunDurations

    got, [(_, done, failures, _, _)], reg, took = _chunk_run(tmp_path, usual, failing)
    seen: list[int] = []
    for e in got:
        if isinstance(e, JobFailed):
            assert e.offset in failing and e.duration_s >= 0.0
            seen.append(e.offset)
        else:
            assert isinstance(e, JobsSucceeded) and isinstance(e.durations_s, RunDurations)
            assert e.durations_s.timed_each == (not usual)
            offs = [ms - 1_700_000_000_000 for ms in e.created_at_ms]  # type: ignore[operator]
            assert not set(offs) & failing and offs == list(range(offs[0], offs[-1] + 1))
            seen += offs
    assert seen == list(range(7)) and list(done) == [o for o in range(7) if o not in failing]
    assert len(failures or ()) == len(failing)
    spent = sum(e.durations_s.total if isinstance(e, JobsSucceeded) else e.duration_s
                for e in got)  # type: ignore[union-attr]
    assert spent <= took + 1e-6
    count = reg.get_sample_value("streamjobs_job_duration_seconds_count", {"job_type": "work"})
    assert count == 7


@pytest.mark.parametrize("usual", [0.0, 1e-6])
def test_a_failure_that_blocked_is_the_slow_one_and_its_handling_is_nobodys(
        tmp_path: Any, usual: float) -> None:
    # Job 3 blocks 20 ms and fails; its JobFailed listener takes 20 ms more: the failure is
    # given the 20 ms, the runs around it (a few µs of jobs each) neither.
    from streamjobs.events import JobFailed

    got, _, _, _ = _chunk_run(tmp_path, usual, {3}, 0.02, lambda e: time.sleep(0.02))
    first, failed, second = got
    assert isinstance(failed, JobFailed) and 0.02 <= failed.duration_s < 0.04
    assert isinstance(first, JobsSucceeded) and isinstance(second, JobsSucceeded)
    assert first.durations_s.total < 0.01 and second.durations_s.total < 0.01  # type: ignore[attr-defined]


@pytest.mark.parametrize("usual", [0.0, 1e-6])
def test_a_chunks_runs_of_successes_are_summarised_with_their_end_times(
        tmp_path: Any, usual: float) -> None:
    # The default listeners' way through a chunk: one summary per run of successes (a failure
    # ends a run), durations kept as end times until read (usual: an inline slice timed as a
    # whole, clock readings at its start, the failure and its end), created-at the records'.
    from streamjobs.events import JobFailed, RunDurations

    got, completions, reg, took = _chunk_run(tmp_path, usual, {3})
    first, failed, second = got
    assert isinstance(first, JobsSucceeded) and isinstance(second, JobsSucceeded)
    assert isinstance(failed, JobFailed) and failed.offset == 3 and failed.duration_s >= 0.0
    for e, offs in ((first, [0, 1, 2]), (second, [4, 5, 6])):
        run = e.durations_s
        assert isinstance(run, RunDurations) and len(run) == 3
        assert run.timed_each == (not usual)
        assert all(d >= 0.0 for d in run) and abs(sum(run) - run.total) < 1e-9
        assert e.created_at_ms == tuple(1_700_000_000_000 + o for o in offs)
    assert second.started_at >= first.started_at
    # The runs and the failure between them cover the chunk's time, each once.
    spent = first.durations_s.total + failed.duration_s + second.durations_s.total
    assert spent <= took + 1e-6
    if usual:  # the failure and the run before it split the time from the chunk's start
        assert first.started_at + first.durations_s.total + failed.duration_s <= (
            second.started_at + 1e-6)
    [(_, done, failures, _, _)] = completions
    assert list(done) == [0, 1, 2, 4, 5, 6] and failures is not None and len(failures) == 1

    def value(name: str, **labels: str) -> float | None:
        return reg.get_sample_value(name, {"job_type": "work", **labels})

    assert value("streamjobs_jobs_total", outcome="succeeded") == 6
    assert value("streamjobs_jobs_total", outcome="failed") == 1
    assert value("streamjobs_job_duration_seconds_count") == 7
    assert value("streamjobs_job_end_to_end_seconds_count") == 6


def test_end_to_end_at_once_whatever_the_order_of_created_at() -> None:
    # In order (one producer), interleaved (two), reversed, or with a job lacking one: the
    # one-bucket check reads the extremes right, and a missing created-at is never counted.
    from prometheus_client import Histogram

    from streamjobs.events import RunDurations
    from streamjobs.listeners._metrics import END_TO_END_BUCKETS, _end_to_end_at_once

    now = time.time()
    now_ms = int(now * 1000)
    base = [now_ms - 200 + i // 40 for i in range(100)]  # end-to-end 0.19-0.21 s: le=0.25
    orders: list[tuple[int | None, ...]] = [
        tuple(base), tuple(base[::-1]), tuple(b + 2 * (i % 2) for i, b in enumerate(base)),
        (*base[:-1], now_ms - 4000),  # the last one far older: two buckets
        (*base[:50], None, *base[51:]), (None,)]
    for created in orders:
        start = 10.0
        ends = [start + 0.00001 * (i + 1) for i in range(len(created))]
        e = JobsSucceeded("email", "t", 0, now, RunDurations(start, ends), created)
        h = Histogram("e2e", "", buckets=END_TO_END_BUCKETS, registry=CollectorRegistry())
        at_once = _end_to_end_at_once(h, e)
        known = [ms for ms in created if ms is not None]
        assert at_once == (len(known) == len(created) and min(known) > now_ms - 1000)
        if at_once:
            reg = CollectorRegistry()
            one = Histogram("e2e", "", buckets=END_TO_END_BUCKETS, registry=reg)
            for end, ms in zip(ends, created, strict=True):
                assert ms is not None
                one.observe(now + (end - start) - ms / 1000.0)
            got = {s.name + str(s.labels): s.value for m in h.collect() for s in m.samples
                   if not s.name.endswith(("_created", "_sum"))}
            want = {s.name + str(s.labels): s.value for m in one.collect() for s in m.samples
                    if not s.name.endswith(("_created", "_sum"))}
            assert got == want


def test_a_run_timed_as_a_whole() -> None:
    # An inline slice timed as a whole: its length exact, each job given the handler's pace
    # (at most the run's mean), the last one the rest: an overrun shows as one slow job.
    from streamjobs.events import RunDurations

    run = RunDurations.whole(10.0, 10.0004, 4, 0.0002)  # the pace above the mean: even shares
    assert len(run) == 4 and not run.timed_each and abs(run.total - 0.0004) < 1e-12
    assert all(abs(d - 0.0001) < 1e-12 for d in run) and abs(sum(run) - run.total) < 1e-12
    assert abs(run.ends_sum() - (0.0001 + 0.0002 + 0.0003 + 0.0004)) < 1e-12
    assert run.first_end == 10.0  # the first job's end is not known: the run's start bounds it
    assert [round(e - 10.0, 9) for e in run.ends] == [0.0001, 0.0002, 0.0003, 0.0004]
    late = RunDurations.whole(0.0, 0.003, 4, 0.00001)  # a call that blocked: one slow job
    assert late == (0.00001, 0.00001, 0.00001, 0.003 - 0.00003)
    assert abs(late.ends_sum() - sum(itertools.accumulate(late))) < 1e-12
    empty = RunDurations.whole(1.0, 1.0, 0, 0.1)
    assert empty == () and empty.ends_sum() == 0.0


def test_metrics_of_a_short_run_timed_as_a_whole_equal_observing_each_of_its_jobs() -> None:
    # Whatever each job of a run shorter than the first duration bucket took, the histograms
    # are those of observing them one by one: all in that bucket, the durations' sum the
    # run's length, and end-to-end times in one bucket from the run's bounds.
    from streamjobs._worker.inline import WHOLE_S
    from streamjobs.events import RunDurations
    from streamjobs.listeners._metrics import DURATION_BUCKETS

    assert DURATION_BUCKETS[0] >= 2 * WHOLE_S  # a slice at half its pace still proves it
    rng = random.Random(11)
    now = time.time()
    now_ms = int(now * 1000)
    for n in (1, 7, 300):
        durations = [rng.random() for _ in range(n)]
        scale = WHOLE_S * 1.9 / sum(durations)  # the run under the first bound, however split
        durations = [d * scale for d in durations]
        start = 300.0
        ends = list(itertools.accumulate(durations, initial=start))[1:]
        created = tuple(now_ms - 3000 - rng.randrange(0, 40) for _ in durations)
        per_job, batched = CollectorRegistry(), CollectorRegistry()
        a, b = EventBus(), EventBus()
        MetricsListener(batched).attach(b)
        run = RunDurations.whole(start, ends[-1], n, rng.random() * 1e-5)
        b.emit(JobsSucceeded("email", "t", 0, now, run, created))
        listener = MetricsListener(per_job)
        listener.attach(a)
        e2e = listener.job_end_to_end.labels(job_type="email")
        for d, end, c in zip(durations, ends, created, strict=True):
            a.emit(JobSucceeded(**JOB, duration_s=d, created_at_ms=None))
            e2e.observe(now + (end - start) - c / 1000.0)
        for name in ("streamjobs_job_duration_seconds", "streamjobs_job_end_to_end_seconds"):
            got, want = _histogram(batched, name), _histogram(per_job, name)
            sums = [k for k in got if k[0].endswith("_sum")]
            # Durations: the run's length. End-to-end: each job's end within the run.
            slack = 1e-9 if "duration" in name else n * run.total + 1e-3
            assert all(abs(got.pop(k) - want.pop(k)) <= slack for k in sums)
            assert got == want, name


def test_a_run_timed_as_a_whole_that_overran_shows_one_slow_job() -> None:
    # 100 jobs timed as a whole in 4 ms at a pace of 1 µs: 99 in the first duration bucket,
    # one (the blocked call's 3.9 ms) in le=0.005, the sum the run's length.
    from streamjobs.events import RunDurations

    reg = CollectorRegistry()
    bus = EventBus()
    MetricsListener(reg).attach(bus)
    now = time.time()
    run = RunDurations.whole(50.0, 50.004, 100, 1e-6)
    bus.emit(JobsSucceeded("email", "t", 0, now, run, tuple([int(now * 1000) - 100] * 100)))

    def bucket(le: str) -> float | None:
        return reg.get_sample_value("streamjobs_job_duration_seconds_bucket",
                                    {"job_type": "email", "le": le})

    assert (bucket("0.0005"), bucket("0.0025"), bucket("0.005")) == (99, 99, 100)
    total = reg.get_sample_value("streamjobs_job_duration_seconds_sum", {"job_type": "email"})
    assert total is not None and abs(total - 0.004) < 1e-9


def test_an_inline_slice_is_timed_as_a_whole_when_predicted_well_under_the_first_bucket() -> None:
    from streamjobs._worker.inline import MAX_SLICE, MIN_WHOLE, TURN_BUDGET, WHOLE_S, Pace

    pace = Pace("email", 20e-6)
    pace.per_job = 0.15e-6  # a no-op handler: a full slice fits
    assert pace.slice(TURN_BUDGET, 5000, True) == (MAX_SLICE, 0.15e-6)
    assert pace.slice(TURN_BUDGET, 300, True) == (300, 0.15e-6)  # the chunk's rest
    pace.per_job = 0.5e-6  # cut to fit WHOLE_S, still long enough
    assert pace.slice(TURN_BUDGET, 5000, True) == (int(WHOLE_S / 0.5e-6), 0.5e-6)
    assert int(WHOLE_S / 0.5e-6) >= MIN_WHOLE
    assert pace.slice(TURN_BUDGET, 5000, False) == (MAX_SLICE, 0.0)  # no summaries: no cut
    pace.per_job = 5e-6  # fitting would leave a short slice: job by job
    assert pace.slice(TURN_BUDGET, 5000, True) == (pace.fits(TURN_BUDGET), 0.0)
    assert pace.slice(TURN_BUDGET, 40, True) == (40, 5e-6)  # a short chunk: short anyway
    assert pace.slice(0.0001, 5000, True) == (20, 5e-6)  # the end of a turn: short anyway
