"""The app of the schedule and unique-job tests (``tests.apps.flow:app``).

Its catalogue is the one in ``STREAMJOBS_TEST_SCHEMAS`` (each test writes its own), its topic
prefix ``STREAMJOBS_TOPIC_PREFIX``. Every handler appends one JSON line per run to the ledger
named by ``STREAMJOBS_TEST_LEDGER`` (fsync'd): job id, type, key, schedule tick, offset, pid.
Job types named ``slow*`` get an async handler that hangs on its first attempt when the key
starts with ``hang`` (the timeout tests). Job types named ``stuck*`` get a sync handler that
sleeps on its first attempt when the key is ``hang-<seconds>`` (the sync timeout tests). Job types
named ``lane*`` get a sync handler taking 20 ms a job that fails the first attempt of keys
starting with ``fail`` (the priority lane tests); ``alane*`` the same as an async handler.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from streamjobs.worker import App, JobContext

app = App(schemas=os.environ.get("STREAMJOBS_TEST_SCHEMAS",
                                 str(Path(__file__).parent / "flow_schemas")),
          name="tests-flow", topic_prefix=os.environ.get("STREAMJOBS_TOPIC_PREFIX", ""))

_lock = threading.Lock()


def record(payload: dict[str, Any], ctx: JobContext) -> None:
    path = os.environ.get("STREAMJOBS_TEST_LEDGER")
    if not path:
        return
    line = json.dumps({"job_id": ctx.job_id, "type": ctx.job_type, "id": payload["id"],
                       "key": payload["key"], "tick": ctx.header("sj-tick"),
                       "schedule": ctx.header("sj-schedule"), "topic": ctx.topic,
                       "partition": ctx.partition, "offset": ctx.offset, "attempt": ctx.attempt,
                       "pid": os.getpid()}) + "\n"
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


for _name in app.catalogue.names():  # every job type of the test's catalogue
    app.job(_name)(slow if _name.startswith("slow") else
                   stuck if _name.startswith("stuck") else
                   paced if _name.startswith("lane") else
                   apaced if _name.startswith("alane") else record)
