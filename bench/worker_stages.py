"""Where the worker's time per job goes, stage by stage, on real Kafka records held in memory.

Pre-fills a 6-partition topic with N small Avro jobs as ``emit`` writes them (one compact
``sj`` header), consumes them once into memory, then times each stage of the worker's hot path
on those ``Message`` objects, in this one thread (no broker, no GIL hand-off in the timings):

- ``raw_decode``: the hand-written loop's own work per record (``error``, ``value``, fastavro
  ``schemaless_reader``, the partition/offset it stores), the baseline of bench/peers.py;
- ``take``: ``Intake.take`` on 1000-record batches (headers, route, compiled body read,
  ``RecordContext``, offsets to the partitions' trackers), of which ``reader`` is the
  compiled body read alone and ``header_scan`` ``_headers.scan`` of each record's headers;
- ``dispatch``: ``ordering.dispatch`` of each partition's chunk (lanes, the hand-off);
- ``run``: the handler threads' work for those chunks (``Executor._run_chunk``: a no-op
  handler per job, the completion per chunk), without listeners;
- the listeners' share, per set of listeners (``summary_only``: one that reads nothing, i.e.
  what timing the jobs and building the summaries costs; ``metrics``, ``log`` (at ``info``),
  ``reports`` (counting only; its thread not started) alone; ``with_listeners``: the CLI's
  default set, all of them and health): ``take_<set>`` and ``run_<set>`` with that bus (the
  runs as an inline handler's at the pace ``run`` measured: in the slices ``Pace`` picks,
  timed as a whole when predicted to take under ``inline.WHOLE_S``, with each job's
  created-at read for the summaries) and ``cost_<set>`` = their sum minus ``take`` + ``run``
  (``listeners`` = the default set's cost);
- ``drain``: offsets finished per chunk (``PartitionTracker.done_many``).

Each figure is the best of ``--repeat`` passes over all N records, in µs per job. What a real
run adds (``consume``, librdkafka's threads, the GIL hand-offs between the poll thread and the
handler threads) is in bench/worker_throughput.py's CPU per job.

    python bench/worker_stages.py [--jobs 200000] [--repeat 5]
"""

from __future__ import annotations

import collections
import io
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import fastavro
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SCHEMA, catalogue_dir, create_topics, delete_topics, prefix
from peers import prefill

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App
from streamjobs._worker.executor import Executor
from streamjobs._worker.inline import TURN_BUDGET, Pace
from streamjobs._worker.intake import Intake
from streamjobs._worker.ordering import Lanes, dispatch
from streamjobs._worker.partition import Part
from streamjobs._worker.process import tune_gc
from streamjobs._worker.router import Router
from streamjobs._worker.routes import Routes
from streamjobs.events import EventBus, JobsSucceeded
from streamjobs.listeners import (
    LogListener,
    MetricsListener,
    ReportListener,
    configure_logging,
    install_default_listeners,
)

BATCH = 1000


def _summary_noop(_e: JobsSucceeded) -> None:
    """A summary listener that reads nothing: what the runs cost to time and summarise."""


