"""The worker's duplicate filter (``worker.uniqueness``) without a broker: which records are
checked, what is persisted where, and what a duplicate costs (finished offset + event)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._unique import SeenSet
from streamjobs._worker import App
from streamjobs._worker.routes import Routes
from streamjobs._worker.uniqueness import Uniqueness
from streamjobs.events import EventBus, JobDuplicate
from tests.unit.test_catalogue import USER, make_dir

TOML = """
[jobs.bykey]
schema = "t.User"
topic = "t.k"
key_field = "id"
unique = { by = "key", window = "1m" }

[jobs.beat]
schema = "t.User"
topic = "t.b"

[jobs.plain]
schema = "t.User"
topic = "t.p"

[schedules.s]
job = "beat"
every = "1m"
"""


class _Worker:
    def __init__(self) -> None:
        self.finished: list[int] = []
        self.sent: list[Any] = []
        self.outbox = self

    def finish(self, part: Any, offset: int) -> None:
        self.finished.append(offset)

    def send(self, out: Any) -> None:
        self.sent.append(out)


class _Part:
    topic, partition = "t.k", 2


class _Ctx:
    def __init__(self, job_type: str, offset: int, key: bytes | None, job_id: str,
                 headers: list[tuple[str, bytes | None]] | None = None) -> None:
        self.job_type, self.offset, self.key, self.job_id = job_type, offset, key, job_id
        self.headers = headers or []
        self.created_at_ms = 1_000 + offset
        self.topic, self.partition, self.attempt = "t.k", 2, 1


def _setup(tmp_path: Path) -> tuple[Uniqueness, _Worker, list[Any]]:
    cat = Catalogue.load(make_dir(tmp_path, TOML, **{"t.User.v1.avsc": USER}))
    app = App(cat)
    for name in cat.names():
        app.job(name)(lambda payload, ctx: None)
    worker = _Worker()
    bus = EventBus()
    events: list[Any] = []
    bus.subscribe(events.append, JobDuplicate)
    u = Uniqueness(worker, Routes(app, app.check()), {"beat"}, KafkaConfig(), bus)  # type: ignore[arg-type]
    return u, worker, events


def test_checked_topics(tmp_path: Path) -> None:
    u, _, _ = _setup(tmp_path)
    assert u.topics() == ["t.b.unique", "t.k.unique"]  # unique type, schedule target
    assert u.keep_ms == {"t.k": 60_000, "t.b": 3_600_000}


def test_filter_drops_duplicates_and_persists_first_records(tmp_path: Path) -> None:
    u, worker, events = _setup(tmp_path)
    tick = [(h.SCHEDULE, b"s")]
    jobs = [
        _Ctx("bykey", 10, b"a", "j1"),
        _Ctx("bykey", 11, b"a", "j2"),                        # duplicate of 10
        _Ctx("bykey", 12, None, "j3"),                        # no key: never checked
        _Ctx("bykey", 13, b"a", "j4", [(h.REPROCESSED_FROM, b"t.k.dlq/0/5")]),  # on purpose
        _Ctx("beat", 14, None, "tick-1", tick),
        _Ctx("beat", 15, None, "tick-1", tick),               # a re-fired tick
        _Ctx("beat", 16, None, "tick-1"),                     # not from a schedule: not checked
        _Ctx("plain", 17, b"a", "j5"),
    ]
    offsets = [c.offset for c in jobs]
    kept, kept_offsets = u.filter(_Part(), SeenSet(3_600_000), jobs, offsets)  # type: ignore[arg-type]
    assert kept_offsets == [10, 12, 13, 14, 16, 17]
    assert [c.offset for c in kept] == kept_offsets
    assert worker.finished == [11, 15]
    assert [(e.offset, e.unique_key, e.first_offset) for e in events] == [
        (11, "bykey/k:a", 10), (15, "beat/i:tick-1", 14)]
    # First occurrences go to partition p of <topic>.unique, keyed by the dedupe value.
    assert [(o.topic, o.partition, o.key) for o in worker.sent] == [
        ("t.k.unique", 2, b"bykey/k:a"), ("t.k.unique", 2, b"beat/i:tick-1")]
