"""The app the fault scenarios run: ``streamjobs worker tests.faults.app:app``.

Environment (set by ``tests/faults/harness.py``):
    STREAMJOBS_FAULTS_SCHEMAS     the scenario's catalogue (private topic names)
    STREAMJOBS_FAULTS_LEDGER      directory of the ledger; each process appends to its own file

The handler records its start and finish in the ledger, sleeps ``work_ms`` and fails when
``should_fail(job id, attempt, fail_permille)`` says so: deterministic, so the checker knows
which jobs must end succeeded and which dead-lettered.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

from streamjobs._worker import App, JobContext
from tests.faults.ledger import FAIL, OK, START, process_writer

SCHEMAS = os.environ.get("STREAMJOBS_FAULTS_SCHEMAS") or str(Path(__file__).parent / "schemas")
LEDGER = os.environ.get("STREAMJOBS_FAULTS_LEDGER")

app = App(schemas=SCHEMAS, name="faults")


def should_fail(job_id: str, attempt: int, permille: int) -> bool:
    if permille <= 0:
        return False
    digest = hashlib.blake2b(f"{job_id}:{attempt}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % 1000 < permille


class InjectedFailure(RuntimeError):
    """A failure the scenario asked for (retryable)."""


@app.job("fault_job")
def fault_job(payload: dict[str, Any], ctx: JobContext) -> None:
    due_text = ctx.header("sj-due-at")
    due = int(due_text) if due_text else None
    ledger = process_writer(LEDGER) if LEDGER else None
    if ledger:
        ledger.run(START, ctx.job_id, ctx.attempt, ctx.topic, ctx.partition, ctx.offset, due)
    if payload["work_ms"]:
        time.sleep(payload["work_ms"] / 1000)
    if should_fail(ctx.job_id, ctx.attempt, payload["fail_permille"]):
        if ledger:
            ledger.run(FAIL, ctx.job_id, ctx.attempt, ctx.topic, ctx.partition, ctx.offset, due)
        raise InjectedFailure(f"injected failure of attempt {ctx.attempt}")
    if ledger:
        ledger.run(OK, ctx.job_id, ctx.attempt, ctx.topic, ctx.partition, ctx.offset, due)
