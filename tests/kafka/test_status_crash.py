"""Status after a worker is killed mid-job: the last durable state, then the re-run's."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from streamjobs._config import KafkaConfig
from tests.conftest import SpawnCli
from tests.kafka.status_support import APP, status_env


def test_a_killed_run_shows_started_and_the_rerun_succeeds(kafka_config: KafkaConfig,
                                                           spawn_cli: SpawnCli,
                                                           tmp_path: Path) -> None:
    """SIGKILL during a long job: the status stays `started` (never `succeeded`); a new worker
    runs the job again and its `succeeded` lands only once the handler has finished (its
    ledger line exists)."""
    ledger = tmp_path / "ledger.jsonl"
    with status_env(kafka_config, "crash") as env:
        job_id = env.emit("stask", sleep_ms=4000)
        cli_env = env.cli_env(STREAMJOBS_TEST_LEDGER=str(ledger),
                              STREAMJOBS_SESSION_TIMEOUT_MS="6000")
        first = spawn_cli("worker", APP, env=cli_env)
        env.wait_state(job_id, "started", timeout=40)
        first.signal(signal.SIGKILL)
        first.wait(10)
        time.sleep(4)  # the killed run would have finished by now
        assert env.states(job_id) == ["emitted", "started"]
        assert not ledger.exists()
        second = spawn_cli("worker", APP, env=cli_env)
        try:
            done = env.wait_state(job_id, "succeeded", timeout=60)
            lines = [json.loads(x) for x in ledger.read_text().splitlines()]
            assert [x["job_id"] for x in lines] == [job_id]
        finally:
            second.signal(signal.SIGTERM)
            second.wait(40)
        states = [t.state for t in done.transitions]
        assert states[:2] == ["emitted", "started"] and states[-1] == "succeeded"
        assert done.transitions[-1].at_ms >= lines[0]["end"] * 1000 - 5
