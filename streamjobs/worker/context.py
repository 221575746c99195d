"""``JobContext``: what a handler knows about the job it runs.

One object per record, built in the poll thread; it is also the worker's unit of work (the
underscored slots), so the hot path allocates nothing else per job. ``log`` is built on first
use: binding a structlog logger per job would cost more than a no-op handler.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from .. import headers as h

if TYPE_CHECKING:
    from ..catalogue import JobType
    from .app import Handler

__all__ = ["JobContext"]


class JobContext:
    """Read-only facts about the running job.

    ``topic``/``partition``/``offset`` are where the record was read (a retry tier topic for a
    retried job); ``job_topic`` is the job type's topic. ``attempt`` is 1 for the first run.
    """

    __slots__ = ("_due_at_ms", "_handler", "_job", "_log", "_timestamp_ms", "_value",
                 "attempt", "created_at_ms", "headers", "job_id", "job_topic", "job_type",
                 "key", "offset", "partition", "payload", "topic")

    def __init__(self, job_id: str, job_type: str, attempt: int, headers: h.Headers, topic: str,
                 partition: int, offset: int, key: bytes | None, created_at_ms: int | None,
                 payload: dict[str, Any], job_topic: str, value: bytes, timestamp_ms: int,
                 job: JobType, handler: Handler, due_at_ms: int | None = None) -> None:
        self.job_id = job_id
        self.job_type = job_type
        self.attempt = attempt
        self.headers = headers
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.created_at_ms = created_at_ms
        self.payload = payload
        self.job_topic = job_topic
        self._value = value
        self._timestamp_ms = timestamp_ms
        self._job = job
        self._handler = handler
        self._due_at_ms = due_at_ms
        self._log: Any = None

    @property
    def log(self) -> Any:
        """A structlog logger bound to this job's id, type, attempt and position."""
        if self._log is None:
            self._log = structlog.get_logger("streamjobs.job").bind(
                job_id=self.job_id, job_type=self.job_type, attempt=self.attempt,
                topic=self.topic, partition=self.partition, offset=self.offset)
        return self._log

    def header(self, name: str) -> str | None:
        """Last value of header ``name`` as text."""
        return h.get(self.headers, name)

    def __repr__(self) -> str:
        return (f"JobContext(job_id={self.job_id!r}, job_type={self.job_type!r}, "
                f"attempt={self.attempt}, topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset})")
