"""Rule: a worker's /readyz follows its broker. When the broker goes away an idle worker
answers 503 naming the cause; when the broker is back it answers 200 again although no job
arrives (nothing but librdkafka's statistics can tell it so). Runs on a second broker of its
own, which the test stops and restarts."""

from __future__ import annotations

import signal
import urllib.error
import urllib.request
from pathlib import Path

import orjson
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig
from tests.conftest import RunCli, SpawnCli, wait_for
from tests.ports import free_port_block

from .test_metrics_names_live import _free_port
from .worker_support import APP, Env


def _readyz(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except OSError:
        return 0, {}


def test_readyz_follows_the_broker_down_and_back(tmp_path: Path, run_cli: RunCli,
                                                 spawn_cli: SpawnCli, unique: str,
                                                 kafka_config: KafkaConfig) -> None:
    broker_port = free_port_block(2)
    dev = {"STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    up = run_cli("dev", "up", "--port", str(broker_port), env=dev, timeout=180)
    assert up.returncode == 0, up.stderr
    try:
        config = KafkaConfig(bootstrap_servers=f"127.0.0.1:{broker_port}")
        env = Env(config, AdminClient(config.client_settings()), prefix=f"{unique}.",
                  ledger=tmp_path / "ledger.jsonl", group=f"{unique}-group")
        env.create_topics("task")
        port = _free_port()
        proc = spawn_cli("worker", APP, "--job-types", "task", env=env.cli_env(
            STREAMJOBS_METRICS_PORT=str(port), STREAMJOBS_LOG_LEVEL="info",
            STREAMJOBS_BOOTSTRAP_SERVERS=config.bootstrap_servers))
        wait_for(lambda: _readyz(port)[0] == 200, 60, interval=0.3,
                 what=f"the worker to be ready: {_readyz(port)}")

        down = run_cli("dev", "down", "--port", str(broker_port), env=dev, timeout=60)
        assert down.returncode == 0, down.stderr
        wait_for(lambda: _readyz(port)[0] == 503, 30, interval=0.3,
                 what="readiness to notice the broker is gone")
        _status, body = _readyz(port)
        assert str(body.get("reason", "")).startswith("broker unreachable: "), body
        assert proc.popen.poll() is None, proc.output()  # unready, not dead

        again = run_cli("dev", "up", "--port", str(broker_port), env=dev, timeout=180)
        assert again.returncode == 0, again.stderr
        # No record is produced: only the statistics can bring readiness back.
        wait_for(lambda: _readyz(port)[0] == 200, 60, interval=0.3,
                 what=f"readiness to return with the broker: {_readyz(port)}")
        assert env.end_offsets(env.topic()) == dict.fromkeys(range(3), 0)
        proc.signal(signal.SIGTERM)
        assert proc.wait(30) == 0, proc.output()
        log = proc.output()
        assert "broker.unreachable" in log and "broker.reachable" in log, log
    finally:
        run_cli("dev", "down", "--port", str(broker_port), "--wipe", env=dev, timeout=60)
