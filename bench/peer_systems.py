"""One system's loop of bench/peers.py, run in its own process: consume a pre-filled topic
(or produce N records) and print one JSON line {"count", "seconds"} (first record -> last).

    python bench/peer_systems.py SYSTEM --topic T --jobs N --group G --bootstrap-servers B

Consumers (each in a fresh consumer group, at-least-once: offsets committed only for records
handled): raw, raw_decode, faststream, faststream_batch, quix. Producers (to topic T, acks=all):
raw_produce, raw_encode, emit, emit_many, faststream_publish, quix_produce, quix_produce_avro.
Peers (faststream*, quix*) need the ``bench`` extra; the others need only streamjobs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SCHEMA

PARSED = fastavro.parse_schema(SCHEMA)
# librdkafka's fetch back-off (fetch.queue.backoff.ms, default 1000) idles a consumer that
# empties its pre-fetch queue quickly: every consumer here gets the short one (see
# bench/worker_throughput.py FETCH), so no peer is slowed by a setting streamjobs avoids.
FETCH = {"fetch.queue.backoff.ms": 10}
HEADER = 10  # streamjobs' framing: 2 magic bytes + 8-byte fingerprint, then the Avro body


def decode(value: bytes) -> Any:
    buf = io.BytesIO(value)
    buf.seek(HEADER)
    return fastavro.schemaless_reader(buf, PARSED, None)


def payload(i: int) -> dict[str, Any]:
    return {"n": i, "name": f"user-{i}"}


def process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Clock:
    """First record -> the n-th; ``done`` once n were seen or the time budget ran out."""

    def __init__(self, n: int, budget: float) -> None:
        self.n, self.budget = n, budget
        self.count = 0
        self.first = self.last = 0.0
        self.cpu_first = self.cpu_last = 0.0  # process CPU seconds (all threads)
        self.first_k = 0
        threading.Thread(target=self._watchdog, daemon=True).start()

    def _watchdog(self) -> None:
        """A system that stalls (no record for a while) is rated on what it did up to now."""
        time.sleep(self.budget + 30)
        if self.count == 0:
            print("no record handled", file=sys.stderr, flush=True)
            os._exit(2)
        self.last = time.perf_counter()
        finish("stalled", self.result())

    def tick(self, k: int = 1) -> bool:
        now = time.perf_counter()
        if not self.first:
            self.first = now
            self.cpu_first = process_cpu()
            self.first_k = k  # counted before the CPU clock started
            self.count += k
            self.last = now
            return self.done
        self.count += k
        self.last = now
        if self.count >= self.n:
            self.cpu_last = process_cpu()
        return self.done

    @property
    def done(self) -> bool:
        return self.count >= self.n or (self.first > 0 and
                                        time.perf_counter() - self.first > self.budget)

    def result(self) -> dict[str, Any]:
        """Records from the first to the last, their seconds, and the process CPU seconds
        spent on the records after the first tick's (None when the run stalled)."""
        cpu = self.cpu_last - self.cpu_first if self.cpu_last else None
        return {"count": self.count, "seconds": max(self.last - self.first, 1e-9),
                "cpu_s": cpu, "cpu_jobs": self.count - self.first_k if cpu else None}


# -- consumers -----------------------------------------------------------------------------------

def raw(a: argparse.Namespace, with_decode: bool) -> dict[str, Any]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": a.bootstrap_servers, "group.id": a.group, **FETCH,
                  "auto.offset.reset": "earliest", "enable.auto.offset.store": False})
    c.subscribe([a.topic])
    clock = Clock(a.jobs, a.budget)
    try:
        while not clock.done:
            msgs = c.consume(1000, 0.5)
            if not msgs:
                continue
            last: dict[int, int] = {}
            k = 0
            for m in msgs:
                if m.error():
                    continue
                if with_decode:
                    decode(m.value())
                last[m.partition()] = m.offset()
                k += 1
            c.store_offsets(offsets=[TopicPartition(a.topic, p, o + 1) for p, o in last.items()])
            clock.tick(k)
    finally:
        c.close()
    return clock.result()


