"""Job timeouts on the real broker: an async handler past its job type's timeout is cancelled
and the job takes the retry path."""

from __future__ import annotations

import signal

from tests.conftest import wait_for

from .flow_support import Flow, flow_fixture  # noqa: F401

CATALOGUE = """
[jobs.slow]
schema = "test.Flow"
topic = "slow"
partitions = 1
timeout = "1s"
retry = { delays = ["1s"], max_attempts = 3 }
"""


def test_async_handler_past_its_timeout_is_cancelled_and_retried(flow: Flow) -> None:
    """Rule: an async handler running past the catalogue's timeout is cancelled (JobTimedOut,
    log line job.timed_out), the attempt fails with JobTimeout into the retry path, and the
    next attempt runs; a job within its timeout is not touched."""
    flow.setup(CATALOGUE)
    w = flow.worker()
    flow.producer.emit("slow", {"id": "h", "key": "hang-1"})
    flow.producer.emit("slow", {"id": "f", "key": "fast"})
    flow.producer.flush(10)
    wait_for(lambda: len(flow.lines()) == 2, 60, what="both jobs run")
    runs = {x["id"]: x["attempt"] for x in flow.lines()}
    assert runs == {"h": 2, "f": 1}
    w.signal(signal.SIGTERM)
    assert w.wait(40) == 0
    out = w.output()
    assert out.count("job.timed_out") == 1
    assert '"error_class":"streamjobs.errors.JobTimeout"' in out
    assert '"event":"job.retried"' in out
