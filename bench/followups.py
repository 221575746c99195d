"""Follow-ups: throughput of a handler emitting one follow-up job per job (``ctx.emit``).

Three modes, one run each per round, same broker, same in-process worker settings
(concurrency 4, 6 partitions, ``--burst``): ``none`` (the handler emits nothing), ``alo``
(one ``ctx.emit`` per job, at-least-once: the job's offset waits for the follow-up's
acknowledgement) and ``eos`` (the same in exactly-once mode: follow-ups and offsets in one
transaction per batch). Each mode drains ``--jobs`` pre-emitted jobs; its rate is jobs / seconds
from the partitions' assignment to the burst's end (the last follow-up acknowledged or
committed). Reported: ``R_eos_alo`` = eos / alo (target >= 0.5) and ``R_alo_none`` = alo / none;
the medians of ``--rounds``. The last line is one JSON object with every figure.

    .venv/bin/python bench/followups.py [--jobs 20000] [--rounds 2]
"""

from __future__ import annotations

import contextlib
import json
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

from streamjobs.catalogue import Catalogue
from streamjobs.config import KafkaConfig
from streamjobs.events import EventBus, PartitionsAssigned
from streamjobs.producer import Producer
from streamjobs.topics import apply, desired_topics
from streamjobs.worker import App, JobContext, Worker, WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
MODES = ("none", "alo", "eos")
TARGET_EOS_ALO = 0.5


def catalogue(tmp: Path, prefix: str) -> Catalogue:
    shutil.copy(ROOT / "tests" / "faults" / "schemas" / "faults.Job.v1.avsc", tmp)
    (tmp / "catalogue.toml").write_text(
        f'[defaults]\npartitions = 6\n\n[jobs.job]\nschema = "faults.Job"\n'
        f'topic = "{prefix}.jobs"\nkey_field = "key"\n\n'
        f'[jobs.followup]\nschema = "faults.Job"\ntopic = "{prefix}.followups"\n'
        f'key_field = "key"\n')
    return Catalogue.load(tmp)


def run_mode(kafka: KafkaConfig, mode: str, jobs: int) -> float:
    """Jobs per second for ``mode`` on fresh topics."""
    prefix = f"bench-followups-{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="sj-bench-followups-"))
    cat = catalogue(tmp, prefix)
    apply(kafka, cat)
    try:
        with Producer(cat, kafka) as p:
            for start in range(0, jobs, 5000):
                p.emit_many([("job", {"n": i, "key": f"k{i % 1000}", "work_ms": 0,
                                      "fail_permille": 0})
                             for i in range(start, min(jobs, start + 5000))])
        app = App(cat, name="followups", exactly_once=mode == "eos")
        ran = [0]

        if mode == "none":
            @app.job("job")
            def job(payload: dict[str, Any], ctx: JobContext) -> None:
                ran[0] += 1
        else:
            @app.job("job")
            def job(payload: dict[str, Any], ctx: JobContext) -> None:
                ctx.emit("followup", payload)
                ran[0] += 1

        bus = EventBus()
        assigned: list[float] = []
        bus.subscribe(lambda e: assigned.append(time.monotonic()), PartitionsAssigned)
        worker = Worker(app, WorkerSettings(concurrency=4, group_id=f"{prefix}-g", burst=True,
                                            job_types=("job",)), kafka, bus)
        done = threading.Event()
        end = [0.0]

        def watch() -> None:  # the burst's end: nothing in flight, every record out
            while not done.is_set():
                if ran[0] >= jobs and worker._drained(60.0):
                    end[0] = time.monotonic()
                    return
                time.sleep(0.01)

        threading.Thread(target=watch, daemon=True).start()
        worker.run(install_signals=False)
        done.set()
        if ran[0] < jobs:
            raise RuntimeError(f"{mode}: ran {ran[0]} of {jobs}")
        finish = end[0] or time.monotonic()
        return jobs / (finish - assigned[0])
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
def main(bootstrap_servers: str, jobs: int, rounds: int) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    rates: dict[str, list[float]] = {m: [] for m in MODES}
    for r in range(rounds):
        for mode in MODES if r % 2 == 0 else reversed(MODES):
            rates[mode].append(run_mode(kafka, mode, jobs))
            print(f"round {r + 1} {mode}: {rates[mode][-1]:,.0f} jobs/s", file=sys.stderr)
    med = {m: statistics.median(v) for m, v in rates.items()}
    out: dict[str, Any] = {
        "jobs": jobs, "rounds": rounds,
        "rates": {m: [round(x) for x in v] for m, v in rates.items()},
        "median_jobs_per_s": {m: round(v) for m, v in med.items()},
        "R_eos_alo": round(med["eos"] / med["alo"], 3),
        "R_alo_none": round(med["alo"] / med["none"], 3),
    }
    out["ok"] = out["R_eos_alo"] >= TARGET_EOS_ALO
    print(f"R_eos_alo {out['R_eos_alo']} (target >= {TARGET_EOS_ALO}), "
          f"R_alo_none {out['R_alo_none']}", file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
