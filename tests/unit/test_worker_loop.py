"""The real worker loop (``Worker.run``: intake, pauses, dispatch, offsets, rebalances, the
failure router and outbox) driven by stand-in Kafka clients (``fakekafka``), in milliseconds:
an offset is stored and committed only once its job finished, the in-flight bound pauses the
partition and seeks back to the first record not taken, a partition revoked mid-flight commits
only what finished, and a poison record's offset waits for its dead-letter record's ack."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App, JobContext, WorkerSettings
from streamjobs.events import EventBus, PartitionsRevoked
from tests.unit.fakekafka import Broker, Running, wait_for
from tests.unit.test_catalogue import USER, make_dir

TOML = """
[defaults]
status = "none"
retry = { delays = ["100ms"], max_attempts = 2 }

[jobs.work]
schema = "t.User"
topic = "t.w"
"""
TP = ("t.w", 0)


def _app(tmp_path: Path, handler: Any) -> tuple[App, Codec]:
    cat = Catalogue.load(make_dir(tmp_path, TOML, **{"t.User.v1.avsc": USER}))
    app = App(cat, topic_prefix="")
    app.job("work")(handler)
    return app, Codec(cat)


def _emit(broker: Broker, codec: Codec, n: int) -> None:
    for i in range(n):
        job_id = h.new_job_id()
        broker.append("t.w", codec.encode("work", {"id": f"u{i}", "n": i}),
                      headers=[(h.META, h.compact(job_id, "work").encode())])


def _settings(**kw: Any) -> WorkerSettings:
    base: dict[str, Any] = {"job_types": ("work",), "concurrency": 2, "commit_every": 1,
                            "grace_period": 2.0}
    return WorkerSettings(**{**base, **kw})


def test_offsets_are_stored_and_committed_only_after_the_job(tmp_path: Path) -> None:
    gate = threading.Event()
    ran: list[int] = []

    def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])
        assert gate.wait(5)

    app, codec = _app(tmp_path, handler)
    broker = Broker()
    _emit(broker, codec, 3)
    with Running(app, broker, _settings()) as r:
        wait_for(lambda: bool(ran))
        c = r.consumer
        assert c.stored.get(TP, 0) == 0 and broker.committed.get(TP, 0) == 0
        gate.set()
        wait_for(lambda: c.stored.get(TP) == 3 and broker.committed.get(TP) == 3)
    assert sorted(ran) == [0, 1, 2]


def test_the_in_flight_bound_pauses_seeks_back_and_resumes(tmp_path: Path) -> None:
    gate = threading.Event()
    ran: list[int] = []

    def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])
        assert gate.wait(5)

    app, codec = _app(tmp_path, handler)
    broker = Broker()
    _emit(broker, codec, 5)
    with Running(app, broker, _settings(max_in_flight=2)) as r:
        c = r.consumer
        wait_for(lambda: TP in c.paused)
        assert (TP, 2) in c.seeks  # back to the first record not taken
        assert len(ran) <= 2
        gate.set()
        wait_for(lambda: c.stored.get(TP) == 5)
        assert c.resume_calls >= 1 and TP not in c.paused
    assert sorted(ran) == [0, 1, 2, 3, 4]  # each exactly once: nothing lost to the pause


def test_a_partition_revoked_mid_flight_commits_only_what_finished(tmp_path: Path) -> None:
    gate = threading.Event()
    ran: list[int] = []

    def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        ran.append(payload["n"])
        if payload["n"] == 1:
            assert gate.wait(5)

    app, codec = _app(tmp_path, handler)
    broker = Broker()
    _emit(broker, codec, 3)
    bus = EventBus()
    revoked: list[Any] = []
    bus.subscribe(revoked.append, PartitionsRevoked)
    with Running(app, broker, _settings(ordering="unordered", grace_period=0.05), bus) as r:
        c = r.consumer
        wait_for(lambda: 1 in ran and 0 in ran)
        c.revoke([TP])
        wait_for(lambda: bool(revoked))
        assert TP not in r.worker.parts
        assert broker.committed.get(TP) == 1  # job 0 finished; job 1 still running
        gate.set()
        wait_for(lambda: r.worker.executor is not None and not any(
            p.tasks for p in r.worker.parts.values()))
        wait_for(lambda: len(ran) >= 2)
    # The late completion of the revoked partition is never stored or committed: its new
    # owner starts from the committed offset.
    assert broker.committed.get(TP) == 1
    assert all(commit.get(TP, 1) == 1 for commit in c.commits)


def test_a_poison_records_offset_waits_for_its_dead_letter_ack(tmp_path: Path) -> None:
    ran: list[int] = []
    app, codec = _app(tmp_path, lambda payload, ctx: ran.append(payload["n"]))
    broker = Broker()
    # No sj- headers: on a topic of one job type it is that type (a foreign producer's), and
    # its bytes are no Avro frame.
    broker.append("t.w", b"not avro", key=b"k")
    _emit(broker, codec, 1)
    broker.hold_acks = True
    with Running(app, broker, _settings()) as r:
        c = r.consumer
        wait_for(lambda: ran == [0])
        assert c.stored.get(TP, 0) == 0  # the good job at 1 is done, the poison at 0 is not
        assert broker.log("t.w.dlq") == []
        broker.hold_acks = False
        wait_for(lambda: c.stored.get(TP) == 2)
    [dead] = broker.log("t.w.dlq")
    assert dead.value() == b"not avro" and dead.key() == b"k"
    assert h.get(dead.headers() or [], h.DLQ_REASON) == "decode_error"
    assert h.get(dead.headers() or [], h.ORIG_OFFSET) == "0"


def test_key_strict_refuses_a_sync_handler_with_a_timeout(tmp_path: Path) -> None:
    """A sync handler past its timeout runs on in an abandoned thread, outside the key hold:
    the worker refuses the combination at construction, naming the setting and the job type;
    an async handler with the same timeout is accepted."""
    from streamjobs._worker.runner import Worker
    from streamjobs.errors import ConfigError

    cat = Catalogue.load(make_dir(tmp_path, TOML, **{"t.User.v1.avsc": USER}))
    app = App(cat, topic_prefix="")
    app.job("work", timeout=1.0)(lambda payload, ctx: None)
    try:
        Worker(app, _settings(ordering="key-strict"), clients=Broker().clients())
    except ConfigError as exc:
        assert exc.field == "ordering" and "work" in str(exc)
    else:
        raise AssertionError("key-strict with a timed sync handler was accepted")

    async_app = App(cat, topic_prefix="")

    async def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        return None

    async_app.job("work", timeout=1.0)(handler)
    Worker(async_app, _settings(ordering="key-strict"), clients=Broker().clients())
