"""What a test run produced: one ``JobOutcome`` per handler run, ``RunReport`` per ``run``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .. import _headers as h

__all__ = ["FollowUp", "JobOutcome", "RunReport", "Status"]

Status = Literal["succeeded", "retried", "dead_lettered"]


@dataclass(frozen=True)
class FollowUp:
    """A job a handler emitted with ``ctx.emit`` and that was sent (as a worker would send
    it). ``payload`` is as its handler would get it (decoded, defaults filled); ``headers``
    as sent (``sj-parent-id``, the parent's ``traceparent`` unless one was given). ``due_at``:
    fake-clock seconds of a delayed follow-up. ``runs``: this app handles its type, so it
    joined the runner's queue (else a worker of another app would run it)."""

    job_id: str
    job_type: str
    payload: dict[str, Any]
    parent_id: str
    key: bytes | None
    headers: h.Headers
    topic: str
    partition: int
    due_at: float | None
    runs: bool



@dataclass(frozen=True)
class JobOutcome:
    """One run (attempt) of a job. ``ran_at`` is fake-clock seconds; ``delay`` is set when
    ``status == "retried"``, ``reason`` when ``"dead_lettered"``; ``headers`` are what the
    handler saw, or for a dead-lettered job the dead-letter record's headers."""

    job_id: str
    job_type: str
    attempt: int
    status: Status
    payload: dict[str, Any] | None
    ran_at: float
    topic: str
    partition: int
    offset: int
    headers: h.Headers
    error: BaseException | None = None
    error_class: str | None = None
    message: str | None = None
    delay: float | None = None
    reason: str | None = None
    # Follow-ups this run sent (ctx.emit); exactly-once, none for a run that failed.
    emitted: tuple[FollowUp, ...] = ()


@dataclass
class RunReport:
    outcomes: list[JobOutcome] = field(default_factory=list)
    pending: int = 0  # jobs still queued (not due, or past ``until``)

    def _count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def succeeded(self) -> int:
        return self._count("succeeded")

    @property
    def retried(self) -> int:
        return self._count("retried")

    @property
    def dead_lettered(self) -> int:
        return self._count("dead_lettered")

    @property
    def emitted(self) -> list[FollowUp]:
        """The follow-ups this ``run`` sent, in order."""
        return [f for o in self.outcomes for f in o.emitted]
