"""Process-wide tuning for a process whose main work is running a worker.

The worker allocates a few short-lived objects per record; with CPython's default generation-0
threshold (700 allocations) the cyclic garbage collector then runs thousands of times a second,
each pass also re-scanning long-lived start-up objects. Freezing what exists after start-up
and collecting generation 0 less often spares the loop that work. ``streamjobs worker`` calls
this; an application embedding ``Worker`` in its own process decides for itself.
"""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    gc.collect()
    gc.freeze()  # start-up objects (modules, schemas, the app) are never scanned again
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
