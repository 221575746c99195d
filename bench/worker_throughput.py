"""Worker throughput against a raw confluent-kafka consume loop on the same topic.

Pre-fills a topic with N small Avro jobs, then measures (a) raw: consume(1000) + fastavro
decode + store_offsets per batch, fresh group; (a') the same loop also reading each record's
headers with ``Message.headers()``, the metadata every job carries and the worker must read
(type, id, attempt: a lower bound of what the worker does beyond raw); (b) the streamjobs worker
in-process with a no-op sync handler, no listeners; (c) the same as users run it: the default
listeners (structured logs at the default level ``info``, metrics, health, worker reports).
Rates count from the first record received to the last handled (group join excluded). Each
round runs (a), (b), (c) back to back on the same topic (fresh consumer groups; (b) and (c)
swap places every other round, so neither always runs second); the machine is shared, so
compare within a round and read the medians over ``--rounds``. Prints a JSON line: medians of
raw/worker jobs/s and of R_framework = worker / raw (per round), R_framework_vs_headers =
worker / (a'), ``headers_us`` (what (a') adds per record), ``headers_ceiling`` = (a') / (a):
the R_framework a worker would reach if reading each record's headers were all it did beyond
raw, ``R_listeners`` = (c) / (b) per round (target >= 0.9: the default listeners cost at most
10%), ``R_listeners_cpu`` = the same as CPU per job of (b) / (c) (process CPU from the first job
to the last: steadier than rates on a shared machine), plus every round.

    python bench/worker_throughput.py --jobs 300000 --partitions 6 --rounds 3
"""

from __future__ import annotations

import io
import itertools
import json
import resource
import statistics
import sys
import threading
import time
import uuid

import click
import fastavro
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import create_reports_topic, create_topics, delete_topics, make_catalogue, prefix

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._worker import App, Worker, WorkerSettings
from streamjobs._worker.process import tune_gc
from streamjobs.events import EventBus

# Every consumer measured here (raw loops and worker) gets these settings on top of the defaults.
# librdkafka postpones a partition's next fetch by fetch.queue.backoff.ms (default 1000) once
# its pre-fetch queue is over its thresholds: a raw loop fast enough to fill the queue then sits
# idle ~1 s per refill, which at 300k records halved its rate (560k -> 116-260k/s) and put a
# false R_framework of 1.0-1.2 on the report. The worker, slower per record, barely changes.
FETCH = {"fetch.queue.backoff.ms": 10}


