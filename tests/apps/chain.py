"""The app of the follow-up tests (``tests.apps.chain:app``): a parent job emits one ``child``
job per run with ``ctx.emit`` (id ``<parent id>/c``, same key), then sleeps ``sleep_ms``, then
fails on attempts <= ``fail_attempts`` when ``fail`` is ``after_emit`` (the child already
emitted) or emits an invalid child when ``fail`` is ``bad_child``. Each finished run appends a
line to the ledger named by ``STREAMJOBS_TEST_LEDGER`` (like tests/apps/tasks.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from streamjobs._worker import App, JobContext
from tests.apps.tasks import _record

app = App(schemas=Path(__file__).parent / "chain_schemas", name="tests-chain")


def _child(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["fail"] == "bad_child":
        ctx.emit("child", {"id": 42})  # not a string: PayloadError, nothing sent
    ctx.emit("child", {"id": f"{payload['id']}/c", "key": payload["key"]})


def _after(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["fail"] == "after_emit" and ctx.attempt <= payload["fail_attempts"]:
        raise RuntimeError(f"failed after emitting, attempt {ctx.attempt}")


@app.job("parent")
def parent(payload: dict[str, Any], ctx: JobContext) -> None:
    start = time.time()
    _child(payload, ctx)
    if payload["sleep_ms"]:
        time.sleep(payload["sleep_ms"] / 1000)
    _after(payload, ctx)
    _record(payload, ctx, start)


@app.job("aparent")
async def aparent(payload: dict[str, Any], ctx: JobContext) -> None:
    start = time.time()
    _child(payload, ctx)
    if payload["sleep_ms"]:
        await asyncio.sleep(payload["sleep_ms"] / 1000)
    _after(payload, ctx)
    _record(payload, ctx, start)
