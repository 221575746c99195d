"""Created-to-handler latency at a fixed rate vs raw produce-to-consume latency.

Produces jobs at ``--rate`` per second for ``--seconds`` (each carries sj-created-at in ms) and
measures, per round:

- the streamjobs worker (latency = handler start - created) and, *at the same time*, a raw
  confluent-kafka poll loop in a process of its own reading the same records (latency =
  receive time - created). ``ratio_p99_alongside`` = worker p99 / that raw p99 is the target
  figure (<= 1.5): on this shared 2-core machine one 10 s stretch's p99 can be 5x the next
  one's, and measured side by side a slow stretch hits both;
- a raw loop alone just before the worker (``ratio_p99``, the same comparison a phase apart;
  it swung from 0.25 to 15.8 between rounds of one run);
- one raw consumer of the job topic and its seven retry tiers (all idle): the design the
  worker left. With those partitions in every fetch its tail was 2-4x that of the one-topic
  loop; the worker reads the tiers with a second consumer (docs/worker.md, "Two consumers"),
  and ``ratio_p99_same_topics`` shows what that bought.

Rounds run back to back ``--rounds`` times; each round's figures go to stderr, the medians
(and every round's ratios in ``*_rounds``) to stdout as the last JSON line.
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
import sys
import threading
import time
import uuid
from typing import Any

import click
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import create_topics, delete_topics, make_catalogue, prefix

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import dlq_topic
from streamjobs._worker import App, Worker, WorkerSettings
from streamjobs._worker.process import tune_gc


def pace(conf: dict, topic: str, codec: Codec, rate: int, seconds: float) -> None:
    """Produces at ``rate`` from a separate process, as a real emitting service would: the
    producer then never competes with the measured consumer for this process's GIL."""
    value = codec.encode("noop", {"n": 1, "name": "x"})
    fp = codec.fingerprint("noop").hex().encode()
    proc = multiprocessing.get_context("spawn").Process(
        target=_pace, args=(_plain(conf), topic, value, fp, rate, seconds))
    proc.start()
    proc.join(seconds + 120)


def _plain(conf: dict) -> dict:
    """Settings only: the log forwarder and error callback of ``client_settings()`` do not
    pickle into a spawned process."""
    return {k: v for k, v in conf.items() if isinstance(v, str | int | float | bool)}


def _pace(conf: dict, topic: str, value: bytes, fp: bytes, rate: int, seconds: float) -> None:
    p = Producer({**conf, "linger.ms": 0})
    n = int(rate * seconds)
    start = time.perf_counter()
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        now = str(int(time.time() * 1000)).encode()
        p.produce(topic, value, str(i).encode(), headers=[
            (h.JOB_ID, str(i).encode()), (h.JOB_TYPE, b"noop"), (h.ATTEMPT, b"1"),
            (h.CREATED_AT, now), (h.SCHEMA, fp)])
        p.poll(0)
    p.flush(30)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def wait_assigned(consumer_ready: threading.Event) -> None:
    consumer_ready.wait(30)
    time.sleep(1.0)


def raw(conf: dict, topic: str, codec: Codec, rate: int, seconds: float,
        subscribe: list[str] | None = None) -> list[float]:
    c = Consumer({**conf, "group.id": f"lat-raw-{uuid.uuid4().hex}",
                  "auto.offset.reset": "latest"})
    ready = threading.Event()
    c.subscribe(subscribe or [topic], on_assign=lambda *_: ready.set())
    lat: list[float] = []
    n = int(rate * seconds)
    t = threading.Thread(target=lambda: (wait_assigned(ready),
                                         pace(conf, topic, codec, rate, seconds)))
    t.start()
    receive(c, lat, n, seconds + 60)
    t.join()
    c.close()
    return lat


