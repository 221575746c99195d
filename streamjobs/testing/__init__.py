"""Test job handlers in-process, without a broker.

    from streamjobs.testing import JobRunner, assert_succeeded

    def test_welcome_email() -> None:
        with JobRunner(app) as runner:
            job_id = runner.emit("send_welcome_email", {"user_id": "u1", "email": "a@b.c"})
            runner.run()
            assert_succeeded(runner, job_id)

Payloads go through the production codec, failures through the worker's retry policy and
dead-letter decisions, on a fake clock. See docs/testing.md.
"""

from __future__ import annotations

from .assertions import assert_dead_lettered, assert_succeeded
from .outcome import FollowUp, JobOutcome, RunReport
from .runner import JobRunner

# RunawayJobs, the exception run() raises, is imported from `streamjobs` like every other.
__all__ = ["FollowUp", "JobOutcome", "JobRunner", "RunReport", "assert_dead_lettered",
           "assert_succeeded"]