def faststream(a: argparse.Namespace, batch: bool) -> dict[str, Any]:
    from faststream import AckPolicy
    from faststream.confluent import KafkaBroker

    broker = KafkaBroker(a.bootstrap_servers, config=dict(FETCH), logger=None)  # type: ignore[arg-type]
    clock = Clock(a.jobs, a.budget)
    done = asyncio.Event()
    opts: dict[str, Any] = {"group_id": a.group, "auto_offset_reset": "earliest",
                            "ack_policy": AckPolicy.ACK}
    if batch:
        @broker.subscriber(a.topic, batch=True, max_records=1000, **opts)
        async def handle_batch(body: list[bytes]) -> None:
            for value in body:
                decode(value)
            if clock.tick(len(body)):
                done.set()
    else:
        @broker.subscriber(a.topic, **opts)
        async def handle(body: bytes) -> None:
            decode(body)
            if clock.tick():
                done.set()

    async def main() -> None:
        await broker.start()
        await done.wait()
        # Measured: report and leave from here. FastStream's subscriber with AckPolicy.ACK
        # commits every message, and stopping it (or asyncio.run's executor shutdown) waited
        # minutes for that backlog.
        finish(a.system, clock.result())

    asyncio.run(main())
    return clock.result()


def quix(a: argparse.Namespace) -> dict[str, Any]:
    import tempfile

    from quixstreams import Application

    app = Application(broker_address=a.bootstrap_servers, consumer_group=a.group,
                      auto_offset_reset="earliest", processing_guarantee="at-least-once",
                      consumer_extra_config=dict(FETCH), auto_create_topics=False,
                      state_dir=tempfile.mkdtemp(prefix="sj-bench-quix-"), loglevel="WARNING")
    clock = Clock(a.jobs, a.budget)
    topic = app.topic(a.topic, value_deserializer="bytes", key_deserializer="bytes")
    sdf = app.dataframe(topic)

    def handle(value: bytes) -> None:
        decode(value)
        if clock.tick():
            app.stop()

    sdf.update(handle)
    app.run()
    return clock.result()


# -- producers -----------------------------------------------------------------------------------

def _raw_producer(a: argparse.Namespace) -> Any:
    from confluent_kafka import Producer

    from streamjobs._delivery import PRODUCER_SETTINGS

    p = Producer({"bootstrap.servers": a.bootstrap_servers, **PRODUCER_SETTINGS,
                  "linger.ms": 5})
    p.list_topics(timeout=10)
    return p


def _produce_all(p: Any, topic: str, items: Any, make: Callable[[Any], tuple[bytes, bytes]]
                 ) -> None:
    produce = p.produce
    for item in items:
        value, key = make(item)
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                p.poll(0.05)


