"""The app of the schedule and unique-job tests (``tests.apps.flow:app``).

Its catalogue is the one in ``STREAMJOBS_TEST_SCHEMAS`` (each test writes its own), its topic
prefix ``STREAMJOBS_TOPIC_PREFIX``. Every handler appends one JSON line per run to the ledger
named by ``STREAMJOBS_TEST_LEDGER`` (fsync'd): job id, type, key, schedule tick, offset, pid.
Job types named ``slow*`` get an async handler that hangs on its first attempt when the key
starts with ``hang`` (the timeout tests). Job types named ``flaky*`` fail the first
``STREAMJOBS_TEST_FAIL_FIRST`` runs of the process (ledger lines with ``"failed": true``);
``busy*`` handlers take 0.3 s and note when they started (the flow-control tests).
Job types named ``stuck*`` get a sync handler that sleeps on its first attempt when the key is
``hang-<seconds>`` (the sync timeout tests). Job types named ``lane*`` get a sync handler
taking 20 ms a job that fails the first attempt of keys starting with ``fail`` (the priority
lane tests); ``alane*`` the same as an async handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from streamjobs._worker import App, JobContext

app = App(schemas=os.environ.get("STREAMJOBS_TEST_SCHEMAS",
                                 str(Path(__file__).parent / "flow_schemas")),
          name="tests-flow", topic_prefix=os.environ.get("STREAMJOBS_TOPIC_PREFIX", ""))

_lock = threading.Lock()


def record(payload: dict[str, Any], ctx: JobContext, **extra: Any) -> None:
    path = os.environ.get("STREAMJOBS_TEST_LEDGER")
    if not path:
        return
    line = json.dumps({"job_id": ctx.job_id, "type": ctx.job_type, "id": payload["id"],
                       "key": payload["key"], "tick": ctx.header("sj-tick"),
                       "schedule": ctx.header("sj-schedule"), "topic": ctx.topic,
                       "partition": ctx.partition, "offset": ctx.offset, "attempt": ctx.attempt,
                       "pid": os.getpid(), "at": time.time(), **extra}) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


async def slow(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["key"].startswith("hang") and ctx.attempt == 1:
        await asyncio.sleep(60)
    record(payload, ctx)


_runs = [0]


def flaky(payload: dict[str, Any], ctx: JobContext) -> None:
    with _lock:
        _runs[0] += 1
        fail = _runs[0] <= int(os.environ.get("STREAMJOBS_TEST_FAIL_FIRST", "0"))
    if fail:
        record(payload, ctx, failed=True)
        raise RuntimeError(f"failing run {_runs[0]}")
    record(payload, ctx)


def busy(payload: dict[str, Any], ctx: JobContext) -> None:
    started = time.time()
    time.sleep(0.3)
    record(payload, ctx, started=started)


def stuck(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["key"].startswith("hang-") and ctx.attempt == 1:
        time.sleep(float(payload["key"].split("-", 1)[1]))
    record(payload, ctx)


def paced(payload: dict[str, Any], ctx: JobContext) -> None:
    time.sleep(0.02)
    if payload["key"].startswith("fail") and ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    record(payload, ctx)


async def apaced(payload: dict[str, Any], ctx: JobContext) -> None:
    await asyncio.sleep(0.02)
    if payload["key"].startswith("fail") and ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    record(payload, ctx)


_HANDLERS = {"slow": slow, "flaky": flaky, "busy": busy, "stuck": stuck, "lane": paced,
             "alane": apaced}
for _name in app.catalogue.names():  # every job type of the test's catalogue
    app.job(_name)(next((f for p, f in _HANDLERS.items() if _name.startswith(p)), record))
