"""Running one fault scenario against a real broker with real worker processes.

A ``Scenario`` owns: a private catalogue (unique topic names), its topics, a consumer group, a
ledger directory, a paced producer whose delivery acknowledgements go to the ledger, worker
subprocesses (``streamjobs worker tests.faults.app:app``) that tests signal, kill and restart,
and a thread sampling the group's committed offsets. ``history()`` reads every topic back and
returns what ``checker.check`` judges. Sizes: ``size(ci, full)`` (STREAMJOBS_FAULT_SCALE=full).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from streamjobs import headers as h
from streamjobs.catalogue import Catalogue
from streamjobs.config import KafkaConfig
from streamjobs.errors import KafkaError
from streamjobs.producer import Producer
from streamjobs.topics import apply, desired_topics
from tests.conftest import streamjobs_exe
from tests.faults.checker import CommitSample, History, Kill, Report, TopicRecord
from tests.faults.ledger import LedgerReader, LedgerWriter, now_ms

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMAS = Path(__file__).resolve().parent / "schemas"
RESULTS_DIR = ROOT / ".streamjobs" / "faults"
SCALE = os.environ.get("STREAMJOBS_FAULT_SCALE", "ci")
JOB = "fault_job"
# Worker log level (info shows rebalances and commits: handy when a scenario finds something).
LOG_LEVEL = os.environ.get("STREAMJOBS_FAULTS_LOG_LEVEL", "error")
# Figures of every scenario run in this session, printed by conftest's terminal summary.
RESULTS: list[dict[str, Any]] = []


_DESCRIBE_GROUP = """
import json, sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": sys.argv[1], "log_level": 0})
g = admin.describe_consumer_groups([sys.argv[2]], request_timeout=5)[sys.argv[2]].result(10)
print(json.dumps({"state": str(g.state),
                  "members": [len(m.assignment.topic_partitions) for m in g.members]}))
