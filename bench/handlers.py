"""Handlers that wait and handlers that compute: throughput against what the settings allow.

I/O-bound (in-process ``Worker``, default listeners, ``ordering="unordered"``: partition order
would cap the jobs running at once to the partitions): async handlers awaiting
``asyncio.sleep(0.02)`` at ``--async-concurrency`` (500) and sync handlers in
``time.sleep(0.02)`` at ``--sync-concurrency`` (64). Little's law bounds the rate at
concurrency / 20 ms (25,000 and 3,200 jobs/s); the figure is the rate measured between the
10th and 100th percent of the jobs (the ramp-up excluded) over that limit (target >= 0.9),
with the process's CPU time per job over the same stretch (``cpu_us_per_job``) and the load
average. The topic is filled before the worker starts, so the worker soon holds the log's end:
a resume after its in-flight bound then depends on ``fetch.wait.max.ms`` (docs/worker.md).

CPU-bound (the real ``streamjobs worker`` CLI, default listeners): handlers
spinning about 1 ms of pure Python (``bench/_cpu_app.py``, iterations calibrated here) with
``--processes 1`` then ``--processes 2``, each on topics of its own: once every child holds
partitions, ``--cpu-jobs`` jobs are produced; each child logs ``time count`` after every job and
the rate is the jobs over the time from the first job started to the last one done
(``speedup_all_running``: P2's rate while both children were running jobs, over P1's rate).
``speedup`` = P2 / P1 (target >= 1.7 on two free cores: a shared box
gives less). The children log at ``SJ_BENCH_LOG_LEVEL`` (warning). Prints one JSON line.

    python bench/handlers.py --io-jobs 100000 --sync-jobs 16000 --cpu-jobs 8000
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
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
from _common import create_reports_topic, create_topics, delete_topics, make_catalogue, prefix
from worker_throughput import FETCH, prefill

from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._worker import App, Worker, WorkerSettings
from streamjobs._worker.process import tune_gc
from streamjobs.events import EventBus
from streamjobs.listeners import install_default_listeners

ROOT = Path(__file__).resolve().parent.parent
WAIT = 0.02


def io_rate(kafka: KafkaConfig, catalogue: Any, pfx: str, n: int, concurrency: int,
            use_async: bool) -> tuple[float, float]:
    """Jobs/s of handlers that wait ``WAIT`` s, from the n/10-th job to the n-th, and the
    process's CPU seconds per job over the same stretch."""
    app = App(catalogue, name="bench-io", topic_prefix=pfx)
    counter = itertools.count()
    if use_async:
        @app.job("noop")
        async def wait_async(payload: dict[str, Any], ctx: Any) -> None:
            await asyncio.sleep(WAIT)
            next(counter)
    else:
        @app.job("noop")
        def wait_sync(payload: dict[str, Any], ctx: Any) -> None:
            time.sleep(WAIT)
            next(counter)

    bus = EventBus()
    obs = install_default_listeners(bus, metrics_port=None, kafka=kafka, topic_prefix=pfx)
    w = Worker(app, WorkerSettings(concurrency=concurrency, ordering="unordered",
                                   consumer_config=FETCH,
                                   group_id=f"sjbench-io-{uuid.uuid4().hex}"), kafka, bus)
    marks: dict[int, float] = {}
    cpu: dict[int, float] = {}

    def watch() -> None:
        ticks = 0
        start = n // 10
        while True:
            seen = next(counter) - ticks  # counts itself too: subtract the watcher's ticks
            ticks += 1
            if seen >= start and start not in marks:
                marks[start] = time.perf_counter()
                cpu[start] = time.process_time()
                marks[-1] = seen
            if seen >= n:
                marks[n] = time.perf_counter()
                cpu[n] = time.process_time()
                marks[-2] = seen
                w.stop("bench done")
                return
            time.sleep(0.002)

    threading.Thread(target=watch, daemon=True).start()
    w.run(install_signals=False)
    obs.close()
    jobs = marks[-2] - marks[-1]
    return jobs / (marks[n] - marks[n // 10]), (cpu[n] - cpu[n // 10]) / jobs


def calibrate(target_s: float = 0.001) -> int:
    """Iterations of ``_cpu_app.spin`` that take ``target_s`` here (best of a few)."""
    from _cpu_app import spin

    n = 20_000
    best = min(_timed(spin, n) for _ in range(5))
    return max(1, round(n * target_s / best))


def _timed(fn: Any, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return time.perf_counter() - t


def cpu_rate(bootstrap: str, conf: dict[str, Any], codec: Codec, schemas: Path, pfx: str,
             processes: int, spin: int, jobs: int, partitions: int) -> dict[str, Any]:
    """Start ``streamjobs worker --processes P``, wait until its P members hold partitions,
    then produce ``jobs`` and time them from the first job started to the last one done."""
    out = Path(tempfile.mkdtemp(prefix="sj-bench-cpu-"))
    topic = pfx + "noop"
    group = f"sjbench-cpu-{uuid.uuid4().hex}"
    env = {**os.environ, "SJ_BENCH_SCHEMAS": str(schemas), "SJ_BENCH_OUT": str(out),
           "SJ_BENCH_SPIN": str(spin), "STREAMJOBS_BOOTSTRAP_SERVERS": bootstrap,
           "PYTHONPATH": str(ROOT / "bench")}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "streamjobs"), "worker", "_cpu_app:app",
         "--processes", str(processes), "--topic-prefix", pfx, "--metrics-port", "0",
         "--log-level", os.environ.get("SJ_BENCH_LOG_LEVEL", "warning"), "--group-id", group],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    try:
        _wait_members(AdminClient(conf), group, processes, topic, partitions)
        prefill(conf, topic, codec, jobs)
        deadline = time.monotonic() + 600
        while _done(out) < jobs:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"--processes {processes}: {_done(out)} of {jobs} jobs done")
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    series = [_points(f) for f in out.iterdir()]
    begin = min(p[0][0] for p in series)
    end = max(p[-1][0] for p in series)
    # While every process was running jobs (a rebalance can leave one idle for seconds).
    lo = max(p[0][0] for p in series)
    hi = min(p[-1][0] for p in series)
    both = sum(_at(p, hi) - _at(p, lo) for p in series) / (hi - lo) if hi > lo else None
    return {"processes": processes, "jobs": jobs, "per_process": [p[-1][1] for p in series],
            "seconds": round(end - begin, 2), "jobs_per_s": round(jobs / (end - begin)),
            "all_running_s": round(max(0.0, hi - lo), 2),
            "all_running_jobs_per_s": None if both is None else round(both)}


