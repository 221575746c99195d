"""The promotion/demotion policy of inline handlers (streamjobs/_worker/inline.py)."""

from __future__ import annotations

import pytest

from streamjobs._worker.inline import (
    CHECK_JOBS,
    CHECK_S,
    CONTENDED,
    HARD_LIMIT,
    MAX_BACKOFF,
    MAX_SLICE,
    PROMOTE_JOBS,
    Pace,
    under_seconds,
)
from streamjobs._worker.settings import WorkerSettings
from streamjobs.errors import ConfigError

UNDER = 20e-6


def promoted(now: float = 0.0) -> Pace:
    pace = Pace("t", UNDER)
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 2e-6, PROMOTE_JOBS * 2e-6, now)
    return pace


def test_promoted_once_enough_jobs_were_short() -> None:
    pace = Pace("t", UNDER)
    n = PROMOTE_JOBS - 1
    assert not pace.pooled(n, n * 2e-6, n * 2e-6, 0.0)
    assert not pace.inline
    assert pace.pooled(1, 2e-6, 2e-6, 0.0)
    assert pace.inline and pace.promotions == 1
    assert pace.per_job == pytest.approx(2e-6)


def test_not_promoted_when_the_mean_is_at_the_threshold_and_the_window_starts_over() -> None:
    pace = Pace("t", UNDER)
    assert not pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * UNDER, PROMOTE_JOBS * UNDER, 0.0)
    assert not pace.inline
    # The slow window is forgotten: the next one alone decides.
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1e-6, PROMOTE_JOBS * 1e-6, 0.0)


def test_slow_handlers_stay_in_the_pool() -> None:
    pace = Pace("t", UNDER)
    for _ in range(50):  # 20 ms sleeps (no CPU), 1 ms of CPU: never promoted
        assert not pace.pooled(100, 100 * 0.02, 100 * 1e-6, 0.0)
        assert not pace.pooled(100, 100 * 0.001, 100 * 0.001, 0.0)
    assert not pace.inline


def test_in_a_contended_pool_the_cpu_time_decides_within_a_bound_on_the_wall_time() -> None:
    pace = Pace("t", UNDER)
    # 2 µs of CPU a job, 60 µs of wall time: waiting for the GIL behind other threads.
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 60e-6, PROMOTE_JOBS * 2e-6, 0.0)
    assert pace.per_job == pytest.approx(60e-6)  # first slices: sized by the wall time
    blocking = Pace("t", UNDER)  # little CPU, but blocked 10x the threshold and more
    assert not blocking.pooled(PROMOTE_JOBS, PROMOTE_JOBS * CONTENDED * UNDER,
                               PROMOTE_JOBS * 1e-6, 0.0)


def test_a_slice_over_the_hard_limit_demotes_at_once() -> None:
    pace = promoted()
    assert pace.ran_inline(1, HARD_LIMIT * 1.01, 0.0, 5.0)
    assert not pace.inline and pace.demotions == 1


def test_a_slow_mean_demotes_after_enough_jobs() -> None:
    pace = Pace("t", 10e-6)
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 2e-6, PROMOTE_JOBS * 2e-6, 0.0)
    for _ in range(CHECK_JOBS // 4 - 1):
        assert not pace.ran_inline(4, 4 * 15e-6, 4 * 15e-6, 1.0)  # slow, but not enough jobs yet
    assert pace.ran_inline(4, 4 * 15e-6, 4 * 15e-6, 1.0)
    assert not pace.inline


def test_a_slow_mean_demotes_after_enough_time_with_few_jobs() -> None:
    pace = promoted()  # blocked (no CPU) 10 ms a job: past CONTENDED x the threshold
    assert not pace.ran_inline(1, CHECK_S / 2, 0.0, 1.0)
    assert pace.ran_inline(1, CHECK_S / 2, 0.0, 1.0)


def test_one_preempted_slice_among_many_fast_ones_does_not_demote() -> None:
    pace = promoted()
    assert not pace.ran_inline(1, 0.005, 1e-6, 1.0)  # a GIL switch interval lost to another thread
    for _ in range(CHECK_JOBS // 16):
        assert not pace.ran_inline(16, 16 * 1e-6, 16 * 1e-6, 1.0)
    assert pace.inline


def test_time_off_the_cpu_without_blocking_does_not_demote() -> None:
    pace = promoted()  # 1 µs of CPU a job, 30 µs of wall time: a busy machine
    for _ in range(CHECK_JOBS // 16):
        assert not pace.ran_inline(16, 16 * 30e-6, 16 * 1e-6, 1.0)
    assert pace.inline


def test_fast_inline_slices_keep_it_inline_and_update_the_pace() -> None:
    pace = promoted()
    for _ in range(10):
        assert not pace.ran_inline(CHECK_JOBS, CHECK_JOBS * 1e-6, CHECK_JOBS * 1e-6, 1.0)
    assert pace.inline and pace.per_job == pytest.approx(1e-6)


def test_back_off_before_a_new_promotion_doubles_per_demotion() -> None:
    pace = promoted(0.0)
    assert pace.ran_inline(1, 1.0, 1.0, 10.0)  # demoted at t=10: banned for 1 s
    assert not pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1e-6, PROMOTE_JOBS * 1e-6, 10.5)
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1e-6, PROMOTE_JOBS * 1e-6, 11.0)
    assert pace.ran_inline(1, 1.0, 1.0, 20.0)  # second demotion: 2 s
    assert not pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1e-6, PROMOTE_JOBS * 1e-6, 21.5)
    assert pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1e-6, PROMOTE_JOBS * 1e-6, 22.0)
    for i in range(20):
        pace.inline = True
        pace.ran_inline(1, 1.0, 1.0, 100.0 + i)
    assert pace.banned_until - (100.0 + 19) == MAX_BACKOFF


def test_jobs_measured_during_the_back_off_do_not_count() -> None:
    pace = promoted(0.0)
    pace.ran_inline(1, 1.0, 1.0, 10.0)
    assert not pace.pooled(PROMOTE_JOBS - 1, 1e-6, 1e-6, 10.2)
    assert not pace.pooled(1, 1e-6, 1e-6, 11.1)  # one job after the back-off: not enough yet


def test_pool_measurements_of_a_promoted_handler_are_ignored() -> None:
    pace = promoted()
    # its spilled tail, slow in a busy pool
    assert not pace.pooled(PROMOTE_JOBS, PROMOTE_JOBS * 1.0, PROMOTE_JOBS * 1.0, 1.0)
    assert pace.inline


def test_fits_sizes_a_slice_to_the_time_left() -> None:
    pace = promoted()
    pace.per_job = 20e-6
    assert pace.fits(0.001) == 50
    assert pace.fits(1e-9) == 1  # always at least one job
    pace.per_job = 1e-6
    assert pace.fits(0.005) == MAX_SLICE  # what one blocking slice can hold the loop for
    pace.per_job = 0.0
    assert pace.fits(0.001) == MAX_SLICE


@pytest.mark.parametrize("value", [-1, 10_001, float("nan"), float("inf"), True, "5"])
def test_the_setting_is_checked_naming_the_field(value: object) -> None:
    with pytest.raises(ConfigError) as err:
        WorkerSettings(inline_under=value)  # type: ignore[arg-type]
    assert err.value.field == "inline_under"


def test_zero_means_never() -> None:
    assert under_seconds(0) == 0.0
    assert under_seconds(20) == pytest.approx(20e-6)
    assert WorkerSettings().inline_under == 20.0
