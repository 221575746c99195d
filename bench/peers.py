"""streamjobs next to its peers, each system in its own process, in one run on one broker.

    .venv/bin/python bench/peers.py [--jobs 200000] [--rounds 3] [--bootstrap-servers HOST:PORT]

Consumers read the same pre-filled 6-partition topic of small Avro jobs (as ``emit`` writes
them: one compact ``sj`` header), each in a fresh consumer group, at-least-once (offsets
committed only for handled records): the hand-written confluent-kafka loop without and with
fastavro decode + store_offsets, FastStream's confluent subscriber (single and batch,
``AckPolicy.ACK``), Quix Streams' ``Application`` (at-least-once) and ``streamjobs worker`` as
the CLI ships it (default listeners, ``--burst``), timed from its first job to its last by the
job handler itself (bench/peer_app.py). Consumers also report their process CPU per record (all
threads, first record to last; ``cpu_us_per_job``, ``worker_vs_raw_decode_cpu``): a rate moves
with whatever else a shared machine runs, CPU per record much less. Producers write N records
to another topic, acks=all:
raw ``produce()`` of pre-encoded values, raw with fastavro encode per record,
``Producer.emit``, ``Producer.emit_many`` (batches of 1000), FastStream ``publish`` (handed
pre-encoded bytes: it has no Avro serializer) and the Quix Streams producer (idempotent, as
ours), once encoding each payload with its own AvroSerializer (``quix_produce_avro``: emit's
workload, the peer that ``emit_vs_best_peer`` counts) and once handed pre-encoded bytes
(``quix_produce``: ``emit_vs_best_peer_preencoded``). ``--only producers`` runs that half
alone. Every figure is first record -> last (a consumer's group join and a
process's start-up excluded); ratios are taken within a round and their medians reported.

Peers run with ``.venv-bench/bin/python`` (the ``bench`` extra; Quix Streams pins an older
confluent-kafka, so it lives in its own venv: ``bench/run`` creates it) or, failing that, this
interpreter if it has them; without either they are skipped with a line saying so.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import catalogue_dir, create_topics, delete_topics, prefix

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._schemas.catalogue import Catalogue

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CHILD = str(BENCH / "peer_systems.py")
CONSUMERS = ("raw", "raw_decode", "streamjobs_worker", "faststream", "faststream_batch", "quix")
PRODUCERS = ("raw_produce", "raw_encode", "emit", "emit_many", "faststream_publish",
             "quix_produce", "quix_produce_avro")
PEERS = {"faststream", "faststream_batch", "quix", "faststream_publish", "quix_produce",
         "quix_produce_avro"}


def say(msg: str) -> None:
    print(f"peers: {msg}", file=sys.stderr, flush=True)


def peer_python() -> str | None:
    """An interpreter that has FastStream and Quix Streams, or None."""
    for py in (ROOT / ".venv-bench" / "bin" / "python", Path(sys.executable)):
        if py.exists() and subprocess.run(
                [str(py), "-c", "import faststream.confluent, quixstreams"],
                capture_output=True).returncode == 0:
            return str(py)
    return None


def prefill(bootstrap: str, topic: str, codec: Codec, n: int) -> None:
    """N jobs as ``emit`` writes them (compact header, CreateTime), batched and lz4 as a busy
    producer's would be."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    values = [codec.encode("noop", {"n": i, "name": f"user-{i}"}) for i in range(1000)]
    for i in range(n):
        hdrs = [(h.META, h.compact(h.new_job_id(), "noop"))]
        while True:
            try:
                p.produce(topic, values[i % 1000], str(i).encode(), headers=hdrs)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120):
        raise SystemExit("prefill: records left after flush")


