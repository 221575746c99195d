"""Job status: what recording it costs the worker, and the dashboard index's memory and
start-up time.

(1) Throughput: one topic pre-filled with N no-op jobs, drained by the in-process worker (no
listeners, as bench/worker_throughput.py's (b)) three times per round with fresh groups: the job
type's catalogue ``status`` = ``none``, ``failures`` (every job succeeds: nothing is written)
and ``all`` (a ``succeeded`` record per job, written to the status topic). Ratios per round,
medians over ``--rounds``; the order of the three rotates between rounds, and each run waits
``--settle`` seconds first so the broker's writes of the previous run do not land on the next.
Also the process's CPU time (all its threads, librdkafka's included) per job of each mode.

(2) Index: a status topic filled with R records (R/2 jobs, each ``emitted`` + ``succeeded`` as
the writers produce them), then ``StatusIndex`` starts and is timed until ``ready``; memory is
the process's RSS growth (after a GC) and the index's own estimate, per tracked job and scaled
to a million jobs.

Prints one JSON line: R_status_all, R_status_failures, index_* figures, per round.

    python bench/status.py --jobs 300000 --records 1000000 --rounds 3
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import click
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import create_topics, delete_topics, make_catalogue, prefix
from worker_throughput import prefill, worker

from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._ops.topics import STATUS_CONFIG, STATUS_PARTITIONS
from streamjobs._status import StatusIndex, status_topic
from streamjobs._status.record import Transition, encode, record_key
from streamjobs._worker.process import tune_gc

MODES = ("none", "failures", "all")


def rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def fill_status(conf: dict, topic: str, records: int) -> int:
    """``records`` status records, two per job; returns the number of jobs."""
    p = Producer({**conf, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    jobs = records // 2
    for key, value in _records(jobs):
        part = zlib.crc32(key.split(b"/")[0]) % STATUS_PARTITIONS
        while True:
            try:
                p.produce(topic, value, key, partition=part)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(300)
    return jobs


def _records(jobs: int) -> Iterator[tuple[bytes, bytes]]:
    now = int(time.time() * 1000)
    for i in range(jobs):
        job_id = f"019ad{i:07x}-0000-7000-8000-{i:012x}"[:36]
        for t in (Transition("emitted", now, topic="bench.noop"),
                  Transition("succeeded", now + 5, 1, "bench-host-1", topic="bench.noop",
                             partition=i % 6, offset=i)):
            yield record_key(job_id, t.state), encode("noop", t)


def heap_per_job(jobs: int) -> int:
    """Python heap the index holds per job (tracemalloc: exact, unlike RSS), for ``jobs``
    jobs of two records each folded without Kafka."""
    import tracemalloc

    records = list(_records(jobs))
    gc.collect()
    tracemalloc.start()
    index = StatusIndex(KafkaConfig(), "unused", max_jobs=jobs)
    base = tracemalloc.get_traced_memory()[0]
    for key, value in records:
        index.apply(key, value)
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(index) == jobs
    return round(held / jobs)


def index_run(kafka: KafkaConfig, topic: str, jobs: int) -> dict[str, float]:
    gc.collect()
    before = rss_bytes()
    index = StatusIndex(kafka, topic, max_jobs=max(jobs, 1))
    t0 = time.perf_counter()
    index.start()
    if not index.wait_ready(1800):
        raise RuntimeError(f"index not ready after 1800 s: {index.stats()}")
    seconds = time.perf_counter() - t0
    gc.collect()
    grown = rss_bytes() - before
    stats = index.stats()
    index.close()
    tracked = stats["jobs"]
    if tracked != jobs:
        raise RuntimeError(f"index tracks {tracked} jobs, expected {jobs}")
    return {"index_jobs": tracked, "index_records": stats["records"],
            "index_startup_s": round(seconds, 2),
            "index_records_per_s": round(stats["records"] / seconds),
            "index_rss_bytes_per_job": round(grown / tracked),
            "index_approx_bytes_per_job": round(stats["approx_bytes"] / tracked),
            "index_rss_mib_per_million_jobs": round(grown / tracked * 1e6 / 2**20),
            "index_startup_s_per_million_records": round(seconds / stats["records"] * 1e6, 2)}


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--jobs", "n", default=300_000, show_default=True)
@click.option("--records", default=1_000_000, show_default=True,
              help="status records in the topic the index starts from")
@click.option("--partitions", default=6, show_default=True)
@click.option("--concurrency", default=4, show_default=True)
@click.option("--rounds", default=3, show_default=True)
@click.option("--settle", default=2.0, show_default=True, help="seconds before each run")
def main(bootstrap_servers: str, n: int, records: int, partitions: int, concurrency: int,
         rounds: int, settle: float) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    catalogues = {m: make_catalogue(partitions, m) for m in MODES}
    tune_gc()
    pfx = prefix()
    names = create_topics(admin, catalogues["none"], pfx, partitions)
    stopic = status_topic(pfx)
    itopic = status_topic(pfx + "index.")
    for t in (stopic, itopic):
        admin.create_topics([NewTopic(t, STATUS_PARTITIONS, 1, config=STATUS_CONFIG)])[t].result(30)
    names += [stopic, itopic]
    try:
        t0 = time.perf_counter()
        prefill(conf, pfx + "noop", Codec(catalogues["none"]), n)
        print(f"prefilled {n} jobs in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results = []
        for i in range(rounds):
            order = MODES[i % 3:] + MODES[:i % 3]
            rate: dict[str, float] = {}
            cpu: dict[str, float] = {}
            for m in order:
                time.sleep(settle)
                t0 = os.times()
                rate[m] = worker(kafka, catalogues[m], pfx, n, concurrency, False, None)
                t1 = os.times()
                cpu[m] = (t1.user + t1.system - t0.user - t0.system) / n * 1e6
            results.append({"order": list(order), **{m: round(r) for m, r in rate.items()},
                            **{f"cpu_us_{m}": round(c, 2) for m, c in cpu.items()},
                            "R_all": round(rate["all"] / rate["none"], 3),
                            "R_failures": round(rate["failures"] / rate["none"], 3),
                            "R_all_cpu": round(cpu["none"] / cpu["all"], 3),
                            "R_failures_cpu": round(cpu["none"] / cpu["failures"], 3)})
            print(f"round {i + 1}: {results[-1]}", file=sys.stderr)
        t0 = time.perf_counter()
        jobs = fill_status(conf, itopic, records)
        print(f"status topic: {records} records in {time.perf_counter() - t0:.1f}s",
              file=sys.stderr)
        index = index_run(kafka, itopic, jobs)
        index["index_heap_bytes_per_job"] = heap_per_job(min(jobs, 100_000))
        print(f"index: {index}", file=sys.stderr)
    finally:
        delete_topics(admin, names)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(json.dumps({"jobs": n, "partitions": partitions, "concurrency": concurrency,
                      "rounds": rounds, "none_jobs_per_s": median("none"),
                      "failures_jobs_per_s": median("failures"),
                      "all_jobs_per_s": median("all"),
                      "R_status_all": median("R_all"), "R_status_failures": median("R_failures"),
                      **{f"cpu_us_per_job_{m}": median(f"cpu_us_{m}") for m in MODES},
                      "R_status_all_cpu": median("R_all_cpu"),
                      "R_status_failures_cpu": median("R_failures_cpu"),
                      **index, "per_round": results}))


if __name__ == "__main__":
    main()
