"""The worker: consume job topics, run handlers, commit at-least-once, retry and dead-letter.

    from streamjobs import App, JobContext

    app = App(schemas="schemas")

    @app.job("send_welcome_email")
    def send_welcome_email(payload: dict, ctx: JobContext) -> None: ...

Run it with ``streamjobs worker myapp:app`` or ``run_worker(app, WorkerSettings(...))``.
See docs/worker.md.
"""

from __future__ import annotations

from .._names import wait_group
from .app import App, Handler
from .context import JobContext
from .runner import Worker, run_worker
from .settings import WorkerSettings

__all__ = ["App", "Handler", "JobContext", "Worker", "WorkerSettings", "run_worker", "wait_group"]
