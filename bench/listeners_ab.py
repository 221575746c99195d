"""The default listeners' cost, this tree against an earlier revision, alternating.

    python bench/listeners_ab.py --base REV [--pairs 3] [--jobs 200000] [--rounds 3]

Exports REV's ``streamjobs`` package (``git archive``, as bench/worker_ab.py does), then runs
bench/worker_throughput.py ``--pairs`` times for each side, REV's and this tree's invocations
alternating (REV first in odd pairs, this tree first in even ones); only the ``streamjobs``
package differs (``PYTHONPATH``). Each invocation measures the worker with and without the
CLI's default listeners in the same rounds; this prints a JSON line with, per side, the medians
over all its rounds of ``R_listeners`` (rate with / without), ``R_listeners_cpu`` (CPU per job
without / with), the CPU per job without and with, and ``listeners_cpu_us`` (with - without,
per round), with the load average at each invocation's start.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from worker_ab import export

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def throughput(tree: Path, a: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, str(BENCH / "worker_throughput.py"), "--jobs",
                           str(a.jobs), "--rounds", str(a.rounds), "--bootstrap-servers",
                           a.bootstrap_servers], env=env, capture_output=True, text=True,
                          check=True, timeout=600)
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="git revision to compare against")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap-servers",
                    default=os.environ.get("STREAMJOBS_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    a = ap.parse_args()
    base_tree = Path(tempfile.mkdtemp(prefix="sj-listeners-base-"))
    export(a.base, base_tree)
    rounds: dict[str, list[dict[str, Any]]] = {"base": [], "this": []}
    loads: dict[str, list[float]] = {"base": [], "this": []}
    for pair in range(a.pairs):
        for side in ("base", "this") if pair % 2 == 0 else ("this", "base"):
            loads[side].append(round(os.getloadavg()[0], 2))
            got = throughput(base_tree if side == "base" else ROOT, a)
            rounds[side] += got["per_round"]
            print(f"pair {pair + 1} {side}: R_listeners {got['R_listeners']}, "
                  f"R_listeners_cpu {got['R_listeners_cpu']}", file=sys.stderr, flush=True)

    def medians(rows: list[dict[str, Any]]) -> dict[str, float]:
        def med(values: Any) -> float:
            return round(statistics.median(values), 3)

        return {"R_listeners": med(r["R_listeners"] for r in rows),
                "R_listeners_cpu": med(r["R_listeners_cpu"] for r in rows),
                "cpu_us_per_job": med(r["cpu_us_per_job"] for r in rows),
                "cpu_us_per_job_with_listeners": med(r["cpu_us_per_job_with_listeners"]
                                                     for r in rows),
                "listeners_cpu_us": med(r["cpu_us_per_job_with_listeners"]
                                        - r["cpu_us_per_job"] for r in rows),
                "rounds": len(rows)}

    print(json.dumps({"base": a.base, "jobs": a.jobs,
                      **{side: {**medians(rows), "loads": loads[side]}
                         for side, rows in rounds.items()}}))


if __name__ == "__main__":
    main()