def _points(f: Path) -> list[tuple[float, int]]:
    return [(float(t), int(c)) for t, c in (line.split() for line in f.read_text().splitlines())]


def _at(points: list[tuple[float, int]], t: float) -> float:
    """Jobs done by ``t`` (linear between the logged points)."""
    prev = points[0]
    for cur in points:
        if cur[0] >= t:
            if cur[0] == prev[0]:
                return cur[1]
            return prev[1] + (cur[1] - prev[1]) * (t - prev[0]) / (cur[0] - prev[0])
        prev = cur
    return points[-1][1]


def _done(out: Path) -> int:
    return sum(p[-1][1] for p in map(_points, out.iterdir()) if p)


def _wait_members(admin: AdminClient, group: str, members: int, topic: str,
                  partitions: int) -> None:
    """Until ``group`` has ``members`` members sharing every partition of ``topic`` (seen
    three times in a row: a cooperative rebalance goes through intermediate assignments)."""
    deadline = time.monotonic() + 120
    seen = 0
    while time.monotonic() < deadline:
        try:
            desc = admin.describe_consumer_groups([group])[group].result(10)
            held = [sum(tp.topic == topic for tp in m.assignment.topic_partitions)
                    for m in desc.members if m.assignment]
            ok = (len(held) == members and min(held) > 0 and sum(held) == partitions
                  and str(desc.state).endswith("STABLE"))
        except Exception:  # the group does not exist until its first join
            ok = False
        seen = seen + 1 if ok else 0
        if seen >= 3:
            return
        time.sleep(0.5)
    raise SystemExit(f"group {group}: {members} members never shared the partitions of {topic}")


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--partitions", default=6, show_default=True)
@click.option("--io-jobs", default=100_000, show_default=True, help="async phase")
@click.option("--sync-jobs", default=16_000, show_default=True, help="sync phase")
@click.option("--cpu-jobs", default=8_000, show_default=True, help="CPU phase, per P")
@click.option("--async-concurrency", default=500, show_default=True)
@click.option("--sync-concurrency", default=64, show_default=True)
@click.option("--phases", default="async,sync,cpu", show_default=True)
def main(bootstrap_servers: str, partitions: int, io_jobs: int, sync_jobs: int, cpu_jobs: int,
         async_concurrency: int, sync_concurrency: int, phases: str) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    catalogue = make_catalogue(partitions)
    codec = Codec(catalogue)
    tune_gc()
    wanted = {p.strip() for p in phases.split(",")}
    result: dict[str, Any] = {"partitions": partitions, "wait_ms": WAIT * 1000}
    for phase, n, conc, use_async in (("async", io_jobs, async_concurrency, True),
                                      ("sync", sync_jobs, sync_concurrency, False)):
        if phase not in wanted:
            continue
        pfx = prefix()
        names = create_topics(admin, catalogue, pfx, partitions)
        names.append(create_reports_topic(admin, pfx))
        try:
            prefill(conf, pfx + "noop", codec, n)
            rate, cpu_s = io_rate(kafka, catalogue, pfx, n, conc, use_async)
        finally:
            delete_topics(admin, names)
        limit = conc / WAIT
        result[f"io_{phase}"] = {"jobs": n, "concurrency": conc, "jobs_per_s": round(rate),
                                 "limit": round(limit), "ratio": round(rate / limit, 3),
                                 "cpu_us_per_job": round(cpu_s * 1e6, 1),
                                 "load_avg": os.getloadavg()[0]}
        print(f"{phase}: {result[f'io_{phase}']}", file=sys.stderr)
    if "cpu" in wanted:
        os.environ["SJ_BENCH_SCHEMAS"] = str(catalogue.schemas_dir)
        spin = calibrate()
        runs = []
        for p in (1, 2):
            # Topics of its own per run: a fresh group reads a topic from its beginning.
            pfx = prefix()
            names = create_topics(admin, catalogue, pfx, partitions)
            names.append(create_reports_topic(admin, pfx))
            try:
                runs.append(cpu_rate(bootstrap_servers, conf, codec, catalogue.schemas_dir,
                                     pfx, p, spin, cpu_jobs, partitions))
            finally:
                delete_topics(admin, names)
        p1, p2 = runs
        result["cpu"] = {"spin": spin, "job_ms": 1.0, "p1": p1, "p2": p2,
                         "speedup": round(p2["jobs_per_s"] / p1["jobs_per_s"], 3),
                         "speedup_all_running": None if p2["all_running_jobs_per_s"] is None
                         else round(p2["all_running_jobs_per_s"] / p1["jobs_per_s"], 3),
                         "cpus": os.cpu_count(), "load_avg": os.getloadavg()[0]}
        print(f"cpu: {result['cpu']}", file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
