"""`streamjobs dev up/down` manage a real broker: up is idempotent, down stops it, a broker
that cannot come up in time is reported with its log."""

from __future__ import annotations

from pathlib import Path

from confluent_kafka.admin import AdminClient

from tests.conftest import RunCli
from tests.ports import free_port_block


def test_up_is_idempotent_and_down_stops(tmp_path: Path, run_cli: RunCli,
                                         kafka_config: object) -> None:
    """Rule: `up` starts a second, independent broker on another port; `up` again is a no-op;
    `down --wipe` stops it and removes its data."""
    port = free_port_block(2)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    first = run_cli("dev", "up", "--port", str(port), env=env, timeout=180)
    assert first.returncode == 0, first.stderr
    assert "up on" in first.stdout
    try:
        md = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10)
        assert md.brokers
        again = run_cli("dev", "up", "--port", str(port), env=env)
        assert again.returncode == 0 and "already up" in again.stdout
        status = run_cli("dev", "status", "--port", str(port), env=env)
        assert status.returncode == 0 and status.stdout.startswith("up ")
    finally:
        down = run_cli("dev", "down", "--port", str(port), "--wipe", env=env)
    assert down.returncode == 0 and "stopped" in down.stdout
    status = run_cli("dev", "status", "--port", str(port), env=env)
    assert status.returncode == 3 and status.stdout.startswith("down")
    assert not (tmp_path / "state" / f"broker-{port}").exists()


def test_broker_not_up_in_time_is_reported(tmp_path: Path, run_cli: RunCli,
                                           kafka_config: object) -> None:
    """Rule: a broker that does not answer within --timeout fails `up` with one clear error
    and leaves nothing running."""
    port = free_port_block(2)
    env = {"STREAMJOBS_DEV_DIR": str(tmp_path / "state")}
    out = run_cli("dev", "up", "--port", str(port), "--timeout", "0.5", env=env, timeout=120)
    assert out.returncode == 1
    assert "did not answer" in out.stderr and "Traceback" not in out.stderr
    status = run_cli("dev", "status", "--port", str(port), env=env)
    assert status.returncode == 3
