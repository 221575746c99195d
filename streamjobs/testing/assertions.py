"""pytest-friendly assertions: on failure they list every run of the job and the last
traceback, so a failing handler test shows why."""

from __future__ import annotations

from .._worker.failures import describe
from .outcome import JobOutcome
from .runner import JobRunner

__all__ = ["assert_dead_lettered", "assert_succeeded"]


def _explain(runner: JobRunner, job_id: str) -> str:
    lines = [f"runs of job {job_id}:"]
    for o in runner.attempts(job_id):
        what = o.status + (f" ({o.reason})" if o.reason else "") + \
            (f", retry in {o.delay:g}s" if o.delay is not None else "")
        err = f": {o.error_class}: {o.message}" if o.error_class else ""
        lines.append(f"  attempt {o.attempt} at {o.ran_at:.3f}: {what}{err}")
    last = runner.attempts(job_id)[-1:] or None
    if last and last[0].error is not None:
        lines.append(describe(last[0].error).trace)
    return "\n".join(lines)


def assert_succeeded(runner: JobRunner, job_id: str, *, attempts: int | None = None) -> JobOutcome:
    """The job's latest run succeeded (after exactly ``attempts`` runs, when given)."""
    out = runner.outcome(job_id)
    if out.status != "succeeded" or (attempts is not None and out.attempt != attempts):
        want = "succeeded" + (f" at attempt {attempts}" if attempts is not None else "")
        raise AssertionError(f"expected {want}; {_explain(runner, job_id)}")
    return out


def assert_dead_lettered(runner: JobRunner, job_id: str, *, reason: str | None = None,
                         attempts: int | None = None) -> JobOutcome:
    """The job was dead-lettered (with ``reason``, after ``attempts`` runs, when given)."""
    out = runner.outcome(job_id)
    if (out.status != "dead_lettered" or (reason is not None and out.reason != reason)
            or (attempts is not None and out.attempt != attempts)):
        want = ("dead_lettered" + (f" ({reason})" if reason is not None else "")
                + (f" at attempt {attempts}" if attempts is not None else ""))
        raise AssertionError(f"expected {want}; {_explain(runner, job_id)}")
    return out
