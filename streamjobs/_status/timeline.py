"""``JobStatus``: a job's timeline folded from its status records, and the folding rules.

Rules (one place, used by the index, ``lookup`` and ``watch``):

- records are applied in log order (all of a job's records share one partition);
- ``emitted`` goes first in the timeline whenever it arrives, and is the state only while the
  job has no other transition (the emitter's record may land after the worker's);
- ``reprocessed`` and ``replayed`` go after the last transition not later than they are (by
  ``at_ms``): the worker may record the re-run before the tool's record lands;
- a ``dead`` right after ``dead`` replaces it: the worker writes the dead-letter transition with
  the dead-letter record, then once more with its partition and offset when the broker has
  acknowledged it;
- the state is that of the last transition.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .record import ENQUEUED, FINAL, Transition

__all__ = ["JobStatus", "fold", "fold_all", "place"]


@dataclass(frozen=True)
class JobStatus:
    job_id: str
    job_type: str
    state: str
    transitions: tuple[Transition, ...]

    @property
    def final(self) -> bool:
        """Succeeded or dead (until a reprocess or replay runs it again)."""
        return self.state in FINAL

    @property
    def attempts(self) -> int:
        return max((t.attempt for t in self.transitions), default=0)

    @property
    def last(self) -> Transition:
        return self.transitions[-1]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (orjson): what ``GET /api/jobs/{id}`` and ``status --json`` return."""
        return {"job_id": self.job_id, "job_type": self.job_type, "state": self.state,
                "attempts": self.attempts,
                "transitions": [t.as_dict() for t in self.transitions]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> JobStatus:
        """The inverse of ``as_dict`` (the CLI reading the dashboard's API)."""
        steps = tuple(Transition(
            t["state"], int(t["at_ms"]), int(t.get("attempt") or 1), t.get("worker"),
            t.get("error_class"), t.get("error_message"), t.get("topic"), t.get("partition"),
            t.get("offset"), t.get("due_at_ms"), t.get("reason"))
            for t in doc.get("transitions", ()))
        return cls(str(doc["job_id"]), str(doc.get("job_type") or ""), str(doc["state"]), steps)


def fold(current: JobStatus | None, job_id: str, job_type: str, t: Transition) -> JobStatus:
    """``current`` with ``t`` applied (see the module's rules)."""
    if current is None:
        return JobStatus(job_id, job_type, t.state, (t,))
    steps = current.transitions
    job_type = current.job_type or job_type
    if t.state == "emitted":
        if any(s.state == "emitted" for s in steps):
            return current
        steps = (t, *steps)
        return JobStatus(job_id, job_type, steps[-1].state, steps)
    if t.state in ENQUEUED:
        if t in steps:
            return current
        i = place(steps, t)
        steps = (*steps[:i], t, *steps[i:])
        return JobStatus(job_id, job_type, steps[-1].state, steps)
    merge = steps[-1].state == "dead" and t.state == "dead"
    steps = (*steps[:-1], t) if merge else (*steps, t)
    return JobStatus(job_id, job_type, t.state, steps)


def place(steps: tuple[Transition, ...] | list[Transition], t: Transition) -> int:
    """Where a ``reprocessed``/``replayed`` transition goes: after the worker's transitions
    not later than it."""
    i = len(steps)
    while i > 0 and steps[i - 1].at_ms > t.at_ms and steps[i - 1].state not in ENQUEUED:
        i -= 1
    return i


def fold_all(job_id: str, records: Iterable[tuple[str, Transition]]) -> JobStatus | None:
    status: JobStatus | None = None
    for job_type, t in records:
        status = fold(status, job_id, job_type, t)
    return status
