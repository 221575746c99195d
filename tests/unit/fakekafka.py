"""Stand-ins for the worker loop's Kafka clients (``worker.clients.Clients``): an in-memory log
per (topic, partition), consumers that serve group callbacks inside ``consume``/``poll`` like
librdkafka, and a producer whose acknowledgements arrive on ``poll`` (or are held back).

Only what the loop calls is here; it is no broker: one member per group, every topic exists,
offsets are list positions. Real-broker behaviour is tested in tests/kafka/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._worker import App, Worker, WorkerSettings
from streamjobs._worker.clients import Clients
from streamjobs.events import EventBus

TP = tuple[str, int]


class Msg:
    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None,
                 value: bytes | None, headers: h.Headers | None, timestamp_ms: int) -> None:
        self._t, self._p, self._o = topic, partition, offset
        self._k, self._v, self._h, self._ts = key, value, headers, timestamp_ms

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes | None:
        return self._k

    def value(self) -> bytes | None:
        return self._v

    def headers(self) -> h.Headers | None:
        return self._h

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)

    def error(self) -> None:
        return None


@dataclass
class _TopicMeta:
    partitions: dict[int, None] = field(default_factory=lambda: {0: None})
    error: None = None


class _AllTopics(dict[str, _TopicMeta]):
    """Every topic exists (with one partition); none is listed (no old tiers)."""

    def __contains__(self, name: object) -> bool:
        return True

    def get(self, name: str, default: Any = None) -> _TopicMeta:  # type: ignore[override]
        return _TopicMeta()


class _Meta:
    topics = _AllTopics()


class Broker:
    """The logs, and the clients made from them (one instance per test)."""

    def __init__(self) -> None:
        self.logs: dict[TP, list[Msg]] = {}
        self.committed: dict[TP, int] = {}
        self.consumers: list[FakeConsumer] = []
        self.producers: list[FakeProducer] = []
        self.hold_acks = False  # True: produced records wait (not written, not acknowledged)
        self.lock = threading.Lock()

    def append(self, topic: str, value: bytes | None, *, key: bytes | None = None,
               headers: h.Headers | None = None, partition: int = 0,
               timestamp_ms: int | None = None) -> Msg:
        with self.lock:
            log = self.logs.setdefault((topic, partition), [])
            ts = round(time.time() * 1000) if timestamp_ms is None else timestamp_ms
            msg = Msg(topic, partition, len(log), key, value, headers, ts)
            log.append(msg)
            return msg

    def log(self, topic: str, partition: int = 0) -> list[Msg]:
        return self.logs.get((topic, partition), [])

    def clients(self) -> Clients:
        broker = self

        class _Clients(Clients):
            def consumer(self, settings: dict[str, Any]) -> Any:
                c = FakeConsumer(broker, settings)
                broker.consumers.append(c)
                return c

            def producer(self, settings: dict[str, Any]) -> Any:
                p = FakeProducer(broker)
                broker.producers.append(p)
                return p

        return _Clients()


class FakeConsumer:
    def __init__(self, broker: Broker, settings: dict[str, Any]) -> None:
        self.broker = broker
        self.group = settings["group.id"]
        self.callbacks: dict[str, Callable[..., Any]] = {}
        self.assigned: list[TP] = []
        self.position: dict[TP, int] = {}
        self.paused: set[TP] = set()
        self.stored: dict[TP, int] = {}
        self.commits: list[dict[TP, int]] = []
        self.seeks: list[tuple[TP, int]] = []
        self.pause_calls = 0
        self.resume_calls = 0
        self.closed = False
        self._assign: list[TP] | None = None
        self._revoke: list[TP] | None = None

    # -- group ---------------------------------------------------------------------------------

    def list_topics(self, timeout: float | None = None) -> _Meta:
        return _Meta()

    def subscribe(self, topics: list[str], **callbacks: Callable[..., Any]) -> None:
        self.callbacks = callbacks
        self._assign = [(t, 0) for t in topics]

    def revoke(self, tps: list[TP]) -> None:
        """Revoke ``tps`` inside the next ``consume``/``poll`` (as a rebalance does)."""
        self._revoke = tps

    def _serve(self) -> None:
        if self._assign is not None:
            tps, self._assign = self._assign, None
            for tp in tps:
                self.assigned.append(tp)
                self.position[tp] = self.broker.committed.get(tp, 0)
            self.callbacks["on_assign"](self, [TopicPartition(*tp) for tp in tps])
        if self._revoke is not None:
            tps, self._revoke = self._revoke, None
            self.callbacks["on_revoke"](self, [TopicPartition(*tp) for tp in tps])
            for tp in tps:
                self.assigned.remove(tp)
                self.paused.discard(tp)

    # -- records -------------------------------------------------------------------------------

    def consume(self, n: int = 1, timeout: float = -1) -> list[Msg]:
        self._serve()
        out: list[Msg] = []
        with self.broker.lock:
            for tp in self.assigned:
                if tp in self.paused:
                    continue
                log = self.broker.logs.get(tp, [])
                while self.position[tp] < len(log) and len(out) < n:
                    out.append(log[self.position[tp]])
                    self.position[tp] += 1
        if not out and timeout and timeout > 0:
            time.sleep(min(timeout, 0.001))
        return out

    def poll(self, timeout: float = -1) -> Msg | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    # -- offsets -------------------------------------------------------------------------------

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self.stored[(tp.topic, tp.partition)] = tp.offset

    def commit(self, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:
        if offsets is None:
            done = {tp: o for tp, o in self.stored.items() if tp in self.assigned}
        else:
            done = {(tp.topic, tp.partition): tp.offset for tp in offsets}
        if done:
            self.commits.append(done)
            self.broker.committed.update(done)

    def committed(self, tps: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition,
                               self.broker.committed.get((tp.topic, tp.partition), -1001))
                for tp in tps]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1,
                              cached: bool = False) -> tuple[int, int]:
        return 0, len(self.broker.log(tp.topic, tp.partition))

    def position_of(self, tp: TP) -> int:
        return self.position[tp]

    # -- flow ----------------------------------------------------------------------------------

    def pause(self, tps: list[TopicPartition]) -> None:
        self.pause_calls += 1
        self.paused.update((tp.topic, tp.partition) for tp in tps)

    def resume(self, tps: list[TopicPartition]) -> None:
        self.resume_calls += 1
        self.paused.difference_update((tp.topic, tp.partition) for tp in tps)

    def seek(self, tp: TopicPartition) -> None:
        self.seeks.append(((tp.topic, tp.partition), tp.offset))
        self.position[(tp.topic, tp.partition)] = tp.offset

    def close(self) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.pending: list[tuple[str, bytes | None, bytes | None, h.Headers, int, Any]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int = -1, headers: Any = None, on_delivery: Any = None) -> None:
        self.pending.append((topic, key, value, list(headers or []), partition, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        if self.broker.hold_acks or not self.pending:
            return 0
        done, self.pending = self.pending, []
        for topic, key, value, hdrs, partition, on_delivery in done:
            msg = self.broker.append(topic, value, key=key, headers=hdrs,
                                     partition=max(partition, 0))
            if on_delivery is not None:
                on_delivery(None, msg)
        return len(done)

    def flush(self, timeout: float = -1) -> int:
        self.poll()
        return len(self.pending)

    def __len__(self) -> int:
        return len(self.pending)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.002)


class Running:
    """A real ``Worker`` on a thread, over ``broker``'s stand-ins."""

    def __init__(self, app: App, broker: Broker, settings: WorkerSettings,
                 bus: EventBus | None = None) -> None:
        self.broker = broker
        self.worker = Worker(app, settings, KafkaConfig(bootstrap_servers="fake:9092"), bus,
                             clients=broker.clients())
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.code = self.worker.run(install_signals=False)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: bool(self.worker.parts))
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.thread.join(10)
        assert not self.thread.is_alive()

    @property
    def consumer(self) -> FakeConsumer:
        return self.broker.consumers[0]  # type: ignore[no-any-return]
