"""``StatusIndex``: every job's status in memory, rebuilt from the compacted topic and kept
current by following it (what ``streamjobs web`` serves lookups from).

Memory is bounded by ``max_jobs``: past it, the jobs whose last change is oldest are evicted,
finished ones (succeeded, dead) first. An entry is one ``bytes``: the job's record values, as
the writers produced them, joined by newlines in timeline order (JSON text has no raw
newline). The job's state is that of the last line, read from its first bytes; the timeline is
decoded only when asked for (``get``, ``recent``, subscribers). ``stats()["approx_bytes"]``
estimates what the entries hold.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .._config import KafkaConfig
from .._connection import OFFSET_BEGINNING, TopicPartition
from .._connection import RdKafkaError as _RdKafkaError
from .._connection import admin as admin_client
from .._scan import partitions_of, reader
from ..errors import StreamjobsError
from .record import BATCH_PREFIX, ENQUEUED, FINAL, STATES, decode, decode_all, encode, job_id_of
from .timeline import JobStatus, fold, place

__all__ = ["StatusIndex"]

_log = logging.getLogger("streamjobs.status")
_STATE_AT = len(b'{"state":"')
_TYPE_TAG = b'","type":"'
_STATE_NAMES = {s.encode(): s for s in STATES}
_FINAL = FINAL
_BATCH = BATCH_PREFIX.encode()
# The job's record values joined by b"\n", in timeline order.
Entry = bytes


class StatusIndex:
    """Thread safe: one background thread writes, any thread reads."""

    def __init__(self, config: KafkaConfig, topic: str, *, max_jobs: int = 1_000_000) -> None:
        if max_jobs < 1:
            raise ValueError("max_jobs must be >= 1")
        self.config = config
        self.topic = topic
        self.max_jobs = max_jobs
        self._open: dict[str, Entry] = {}  # not finished, oldest change first
        self._done: dict[str, Entry] = {}  # succeeded or dead, oldest change first
        self._lock = threading.Lock()
        self._subscribers: tuple[Callable[[JobStatus], None], ...] = ()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.records = 0
        self.evicted = 0
        self.error: str | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background thread: it reads the topic from the beginning, then follows
        it. A missing topic or broker is retried (``stats()["error"]`` says why)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sj-status-index",
                                            daemon=True)
            self._thread.start()

    @property
    def ready(self) -> bool:
        """Caught up with the end offsets the topic had when reading began."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        return self._ready.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    # -- reading ------------------------------------------------------------------------------

    def get(self, job_id: str) -> JobStatus | None:
        entry = self._open.get(job_id) or self._done.get(job_id)
        return None if entry is None else _status(job_id, entry)

    def recent(self, limit: int = 50, state: str | None = None) -> list[JobStatus]:
        """The jobs changed last (newest first), of ``state`` when given."""
        with self._lock:
            picked = [*_newest(self._open, limit, state), *_newest(self._done, limit, state)]
        out = [_status(job_id, entry) for job_id, entry in picked]
        out.sort(key=lambda s: s.last.at_ms, reverse=True)
        return out[:limit]

    def subscribe(self, callback: Callable[[JobStatus], None]) -> Callable[[], None]:
        """Call ``callback(status)`` on the index thread after every change of a job;
        returns the function that unsubscribes it. Callbacks must be quick."""
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(c for c in self._subscribers if c is not callback)

        return unsubscribe

    def __len__(self) -> int:
        return len(self._open) + len(self._done)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            jobs = len(self._open) + len(self._done)
            finished = len(self._done)
            approx = self._approx_bytes()
        return {"jobs": jobs, "finished": finished, "max_jobs": self.max_jobs,
                "records": self.records, "evicted": self.evicted, "approx_bytes": approx,
                "ready": self.ready, "error": self.error}

    def _approx_bytes(self) -> int:
        """Entries, keys and the two dicts' tables (job types and states are shared)."""
        size = sys.getsizeof(self._open) + sys.getsizeof(self._done)
        for d in (self._open, self._done):
            for job_id, entry in d.items():
                size += sys.getsizeof(job_id) + sys.getsizeof(entry)
        return size

    # -- folding (index thread; public for tests and benchmarks) ------------------------------

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one status record into the index."""
        if key is None:
            return
        if key.startswith(_BATCH):  # a worker's batch: one value per job, as if written so
            for job_id, job_type, t in decode_all(key, value):
                self._apply_one(job_id, encode(job_type, t))
            return
        self._apply_one(job_id_of(key), value)

    def _apply_one(self, job_id: str, value: bytes | None) -> None:
        with self._lock:
            changed = self._apply(job_id, value)
            subscribers = self._subscribers
        if changed is not None and subscribers:
            status = _status(job_id, changed)
            for callback in subscribers:
                try:
                    callback(status)
                except Exception:
                    _log.exception("status index subscriber %r raised", callback)

    def _apply(self, job_id: str, value: bytes | None) -> Entry | None:
        self.records += 1
        old = self._open.pop(job_id, None)
        if old is None:
            old = self._done.pop(job_id, None)
        if value is None:  # a tombstone: the job is forgotten
            return None
        parsed = _parse(value)
        if parsed is None:
            if old is not None:
                self._keep(job_id, old)
            return None
        entry = value if old is None else _fold_raw(old, parsed[0], value)
        self._keep(job_id, entry)
        return entry

    def _keep(self, job_id: str, entry: Entry) -> None:
        (self._done if _state(entry) in _FINAL else self._open)[job_id] = entry
        while len(self._open) + len(self._done) > self.max_jobs:
            victim = self._done if self._done else self._open
            del victim[next(iter(victim))]
            self.evicted += 1

    # -- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
                return
            except StreamjobsError as exc:
                self.error = str(exc)
                _log.warning("status index: %s; retrying", exc)
                self._stop.wait(2.0)
            except Exception as exc:  # keep the server's index alive whatever happens
                self.error = repr(exc)
                _log.exception("status index failed; retrying")
                self._stop.wait(2.0)

    def _follow(self) -> None:
        parts = partitions_of(admin_client(self.config), self.config, self.topic)
        consumer = reader(self.config, **{"fetch.wait.max.ms": 100})
        waiting = set(parts)  # partitions not yet read to the end seen at start
        try:
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
            self.error = None
            while not self._stop.is_set():
                msgs = consumer.consume(num_messages=2000, timeout=0.2)
                for msg in msgs:
                    err = msg.error()
                    if err is None:
                        self.apply(msg.key(), msg.value())
                    elif err.code() == _RdKafkaError._PARTITION_EOF:
                        if waiting:
                            waiting.discard(msg.partition())
                            if not waiting:
                                self._ready.set()
                    else:
                        self.error = f"reading {self.topic}: {err.str()}"
        finally:
            consumer.close()


def _parse(value: bytes) -> tuple[str, str] | None:
    """(state, job type) of a record value: read from the prefix our writers produce, else
    decoded in full."""
    end = value.find(b'"', _STATE_AT)
    state = _STATE_NAMES.get(value[_STATE_AT:end]) if end > 0 else None
    if state is not None and value.startswith(_TYPE_TAG, end):
        start = end + len(_TYPE_TAG)
        stop = value.find(b'"', start)
        if stop > 0 and value.find(b"\\", start, stop) < 0:
            return state, value[start:stop].decode("utf-8", "replace")
    got = decode(value)
    return None if got is None else (got[1].state, got[0])


def _state(entry: Entry) -> str:
    """The job's state: that of its last line."""
    parsed = _parse(entry[entry.rfind(b"\n") + 1:])
    return "" if parsed is None else parsed[0]


