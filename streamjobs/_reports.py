"""Worker reports: what each running worker tells the dashboard about itself.

Every worker publishes a small JSON report every few seconds (and at start and stop) to the
compacted topic ``<prefix>streamjobs.workers``, keyed by its worker id (``host:pid:group``):
host, pid, group, start time, jobs in flight, cumulative counters per job type and outcome,
and its assigned partitions. The topic is both the registry of live workers and the source of
per-minute rates (differences of cumulative counters), with nothing but Kafka: the design of
Karafka Web UI's consumer reports topic. The publisher is ``listeners.reports``;
``ReportsView`` is the reader a dashboard keeps (docs/observability.md, "Worker reports").
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from ._config import KafkaConfig
from ._connection import RdKafkaError as _RdKafkaError
from ._connection import TopicPartition
from ._connection import admin as admin_client
from ._scan import offsets_for_time, partitions_of, reader

__all__ = [
    "OUTCOMES",
    "REPORT_EVERY",
    "ReportsView",
    "WorkerReport",
    "worker_id",
]

OUTCOMES = ("succeeded", "failed", "retried", "dead")
REPORT_EVERY = 5.0  # seconds between two reports of one worker
WINDOW_MS = 60_000  # rates are over the last minute


def worker_id(host: str, pid: int, group: str) -> str:
    return f"{host}:{pid}:{group}"


@dataclass(frozen=True)
class WorkerReport:
    """One worker's state at ``at_ms``. ``counters``: job type -> outcome (``OUTCOMES``) ->
    jobs since the worker started. ``failed`` counts handler runs that raised (retried or not),
    ``retried`` re-publications to a wait tier, ``dead`` records sent to a dead-letter topic.
    ``stopped``: the worker's last report, sent once it has stopped."""

    worker_id: str
    group: str
    host: str
    pid: int
    at_ms: int
    started_ms: int
    in_flight: int
    counters: Mapping[str, Mapping[str, int]]
    assigned: tuple[tuple[str, int], ...]
    stopped: bool = False
    version: int = field(default=1, repr=False)  # of this format, for later readers

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["counters"] = {t: dict(c) for t, c in self.counters.items()}
        out["assigned"] = [list(tp) for tp in self.assigned]
        return out

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.as_dict())

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerReport:
        """ValueError when ``data`` is not a report."""
        try:
            d = orjson.loads(data)
            return cls(
                worker_id=str(d["worker_id"]), group=str(d["group"]), host=str(d["host"]),
                pid=int(d["pid"]), at_ms=int(d["at_ms"]), started_ms=int(d["started_ms"]),
                in_flight=int(d["in_flight"]),
                counters={str(t): {str(o): int(n) for o, n in c.items()}
                          for t, c in d["counters"].items()},
                assigned=tuple((str(t), int(p)) for t, p in d["assigned"]),
                stopped=bool(d.get("stopped", False)), version=int(d.get("version", 1)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a worker report: {exc}") from None


# A worker run: a restarted worker may reuse its id (pid 1 in a container) with new counters.
_Run = tuple[str, int]  # (worker_id, started_ms)


class ReportsView:
    """The workers and job rates seen in the reports topic.

    ``start()`` reads the topic from ``lookback_s`` ago (not its whole history) in a background
    thread and keeps following it. ``ingest`` adds one report (the thread's way in; tests feed
    synthetic reports through it). Thread-safe."""

    def __init__(self, config: KafkaConfig, topic: str, *, lookback_s: float = 150.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.topic = topic
        self.lookback_ms = int(lookback_s * 1000)
        self._clock = clock
        self._lock = threading.Lock()
        self._latest: dict[str, WorkerReport] = {}
        self._history: dict[_Run, deque[WorkerReport]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None  # the reader's last error, if it stopped on one

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- reading --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start following the topic (TopicNotFound / BrokerUnavailable at once if it cannot)."""
        admin = admin_client(self.config)
        parts = [(self.topic, p) for p in partitions_of(admin, self.config, self.topic)]
        since = offsets_for_time(admin, self.config, parts, self._now_ms() - self.lookback_ms)
        starts = [TopicPartition(t, p, off if off is not None else -1)  # -1: the log end
                  for (t, p), off in since.items()]
        self._thread = threading.Thread(target=self._follow, args=(starts,), daemon=True,
                                        name=f"streamjobs-reports-{self.topic}")
        self._thread.start()

    def _follow(self, starts: list[TopicPartition]) -> None:
        consumer = reader(self.config, **{"enable.partition.eof": False,
                                          "isolation.level": "read_uncommitted"})
        try:
            consumer.assign(starts)
            while not self._stop.is_set():
                for msg in consumer.consume(500, 0.5):
                    err = msg.error()
                    if err is not None:
                        if err.fatal() or err.code() == _RdKafkaError.UNKNOWN_TOPIC_OR_PART:
                            self.error = err.str()
                            return
                        continue
                    value = msg.value()
                    if value is None:
                        self.forget(bytes(msg.key() or b"").decode(errors="replace"))
                        continue
                    with contextlib.suppress(ValueError):
                        self.ingest(WorkerReport.from_bytes(value))
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    # -- the book ---------------------------------------------------------------------------

    def ingest(self, report: WorkerReport) -> None:
        with self._lock:
            old = self._latest.get(report.worker_id)
            if old is None or (report.started_ms, report.at_ms) >= (old.started_ms, old.at_ms):
                self._latest[report.worker_id] = report
            run = (report.worker_id, report.started_ms)
            hist = self._history.setdefault(run, deque())
            if hist and report.at_ms <= hist[-1].at_ms:
                return  # a duplicate or reordered report adds nothing to the rates
            hist.append(report)
            self._prune(self._now_ms())

    def forget(self, worker: str) -> None:
        """A tombstone: the worker's id was deleted from the topic."""
        with self._lock:
            self._latest.pop(worker, None)

    def _prune(self, now_ms: int) -> None:
        """Keep, per run, the reports of the window plus the last one before it (the baseline);
        drop runs whose last report is older than the lookback."""
        edge = now_ms - WINDOW_MS
        for run, hist in list(self._history.items()):
            while len(hist) > 1 and hist[1].at_ms <= edge:
                hist.popleft()
            if hist[-1].at_ms < now_ms - self.lookback_ms:
                del self._history[run]
        for wid, rep in list(self._latest.items()):
            if rep.at_ms < now_ms - self.lookback_ms:
                del self._latest[wid]

    def workers(self, *, alive_within_s: float = 30) -> list[WorkerReport]:
        """The latest report of every worker heard from within ``alive_within_s`` and not
        stopped, by group then id."""
        since = self._now_ms() - int(alive_within_s * 1000)
        with self._lock:
            alive = [r for r in self._latest.values() if r.at_ms >= since and not r.stopped]
        return sorted(alive, key=lambda r: (r.group, r.worker_id))

    def rates_per_minute(self, *, now_ms: int | None = None) -> dict[str, dict[str, float]]:
        """Job type -> outcome -> jobs per minute over the last minute, summed over workers
        (stopped ones included for the part of the minute they ran).

        Per worker run: the counters of its latest report minus those of its last report at or
        before the window's start (zero when it started within the window), divided by the
        time between them, but by no less than a minute (a worker that stopped within the
        window is not extrapolated). A run first heard within the window though it started
        before (a gap in its reports) is extrapolated from what was seen."""
        now = self._now_ms() if now_ms is None else now_ms
        edge = now - WINDOW_MS
        out: dict[str, dict[str, float]] = {}
        with self._lock:
            self._prune(now)
            runs = [list(h) for h in self._history.values()]
        for hist in runs:
            last = hist[-1]
            if last.at_ms <= edge:
                continue
            base = next((r for r in reversed(hist) if r.at_ms <= edge), None)
            if base is not None:
                before, since, guess = base.counters, base.at_ms, False
            elif last.started_ms >= edge:
                before, since, guess = {}, last.started_ms, False
            else:
                # Started before the window but first heard within it: extrapolate.
                before, since, guess = hist[0].counters, hist[0].at_ms, True
            span = last.at_ms - since
            if guess and span <= 0:
                continue
            # A run that covered less than the window (it stopped) is not extrapolated.
            scale = WINDOW_MS / (span if guess else max(WINDOW_MS, span))
            for job_type, counts in last.counters.items():
                prev = before.get(job_type, {})
                rates = out.setdefault(job_type, dict.fromkeys(OUTCOMES, 0.0))
                for outcome, n in counts.items():
                    delta = n - prev.get(outcome, 0)
                    if delta > 0:
                        rates[outcome] = rates.get(outcome, 0.0) + delta * scale
        return out

    def in_flight(self, *, alive_within_s: float = 30) -> int:
        """Jobs running now across the live workers."""
        return sum(r.in_flight for r in self.workers(alive_within_s=alive_within_s))
