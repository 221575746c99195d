"""The demo app: welcome emails and image thumbnails, with a bug to fix.

- ``send_welcome_email`` fails transiently (a flaky SMTP server) on the first attempt for about
  one user in four: those jobs are retried through the retry topics and then succeed.
- Addresses with a ``+`` hit "bug #42" and fail permanently; images wider than 4000 px raise
  ``ValueError``, which the catalogue lists as permanent. Both land in the dead-letter topics.
- Creating the file ``$DEMO_STATE_DIR/fixed`` "deploys the fix": reprocessed jobs then succeed.

Each finished run appends a line to ``$DEMO_STATE_DIR/outcomes.log`` for the demo's summary.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

from streamjobs import App, JobContext, PermanentError

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("DEMO_STATE_DIR", ROOT / ".streamjobs" / "demo"))

app = App(schemas=ROOT / "schemas", name="demo")


def _fixed() -> bool:
    return (STATE / "fixed").exists()


def _record(ctx: JobContext, outcome: str) -> None:
    line = f"{ctx.job_id} {ctx.job_type} {ctx.attempt} {outcome}\n".encode()
    STATE.mkdir(parents=True, exist_ok=True)
    fd = os.open(STATE / "outcomes.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.job("send_welcome_email")
def send_welcome_email(payload: dict[str, Any], ctx: JobContext) -> None:
    user = payload["user_id"]
    if ctx.attempt == 1 and zlib.crc32(user.encode()) % 4 == 0:
        _record(ctx, "transient")
        raise ConnectionError("SMTP server timed out")
    if "+" in payload["email"] and not _fixed():
        _record(ctx, "permanent")
        raise PermanentError("addresses with '+' are rejected (bug #42)")
    ctx.log.debug("email sent", to=payload["email"])
    _record(ctx, "ok")


@app.job("make_thumbnail")
def make_thumbnail(payload: dict[str, Any], ctx: JobContext) -> None:
    if payload["width"] > 4000 and not _fixed():
        _record(ctx, "permanent")
        raise ValueError(f"image {payload['image_id']} is too large to thumbnail")
    _record(ctx, "ok")
