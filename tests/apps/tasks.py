"""The app the worker tests run (``tests.apps.tasks:app``).

Each handler appends one JSON line per finished job to the ledger file named by
``STREAMJOBS_TEST_LEDGER`` (fsync'd, so a killed worker never loses a finished line), after
sleeping ``sleep_ms``. ``fail`` makes attempts <= ``fail_attempts`` raise:
``error`` (RuntimeError), ``retry:<seconds>`` (errors.Retry), ``permanent`` (PermanentError),
``bad_input`` (BadInput, listed in the catalogue's permanent_errors); ``while_file:<path>``
raises RuntimeError on every attempt while that file exists (a job that works once fixed).
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
from streamjobs.errors import PermanentError, Retry

# Topics and the default group follow STREAMJOBS_TOPIC_PREFIX (streamjobs.settings).
app = App(schemas=Path(__file__).parent / "schemas", name="tests-apps")

_lock = threading.Lock()


class BadInput(Exception):
    pass


def _maybe_fail(payload: dict[str, Any], ctx: JobContext) -> None:
    mode = payload["fail"]
    if mode.startswith("while_file:"):
        if os.path.exists(mode.split(":", 1)[1]):
            raise RuntimeError("the file is still there")
        return
    if not mode or ctx.attempt > payload["fail_attempts"]:
        return
    if mode == "error":
        raise RuntimeError(f"boom on attempt {ctx.attempt}")
    if mode.startswith("retry:"):
        raise Retry(float(mode.split(":", 1)[1]))
    if mode == "permanent":
        raise PermanentError("cannot ever work")
    if mode == "bad_input":
        raise BadInput("bad input")


def _record(payload: dict[str, Any], ctx: JobContext, start: float) -> None:
    path = os.environ.get("STREAMJOBS_TEST_LEDGER")
    if not path:
        return
    line = json.dumps({"id": payload["id"], "job_id": ctx.job_id, "attempt": ctx.attempt,
                       "topic": ctx.topic, "partition": ctx.partition, "offset": ctx.offset,
                       "key": payload["key"], "start": start, "end": time.time(),
                       "due_at": ctx.header("sj-due-at"), "created_at": ctx.created_at_ms,
                       "pid": os.getpid()}) + "\n"
    with _lock:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)


@app.job("task")
def task(payload: dict[str, Any], ctx: JobContext) -> None:
    start = time.time()
    _maybe_fail(payload, ctx)
    if payload["sleep_ms"]:
        time.sleep(payload["sleep_ms"] / 1000)
    _record(payload, ctx, start)


@app.job("atask")
async def atask(payload: dict[str, Any], ctx: JobContext) -> None:
    start = time.time()
    _maybe_fail(payload, ctx)
    if payload["sleep_ms"]:
        await asyncio.sleep(payload["sleep_ms"] / 1000)
    _record(payload, ctx, start)
