"""Worker.dispatch with ordering=partition: a batch just taken whose offsets are contiguous
travels as a range (finished in O(1)); anything else keeps its list, in particular wait-tier
jobs that fell due, which come in wake order, not offset order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamjobs._config import KafkaConfig
from streamjobs._worker import App, Worker, WorkerSettings
from streamjobs._worker.offsets import PartitionTracker
from streamjobs._worker.partition import Part

ROOT = Path(__file__).resolve().parents[2]


class _Ctx:
    def __init__(self, offset: int) -> None:
        self.offset = offset


class _Executor:
    def __init__(self) -> None:
        self.chunks: list[Any] = []

    def submit(self, part: Any, lane: Any, chunk: Any, is_async: bool) -> None:
        self.chunks.append(chunk)


def _worker() -> tuple[Worker, Part, _Executor]:
    app = App(ROOT / "schemas")

    @app.job("send_welcome_email")
    def send(payload: dict[str, object], ctx: object) -> None: ...

    w = Worker(app, WorkerSettings(job_types=("send_welcome_email",)),
               KafkaConfig(bootstrap_servers="127.0.0.1:1"))
    ex = _Executor()
    w.executor = ex
    return w, Part("demo.emails.retry.1s", 0, w.routes, "partition"), ex


def test_taken_contiguous_offsets_become_a_range() -> None:
    w, part, ex = _worker()
    w.dispatch(part, [_Ctx(o) for o in (5, 6, 7)], [5, 6, 7])  # type: ignore[misc]
    assert ex.chunks[-1][1] == range(5, 8)


def test_taken_offsets_with_a_gap_stay_a_list() -> None:
    w, part, ex = _worker()
    w.dispatch(part, [_Ctx(o) for o in (5, 7, 8)], [5, 7, 8])  # type: ignore[misc]
    assert ex.chunks[-1][1] == [5, 7, 8]


def test_due_wait_tier_jobs_keep_their_offsets_whatever_their_order() -> None:
    # 6, 12, 8: last - first == count - 1 but not a run; as a range it would finish 7 (never
    # taken) and leave 12 unfinished, and the commit would skip past unfinished work.
    w, part, ex = _worker()
    w.lanes.release(part)
    w.dispatch(part, [_Ctx(o) for o in (6, 12, 8)])  # type: ignore[misc]
    offsets = ex.chunks[-1][1]
    assert offsets == [6, 12, 8]
    t = PartitionTracker()
    t.add_many([6, 7, 8, 12])
    t.done_many(offsets)
    assert t.commit_position() == 7
