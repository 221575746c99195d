"""The history of a fault scenario: append-only JSON-lines files, one per process.

Every line is one ``os.write`` on a descriptor opened with ``O_APPEND``: the kernel appends it
whole and keeps it when the writing process is SIGKILLed a moment later (the data is in the
page cache; fsync only matters for a machine crash, which no scenario simulates). So the
ledger of a worker holds every handler start and finish that happened before its death.

Kinds of line (``k``), all with ``t`` = wall-clock ms (``time.time()``, one clock for every
process on the machine):

    ack    the producer's delivery callback acknowledged job ``id`` (written by the harness)
    start  a handler started job ``id`` attempt ``a`` read at ``tp``/``p``/``o``; ``due`` is
           the record's ``sj-due-at`` (or null); ``w`` pid and ``g`` process group of the worker
    ok     the handler returned (same fields as start)
    fail   the handler raised (same fields); the worker retries or dead-letters the job
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

__all__ = ["Ack", "LedgerReader", "LedgerWriter", "Run", "now_ms", "read_ledger"]

START, OK, FAIL, ACK = "start", "ok", "fail", "ack"


def now_ms() -> float:
    return time.time_ns() / 1_000_000


@dataclass(frozen=True, slots=True)
class Run:
    """A handler start or finish (``kind`` is start, ok or fail)."""

    kind: str
    job_id: str
    attempt: int
    worker: int  # pid of the process that ran the handler
    group: int  # its process group: what the harness signals
    topic: str
    partition: int
    offset: int
    t: float
    due: int | None = None

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class Ack:
    job_id: str
    t: float
    position: tuple[str, int, int] | None = None  # where the broker said it wrote the job


class LedgerWriter:
    """Appends lines to ``<dir>/<name>.jsonl``; safe across threads (one write per line)."""

    def __init__(self, directory: str | Path, name: str) -> None:
        path = Path(directory) / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, line: dict[str, Any]) -> None:
        os.write(self._fd, orjson.dumps(line) + b"\n")

    def ack(self, job_id: str, position: tuple[str, int, int] | None = None) -> None:
        line: dict[str, Any] = {"k": ACK, "id": job_id, "t": now_ms()}
        if position is not None:
            line["tp"], line["p"], line["o"] = position
        self.write(line)

    def run(self, kind: str, job_id: str, attempt: int, topic: str, partition: int, offset: int,
            due: int | None) -> None:
        self.write({"k": kind, "id": job_id, "a": attempt, "w": os.getpid(),
                    "g": os.getpgid(0), "tp": topic, "p": partition, "o": offset,
                    "t": now_ms(), "due": due})

    def close(self) -> None:
        os.close(self._fd)


_process_writer: tuple[int, LedgerWriter] | None = None
_process_lock = threading.Lock()


def process_writer(directory: str | Path) -> LedgerWriter:
    """This process's writer (re-opened after a fork, so each process has its own file)."""
    global _process_writer
    pid = os.getpid()
    current = _process_writer
    if current is not None and current[0] == pid:
        return current[1]
    with _process_lock:
        if _process_writer is None or _process_writer[0] != pid:
            _process_writer = (pid, LedgerWriter(directory, f"worker-{pid}"))
        return _process_writer[1]


def _parse(line: bytes) -> Run | Ack | None:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None  # a torn last line; os.write of one short line makes this very unlikely
    if d["k"] == ACK:
        return Ack(d["id"], d["t"], (d["tp"], d["p"], d["o"]) if "o" in d else None)
    return Run(d["k"], d["id"], d["a"], d["w"], d["g"], d["tp"], d["p"], d["o"], d["t"],
               d.get("due"))


class LedgerReader:
    """Reads every file of a ledger directory incrementally (only new complete lines)."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._offsets: dict[Path, int] = {}
        self.runs: list[Run] = []
        self.acks: list[Ack] = []

    def poll(self) -> int:
        """Read what was appended since the last call; returns the number of new lines."""
        new = 0
        for path in sorted(self.directory.glob("*.jsonl")):
            start = self._offsets.get(path, 0)
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self._offsets[path] = start + end + 1
            for line in data[: end + 1].splitlines():
                entry = _parse(line)
                if isinstance(entry, Run):
                    self.runs.append(entry)
                elif isinstance(entry, Ack):
                    self.acks.append(entry)
                new += entry is not None
        return new


def read_ledger(directory: str | Path) -> tuple[list[Run], list[Ack]]:
    reader = LedgerReader(directory)
    reader.poll()
    return reader.runs, reader.acks


def iter_runs(runs: list[Run], kind: str) -> Iterator[Run]:
    return (r for r in runs if r.kind == kind)
