"""What worker reports cost: worker throughput with the default listeners, without and with the
ReportListener (which `streamjobs worker` installs), on the same topic in the same run.

Pre-fills a topic with N no-op jobs; each round runs the in-process worker twice over it (fresh
consumer groups): default listeners only, then default listeners + reports to a real
``<prefix>streamjobs.workers`` topic. Prints a JSON line with the median jobs/s of each and
R_reports = with / without (per round, median over ``--rounds``; 1.0 = free), and how many
reports the broker received (so the "with" runs really published).

    python bench/reports_overhead.py --jobs 200000 --rounds 3
"""

from __future__ import annotations

import json
import statistics
import sys
import time

import click
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from _common import create_topics, delete_topics, make_catalogue, prefix
from worker_throughput import prefill, worker

from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import reports_topic
from streamjobs._ops.topics import WORKERS_CONFIG
from streamjobs._worker.process import tune_gc


def published(conf: dict, topic: str) -> int:
    c = Consumer({**conf, "group.id": "sj-bench-watermarks"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--jobs", "n", default=200_000, show_default=True)
@click.option("--partitions", default=6, show_default=True)
@click.option("--concurrency", default=4, show_default=True)
@click.option("--rounds", default=3, show_default=True)
def main(bootstrap_servers: str, n: int, partitions: int, concurrency: int, rounds: int) -> None:
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    conf = kafka.client_settings()
    admin = AdminClient(conf)
    catalogue = make_catalogue(partitions)
    tune_gc()
    pfx = prefix()
    names = create_topics(admin, catalogue, pfx, partitions)
    reports = reports_topic(pfx)
    admin.create_topics([NewTopic(reports, 1, 1, config=dict(WORKERS_CONFIG))])[reports].result(30)
    names.append(reports)
    try:
        t0 = time.perf_counter()
        prefill(conf, pfx + "noop", Codec(catalogue), n)
        print(f"prefilled {n} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        results = []
        for i in range(rounds):
            without = worker(kafka, catalogue, pfx, n, concurrency, True, None)
            with_reports = worker(kafka, catalogue, pfx, n, concurrency, True, None,
                                  reports=True)
            results.append({"without": round(without), "with": round(with_reports),
                            "R_reports": round(with_reports / without, 3)})
            print(f"round {i + 1}: {results[-1]}", file=sys.stderr)
        sent = published(conf, reports)
    finally:
        delete_topics(admin, names)
    print(json.dumps({
        "jobs": n, "partitions": partitions, "concurrency": concurrency, "rounds": rounds,
        "without_reports_jobs_per_s": statistics.median(r["without"] for r in results),
        "with_reports_jobs_per_s": statistics.median(r["with"] for r in results),
        "R_reports": statistics.median(r["R_reports"] for r in results),
        "reports_published": sent, "per_round": results}))


if __name__ == "__main__":
    main()
