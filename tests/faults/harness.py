"""Running one fault scenario against a real broker with real worker processes.

A ``Scenario`` owns: a private catalogue (unique topic names), its topics, a consumer group, a
ledger directory, a paced producer whose delivery acknowledgements go to the ledger, worker
subprocesses (``streamjobs worker tests.faults.app:app``) that tests signal, kill and restart,
and a thread sampling the group's committed offsets. ``history()`` reads every topic back and
returns what ``checker.check`` judges. Sizes: ``size(ci, full)`` (STREAMJOBS_FAULT_SCALE=full).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka.admin import AdminClient

from streamjobs._config import KafkaConfig
from streamjobs._ops.topics import apply, desired_topics
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs.errors import KafkaError
from tests.faults.checker import History, Kill, Report
from tests.faults.ledger import LedgerReader, LedgerWriter, now_ms
from tests.faults.observe import CommitSampler, group_members, read_topics
from tests.faults.processes import ROOT, WorkerProc

SCHEMAS = Path(__file__).resolve().parent / "schemas"
RESULTS_DIR = ROOT / ".streamjobs" / "faults"
SCALE = os.environ.get("STREAMJOBS_FAULT_SCALE", "ci")
JOB = "fault_job"
# Worker log level (info shows rebalances and commits: handy when a scenario finds something).
LOG_LEVEL = os.environ.get("STREAMJOBS_FAULTS_LOG_LEVEL", "info")
# Figures of every scenario run in this session, printed by conftest's terminal summary.
RESULTS: list[dict[str, Any]] = []


def size(ci: int, full: int) -> int:
    return full if SCALE == "full" else ci


class Scenario:
    def __init__(self, name: str, tmp: Path, config: KafkaConfig, *, partitions: int = 12,
                 replication_factor: int = 1, retry: str = '{ delays = ["1s", "2s"], '
                 'max_attempts = 3 }', session_timeout_ms: int = 6000) -> None:
        self.name = name
        self.tmp = tmp
        self.config = config
        self.prefix = f"faults-{name}-{uuid.uuid4().hex[:8]}"
        self.topic = f"{self.prefix}.jobs"
        self.group = f"{self.prefix}-workers"
        self.session_timeout_ms = session_timeout_ms
        schemas = tmp / "schemas"
        schemas.mkdir(parents=True, exist_ok=True)
        for f in SCHEMAS.glob("*.avsc"):
            shutil.copy(f, schemas)
        (schemas / "catalogue.toml").write_text(
            f'[jobs.{JOB}]\nschema = "faults.Job"\ntopic = "{self.topic}"\nkey_field = "key"\n'
            f"partitions = {partitions}\nreplication_factor = {replication_factor}\n"
            f"retry = {retry}\n")
        self.schemas = schemas
        self.catalogue = Catalogue.load(schemas)
        self.specs = desired_topics(self.catalogue)
        self.ledger_dir = tmp / "ledger"
        self.ledger_dir.mkdir(exist_ok=True)
        self.acks = LedgerWriter(self.ledger_dir, "producer")
        self.admin = AdminClient(config.client_settings())
        self.sampler = CommitSampler(config, self.group, lambda: self.consumed_topics)
        self.workers: list[WorkerProc] = []
        self.kills: list[Kill] = []
        self.delivery_failures = 0
        # Deliveries reported without an offset, which the producer sent again.
        self.unconfirmed: list[tuple[str, str, int]] = []
        self._last_lag_error: str | None = None  # for drain_status
        self.emitted = 0
        self._producer: Producer | None = None
        self._emitters: list[threading.Thread] = []
        self._n = 0

    # -- topics ---------------------------------------------------------------------------------

    @property
    def wait_topics(self) -> list[str]:
        return [s.name for s in self.specs if s.role == "retry"]

    @property
    def dlq(self) -> str:
        return next(s.name for s in self.specs if s.role == "dlq")

    @property
    def consumed_topics(self) -> list[str]:
        return [self.topic, *self.wait_topics]

    def create_topics(self) -> None:
        apply(self.config, self.catalogue, timeout=60)
        # Metadata of fresh topics reaches every broker a moment later.
        deadline = time.monotonic() + 30
        names = {s.name for s in self.specs}
        while time.monotonic() < deadline:
            md = self.admin.list_topics(timeout=10)
            if names <= set(md.topics) and all(not md.topics[n].error for n in names):
                return
            time.sleep(0.2)
        raise RuntimeError("topics did not appear")

    def delete_topics(self) -> None:
        with contextlib.suppress(Exception):
            for fut in self.admin.delete_topics([s.name for s in self.specs],
                                                request_timeout=30).values():
                with contextlib.suppress(Exception):
                    fut.result(timeout=30)

    # -- producing --------------------------------------------------------------------------------

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            settings: dict[str, Any] = {}
            if debug := os.environ.get("STREAMJOBS_FAULTS_PRODUCER_DEBUG"):
                # librdkafka debug contexts (e.g. "eos,msg") to <tmp>/producer-debug.log.
                log = logging.getLogger(f"faults.producer.{self.prefix}")
                log.addHandler(logging.FileHandler(self.tmp / "producer-debug.log"))
                log.setLevel(logging.DEBUG)
                log.propagate = False
                settings = {"debug": debug, "logger": log}
            if extra := os.environ.get("STREAMJOBS_FAULTS_PRODUCER_SETTINGS"):
                # librdkafka settings as JSON, e.g. '{"max.in.flight.requests.per.connection":
                # 5}' to run without the producer's defences (finding 6).
                settings.update(orjson.loads(extra))
            self._producer = Producer(self.catalogue, self.config, delivery_timeout=60,
                                      settings=settings)
            # The public callback gets (job id, error); the ledger also wants the position the
            # broker gave each record, for post-mortems of a lost job. Test-only reach-in: a
            # wrapper around the producer's own per-record callback, which it still runs (it
            # sends an unconfirmed record again, and looks the wrapper up for the new copy).
            tracker = self._producer._tracker
            tracker.per_message = self._ledger_wrapper(tracker.per_message)  # type: ignore[method-assign]
        return self._producer

    def _ledger_wrapper(self, per_message: Any) -> Any:
        def wrapped(job_id: str, headers: Any, user: Any, *, track: bool = True) -> Any:
            inner = per_message(job_id, headers, user, track=track)

            def on_delivery(err: Any, msg: Any) -> None:
                if err is not None:
                    self.delivery_failures += 1
                elif msg.offset() is not None:
                    self.acks.ack(job_id, (msg.topic(), msg.partition(), msg.offset()))
                else:  # sent again by inner; the copy's report is the ack
                    self.unconfirmed.append((job_id, msg.topic(), msg.partition()))
                inner(err, msg)

            return on_delivery

        return wrapped

    def _delivered(self, job_id: str, error: KafkaError | None) -> None:
        """Passed to emit so each record gets a per-message callback (``_per_message``)."""

    def emit(self, count: int, *, rate: float | None = None, work_ms: int = 0,
             fail_permille: int = 0) -> threading.Thread:
        """Emit ``count`` jobs at ``rate`` per second (None: as fast as possible) in a thread."""
        start_n = self._n
        self._n += count
        producer = self.producer

        def body() -> None:
            t0 = time.monotonic()
            for i in range(count):
                n = start_n + i
                if rate is not None:
                    ahead = t0 + i / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                producer.emit(JOB, {"n": n, "key": f"k{n}", "work_ms": work_ms,
                                    "fail_permille": fail_permille},
                              on_delivery=self._delivered)
                self.emitted += 1

        thread = threading.Thread(target=body, daemon=True, name="emitter")
        thread.start()
        self._emitters.append(thread)
        return thread

    def finish_emitting(self, timeout: float = 300) -> None:
        for t in self._emitters:
            t.join(timeout)
        if self._producer is not None:
            with contextlib.suppress(KafkaError):
                self._producer.flush(90)

    # -- workers ----------------------------------------------------------------------------------

    def spawn_worker(self, *extra: str, concurrency: int = 4, grace_period: float = 10,
                     env: dict[str, str] | None = None) -> WorkerProc:
        full_env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": self.config.bootstrap_servers,
                    "STREAMJOBS_FAULTS_SCHEMAS": str(self.schemas),
                    "STREAMJOBS_FAULTS_LEDGER": str(self.ledger_dir),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        args = ["worker", "tests.faults.app:app", "--group-id", self.group,
                "--concurrency", str(concurrency), "--grace-period", str(grace_period),
                "--session-timeout-ms", str(self.session_timeout_ms),
                "--metrics-port", "0", "--log-level", LOG_LEVEL, *extra]
        w = WorkerProc(args, full_env, self.tmp / f"worker-{len(self.workers)}.log")
        self.workers.append(w)
        return w

    def kill(self, worker: WorkerProc, sig: int = signal.SIGKILL) -> Kill:
        """SIGKILL a worker and record the kill with the committed offsets right after it."""
        worker.signal(sig)
        worker.reap(30)
        t = now_ms()
        kill = Kill(t, worker.pid, self.sampler.sample())
        self.kills.append(kill)
        return kill

    def stop_worker(self, worker: WorkerProc, timeout: float = 60) -> int:
        worker.signal(signal.SIGTERM)
        return worker.reap(timeout)

    def stop_all(self, timeout: float = 60) -> dict[int, int]:
        live = [w for w in self.workers if w.returncode is None]
        for w in live:
            w.signal(signal.SIGTERM)
        return {w.pid: w.reap(timeout) for w in live}

    def wait_members(self, count: int, timeout: float = 60) -> None:
        """Until the group is stable with ``count`` members that all have partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            members = group_members(self.config.bootstrap_servers, self.group)
            if members is not None and len(members) == count and all(members):
                return
            time.sleep(0.3)
        raise AssertionError(f"group never had {count} stable members\n" + self.worker_logs())

    # -- progress ---------------------------------------------------------------------------------

    def lag(self) -> int:
        """Records of the job and wait topics not yet covered by a committed offset."""
        committed = self.sampler.sample()
        total = 0
        for tp, end in self.sampler.end_offsets().items():
            total += max(0, end - committed.get(tp, 0))
        return total

    def wait_drained(self, timeout: float, check: Callable[[], None] | None = None) -> bool:
        """Until every record of the job and wait topics is committed (twice in a row)."""
        deadline = time.monotonic() + timeout
        zero = 0
        while time.monotonic() < deadline:
            if check is not None:
                check()
            try:
                zero = zero + 1 if self.lag() == 0 else 0
            except Exception as exc:
                self._last_lag_error = repr(exc)
                zero = 0
            if zero >= 2:
                return True
            time.sleep(0.5)
        return False

    def drain_status(self) -> str:
        """Why ``wait_drained`` gave up: partitions with lag, or the error reading it."""
        lines = [f"last lag error: {self._last_lag_error}"]
        try:
            committed = self.sampler.sample()
            for tp, end in sorted(self.sampler.end_offsets().items()):
                if end > committed.get(tp, 0):
                    lines.append(f"{tp}: committed {committed.get(tp)} end {end}")
        except Exception as exc:
            lines.append(f"lag unreadable now: {exc!r}")
        members = group_members(self.config.bootstrap_servers, self.group)
        lines.append(f"group members: {members}")
        return "\n".join(lines)

    def not_drained(self) -> str:
        return "not drained\n" + self.drain_status() + "\n" + self.worker_logs()

    def ledger(self) -> LedgerReader:
        reader = LedgerReader(self.ledger_dir)
        reader.poll()
        return reader

    # -- history ----------------------------------------------------------------------------------

    def history(self) -> History:
        self.sampler.sample()
        reader = self.ledger()
        # Kept next to the ledger for post-mortems (pytest keeps the last few tmp dirs).
        with open(self.tmp / "commits.jsonl", "wb") as f:
            for c in self.sampler.samples:
                f.write(orjson.dumps(c) + b"\n")
        records = read_topics(self.config, self.consumed_topics)
        dead_letters = read_topics(self.config, [self.dlq])
        with open(self.tmp / "records.jsonl", "wb") as f:
            for rec in (*records, *dead_letters):
                f.write(orjson.dumps(rec) + b"\n")
        return History(acks=reader.acks, runs=reader.runs, records=records,
                       dead_letters=dead_letters,
                       commits=list(self.sampler.samples), kills=list(self.kills),
                       job_topics=frozenset({self.topic}))

    def close(self) -> None:
        self.sampler.stop()
        for w in self.workers:
            if w.returncode is None:
                w.signal(signal.SIGKILL)
                w.reap(30)
        if self._producer is not None:
            with contextlib.suppress(Exception):
                self._producer.close()
        self.acks.close()

    def worker_logs(self, last: int = 30) -> str:
        parts = []
        for i, w in enumerate(self.workers):
            lines = w.output().splitlines()[-last:]
            parts.append(f"--- worker {i} pid {w.pid} rc {w.returncode}\n" + "\n".join(lines))
        return "\n".join(parts)


def publish(name: str, report: Report, rule: str, record: Callable[[str, object], None],
            **extra: Any) -> dict[str, Any]:
    """Write the scenario's figures to .streamjobs/faults/<name>.json and the session summary."""
    data = {"scenario": name, "scale": SCALE, "rule": rule, **report.summary(), **extra,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    RESULTS.append(data)
    for k, v in data.items():
        record(k, v)
    return data