def raw_produce(a: argparse.Namespace, encode: bool) -> dict[str, Any]:
    from streamjobs._avro.framing import SO_MAGIC as MAGIC

    prefix = MAGIC + bytes(8)
    p = _raw_producer(a)
    data = [payload(i) for i in range(a.jobs)]
    keys = [str(i).encode() for i in range(a.jobs)]

    def enc(d: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(prefix)
        fastavro.schemaless_writer(buf, PARSED, d)
        return buf.getvalue()

    values = None if encode else [enc(d) for d in data]
    start = time.perf_counter()
    if values is None:
        _produce_all(p, a.topic, range(a.jobs), lambda i: (enc(data[i]), keys[i]))
    else:
        _produce_all(p, a.topic, range(a.jobs), lambda i: (values[i], keys[i]))
    if p.flush(120):
        raise SystemExit("records left after flush")
    return {"count": a.jobs, "seconds": time.perf_counter() - start}


def emit(a: argparse.Namespace, many: bool) -> dict[str, Any]:
    from streamjobs._config import KafkaConfig
    from streamjobs._producer import Producer
    from streamjobs._schemas.catalogue import Catalogue

    catalogue = Catalogue.load(a.schemas, topic_prefix=a.prefix)
    data = [payload(i) for i in range(a.jobs)]
    with Producer(catalogue, KafkaConfig(bootstrap_servers=a.bootstrap_servers)) as p:
        p.emit("noop", data[0])  # not timed: the topic's size limit is read once
        p.flush()
        start = time.perf_counter()
        if many:
            for i in range(0, len(data), 1000):
                p.emit_many([("noop", d) for d in data[i:i + 1000]])
        else:
            for d in data:
                p.emit("noop", d)
        p.flush()
        return {"count": a.jobs, "seconds": time.perf_counter() - start}


def faststream_publish(a: argparse.Namespace) -> dict[str, Any]:
    from faststream.confluent import KafkaBroker

    values = [raw_value(d) for d in (payload(i) for i in range(a.jobs))]

    clock = Clock(a.jobs, a.budget)

    async def main() -> None:
        # Its defaults (linger 0: each publish awaits its acknowledgement), acks=all as ours.
        broker = KafkaBroker(a.bootstrap_servers, acks="all", enable_idempotence=True,
                             logger=None)  # type: ignore[arg-type]
        async with broker:
            await broker.start()
            for i, v in enumerate(values):
                await broker.publish(v, a.topic, key=str(i).encode())
                if clock.tick():
                    break

    asyncio.run(main())
    return clock.result()


def quix_produce(a: argparse.Namespace, encode: bool) -> dict[str, Any]:
    """Quix Streams' producer, idempotent with acks=all as ours. ``encode``: the same workload
    as emit, payloads serialized per record by Quix's own AvroSerializer (``topic.serialize``,
    as its docs show for ``app.get_producer()``); else handed pre-encoded bytes."""
    from quixstreams import Application
    from quixstreams.models.serializers.avro import AvroSerializer

    app = Application(broker_address=a.bootstrap_servers, auto_create_topics=False,
                      producer_extra_config={"acks": "all", "linger.ms": 5,
                                             "enable.idempotence": True},
                      loglevel="WARNING")
    data = [payload(i) for i in range(a.jobs)]
    values = None if encode else [raw_value(d) for d in data]
    topic = app.topic(a.topic, value_serializer=AvroSerializer(SCHEMA))
    with app.get_producer() as p:
        # Not timed, as emit's and the raw loops' connection set-up is not: the idempotent
        # producer's id is fetched before the first batch can go.
        p.produce(topic=a.topic, key=b"warm-up", value=raw_value(data[0]))
        p.flush()
        clock = Clock(a.jobs, a.budget)
        for i in range(a.jobs):
            if values is None:
                msg = topic.serialize(key=str(i).encode(), value=data[i])
                p.produce(topic=topic.name, key=msg.key, value=msg.value)
            else:
                p.produce(topic=a.topic, key=str(i).encode(), value=values[i])
            if clock.tick():
                break
        p.flush()
        clock.last = time.perf_counter()  # up to the last acknowledgement
    return clock.result()


def raw_value(d: dict[str, Any]) -> bytes:
    """Pre-encoded (the peers are handed bytes, as a raw produce is)."""
    buf = io.BytesIO()
    buf.write(bytes(HEADER))
    fastavro.schemaless_writer(buf, PARSED, d)
    return buf.getvalue()


SYSTEMS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "raw": lambda a: raw(a, False),
    "raw_decode": lambda a: raw(a, True),
    "faststream": lambda a: faststream(a, False),
    "faststream_batch": lambda a: faststream(a, True),
    "quix": quix,
    "raw_produce": lambda a: raw_produce(a, False),
    "raw_encode": lambda a: raw_produce(a, True),
    "emit": lambda a: emit(a, False),
    "emit_many": lambda a: emit(a, True),
    "faststream_publish": faststream_publish,
    "quix_produce": lambda a: quix_produce(a, False),
    "quix_produce_avro": lambda a: quix_produce(a, True),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("system", choices=sorted(SYSTEMS))
    ap.add_argument("--topic", required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--group", default=f"bench-peer-{uuid.uuid4().hex[:8]}")
    ap.add_argument("--budget", type=float, default=30.0, help="seconds at most per run")
    ap.add_argument("--schemas", default=None, help="catalogue directory (emit, emit_many)")
    ap.add_argument("--prefix", default="", help="topic prefix of that catalogue")
    ap.add_argument("--bootstrap-servers", default="127.0.0.1:9092")
    a = ap.parse_args()
    finish(a.system, SYSTEMS[a.system](a))


def finish(system: str, out: dict[str, Any]) -> None:
    """Print the result and leave at once, without the clients' clean shutdown (not measured,
    and a peer's can take minutes; see faststream)."""
    print(json.dumps({"system": system, **out}), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
