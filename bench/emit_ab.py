"""Before/after for the producer: emit and emit_many of two streamjobs source trees, interleaved
(A B A B ...) in one run on one broker, next to the hand-written raw loops.

    .venv/bin/python bench/emit_ab.py --before DIR [--jobs 200000] [--rounds 4]
        [--systems raw_encode,emit@before,emit@after,...] [--bootstrap-servers HOST:PORT]

``DIR`` holds the ``streamjobs`` package to compare with (e.g. ``git archive <commit> streamjobs
| tar -x -C DIR``); "after" is this checkout. Each system runs as its own process through
bench/peer_systems.py (``SYSTEM@before`` with ``PYTHONPATH=DIR``; a peer as ``SYSTEM@peer`` with
``.venv-bench``), producing ``--jobs`` records of the peers' small Avro job to one fresh
6-partition topic. Prints each round with the load average, then per system the median rate
and µs per record, and the median of the per-round ratios to the first system. The last line
is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import catalogue_dir, create_topics, delete_topics, prefix
from confluent_kafka.admin import AdminClient

from streamjobs._schemas.catalogue import Catalogue

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = "raw_encode,emit@before,emit@after,emit_many@before,emit_many@after"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="directory holding the other streamjobs")
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--systems", default=DEFAULT)
    ap.add_argument("--bootstrap-servers",
                    default=os.environ.get("STREAMJOBS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    a = ap.parse_args()
    systems = a.systems.split(",")
    schemas = catalogue_dir(6)
    admin = AdminClient({"bootstrap.servers": a.bootstrap_servers})
    pfx = prefix()
    names = create_topics(admin, Catalogue.load(schemas), pfx, 6)

    def run(system: str) -> float:
        name, _, tree = system.partition("@")
        env = {**os.environ, "PYTHONPATH": a.before if tree == "before" else str(ROOT)}
        py = ROOT / (".venv-bench" if tree == "peer" else ".venv") / "bin" / "python"
        proc = subprocess.run(
            [str(py), str(ROOT / "bench" / "peer_systems.py"), name, "--topic", pfx + "noop",
             "--jobs", str(a.jobs), "--budget", "20", "--bootstrap-servers",
             a.bootstrap_servers, "--schemas", str(schemas), "--prefix", pfx],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise SystemExit(f"{system}: exit {proc.returncode}: {proc.stderr[-1000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        return float(out["count"]) / float(out["seconds"])

    rates: dict[str, list[float]] = {s: [] for s in systems}
    loads: list[float] = []
    try:
        run("raw_produce")  # not counted: the new topic's leaders are looked up once
        for r in range(a.rounds):
            loads.append(round(os.getloadavg()[0], 2))
            for s in systems:
                rates[s].append(run(s))
            print(f"round {r + 1} (load {loads[-1]}): "
                  + "  ".join(f"{s} {v[-1]:,.0f}/s" for s, v in rates.items()),
                  file=sys.stderr, flush=True)
    finally:
        delete_topics(admin, names)
    base = systems[0]
    result = {"jobs": a.jobs, "rounds": a.rounds, "load_avg": loads,
              "per_s": {s: round(statistics.median(v)) for s, v in rates.items()},
              "us": {s: round(1e6 / statistics.median(v), 3) for s, v in rates.items()},
              f"vs_{base}": {s: round(statistics.median(x / y for x, y in
                                                        zip(v, rates[base], strict=True)), 3)
                             for s, v in rates.items() if s != base},
              "per_round": {s: [round(x) for x in v] for s, v in rates.items()}}
    for s in systems:
        print(f"{s:<26} {result['per_s'][s]:>10,}/s  {result['us'][s]:>7.3f} µs/record"
              + (f"  x{result[f'vs_{base}'][s]:.3f} of {base}" if s != base else ""))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
