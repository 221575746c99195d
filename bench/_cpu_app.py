"""The app of ``bench/handlers.py``'s CPU-bound phase, run by the real ``streamjobs worker``
CLI (``--processes P``). Its handler spins ``SJ_BENCH_SPIN`` iterations of pure Python (about
1 ms, calibrated by the parent) and appends ``time count`` to ``SJ_BENCH_OUT/<pid>`` after
each job (a write of a few µs), so the parent can count jobs per second across processes."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App

app = App(Catalogue.load(Path(os.environ["SJ_BENCH_SCHEMAS"])), name="bench-cpu")
_spin = int(os.environ.get("SJ_BENCH_SPIN", "20000"))
_out: Any = None
_count = itertools.count(1)
_lock = threading.Lock()  # handler threads of one process share the file


def spin(n: int) -> int:
    """Pure-Python work: holds the GIL the whole time, as a CPU-bound handler does."""
    x = 0
    for i in range(n):
        x = (x + i * i) % 1_000_003
    return x


@app.job("noop")
def cpu(payload: dict[str, Any], ctx: Any) -> None:
    global _out
    spin(_spin)
    with _lock:
        if _out is None:
            _out = open(Path(os.environ["SJ_BENCH_OUT"]) / str(os.getpid()), "a")  # noqa: SIM115
        _out.write(f"{time.time()} {next(_count)}\n")
        _out.flush()
