"""Retry lateness: how late retried jobs run after their due time while the worker is busy.

One in-process worker (concurrency 4) runs a steady stream of normal jobs (``--background-rate``
per second) and, spread over ``--spread`` seconds, ``--per-delay`` jobs for each retry delay
(1 s, 5 s, 30 s) whose first attempt raises ``Retry(after=delay)``. The second attempt records
``lateness = handler start - sj-due-at``. Never negative (a start before sj-due-at is counted
as ``early``); target p99 <= 1000 ms. The last line is one JSON object with every figure.

    .venv/bin/python bench/retry_lateness.py [--per-delay 100] [--background-rate 300]
"""

from __future__ import annotations

import contextlib
import json
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

from streamjobs._config import KafkaConfig
from streamjobs._ops.topics import apply, desired_topics
from streamjobs._producer import Producer
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App, JobContext, Worker, WorkerSettings
from streamjobs.errors import Retry
from streamjobs.events import EventBus, PartitionsAssigned

ROOT = Path(__file__).resolve().parent.parent
DELAYS = (1.0, 5.0, 30.0)
TARGET_P99_MS = 1000.0


def catalogue(tmp: Path, topic: str) -> Catalogue:
    shutil.copy(ROOT / "tests" / "faults" / "schemas" / "faults.Job.v1.avsc", tmp)
    (tmp / "catalogue.toml").write_text(
        f'[jobs.job]\nschema = "faults.Job"\ntopic = "{topic}"\nkey_field = "key"\n'
        f'partitions = 6\nretry = {{ delays = ["1s", "5s", "30s"], max_attempts = 2 }}\n')
    return Catalogue.load(tmp)


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def run(kafka: KafkaConfig, per_delay: int, background_rate: int, spread: float) -> dict[str, Any]:
    topic = f"bench-retry-{uuid.uuid4().hex[:8]}.jobs"
    tmp = Path(tempfile.mkdtemp(prefix="sj-bench-retry-"))
    cat = catalogue(tmp, topic)
    apply(kafka, cat)
    lateness: dict[float, list[float]] = {d: [] for d in DELAYS}
    early: dict[float, int] = dict.fromkeys(DELAYS, 0)
    background = [0]
    app = App(cat, name="retry-lateness")

    @app.job("job")
    def job(payload: dict[str, Any], ctx: JobContext) -> None:
        delay = payload["work_ms"] / 1000  # the retry delay rides in work_ms (ms)
        if not delay:
            background[0] += 1
            return
        if ctx.attempt == 1:
            raise Retry(after=delay)
        due = int(ctx.header("sj-due-at") or 0)
        late = time.time() * 1000 - due
        lateness[delay].append(late)
        if late < 0:
            early[delay] += 1

    bus = EventBus()
    ready = threading.Event()
    bus.subscribe(lambda e: ready.set(), PartitionsAssigned)
    worker = Worker(app, WorkerSettings(concurrency=4, group_id=f"{topic}-g"), kafka, bus)
    expected = per_delay * len(DELAYS)

    def drive() -> None:
        ready.wait(60)
        time.sleep(1.0)
        with Producer(cat, kafka) as p:
            start = time.monotonic()
            n_bg = int(background_rate * spread)
            retries = [(i * spread / expected, DELAYS[i % len(DELAYS)]) for i in range(expected)]
            bg = [(i / background_rate, 0.0) for i in range(n_bg)]
            for i, (at, delay) in enumerate(sorted(retries + bg)):
                ahead = start + at - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
                p.emit("job", {"n": i, "key": f"k{i}", "work_ms": int(delay * 1000)})
            # keep the worker busy until the last retry is due
            end = time.monotonic() + max(DELAYS) + 2
            i = 0
            while time.monotonic() < end and sum(map(len, lateness.values())) < expected:
                p.emit("job", {"n": -i, "key": f"b{i}", "work_ms": 0})
                i += 1
                time.sleep(1 / background_rate)
        deadline = time.monotonic() + 30
        while sum(map(len, lateness.values())) < expected and time.monotonic() < deadline:
            time.sleep(0.1)
        worker.stop("bench done")

    threading.Thread(target=drive, daemon=True).start()
    try:
        worker.run(install_signals=False)
    finally:
        admin = AdminClient(kafka.client_settings())
        for fut in admin.delete_topics([s.name for s in desired_topics(cat)]).values():
            with contextlib.suppress(Exception):
                fut.result(30)
        shutil.rmtree(tmp, ignore_errors=True)
    out: dict[str, Any] = {"per_delay": per_delay, "background_rate": background_rate,
                           "background_jobs": background[0], "delays": {}}
    for d in DELAYS:
        xs = lateness[d]
        out["delays"][f"{d:g}s"] = {"n": len(xs), "p50_ms": pct(xs, 0.5),
                                    "p99_ms": pct(xs, 0.99),
                                    "max_ms": round(max(xs), 1) if xs else None,
                                    "early": early[d]}
    all_late = [x for d in DELAYS for x in lateness[d]]
    out["ran"] = len(all_late)
    out["early"] = sum(early.values())
    out["p99_ms"] = pct(all_late, 0.99)
    out["max_ms"] = round(max(all_late), 1) if all_late else None
    out["ok"] = (out["ran"] == expected and out["early"] == 0 and out["p99_ms"] is not None
                 and out["p99_ms"] <= TARGET_P99_MS)
    return out


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--per-delay", default=100, show_default=True, help="retried jobs per delay")
@click.option("--background-rate", default=300, show_default=True,
              help="normal jobs per second meanwhile")
@click.option("--spread", default=20.0, show_default=True,
              help="seconds over which the retried jobs are emitted")
def main(bootstrap_servers: str, per_delay: int, background_rate: int, spread: float) -> None:
    out = run(KafkaConfig(bootstrap_servers=bootstrap_servers), per_delay, background_rate,
              spread)
    for name, d in out["delays"].items():
        print(f"delay {name:>4}: n={d['n']} p50={d['p50_ms']} ms p99={d['p99_ms']} ms "
              f"max={d['max_ms']} ms early={d['early']}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
