"""AsyncProducer: emits without blocking the event loop, awaits acknowledgements on request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._producer import AsyncProducer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs.errors import DeliveryFailed, PayloadError
from tests.conftest import wait_for

from .jobs_catalogue import read, total_records, write_catalogue

JOB = "send_welcome_email"


@pytest.fixture
def catalogue(tmp_path: Path, unique: str) -> Catalogue:
    return Catalogue.load(write_catalogue(tmp_path / "schemas", unique))


@pytest.fixture
def topic(make_topic: object) -> str:
    return make_topic("emails", partitions=2)  # type: ignore[operator,no-any-return]


class Ticker:
    """Counts 5 ms ticks and remembers the longest gap between two of them."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            self.ticks += 1


def test_emits_keep_the_loop_running(kafka_config: KafkaConfig, catalogue: Catalogue,
                                     topic: str) -> None:
    """While 5000 jobs are emitted and their acknowledgements awaited, a 5 ms ticker on the
    same loop keeps ticking (no call blocks the loop on Kafka); every job arrives once."""

    async def main() -> list[str]:
        ticker = Ticker()
        task = asyncio.create_task(ticker.run())
        async with AsyncProducer(catalogue, kafka_config) as p:
            ids: list[str] = []
            for chunk in range(10):
                ids += await asyncio.gather(*(
                    p.emit(JOB, {"user_id": f"u{chunk}-{i}", "email": "e"}, wait=True)
                    for i in range(500)))
        task.cancel()
        assert ticker.ticks >= 10
        assert ticker.max_gap < 1.0, f"loop blocked for {ticker.max_gap:.2f}s"
        return ids

    ids = asyncio.run(main())
    assert len(set(ids)) == 5000
    got = {h.JobMeta.from_headers(m.headers()).job_id for m in read(kafka_config, topic, 5000)}
    assert got == set(ids)


def test_wait_awaits_the_acknowledgement_without_blocking(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """emit(wait=True) returns only after the broker acknowledged (linger 300 ms), and the
    loop runs other tasks meanwhile."""

    async def main() -> None:
        ticker = Ticker()
        task = asyncio.create_task(ticker.run())
        async with AsyncProducer(catalogue, kafka_config, linger_ms=300) as p:
            start = time.monotonic()
            await p.emit(JOB, {"user_id": "u1", "email": "e"}, wait=True)
            assert time.monotonic() - start >= 0.25
            assert ticker.ticks >= 10
            assert total_records(kafka_config, topic) == 1
        task.cancel()

    asyncio.run(main())


def test_wait_raises_delivery_failed(kafka_config: KafkaConfig, catalogue: Catalogue,
                                     topic: str, admin: AdminClient) -> None:
    """A record the broker never acknowledges makes emit(wait=True) raise DeliveryFailed
    naming the job; invalid payloads raise PayloadError before anything is sent."""

    async def main() -> None:
        async with AsyncProducer(catalogue, kafka_config, delivery_timeout=3) as p:
            await p.emit(JOB, {"user_id": "u0", "email": "e"}, wait=True)  # caches limits
            with pytest.raises(PayloadError):
                await p.emit(JOB, {"user_id": "u1", "email": 7})
            admin.delete_topics([topic])[topic].result(timeout=30)
            # The deletion is accepted before the broker stops taking records for the topic:
            # a record sent in between is acknowledged (seen 2 runs in 14).
            wait_for(lambda: topic not in admin.list_topics(timeout=10).topics, 30,
                     what="the topic gone from the metadata")
            with pytest.raises(DeliveryFailed) as info:
                await p.emit(JOB, {"user_id": "u1", "email": "e"}, wait=True)
            assert info.value.job_id is not None
            await p.flush()  # the awaiting caller got the failure; flush does not repeat it

    asyncio.run(main())


def test_wait_after_plain_emits_switches_clients_without_blocking(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """Rule: the first emit(wait=True) after plain emits moves the producer to a client with
    success reports in a worker thread (the loop keeps running while the first client's
    records are acknowledged), and one key's records stay in emit order."""

    async def main() -> list[str]:
        ticker = Ticker()
        task = asyncio.create_task(ticker.run())
        async with AsyncProducer(catalogue, kafka_config, linger_ms=300) as p:
            ids = [await p.emit(JOB, {"user_id": "k", "email": f"e{i}"}) for i in range(20)]
            ticks = ticker.ticks
            ids.append(await p.emit(JOB, {"user_id": "k", "email": "e20"}, wait=True))
            assert ticker.ticks >= ticks + 10  # two lingers passed with the loop running
            ids += [await p.emit(JOB, {"user_id": "k", "email": f"e{i}"}) for i in range(21, 25)]
        task.cancel()
        return ids

    ids = asyncio.run(main())
    got = [h.JobMeta.from_headers(m.headers()).job_id for m in read(kafka_config, topic, 25)]
    assert got == ids