def _records(bootstrap: str, topic: str, n: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"stages-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    msgs: list[Any] = []
    deadline = time.monotonic() + 60
    while len(msgs) < n and time.monotonic() < deadline:
        msgs += [m for m in c.consume(BATCH, 1.0) if m.error() is None]
    c.close()
    if len(msgs) < n:
        raise SystemExit(f"read {len(msgs)} of {n} records")
    return msgs[:n]


def _best(fn: Callable[[], Any], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(best / n * 1e6, 3)


@click.command()
@click.option("--bootstrap-servers", default="127.0.0.1:9092",
              envvar="STREAMJOBS_BOOTSTRAP_SERVERS")
@click.option("--jobs", "n", default=200_000, show_default=True)
@click.option("--repeat", default=5, show_default=True, help="passes per stage (best taken)")
def main(bootstrap_servers: str, n: int, repeat: int) -> None:
    schemas = catalogue_dir(6)
    catalogue = Catalogue.load(schemas)
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    pfx = prefix()
    names = create_topics(admin, catalogue, pfx, 6)
    try:
        prefill(bootstrap_servers, pfx + "noop", Codec(catalogue), n)
        msgs = _records(bootstrap_servers, pfx + "noop", n)
    finally:
        delete_topics(admin, names)
    tune_gc()  # as `streamjobs worker` runs
    batches = [msgs[i:i + BATCH] for i in range(0, n, BATCH)]
    app = App(catalogue, name="stages", topic_prefix=pfx)
    app.job("noop")(lambda payload, ctx: None)
    routes = Routes(app, app.check(()))
    out: dict[str, Any] = {"jobs": n, "repeat": repeat}

    parsed = fastavro.parse_schema(SCHEMA)
    reader = fastavro.schemaless_reader

    def raw_decode() -> None:
        for batch in batches:
            last: dict[int, int] = {}
            for m in batch:
                if m.error():
                    continue
                buf = io.BytesIO(m.value())
                buf.seek(10)
                reader(buf, parsed, None)
                last[m.partition()] = m.offset()

    out["raw_decode"] = _best(raw_decode, n, repeat)

    def header_scan() -> None:
        scan = h.scan
        for m in msgs:
            scan(m.headers())

    out["header_scan"] = _best(header_scan, n, repeat)

    def parts() -> dict[tuple[str, int], Part]:
        return {(t, p): Part(t, p, routes, "partition") for t in routes.job_topics
                for p in range(6)}

    def intake(bus: EventBus) -> Intake:
        it = Intake(routes, Codec(catalogue), Router(routes.tiers, "host", "g", False), bus, 2.0)
        it.take(batches[0][:1], parts(), 0, 1 << 30)  # the first record compiles the reader
        return it

    plain = intake(EventBus())
    read = next(iter(plain._readers.values()))

    def body_reads() -> None:
        for m in msgs:
            read(m.value(), 10)

    out["reader"] = _best(body_reads, n, repeat)

    def take() -> None:
        ps = parts()
        for batch in batches:
            plain.take(batch, ps, 0, 1 << 30)

    out["take"] = _best(take, n, repeat)
    ps = parts()
    chunks = [c for batch in batches for c in plain.take(batch, ps, 0, 1 << 30).jobs]

    def submit_nothing(*_: Any) -> None:
        return None

    def dispatched() -> None:
        lanes: Lanes[Any] = Lanes()
        for part, jobs, offsets in chunks:
            dispatch(part, jobs, offsets, "partition", lanes, submit_nothing, 8)
            lanes.take(part)  # the lane is idle again for the next chunk
            part.tasks = 0

    out["dispatch"] = _best(dispatched, n, repeat)
    def run_stage(bus: EventBus, chunks: list[Any], per_job: float = 0.0) -> float:
        """``per_job``: the handler's measured pace (seconds), as an inline handler's; the
        chunks then run in the slices, timed as a whole or job by job, that ``Pace`` picks
        for listeners that want summaries (without listeners nothing cuts a chunk)."""
        done: collections.deque[Any] = collections.deque()
        ex = Executor(1, bus, Lanes(), done, use_async=False)
        pace = Pace("noop", 20e-6)
        pace.per_job = per_job

        def run() -> None:
            for part, jobs, offsets in chunks:
                assert offsets is not None
                size, usual = pace.slice(TURN_BUDGET, len(jobs), bool(per_job))
                if len(jobs) <= size:
                    ex._run_chunk(0, part, jobs, offsets, usual)
                    continue
                for i in range(0, len(jobs), size):
                    ex._run_chunk(0, part, jobs[i:i + size], offsets[i:i + size], usual)
            done.clear()

        took = _best(run, n, repeat)
        ex.shutdown()
        return took

    out["run"] = run_stage(EventBus(), chunks)
    # The listeners' share: the runs time the jobs, read their created-at and emit summaries.
    # Each set of listeners gets an intake and chunks of its own, as a worker with that bus
    # would.
    kafka = KafkaConfig(bootstrap_servers=bootstrap_servers)
    sets: dict[str, Callable[[EventBus], Any]] = {
        "summary_only": lambda bus: bus.subscribe(_summary_noop, JobsSucceeded),
        "metrics": lambda bus: MetricsListener(CollectorRegistry()).attach(bus),
        "log": lambda bus: LogListener().attach(bus),
        "reports": lambda bus: ReportListener(kafka, "unused").attach(bus),  # never started
        "defaults": lambda bus: (install_default_listeners(bus, metrics_port=None),
                                 ReportListener(kafka, "unused").attach(bus)),
    }
    configure_logging("info", stream=io.StringIO())
    for label, attach in sets.items():
        bus = EventBus()
        attach(bus)
        stamped = intake(bus)

        def take_stamped(it: Intake = stamped) -> None:
            ps = parts()
            for batch in batches:
                it.take(batch, ps, 0, 1 << 30)

        taken = _best(take_stamped, n, repeat)
        ps = parts()
        own = [c for batch in batches for c in stamped.take(batch, ps, 0, 1 << 30).jobs]
        ran = run_stage(bus, own, out["run"] / 1e6)
        name = "with_listeners" if label == "defaults" else label
        out[f"take_{name}"] = taken
        out[f"run_{name}"] = ran
        out[f"cost_{name}"] = round(taken + ran - out["take"] - out["run"], 3)

    def drain() -> None:
        trackers = parts()
        for part, _jobs, offsets in chunks:
            tracker = trackers[(part.topic, part.partition)].tracker
            assert offsets is not None
            tracker.add_many(offsets)
            tracker.done_many(offsets)

    out["drain"] = _best(drain, n, repeat)
    out["worker_stages"] = round(out["take"] + out["dispatch"] + out["run"] + out["drain"], 3)
    out["worker_stages_with_listeners"] = round(
        out["take_with_listeners"] + out["dispatch"] + out["run_with_listeners"]
        + out["drain"], 3)
    out["listeners"] = out["cost_with_listeners"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
