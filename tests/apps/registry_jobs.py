"""The app the schema registry tests run (``tests.apps.registry_jobs:app``): one job type,
``order``, framed for a schema registry. Each finished job appends a JSON line (payload, job
id, type, attempt) to the ledger named by ``STREAMJOBS_TEST_LEDGER``; a job whose ``note`` is
"fail" fails for good (a dead letter of the framing it came in)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from streamjobs import PermanentError
from streamjobs._worker import App, JobContext

app = App(schemas=Path(__file__).parent / "registry_schemas", name="tests-registry",
          topic_prefix=os.environ.get("STREAMJOBS_TOPIC_PREFIX", ""))

_lock = threading.Lock()


@app.job("order")
def order(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload.get("note") == "fail":
        raise PermanentError("asked to fail")
    path = os.environ.get("STREAMJOBS_TEST_LEDGER")
    if not path:
        return
    line = json.dumps({"payload": payload, "job_id": ctx.job_id, "job_type": ctx.job_type,
                       "attempt": ctx.attempt, "topic": ctx.topic}) + "\n"
    with _lock, open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
