"""Helpers of the schedule and unique-job tests: a private catalogue (``tests.apps.flow``'s
schema plus the test's catalogue.toml) whose topics carry the test's prefix, created with the
real ``streamjobs topics apply`` and deleted afterwards; the ledger of runs; worker processes."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from tests.conftest import Proc, RunCli, SpawnCli

APP = "tests.apps.flow:app"
SCHEMA = Path(__file__).resolve().parent.parent / "apps" / "flow_schemas" / "test.Flow.v1.avsc"


@dataclass
class Flow:
    kafka: KafkaConfig
    admin: AdminClient
    prefix: str
    schemas: Path
    ledger: Path
    group: str
    run_cli: RunCli
    spawn_cli: SpawnCli
    _producer: Producer | None = None
    procs: list[Proc] = field(default_factory=list)

    def setup(self, catalogue_toml: str) -> None:
        """Write the catalogue and create its topics with `streamjobs topics apply`."""
        self.schemas.mkdir(parents=True, exist_ok=True)
        shutil.copy(SCHEMA, self.schemas)
        (self.schemas / "catalogue.toml").write_text(catalogue_toml)
        done = self.run_cli("topics", "apply", env=self.env())
        assert done.returncode == 0, done.stderr

    def env(self, **extra: str) -> dict[str, str]:
        return {"STREAMJOBS_SCHEMAS": str(self.schemas), "STREAMJOBS_TEST_SCHEMAS":
                str(self.schemas), "STREAMJOBS_TOPIC_PREFIX": self.prefix,
                "STREAMJOBS_TEST_LEDGER": str(self.ledger), "STREAMJOBS_GROUP_ID": self.group,
                "STREAMJOBS_METRICS_PORT": "0", "STREAMJOBS_LOG_LEVEL": "info",
                "STREAMJOBS_GRACE_PERIOD": "5", "STREAMJOBS_SESSION_TIMEOUT_MS": "10000",
                **extra}

    def worker(self, **extra: str) -> Proc:
        proc = self.spawn_cli("worker", APP, env=self.env(**extra))
        self.procs.append(proc)
        return proc

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            catalogue = Catalogue.load(self.schemas, topic_prefix=self.prefix)
            self._producer = Producer(catalogue, self.kafka, linger_ms=0)
        return self._producer

    def lines(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(x) for x in self.ledger.read_text().splitlines() if x.strip()]

    def members(self, group: str | None = None) -> int:
        """Members of the group that have partitions assigned."""
        fut = self.admin.describe_consumer_groups([group or self.group])[group or self.group]
        try:
            desc = fut.result(timeout=10)
        except Exception:
            return 0
        return sum(1 for m in desc.members if m.assignment and m.assignment.topic_partitions)

    def cleanup(self) -> None:
        if self._producer is not None:
            self._producer.close()
        topics = [t for t in self.admin.list_topics(timeout=10).topics
                  if t.startswith(self.prefix)]
        if topics:
            for fut in self.admin.delete_topics(topics).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)


@pytest.fixture(name="flow")
def flow_fixture(kafka_config: KafkaConfig, admin: AdminClient, unique: str, tmp_path: Path,
         run_cli: RunCli, spawn_cli: SpawnCli) -> Iterator[Flow]:
    f = Flow(kafka_config, admin, f"{unique}.", tmp_path / "schemas", tmp_path / "ledger.jsonl",
             f"{unique}-group", run_cli, spawn_cli)
    yield f
    for i, p in enumerate(f.procs):  # shown by pytest when the test failed
        print(f"--- worker {i} (pid {p.pid}) ---\n{p.output()[-6000:]}")
    f.cleanup()
