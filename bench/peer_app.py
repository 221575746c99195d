"""The app `streamjobs worker` runs in bench/peers.py: one no-op job type that notes when it
saw its first job and its ``STREAMJOBS_BENCH_N``-th, and the process CPU in between, in
``STREAMJOBS_BENCH_OUT`` (JSON)."""

from __future__ import annotations

import itertools
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

from streamjobs import App
from streamjobs._schemas.catalogue import Catalogue

_N = int(os.environ.get("STREAMJOBS_BENCH_N", "0"))
_OUT = Path(os.environ.get("STREAMJOBS_BENCH_OUT", os.devnull))
app = App(Catalogue.load(os.environ["STREAMJOBS_BENCH_SCHEMAS"]), name="bench-peers",
          topic_prefix=os.environ.get("STREAMJOBS_BENCH_PREFIX", ""))
_count = itertools.count(1)
_first = [0.0, 0.0]  # perf_counter and process CPU at the first job


@app.job("noop")
def noop(payload: dict[str, Any], ctx: Any) -> None:
    n = next(_count)
    if n == 1:
        _first[0] = time.perf_counter()
        _first[1] = _cpu()
    elif n == _N:
        _OUT.write_text(json.dumps({"count": n, "seconds": time.perf_counter() - _first[0],
                                    "cpu_s": _cpu() - _first[1], "cpu_jobs": n - 1}))


def _cpu() -> float:
    """Process CPU seconds, all threads (the worker's and librdkafka's)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
