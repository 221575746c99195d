"""Registry framing (Confluent wire format) against single-object framing, in one run.

Measures, on the same broker and in alternating rounds, (a) emit throughput: ``Producer.emit``
of N jobs then flush, with a catalogue framed ``single-object`` and the same catalogue framed
``registry``; (b) worker throughput: the in-process worker with a no-op handler draining N
pre-filled jobs of each framing (as bench/worker_throughput.py measures it). The registry is a
real Apicurio (``--registry-url``, else one started through ``streamjobs._dev`` on a free port
and stopped at the end). Every registry HTTP request made in this process is counted: ids and
schemas are cached, so a run makes one per producer or worker, never one per record (the
first emit of each producer is a warm-up outside the timing, on both sides). Emit's own work per
job is also timed with the Kafka client stubbed (as bench/produce.py does): R_emit_stubbed =
single-object µs / registry µs, steadier than the end-to-end rates on a shared machine. Prints a
JSON line: medians of R_emit = registry / single-object emit rate and R_worker = registry /
single-object worker rate, the rates, the request counts and every round.

    python bench/registry.py --jobs 100000 --rounds 4
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import create_topics, delete_topics, make_catalogue, prefix
from produce import _NoClient, best_us
from worker_throughput import prefill, worker

from streamjobs._avro.codec import Codec
from streamjobs._avro.framing import REGISTRY
from streamjobs._config import KafkaConfig
from streamjobs._dev.registry import DevRegistry
from streamjobs._ops import subjects
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._schemas.registry import RegistryConfig, SchemaRegistry
from streamjobs._worker.process import tune_gc

REQUESTS = [0]
_request = SchemaRegistry._request


def _counted(self: SchemaRegistry, method: str, path: str, body: object = None) -> object:
    REQUESTS[0] += 1
    return _request(self, method, path, body)


SchemaRegistry._request = _counted  # type: ignore[method-assign]


def emit_rate(p: Producer, n: int) -> float:
    """jobs/s of ``n`` emits + flush, after a warm-up emit."""
    emit = p.emit
    # Steady state on both sides: the first emit of a type also asks the broker for the
    # topic's size limit and, with registry framing, the registry for the schema id once.
    emit("noop", {"n": -1, "name": "warm-up"})
    p.flush(30)
    start = time.perf_counter()
    for i in range(n):
        emit("noop", {"n": i, "name": f"user-{i}"})
    p.flush(120)
    return n / (time.perf_counter() - start)


def emit_us(p: Producer) -> float:
    """µs of emit's own work per job, the Kafka client stubbed."""
    client, p._kafka = p._kafka, _NoClient()  # type: ignore[assignment]
    try:
        return best_us(lambda: p.emit("noop", {"n": 7, "name": "user-7"}))
    finally:
        p._kafka = client


def _wait_visible(admin: AdminClient, topic: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while topic not in admin.list_topics(timeout=10).topics:
        if time.monotonic() > deadline:
            raise SystemExit(f"topic {topic} not visible after {timeout}s")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--registry-url", default=None, envvar="STREAMJOBS_REGISTRY_URL",
              help="A running registry's Confluent-compatible API; default: start Apicurio")
@click.option("--jobs", "n", default=100_000, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--concurrency", default=4, show_default=True)
@click.option("--rounds", default=4, show_default=True, help="even: each side first as often")
def main(bootstrap_servers: str, registry_url: str | None, n: int, partitions: int,
         concurrency: int, rounds: int) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    started: DevRegistry | None = None
    if registry_url is None:
        started = DevRegistry(_free_port(), root=Path(tempfile.mkdtemp(prefix="sj-bench-reg-")))
        started.up(timeout=180)
        registry_url = started.url
    registry = RegistryConfig(registry_url)
    os.environ["STREAMJOBS_REGISTRY_URL"] = registry_url  # the worker reads it
    tune_gc()
    single, framed = make_catalogue(partitions), make_catalogue(partitions, framing=REGISTRY)
    names: list[str] = []
    try:
        results = []
        for i in range(rounds):
            row: dict[str, float] = {}
            order = [("single", single), ("registry", framed)]
            if i % 2:
                order.reverse()  # no side always first
            sides: dict[str, tuple[Catalogue, str]] = {}
            for label, cat in order:
                pfx = prefix()
                names += create_topics(admin, cat, pfx, partitions)
                _wait_visible(admin, pfx + "noop")
                if label == "registry":
                    subjects.register(SchemaRegistry(registry), cat.with_topic_prefix(pfx))
                sides[label] = (cat, pfx)
            time.sleep(3)  # the broker settles the new partitions before either side runs
            producers: dict[str, Producer] = {}
            try:
                for label, (cat, pfx) in sides.items():
                    before = REQUESTS[0]
                    p = producers[label] = Producer(cat.with_topic_prefix(pfx), kafka,
                                                    linger_ms=5, registry=registry)
                    row[f"emit_{label}"] = round(emit_rate(p, n))
                    row[f"emit_requests_{label}"] = REQUESTS[0] - before
                # Emit's own work, both producers timed in turn (best of 3 each): a slow
                # stretch of the shared machine then hits both sides.
                timings: dict[str, list[float]] = {label: [] for label in producers}
                for _ in range(3):
                    for label, p in producers.items():
                        timings[label].append(emit_us(p))
                for label, values in timings.items():
                    row[f"emit_us_{label}"] = min(values)
            finally:
                for p in producers.values():
                    p.close()
            for label, (cat, pfx) in sides.items():
                prefixed = cat.with_topic_prefix(pfx)
                prefill(conf, pfx + "noop", Codec(prefixed, registry=SchemaRegistry(registry)), n)
                before = REQUESTS[0]
                row[f"worker_{label}"] = round(worker(kafka, cat, pfx, n, concurrency, False,
                                                      None))
                row[f"worker_requests_{label}"] = REQUESTS[0] - before
            delete_topics(admin, names)
            names.clear()
            row["R_emit"] = round(row["emit_registry"] / row["emit_single"], 3)
            row["R_emit_stubbed"] = round(row["emit_us_single"] / row["emit_us_registry"], 3)
            row["R_worker"] = round(row["worker_registry"] / row["worker_single"], 3)
            results.append(row)
            print(f"round {i + 1}: {row}", file=sys.stderr)
    finally:
        if names:
            delete_topics(admin, names)
        if started is not None:
            started.down()

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(json.dumps({
        "jobs": n, "partitions": partitions, "concurrency": concurrency, "rounds": rounds,
        "R_emit": median("R_emit"), "R_worker": median("R_worker"),
        "R_emit_stubbed": median("R_emit_stubbed"),
        "emit_us_single": median("emit_us_single"), "emit_us_registry": median("emit_us_registry"),
        "emit_single_per_s": median("emit_single"),
        "emit_registry_per_s": median("emit_registry"),
        "worker_single_per_s": median("worker_single"),
        "worker_registry_per_s": median("worker_registry"),
        "registry_requests_emit": max(r["emit_requests_registry"] for r in results),
        "registry_requests_worker": max(r["worker_requests_registry"] for r in results),
        "per_round": results}))


if __name__ == "__main__":
    main()