"""


def size(ci: int, full: int) -> int:
    return full if SCALE == "full" else ci


def free_port_block(count: int) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + count >= 65000:
            continue
        ok = True
        for p in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no block of free ports")


class WorkerProc:
    """One ``streamjobs worker`` subprocess in its own process group (pgid == pid)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in reap()
        self.popen = subprocess.Popen([*streamjobs_exe(), *args], env=env, cwd=str(ROOT),
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.started = time.monotonic()
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def reap(self, timeout: float) -> int:
        try:
            self.returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.returncode = self.popen.wait(timeout=30)
        self._log.close()
        return self.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")


class CommitSampler(threading.Thread):
    """Samples the group's committed offsets every ``interval`` s; keeps each change (the
    first sample showing a new value, stamped after the answer arrived).

    It asks with a consumer that never subscribes (OffsetFetch only), not the AdminClient:
    librdkafka 2.16's AdminClient aborts the process (``rd_kafka_enq_once_del_source_return:
    Assertion eonce->refcnt > 0``) when the coordinator dies during a request."""

    def __init__(self, config: KafkaConfig, group: str, topics: Callable[[], list[str]],
                 interval: float = 0.2) -> None:
        super().__init__(daemon=True, name="commit-sampler")
        self.config = config
        self.group = group
        self.topics = topics
        self.interval = interval
        self.samples: list[CommitSample] = []
        self.latest: dict[tuple[str, int], int] = {}
        self.failures = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._consumer: Any = None
        self._tps: list[TopicPartition] = []

    def _client(self) -> Any:
        if self._consumer is None:
            c = Consumer({**self.config.client_settings(), "group.id": self.group,
                          "enable.auto.commit": False, "log_level": 2})
            md = c.list_topics(timeout=10)
            self._tps = [TopicPartition(t, p) for t in self.topics()
                         for p in md.topics[t].partitions]
            self._consumer = c
        return self._consumer

    def sample(self) -> dict[tuple[str, int], int]:
        """One sample now (also recorded); {} when the broker did not answer."""
        with self._lock:
            try:
                res = self._client().committed(self._tps, timeout=5)
            except Exception:
                self.failures += 1
                return {}
            t = now_ms()
            out = {(tp.topic, tp.partition): tp.offset for tp in res
                   if tp.offset >= 0 and tp.error is None}
            for tp, off in out.items():
                if self.latest.get(tp) != off:
                    self.latest[tp] = off
                    self.samples.append(CommitSample(t, tp[0], tp[1], off))
            return out

    def end_offsets(self) -> dict[tuple[str, int], int]:
        """High watermarks of the sampled partitions (same long-lived client: creating and
        destroying clients while brokers die is where librdkafka has crashed on us)."""
        with self._lock:
            c = self._client()
            return {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1]
                    for tp in self._tps}

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(15)
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


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
            self._producer = Producer(self.catalogue, self.config, delivery_timeout=60)
        return self._producer

    def _delivered(self, job_id: str, error: KafkaError | None) -> None:
        if error is None:
            self.acks.ack(job_id)
        else:
            self.delivery_failures += 1

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
                    "STREAMJOBS_FAULTS_SESSION_TIMEOUT_MS": str(self.session_timeout_ms),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        args = ["worker", "tests.faults.app:app", "--group-id", self.group,
                "--concurrency", str(concurrency), "--grace-period", str(grace_period),
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
        """Until the group is stable with ``count`` members that all have partitions.

        Asked in a child process: librdkafka 2.16's AdminClient has aborted the whole process
        (``rd_kafka_enq_once_del_source_return: Assertion eonce->refcnt > 0``) in
        describe_consumer_groups on a fresh cluster; a crashed child is just asked again."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                out = subprocess.run([sys.executable, "-c", _DESCRIBE_GROUP,
                                      self.config.bootstrap_servers, self.group],
                                     capture_output=True, text=True, timeout=30)
                g = orjson.loads(out.stdout) if out.returncode == 0 else None
            except (subprocess.TimeoutExpired, orjson.JSONDecodeError):
                g = None
            if g and g["state"].endswith("STABLE") and len(g["members"]) == count and all(
                    g["members"]):
                return
            time.sleep(0.3)
        raise AssertionError(f"group never had {count} stable members\n" + self.worker_logs())

    # -- progress ---------------------------------------------------------------------------------

    def end_offsets(self, topics: list[str]) -> dict[tuple[str, int], int]:
        # A plain consumer, not AdminClient.list_offsets (see CommitSampler).
        c = Consumer({**self.config.client_settings(), "group.id": f"{self.prefix}-ends",
                      "log_level": 2})
        try:
            md = c.list_topics(timeout=10)
            return {(t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                    for t in topics for p in md.topics[t].partitions}
        finally:
            c.close()

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
            except Exception:
                zero = 0
            if zero >= 2:
                return True
            time.sleep(0.5)
        return False

    def ledger(self) -> LedgerReader:
        reader = LedgerReader(self.ledger_dir)
        reader.poll()
        return reader

    # -- history ----------------------------------------------------------------------------------

    def read_topics(self, topics: list[str]) -> list[TopicRecord]:
        ends = self.end_offsets(topics)
        wanted = {tp: end for tp, end in ends.items() if end > 0}
        if not wanted:
            return []
        c = Consumer({**self.config.client_settings(), "group.id": f"{self.prefix}-reader",
                      "enable.auto.commit": False, "enable.partition.eof": False})
        c.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in wanted])
        out: list[TopicRecord] = []
        remaining = dict(wanted)
        deadline = time.monotonic() + 120
        try:
            while remaining and time.monotonic() < deadline:
                for m in c.consume(1000, 0.5):
                    if m.error() is not None:
                        continue
                    out.append(to_record(m))
                    tp = (m.topic(), m.partition())
                    if tp in remaining and (m.offset() or 0) + 1 >= remaining[tp]:
                        del remaining[tp]
        finally:
            c.close()
        if remaining:
            raise RuntimeError(f"could not read back {sorted(remaining)[:3]}...")
        return out

    def history(self) -> History:
        self.sampler.sample()
        reader = self.ledger()
        # Kept next to the ledger for post-mortems (pytest keeps the last few tmp dirs).
        with open(self.tmp / "commits.jsonl", "wb") as f:
            for c in self.sampler.samples:
                f.write(orjson.dumps(c) + b"\n")
        records = self.read_topics(self.consumed_topics)
        dead_letters = self.read_topics([self.dlq])
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


def to_record(m: Any) -> TopicRecord:
    hdrs = m.headers() or []
    orig_topic = h.get(hdrs, h.ORIG_TOPIC)
    orig_p, orig_o = h.get_int(hdrs, h.ORIG_PARTITION), h.get_int(hdrs, h.ORIG_OFFSET)
    orig = ((orig_topic, orig_p, orig_o) if orig_topic is not None and orig_p is not None
            and orig_o is not None else None)
    return TopicRecord(m.topic(), m.partition(), m.offset(), float(m.timestamp()[1]),
                       h.get(hdrs, h.JOB_ID), h.get_int(hdrs, h.ATTEMPT),
                       h.get_int(hdrs, h.DUE_AT), orig, h.get(hdrs, h.DLQ_REASON))


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