def receive(c: Consumer, lat: list[float], n: int, timeout: float) -> None:
    """Poll until ``n`` latencies (receive time - sj-created-at, ms) or ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while len(lat) < n and time.monotonic() < deadline:
        m = c.poll(0.1)
        if m is None or m.error():
            continue
        created = h.get_int(m.headers(), h.CREATED_AT) or 0
        lat.append(time.time() * 1000 - created)


def _raw_alongside(conf: dict, topic: str, n: int, seconds: float, ready: Any,
                   out: Any) -> None:
    """The raw loop in a process of its own, run while the worker runs: the same records at
    the same moments, so a busy stretch of the machine hits both sides of the ratio."""
    c = Consumer({**conf, "group.id": f"lat-along-{uuid.uuid4().hex}",
                  "auto.offset.reset": "latest"})
    c.subscribe([topic], on_assign=lambda *_: ready.set())
    lat: list[float] = []
    receive(c, lat, n, seconds + 90)
    c.close()
    out.put(lat)


def worker(kafka: KafkaConfig, catalogue, pfx: str, codec: Codec, rate: int,
           seconds: float) -> tuple[list[float], list[float]]:
    """The worker's latencies, and those of a raw consumer process running alongside."""
    app = App(catalogue, name="lat", topic_prefix=pfx)
    lat: list[float] = []
    n = int(rate * seconds)
    since = time.time() * 1000  # the raw phase's records are on the topic too: skip them

    @app.job("noop")
    def noop(payload: dict, ctx) -> None:
        created = ctx.created_at_ms or 0
        if created >= since:
            lat.append(time.time() * 1000 - created)

    from streamjobs.events import EventBus, PartitionsAssigned
    bus = EventBus()
    ready = threading.Event()
    job_topic = pfx + "noop"  # the wait consumer's assignment may come first
    bus.subscribe(lambda e: any(t == job_topic for t, _ in e.partitions) and ready.set(),
                  PartitionsAssigned)
    # "latest", as the raw loop: a new group would otherwise start by draining the earlier
    # phases' records, and the first paced jobs would queue behind them.
    w = Worker(app, WorkerSettings(concurrency=4, group_id=f"lat-w-{uuid.uuid4().hex}",
                                   consumer_config={"auto.offset.reset": "latest"}),
               kafka, bus)

    ctx = multiprocessing.get_context("spawn")
    along_ready, along_out = ctx.Event(), ctx.Queue()
    along = ctx.Process(target=_raw_alongside, args=(_plain(kafka.client_settings()), job_topic, n,
                                                     seconds, along_ready, along_out))
    along.start()
    along_lat: list[float] = []

    def drive() -> None:
        along_ready.wait(60)
        wait_assigned(ready)
        pace(kafka.client_settings(), job_topic, codec, rate, seconds)
        deadline = time.monotonic() + 30
        while len(lat) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        along_lat.extend(along_out.get(timeout=60))
        w.stop("bench done")

    threading.Thread(target=drive, daemon=True).start()
    w.run(install_signals=False)
    along.join(30)
    return lat, along_lat


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--rate", default=1000, show_default=True)
@click.option("--seconds", default=10.0, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--rounds", default=3, show_default=True,
              help="raw, worker, raw-with-tiers back to back this many times; the ratios "
                   "reported are the medians of the rounds' ratios")
def main(bootstrap_servers: str, rate: int, seconds: float, partitions: int,
         rounds: int) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    catalogue = make_catalogue(partitions)
    codec = Codec(catalogue)
    pfx = prefix()
    names = create_topics(admin, catalogue, pfx, partitions)
    runs = []
    # As `streamjobs worker` runs: start-up objects frozen, generation-0 threshold raised (the
    # raw phases in this process get it too).
    tune_gc()
    try:
        # Not measured: the first seconds on fresh topics (a just-started broker's JIT, new
        # leaders) gave one raw phase a p99 of 1.5 s.
        raw(conf, pfx + "noop", codec, rate, 2.0)
        for _ in range(rounds):
            r = raw(conf, pfx + "noop", codec, rate, seconds)
            wl, along = worker(kafka, catalogue, pfx, codec, rate, seconds)
            # The job topic and its retry tiers in one consumer (what the worker no longer
            # does).
            ra = raw(conf, pfx + "noop", codec, rate, seconds,
                     subscribe=[n for n in names if n != dlq_topic(pfx + "noop")])
            runs.append(summarise(r, wl, ra, along))
            print(json.dumps(runs[-1]), file=sys.stderr)
    finally:
        delete_topics(admin, names)
    out: dict = {"rate": rate, "seconds": seconds, "rounds": rounds}
    for key in runs[0]:
        out[key] = statistics.median(run[key] for run in runs)
    for key in ("ratio_p99", "ratio_p99_alongside", "ratio_p99_same_topics", "worker_p99_ms",
                "raw_p99_ms", "raw_alongside_p99_ms"):
        out[key + "_rounds"] = [run[key] for run in runs]
    print(json.dumps(out))


def summarise(r: list[float], wl: list[float], ra: list[float], along: list[float]) -> dict:
    """One round's figures (ms, and ratios of p99s)."""
    out = {"raw_n": len(r), "worker_n": len(wl), "raw_alongside_n": len(along),
           "raw_alongside_p50_ms": round(pct(along, 0.5), 1),
           "raw_alongside_p99_ms": round(pct(along, 0.99), 1),
           "raw_p50_ms": round(pct(r, 0.5), 1), "raw_p99_ms": round(pct(r, 0.99), 1),
           "worker_p50_ms": round(pct(wl, 0.5), 1), "worker_p99_ms": round(pct(wl, 0.99), 1),
           "raw_same_topics_p50_ms": round(pct(ra, 0.5), 1),
           "raw_same_topics_p99_ms": round(pct(ra, 0.99), 1)}
    out["ratio_p50"] = round(out["worker_p50_ms"] / max(out["raw_p50_ms"], 0.1), 2)
    out["ratio_p99"] = round(out["worker_p99_ms"] / max(out["raw_p99_ms"], 0.1), 2)
    out["ratio_p99_alongside"] = round(
        out["worker_p99_ms"] / max(out["raw_alongside_p99_ms"], 0.1), 2)
    out["ratio_p99_same_topics"] = round(
        out["worker_p99_ms"] / max(out["raw_same_topics_p99_ms"], 0.1), 2)
    return out


if __name__ == "__main__":
    main()