def child(py: str, system: str, a: argparse.Namespace, topic: str, **extra: str) -> float:
    args = [py, CHILD, system, "--topic", topic, "--jobs", str(a.jobs), "--budget",
            str(a.budget), "--bootstrap-servers", a.bootstrap_servers]
    for k, v in extra.items():
        args += [f"--{k}", v]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True,
                          timeout=a.budget + 180)
    if proc.returncode != 0:
        raise RuntimeError(f"{system}: exit {proc.returncode}: {proc.stderr.strip()[-400:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    _note_cpu(system, out)
    return float(out["count"]) / float(out["seconds"])


# system -> round -> process CPU µs per record (consumers that report it): steadier than rates
# on a shared machine.
cpu_us: dict[str, dict[int, float]] = {}
_round = [0]


def _note_cpu(system: str, out: dict[str, Any]) -> None:
    if out.get("cpu_s") and out.get("cpu_jobs"):
        cpu_us.setdefault(system, {})[_round[0]] = (float(out["cpu_s"])
                                                    / float(out["cpu_jobs"]) * 1e6)


def cli_worker(a: argparse.Namespace, schemas: Path, pfx: str) -> float:
    """`streamjobs worker` as shipped (default listeners, default settings), --burst."""
    out = Path(tempfile.mkstemp(prefix="sj-bench-worker-", suffix=".json")[1])
    out.unlink()
    env = {**os.environ, "PYTHONPATH": str(BENCH), "STREAMJOBS_BENCH_N": str(a.jobs),
           "STREAMJOBS_BENCH_OUT": str(out), "STREAMJOBS_BENCH_SCHEMAS": str(schemas),
           "STREAMJOBS_BENCH_PREFIX": pfx, "STREAMJOBS_BOOTSTRAP_SERVERS": a.bootstrap_servers}
    sj = str(Path(sys.executable).parent / "streamjobs")
    proc = subprocess.run([sj, "worker", "peer_app:app", "--burst", "--group-id",
                           f"bench-peer-{uuid.uuid4().hex[:8]}", "--metrics-port", "0"],
                          cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=a.budget + 300)
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"streamjobs worker: exit {proc.returncode}: "
                           f"{proc.stderr.strip()[-400:]}")
    data = json.loads(out.read_text())
    out.unlink()
    _note_cpu("streamjobs_worker", data)
    return float(data["count"]) / float(data["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--budget", type=float, default=30.0,
                    help="seconds a system may take per run; a slower one is rated on what it "
                         "did in that time [30]")
    ap.add_argument("--bootstrap-servers",
                    default=os.environ.get("STREAMJOBS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    ap.add_argument("--only", choices=("consumers", "producers"), default=None,
                    help="run one half (each system still in its own process) [both]")
    a = ap.parse_args()
    systems = {"consumers": CONSUMERS, "producers": PRODUCERS}.get(a.only or "",
                                                                   (*CONSUMERS, *PRODUCERS))
    py_peers = peer_python()
    skipped = sorted(PEERS) if py_peers is None else []
    if skipped:
        say(f"SKIPPED the peers {', '.join(skipped)}: no interpreter has faststream and "
            f"quixstreams (pip install -e '.[bench]' in .venv-bench; bench/run does it)")
    # SIGTERM (bench/run's timeout, a kill) still deletes the topics made below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    schemas = catalogue_dir(6)
    catalogue = Catalogue.load(schemas)
    admin = AdminClient({"bootstrap.servers": a.bootstrap_servers})
    consume_pfx, produce_pfx = prefix(), prefix()
    names = (create_topics(admin, catalogue, consume_pfx, 6)
             + create_topics(admin, catalogue, produce_pfx, 6))
    say(f"topics {consume_pfx}* (consumed) and {produce_pfx}* (produced to)")
    rounds: list[dict[str, float]] = []
    errors: dict[str, str] = {}
    try:
        if a.only != "producers":
            t0 = time.perf_counter()
            prefill(a.bootstrap_servers, consume_pfx + "noop", Codec(catalogue), a.jobs)
            say(f"prefilled {a.jobs} in {time.perf_counter() - t0:.1f}s")
        for r in range(a.rounds):
            _round[0] = r
            rates: dict[str, float] = {}
            for system in systems:
                if system in skipped:
                    continue
                py = py_peers if system in PEERS and py_peers else sys.executable
                try:
                    if system == "streamjobs_worker":
                        rates[system] = cli_worker(a, schemas, consume_pfx)
                    elif system in CONSUMERS:
                        rates[system] = child(py, system, a, consume_pfx + "noop")
                    else:
                        rates[system] = child(py, system, a, produce_pfx + "noop",
                                              schemas=str(schemas), prefix=produce_pfx)
                except Exception as exc:  # one system failing must not hide the others
                    errors[system] = str(exc)
                    say(f"round {r + 1}: {system} failed: {exc}")
            rounds.append(rates)
            say(f"round {r + 1}: " + ", ".join(f"{k} {v:,.0f}/s" for k, v in rates.items()))
    finally:
        delete_topics(admin, names)
    print(json.dumps(summary(rounds, a, skipped, errors)))


def _ratio(rates: dict[str, float], top: str, bottom: str | tuple[str, ...]) -> float | None:
    if top not in rates:
        return None
    below = [rates[b] for b in ((bottom,) if isinstance(bottom, str) else bottom) if b in rates]
    return rates[top] / max(below) if below else None


def summary(rounds: list[dict[str, float]], a: argparse.Namespace, skipped: list[str],
            errors: dict[str, str]) -> dict[str, Any]:
    def median(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None]
        return round(statistics.median(got), 3) if got else None

    systems = sorted({s for r in rounds for s in r})
    out: dict[str, Any] = {"jobs": a.jobs, "rounds": a.rounds, "partitions": 6,
                           "skipped": skipped, "errors": errors,
                           "per_s": {s: round(statistics.median(r[s] for r in rounds if s in r))
                                     for s in systems}}
    peers_c = ("faststream", "faststream_batch", "quix")
    # Peer producers doing emit's work (payload in, Avro encoded per record); FastStream has
    # no Avro serializer, and publishing awaits each record, so its bytes come pre-encoded.
    peers_p = ("faststream_publish", "quix_produce_avro")
    ratios = {
        "worker_vs_raw_decode": ("streamjobs_worker", "raw_decode"),
        "worker_vs_raw": ("streamjobs_worker", "raw"),
        "worker_vs_best_peer": ("streamjobs_worker", peers_c),
        "emit_vs_raw_encode": ("emit", "raw_encode"),
        "emit_vs_raw_produce": ("emit", "raw_produce"),
        "emit_vs_best_peer": ("emit", peers_p),
        # Against peers handed pre-encoded bytes (no encoding, no id, no header: nearer raw
        # produce than emit's work).
        "emit_vs_best_peer_preencoded": ("emit", ("faststream_publish", "quix_produce")),
        "emit_many_vs_emit": ("emit_many", "emit"),
        "emit_many_vs_raw_encode": ("emit_many", "raw_encode"),
    }
    for name, (top, bottom) in ratios.items():
        out[name] = median([_ratio(r, top, bottom) for r in rounds])
    out["per_round"] = [{k: round(v) for k, v in r.items()} for r in rounds]
    # Consumers' process CPU per record (all threads, first record to last), medians, and the
    # worker's against the raw decode loop's (raw CPU / worker CPU, per round).
    out["cpu_us_per_job"] = {s: round(statistics.median(v.values()), 2)
                             for s, v in cpu_us.items() if s in CONSUMERS}
    raw, worker = cpu_us.get("raw_decode", {}), cpu_us.get("streamjobs_worker", {})
    both = [raw[r] / worker[r] for r in raw if r in worker]
    out["worker_vs_raw_decode_cpu"] = round(statistics.median(both), 3) if both else None
    return out


if __name__ == "__main__":
    main()