def prefill(conf: dict, topic: str, codec: Codec, n: int) -> None:
    p = Producer({**conf, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    values = [codec.encode("noop", {"n": i, "name": f"user-{i}"}) for i in range(1000)]
    for i in range(n):
        hdrs = [(h.META, h.compact(f"{i:036d}", "noop"))]  # as emit writes a job
        while True:
            try:
                p.produce(topic, values[i % 1000], str(i).encode(), headers=hdrs)
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def raw(conf: dict, topic: str, codec: Codec, n: int, headers: bool = False) -> float:
    parsed = codec.catalogue.current("bench.Noop").parsed
    c = Consumer({**conf, **FETCH, "group.id": f"raw-{uuid.uuid4().hex}", "auto.offset.reset":
                  "earliest", "enable.auto.offset.store": False})
    c.subscribe([topic])
    count = 0
    first = 0.0
    reader = fastavro.schemaless_reader
    while count < n:
        msgs = c.consume(1000, 0.5)
        if not msgs:
            continue
        if not first:
            first = time.perf_counter()
        last: dict[int, int] = {}
        for m in msgs:
            if m.error():
                continue
            if headers:
                # As the worker must: find the job's type, id and attempt among the headers.
                job_type, job_id, attempt, _ = h.scan(m.headers())
                if job_type is None or job_id is None or attempt not in (None, b"1"):
                    raise SystemExit(f"record {m.offset()} lacks the prefill's job headers")
            buf = io.BytesIO(m.value())
            buf.seek(10)
            reader(buf, parsed, None)
            last[m.partition()] = m.offset()
            count += 1
        c.store_offsets(offsets=[TopicPartition(topic, p, o + 1) for p, o in last.items()])
    elapsed = time.perf_counter() - first
    c.close()
    return n / elapsed


def worker(kafka: KafkaConfig, catalogue, pfx: str, n: int, concurrency: int,
           listeners: bool, profile: str | None, reports: bool = False) -> float:
    app = App(catalogue, name="bench", topic_prefix=pfx)
    counter = itertools.count()
    first = [0.0]

    @app.job("noop")
    def noop(payload: dict, ctx) -> None:
        next(counter)

    bus = EventBus()
    obs = None
    if listeners:
        from streamjobs.listeners import install_default_listeners
        # As `streamjobs worker`, which also publishes worker reports when ``reports``.
        obs = install_default_listeners(bus, metrics_port=None, kafka=kafka if reports else None,
                                        topic_prefix=pfx)
    w = Worker(app, WorkerSettings(concurrency=concurrency, consumer_config=FETCH,
                                   group_id=f"sjbench-{uuid.uuid4().hex}"), kafka, bus)
    done = [0.0]
    cpu = [0.0, 0.0, 0]  # process CPU seconds at the first and the last job, jobs in between

    def watch() -> None:
        last = 0
        while True:
            c = next(counter)  # counts itself too: subtract the watcher's own ticks
            seen = c - last
            last += 1
            if seen and not first[0]:
                first[0] = time.perf_counter()
                cpu[0], cpu[2] = _cpu(), seen
            if seen >= n:
                done[0] = time.perf_counter()
                cpu[1], cpu[2] = _cpu(), seen - cpu[2]
                w.stop("bench done")
                return
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    if profile:
        import cProfile
        cProfile.runctx("w.run(install_signals=False)", globals(), locals(), profile)
    else:
        w.run(install_signals=False)
    if obs is not None:
        obs.close()
    cpu_us[listeners].append((cpu[1] - cpu[0]) / max(1, int(cpu[2])) * 1e6)
    return n / (done[0] - first[0])


# CPU per job of each kind of worker run (False: no listeners, True: default listeners), from
# the first job to the last: all threads of the process, start-up and group join excluded.
# Other processes on the machine change a rate more than they change this.
cpu_us: dict[bool, list[float]] = {False: [], True: []}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--jobs", "n", default=300_000, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--concurrency", default=4, show_default=True)
@click.option("--rounds", default=3, show_default=True, help="raw/worker/listeners rounds")
@click.option("--profile", default=None, help="write a cProfile of the worker run here")
@click.option("--profile-listeners", "listeners_profile", default=None,
              help="write a cProfile of the run with the default listeners here")
def main(bootstrap_servers: str, n: int, partitions: int, concurrency: int, rounds: int,
         profile: str | None, listeners_profile: str | None) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    catalogue = make_catalogue(partitions)
    # The worker runs as `streamjobs worker` runs it, with its process-wide GC tuning. The
    # tuning is process-wide, so the raw loop measured in this process gets it too (which only
    # makes the baseline faster: the ratio is conservative).
    tune_gc()
    codec = Codec(catalogue)
    pfx = prefix()
    names = create_topics(admin, catalogue, pfx, partitions)
    # The reports listener publishes here, as `streamjobs worker` does after `topics apply`.
    names.append(create_reports_topic(admin, pfx))
    try:
        t0 = time.perf_counter()
        prefill(conf, pfx + "noop", codec, n)
        print(f"prefilled {n} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results = []
        for i in range(rounds):
            raw_rate = raw(conf, pfx + "noop", codec, n)
            raw_h_rate = raw(conf, pfx + "noop", codec, n, headers=True)
            if i % 2:
                wl_rate = worker(kafka, catalogue, pfx, n, concurrency, True, None,
                                 reports=True)
            w_rate = worker(kafka, catalogue, pfx, n, concurrency, False,
                            profile if i == 0 else None)
            if not i % 2:
                wl_rate = worker(kafka, catalogue, pfx, n, concurrency, True,
                                 listeners_profile if i == 0 else None, reports=True)
            results.append({"raw": round(raw_rate), "raw_headers": round(raw_h_rate),
                            "worker": round(w_rate),
                            "worker_with_listeners": round(wl_rate),
                            "R": round(w_rate / raw_rate, 3),
                            "R_vs_headers": round(w_rate / raw_h_rate, 3),
                            "headers_us": round(1e6 / raw_h_rate - 1e6 / raw_rate, 2),
                            "headers_ceiling": round(raw_h_rate / raw_rate, 3),
                            "R_with_listeners": round(wl_rate / raw_rate, 3),
                            "R_listeners": round(wl_rate / w_rate, 3),
                            "cpu_us_per_job": round(cpu_us[False][-1], 2),
                            "cpu_us_per_job_with_listeners": round(cpu_us[True][-1], 2),
                            "R_listeners_cpu": round(cpu_us[False][-1] / cpu_us[True][-1], 3)})
            print(f"round {i + 1}: {results[-1]}", file=sys.stderr)
    finally:
        delete_topics(admin, names)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print(json.dumps({"jobs": n, "partitions": partitions, "concurrency": concurrency,
                      "rounds": rounds, "raw_jobs_per_s": median("raw"),
                      "raw_headers_jobs_per_s": median("raw_headers"),
                      "worker_jobs_per_s": median("worker"),
                      "worker_with_listeners_jobs_per_s": median("worker_with_listeners"),
                      "R_framework": median("R"),
                      "R_framework_with_listeners": median("R_with_listeners"),
                      "R_listeners": median("R_listeners"),
                      "R_listeners_cpu": median("R_listeners_cpu"),
                      "cpu_us_per_job": median("cpu_us_per_job"),
                      "cpu_us_per_job_with_listeners": median("cpu_us_per_job_with_listeners"),
                      "R_framework_vs_headers": median("R_vs_headers"),
                      "headers_us": median("headers_us"),
                      "headers_ceiling": median("headers_ceiling"),
                      "per_round": results}))


if __name__ == "__main__":
    main()
