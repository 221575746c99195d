"""Follow-ups: throughput of a handler emitting one follow-up job per job (``ctx.emit``).

Three modes, one run each per round, same broker, same in-process worker settings
(concurrency 4, 6 partitions): ``none`` (the handler emits nothing), ``alo``
(one ``ctx.emit`` per job, at-least-once: the job's offset waits for the follow-up's
acknowledgement) and ``eos`` (the same in exactly-once mode: follow-ups and offsets in one
transaction per batch). Each mode drains ``--jobs`` pre-emitted jobs; its rate is jobs / seconds
from the first handler call to the end (every job run, nothing in flight, the last follow-up
acknowledged or committed).
Reported: ``R_eos_alo`` = eos / alo (target >= 0.5) and ``R_alo_none`` = alo / none.

Per-key order through retries: the same drain with ``--ordering key`` (``key``) and
``--ordering key-strict`` (``strict``), 1,000 keys, 1% of the jobs failing once with
``Retry(after=0.1)`` and no follow-ups: ``R_strict_key`` = strict / key (target >= 0.8).
Also ``R_strict_key_10_90``, the same ratio of the rates between the 10% and the 90% mark of
jobs run: the drain without its end, where the jobs waiting behind a key run one retry delay
per failure among them (serial with ``key-strict``, side by side with ``key``).
Figures are the medians of ``--rounds``; the last line is one JSON object with every figure.
``--modes key,strict`` runs a subset.

    .venv/bin/python bench/followups.py [--jobs 20000] [--rounds 2] [--modes key,strict]
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import statistics
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
from streamjobs.events import EventBus

ROOT = Path(__file__).resolve().parent.parent
MODES = ("none", "alo", "eos", "key", "strict")
TARGET_EOS_ALO = 0.5
TARGET_STRICT_KEY = 0.8
RATIOS = {"R_eos_alo": ("eos", "alo"), "R_alo_none": ("alo", "none"),
          "R_strict_key": ("strict", "key")}


def catalogue(tmp: Path, prefix: str) -> Catalogue:
    shutil.copy(ROOT / "tests" / "faults" / "schemas" / "faults.Job.v1.avsc", tmp)
    (tmp / "catalogue.toml").write_text(
        f'[defaults]\npartitions = 6\n\n[jobs.job]\nschema = "faults.Job"\n'
        f'topic = "{prefix}.jobs"\nkey_field = "key"\n'
        f'retry = {{ delays = ["1s"], max_attempts = 3 }}\n\n'
        f'[jobs.followup]\nschema = "faults.Job"\ntopic = "{prefix}.followups"\n'
        f'key_field = "key"\n')
    return Catalogue.load(tmp)


def run_mode(kafka: KafkaConfig, mode: str, jobs: int) -> tuple[float, float | None]:
    """Jobs per second for ``mode`` on fresh topics; for ``key``/``strict`` also the rate
    between the 10% and the 90% mark of jobs run (the drain without its start and end)."""
    prefix = f"bench-followups-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="sj-bench-followups-"))
    cat = catalogue(tmp, prefix)
    apply(kafka, cat)
    try:
        rng = random.Random(1)  # the retried 1%, spread over the keys
        with Producer(cat, kafka) as p:
            for start in range(0, jobs, 5000):
                p.emit_many([("job", {"n": i, "key": f"k{i % 1000}", "work_ms": 0,
                                      "fail_permille": int(rng.random() < 0.01)})
                             for i in range(start, min(jobs, start + 5000))])
        app = App(cat, name="followups", exactly_once=mode == "eos")
        ran = [0]
        first: list[float] = []
        marks = {jobs // 10: 0.0, jobs * 9 // 10: 0.0}

        if mode in ("key", "strict"):
            @app.job("job")
            def job(payload: dict[str, Any], ctx: JobContext) -> None:
                if not first:
                    first.append(time.monotonic())
                if ctx.attempt == 1 and payload["fail_permille"]:
                    raise Retry(after=0.1)  # 1% of the jobs, once
                ran[0] += 1
                if ran[0] in marks:
                    marks[ran[0]] = time.monotonic()
        elif mode == "none":
            @app.job("job")
            def job(payload: dict[str, Any], ctx: JobContext) -> None:
                if not first:
                    first.append(time.monotonic())
                ran[0] += 1
        else:
            @app.job("job")
            def job(payload: dict[str, Any], ctx: JobContext) -> None:
                if not first:
                    first.append(time.monotonic())
                ctx.emit("followup", payload)
                ran[0] += 1

        bus = EventBus()
        ordering = {"key": "key", "strict": "key-strict"}.get(mode, "partition")
        worker = Worker(app, WorkerSettings(concurrency=4, group_id=f"{prefix}-g",
                                            job_types=("job",), ordering=ordering), kafka, bus)
        done = threading.Event()
        end = [0.0]

        def watch() -> None:  # the end: every job ran, nothing in flight, every record out
            while not done.is_set():
                outbox = worker.outbox
                if (ran[0] >= jobs and outbox is not None and not worker.in_flight
                        and not outbox.pending and not worker.followups.held
                        and not getattr(outbox, "open", False)):
                    end[0] = time.monotonic()
                    worker.stop("bench: drained")
                    return
                time.sleep(0.002)

        threading.Thread(target=watch, daemon=True).start()
        worker.run(install_signals=False)
        done.set()
        if ran[0] < jobs:
            raise RuntimeError(f"{mode}: ran {ran[0]} of {jobs}")
        finish = end[0] or time.monotonic()
        lo, hi = sorted(marks)
        mid = (hi - lo) / (marks[hi] - marks[lo]) if marks[lo] and marks[hi] else None
        return jobs / (finish - first[0]), mid if mode in ("key", "strict") else None
    finally:
        admin = AdminClient(kafka.client_settings())
        for fut in admin.delete_topics([s.name for s in desired_topics(cat)]).values():
            with contextlib.suppress(Exception):
                fut.result(30)
        shutil.rmtree(tmp, ignore_errors=True)


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--jobs", default=20000, show_default=True, help="jobs per mode and round")
@click.option("--rounds", default=2, show_default=True)
@click.option("--modes", default=",".join(MODES), show_default=True,
              help="comma-separated subset (e.g. key,strict); ratios need both of their modes")
def main(bootstrap_servers: str, jobs: int, rounds: int, modes: str) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    chosen = [m for m in MODES if m in modes.split(",")]
    rates: dict[str, list[float]] = {m: [] for m in chosen}
    mids: dict[str, list[float]] = {m: [] for m in chosen}
    for r in range(rounds):
        for mode in chosen if r % 2 == 0 else reversed(chosen):
            rate, mid = run_mode(kafka, mode, jobs)
            rates[mode].append(rate)
            if mid is not None:
                mids[mode].append(mid)
            print(f"round {r + 1} {mode}: {rate:,.0f} jobs/s"
                  + (f" ({mid:,.0f} between 10% and 90%)" if mid else ""), file=sys.stderr)
    med = {m: statistics.median(v) for m, v in rates.items()}
    out: dict[str, Any] = {
        "jobs": jobs, "rounds": rounds,
        "rates": {m: [round(x) for x in v] for m, v in rates.items()},
        "median_jobs_per_s": {m: round(v) for m, v in med.items()},
    }
    if mids.get("key") and mids.get("strict"):
        # the same ratio without the drain's start and end (not the target's figure)
        out["R_strict_key_10_90"] = round(statistics.median(mids["strict"])
                                          / statistics.median(mids["key"]), 3)
        print(f"R_strict_key_10_90 {out['R_strict_key_10_90']}", file=sys.stderr)
    targets = {"R_eos_alo": TARGET_EOS_ALO, "R_strict_key": TARGET_STRICT_KEY}
    for name, (a, b) in RATIOS.items():
        if a in med and b in med:
            out[name] = round(med[a] / med[b], 3)
            print(f"{name} {out[name]}" + (f" (target >= {targets[name]})"
                                           if name in targets else ""), file=sys.stderr)
    out["ok"] = all(out[n] >= t for n, t in targets.items() if n in out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
