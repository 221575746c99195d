"""Delay from a status transition being written to its appearance on the dashboard's SSE
streams, at a fixed job rate, against a raw consumer of the status topic as the baseline.

    .venv/bin/python bench/web_sse.py [--rate 1000] [--seconds 10] [--sample 50]

A writer process emits, per job, ``emitted`` and (50 jobs later, ~50 ms at 1,000 jobs/s)
``succeeded`` through ``StatusWriter`` (each transition's ``at_ms`` is its write time), so the
topic takes 2 x rate records/s. ``streamjobs web`` runs as a subprocess on a private status topic.
Measured at the same time, each as receive time - ``at_ms`` of the newest transition:

- ``/api/events`` (every update of every job, one stream) in this process;
- ``/api/jobs/{id}/events`` for ``--sample`` jobs, one stream each, opened before any write;
- a raw confluent-kafka consumer of the status topic in a process of its own (the baseline:
  what Kafka alone costs on this broker).

The last stdout line is JSON: p50/p99/max per path, ``ratio_p99`` (firehose p99 / raw p99),
the events expected and received. Target: SSE p99 <= 1000 ms (issue #15).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import click
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamjobs._ops.topics import STATUS_CONFIG, STATUS_PARTITIONS  # noqa: E402
from streamjobs._status import Transition, status_topic  # noqa: E402
from streamjobs._status.record import decode  # noqa: E402
from streamjobs._status.writer import StatusWriter  # noqa: E402
from tests.ports import free_port_block  # noqa: E402

LAG_JOBS = 50  # a job succeeds this many jobs after it was emitted


def now_ms() -> float:
    return time.time() * 1000


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 1)


def summary(xs: list[float]) -> dict[str, Any]:
    return {"n": len(xs), "p50_ms": pct(xs, 0.5), "p99_ms": pct(xs, 0.99),
            "max_ms": round(max(xs), 1) if xs else None}


def _write(bootstrap: str, prefix: str, ids: list[str], rate: int, out: Any) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    writer = StatusWriter.open(producer, prefix)
    assert writer is not None
    topic = "bench.jobs"
    start = time.perf_counter()
    for i in range(len(ids) + LAG_JOBS):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        at = int(now_ms())
        while True:
            try:
                if i < len(ids):
                    writer.write(ids[i], "noop", Transition("emitted", at, topic=topic))
                if i >= LAG_JOBS:
                    writer.write(ids[i - LAG_JOBS], "noop",
                                 Transition("succeeded", at, worker="bench", topic=topic))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    out.put(time.perf_counter() - start)
    producer.flush(30)


def _raw(bootstrap: str, topic: str, expected: int, seconds: float, out: Any) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-raw-{uuid.uuid4()}",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(STATUS_PARTITIONS)])
    delays: list[float] = []
    deadline = time.monotonic() + seconds
    while len(delays) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(500, 0.2):
            if msg.error():
                continue
            parsed = decode(msg.value())
            if parsed is not None:
                delays.append(now_ms() - parsed[1].at_ms)
    consumer.close()
    out.put(delays)


class Stream(threading.Thread):
    """Reads one SSE stream; records receive time - newest transition's at_ms per event."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("GET", path, headers={"Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.status
        self.delays: list[float] = []
        self.stop = False

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError, http.client.HTTPException):
            while not self.stop:
                line = self.resp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    received = now_ms()
                    doc = json.loads(line[6:])
                    self.delays.append(received - doc["transitions"][-1]["at_ms"])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("streamjobs web exited")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("streamjobs web not healthy")


@click.command()
@click.option("--rate", type=int, default=1000, show_default=True, help="jobs per second")
@click.option("--seconds", type=float, default=10, show_default=True)
@click.option("--sample", type=int, default=50, show_default=True,
              help="jobs followed each by its own /api/jobs/{id}/events stream")
@click.option("--bootstrap-servers", default="127.0.0.1:9092", show_default=True)
def main(rate: int, seconds: float, sample: int, bootstrap_servers: str) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}."
    topic = status_topic(prefix)
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    admin.create_topics([NewTopic(topic, STATUS_PARTITIONS, 1,
                                  config=STATUS_CONFIG)])[topic].result(30)
    port = free_port_block(1)
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": bootstrap_servers,
           "STREAMJOBS_WEB_TOKEN": ""}
    web = subprocess.Popen([str(Path(sys.executable).parent / "streamjobs"), "web", "--port",
                            str(port), "--topic-prefix", prefix, "--schemas",
                            str(ROOT / "bench" / "no-catalogue")],
                           env=env, stdout=log, stderr=log)
    streams: list[Stream] = []
    try:
        wait_healthy(port, web)
        n = int(rate * seconds)
        ids = [str(uuid.uuid4()) for _ in range(n)]
        followed = ids[:: max(1, n // sample)][:sample]
        firehose = Stream(port, "/api/events")
        streams = [firehose, *(Stream(port, f"/api/jobs/{i}/events") for i in followed)]
        for s in streams:
            s.start()
        ctx = multiprocessing.get_context("spawn")
        raw_out = ctx.Queue()
        raw = ctx.Process(target=_raw, args=(bootstrap_servers, topic, 2 * n, seconds + 60,
                                              raw_out))
        raw.start()
        time.sleep(2)  # the raw consumer assigned, every stream open
        wrote = ctx.Queue()
        writer = ctx.Process(target=_write, args=(bootstrap_servers, prefix, ids, rate, wrote))
        writer.start()
        wrote_s: float = wrote.get(timeout=seconds + 120)
        writer.join(60)
        deadline = time.monotonic() + 30
        while len(firehose.delays) < 2 * n and time.monotonic() < deadline:
            time.sleep(0.2)
        raw_delays: list[float] = raw_out.get(timeout=120)
        raw.join(30)
    finally:
        for s in streams:
            s.stop = True
            with contextlib.suppress(OSError):
                s.conn.sock.close() if s.conn.sock else None
        web.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            web.wait(15)
        if web.poll() is None:
            web.kill()
        log.close()
        admin.delete_topics([topic])[topic].result(30)
    per_job = [d for s in streams[1:] for d in s.delays]
    fire, rawsum = summary(firehose.delays), summary(raw_delays)
    result = {
        "rate_jobs_per_s": rate, "seconds": seconds,
        "achieved_jobs_per_s": round((n + LAG_JOBS) / wrote_s),
        "transitions_written": 2 * n, "firehose_received": len(firehose.delays),
        "per_job_streams": len(streams) - 1, "per_job_received": len(per_job),
        "per_job_expected": 2 * len(streams[1:]),
        "sse_p50_ms": fire["p50_ms"], "sse_p99_ms": fire["p99_ms"], "sse_max_ms": fire["max_ms"],
        "per_job_p99_ms": summary(per_job)["p99_ms"],
        "per_job_max_ms": summary(per_job)["max_ms"],
        "raw_p50_ms": rawsum["p50_ms"], "raw_p99_ms": rawsum["p99_ms"],
        "ratio_p99": round(fire["p99_ms"] / rawsum["p99_ms"], 2)
        if fire["p99_ms"] and rawsum["p99_ms"] else None,
    }
    print(json.dumps(result, indent=2), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