def _fold_raw(old: Entry, state: str, value: bytes) -> Entry:
    """``timeline.fold`` on the raw values (the same rules, kept in step by the unit tests)."""
    if state == "emitted":
        if old.startswith(b'{"state":"emitted"') or b'\n{"state":"emitted"' in old:
            return old
        return value + b"\n" + old
    if state in ENQUEUED:
        return _insert(old, value)
    if state == "dead" and _state(old) == "dead":
        return old[:old.rfind(b"\n") + 1] + value
    return old + b"\n" + value


def _insert(old: Entry, value: bytes) -> Entry:
    """A ``reprocessed``/``replayed`` value placed as ``timeline.place`` says (rare: decode)."""
    got = decode(value)
    lines = old.split(b"\n")
    steps = [t for line in lines if (d := decode(line)) is not None for t in (d[1],)]
    if got is None or got[1] in steps:
        return old
    i = place(steps, got[1]) if len(steps) == len(lines) else len(lines)
    lines.insert(i, value)
    return b"\n".join(lines)


def _status(job_id: str, entry: Entry) -> JobStatus:
    status: JobStatus | None = None
    for line in entry.split(b"\n"):
        got = decode(line)
        if got is not None:
            status = fold(status, job_id, got[0], got[1])
    if status is None:  # unreachable: entries are made from decodable values
        return JobStatus(job_id, "", "", ())
    return status


def _newest(d: dict[str, Entry], limit: int,
            state: str | None) -> Iterator[tuple[str, Entry]]:
    n = 0
    for job_id in reversed(d):
        entry = d[job_id]
        if state is None or _state(entry) == state:
            yield job_id, entry
            n += 1
            if n >= limit:
                return
