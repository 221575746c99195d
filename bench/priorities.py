"""High-priority latency on a saturated worker vs on an idle one (priority lanes, #16 item 4).

One job type per policy (``weighted``, ``strict``), lanes high/normal/low, a sync handler taking
``--job-ms``. Per policy, in one run on one broker:

- **idle**: a worker with nothing else to do gets high jobs at ``--rate`` per second for
  ``--seconds``; latency = handler start - the job's creation (ms);
- **saturated**: the same worker set-up with a backlog of low jobs larger than it can run in
  the phase (every thread busy throughout), and the same trickle of high jobs.

``ratio_p99`` = saturated p99 / idle p99 of the high jobs (target <= 2). ``low_done`` counts the
low jobs run during the saturated phase (weighted keeps them moving; strict may not). Each
phase's figures go to stderr, the summary to stdout as the last JSON line.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import click
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SCHEMA, delete_topics

from streamjobs._config import KafkaConfig
from streamjobs._ops import topics
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App, JobContext, Worker, WorkerSettings

POLICIES = ("weighted", "strict")


def catalogue_dir(partitions: int) -> Path:
    d = Path(tempfile.mkdtemp(prefix="sj-bench-prio-"))
    (d / "bench.Noop.v1.avsc").write_text(json.dumps(SCHEMA))
    (d / "catalogue.toml").write_text("".join(
        f'[jobs.{p}]\nschema = "bench.Noop"\ntopic = "{p}"\npartitions = {partitions}\n'
        f'priorities = ["high", "normal", "low"]\npriority_policy = "{p}"\n'
        for p in POLICIES))
    return d


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, math.ceil(0.99 * len(s)) - 1)]


class Phase:
    """One worker running one policy's job type; records the high jobs' latencies."""

    def __init__(self, catalogue: Catalogue, kafka: KafkaConfig, policy: str, job_ms: float,
                 concurrency: int, tag: str) -> None:
        self.high: list[float] = []  # jobs named ``tag`` (earlier phases' are read again)
        self.low_done = 0
        app = App(catalogue, name=f"bench-prio-{uuid.uuid4().hex[:6]}",
                  topic_prefix=catalogue.topic_prefix)
        pause = job_ms / 1000.0

        @app.job(policy)
        def handle(payload: dict[str, Any], ctx: JobContext) -> None:
            name = payload["name"]
            if name == tag:
                created = ctx.created_at_ms or 0
                self.high.append(time.time() * 1000.0 - created)
            elif name == "low":
                self.low_done += 1
            time.sleep(pause)

        self.worker = Worker(app, WorkerSettings(concurrency=concurrency, job_types=(policy,),
                                                 group_id=f"bench-prio-{uuid.uuid4().hex[:8]}"),
                             kafka)
        self.thread = threading.Thread(target=self.worker.run,
                                       kwargs={"install_signals": False}, daemon=True)
        self.thread.start()

    def wait_assigned(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(self.worker.parts) >= 3:  # the partitions of the three lanes (>= 1 each)
                return
            time.sleep(0.05)
        raise RuntimeError("worker got no assignment within 60 s")

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(60)


def trickle(producer: Producer, policy: str, rate: float, seconds: float, tag: str) -> int:
    n = int(rate * seconds)
    start = time.monotonic()
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        producer.emit(policy, {"n": i, "name": tag}, priority="high")
    return n


def run_policy(catalogue: Catalogue, kafka: KafkaConfig, producer: Producer, policy: str, *,
               rate: float, seconds: float, job_ms: float, concurrency: int) -> dict[str, Any]:
    out: dict[str, Any] = {"policy": policy}
    # idle
    ph = Phase(catalogue, kafka, policy, job_ms, concurrency, "high-idle")
    ph.wait_assigned()
    trickle(producer, policy, rate, 1.0, "warm-up")  # not measured: first fetches, JIT
    time.sleep(0.5)
    n = trickle(producer, policy, rate, seconds, "high-idle")
    _wait(lambda: len(ph.high) >= n, 30)
    ph.stop()
    out["idle_n"] = len(ph.high)
    out["idle_p50_ms"] = round(sorted(ph.high)[len(ph.high) // 2], 2)
    out["idle_p99_ms"] = round(p99(ph.high), 2)
    # saturated: more low jobs than the phase can run
    backlog = int(concurrency * (seconds + 10) * 1000.0 / job_ms)
    for i in range(backlog):
        producer.emit(policy, {"n": i, "name": "low"}, key=str(i), priority="low")
    producer.flush(60)
    ph = Phase(catalogue, kafka, policy, job_ms, concurrency, "high-sat")
    ph.wait_assigned()
    _wait(lambda: ph.low_done >= concurrency * 20, 60)
    low_alone = ph.low_done
    time.sleep(2.0)
    out["low_alone_per_s"] = round((ph.low_done - low_alone) / 2.0, 1)
    trickle(producer, policy, rate, 1.0, "warm-up")
    low_before = ph.low_done
    t0 = time.monotonic()
    n = trickle(producer, policy, rate, seconds, "high-sat")
    _wait(lambda: len(ph.high) >= n, 60)
    elapsed = time.monotonic() - t0
    low_done = ph.low_done - low_before
    saturated = ph.low_done < backlog
    ph.stop()
    out.update({"backlog": backlog, "saturated": saturated, "sat_n": len(ph.high),
                "sat_p50_ms": round(sorted(ph.high)[len(ph.high) // 2], 2),
                "sat_p99_ms": round(p99(ph.high), 2),
                "low_done": low_done, "low_per_s": round(low_done / elapsed, 1)})
    out["ratio_p99"] = round(out["sat_p99_ms"] / out["idle_p99_ms"], 3)
    out["low_share"] = round(out["low_per_s"] / max(out["low_alone_per_s"], 0.1), 3)
    print(json.dumps(out), file=sys.stderr)
    return out


def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the phase's jobs")
        time.sleep(0.02)


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--rate", default=20.0, show_default=True, help="high jobs per second")
@click.option("--seconds", default=10.0, show_default=True, help="length of each phase")
@click.option("--job-ms", default=5.0, show_default=True, help="handler time per job")
@click.option("--concurrency", default=4, show_default=True)
@click.option("--partitions", default=4, show_default=True,
              help="per lane topic (>= concurrency: one task per partition, so fewer low "
                   "partitions than threads would leave threads idle)")
def main(bootstrap_servers: str, rate: float, seconds: float, job_ms: float, concurrency: int,
         partitions: int) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    schemas = catalogue_dir(partitions)
    pfx = f"bench-{uuid.uuid4().hex[:8]}."
    catalogue = Catalogue.load(schemas, topic_prefix=pfx)
    names = [s.name for s in topics.desired_topics(catalogue) if s.name.startswith(pfx)]
    admin = AdminClient(kafka.client_settings())
    producer = Producer(catalogue, kafka, linger_ms=0)
    runs = []
    try:
        topics.apply(kafka, catalogue)
        for policy in POLICIES:
            runs.append(run_policy(catalogue, kafka, producer, policy, rate=rate,
                                   seconds=seconds, job_ms=job_ms, concurrency=concurrency))
    finally:
        producer.close()
        delete_topics(admin, names)
        shutil.rmtree(schemas, ignore_errors=True)
    out: dict[str, Any] = {"rate": rate, "seconds": seconds, "job_ms": job_ms,
                           "concurrency": concurrency}
    for run in runs:
        for key, value in run.items():
            if key != "policy":
                out[f"{run['policy']}_{key}"] = value
    out["ratio_p99"] = out["weighted_ratio_p99"]  # the default policy's figure
    print(json.dumps(out))


if __name__ == "__main__":
    main()
