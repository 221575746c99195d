"""`streamjobs worker` as shipped, this tree against an earlier revision, next to the raw loop.

    python bench/worker_ab.py --base REV [--jobs 200000] [--rounds 4]

Exports REV's ``streamjobs`` package (``git archive``) to a temporary directory, pre-fills a
6-partition topic as bench/peers.py does, then runs per round: the hand-written raw loop
(consume + fastavro decode + store_offsets, bench/peer_systems.py ``raw_decode``), the CLI
worker of REV and the CLI worker of this tree (default listeners, ``--burst``; which of the
two goes first alternates per round), each in its own process and consumer group. Each worker
run uses this tree's ``bench/peer_app.py`` and interpreter; only the ``streamjobs`` package
differs (``PYTHONPATH``). Prints a JSON line: medians of jobs/s and of process CPU µs per job
(all threads, first job to last), and the per-round ratios worker / raw (rate) and
raw / worker (CPU), with the load average of each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import catalogue_dir, create_topics, delete_topics, prefix
from peers import prefill

from streamjobs._avro.codec import Codec
from streamjobs._schemas.catalogue import Catalogue

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def export(rev: str, into: Path) -> None:
    archive = subprocess.run(["git", "archive", rev, "streamjobs"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)


def worker(tree: Path, a: argparse.Namespace, schemas: Path, pfx: str) -> dict[str, Any]:
    out = Path(tempfile.mkstemp(prefix="sj-ab-", suffix=".json")[1])
    out.unlink()
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{BENCH}",
           "STREAMJOBS_BENCH_N": str(a.jobs), "STREAMJOBS_BENCH_OUT": str(out),
           "STREAMJOBS_BENCH_SCHEMAS": str(schemas), "STREAMJOBS_BENCH_PREFIX": pfx,
           "STREAMJOBS_BOOTSTRAP_SERVERS": a.bootstrap_servers}
    # From a neutral directory, so that PYTHONPATH decides which streamjobs is imported.
    subprocess.run([str(Path(sys.executable).parent / "streamjobs"), "worker", "peer_app:app",
                    "--burst", "--group-id", f"bench-ab-{uuid.uuid4().hex[:8]}",
                    "--metrics-port", "0"], cwd=tempfile.gettempdir(), env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
                   timeout=300)
    data: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return data


def raw(a: argparse.Namespace, topic: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(BENCH / "peer_systems.py"), "raw_decode",
                           "--topic", topic, "--jobs", str(a.jobs), "--budget", "30",
                           "--bootstrap-servers", a.bootstrap_servers,
                           "--group", f"bench-ab-{uuid.uuid4().hex[:8]}"],
                          cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--bootstrap-servers",
                    default=os.environ.get("STREAMJOBS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    a = ap.parse_args()
    base_tree = Path(tempfile.mkdtemp(prefix="sj-ab-base-"))
    export(a.base, base_tree)
    schemas = catalogue_dir(6)
    catalogue = Catalogue.load(schemas)
    admin = AdminClient({"bootstrap.servers": a.bootstrap_servers})
    pfx = prefix()
    names = create_topics(admin, catalogue, pfx, 6)
    rounds: list[dict[str, Any]] = []
    try:
        prefill(a.bootstrap_servers, pfx + "noop", Codec(catalogue), a.jobs)
        for r in range(a.rounds):
            got: dict[str, dict[str, Any]] = {"raw_decode": raw(a, pfx + "noop")}
            for side in ("base", "this") if r % 2 == 0 else ("this", "base"):
                got[side] = worker(base_tree if side == "base" else ROOT, a, schemas, pfx)
            row: dict[str, Any] = {"load": round(os.getloadavg()[0], 2)}
            for side, out in got.items():
                row[f"{side}_per_s"] = round(out["count"] / out["seconds"])
                row[f"{side}_cpu_us"] = round(out["cpu_s"] / out["cpu_jobs"] * 1e6, 2)
            for side in ("base", "this"):
                row[f"{side}_vs_raw"] = round(row[f"{side}_per_s"] / row["raw_decode_per_s"], 3)
                row[f"{side}_vs_raw_cpu"] = round(row["raw_decode_cpu_us"]
                                                  / row[f"{side}_cpu_us"], 3)
            rounds.append(row)
            print(f"round {r + 1}: {row}", file=sys.stderr, flush=True)
            time.sleep(1)
    finally:
        delete_topics(admin, names)
    keys = [k for k in rounds[0] if k != "load"]
    print(json.dumps({"base": a.base, "jobs": a.jobs, "rounds": a.rounds,
                      **{k: round(statistics.median(r[k] for r in rounds), 3) for k in keys},
                      "per_round": rounds}))


if __name__ == "__main__":
    main()
