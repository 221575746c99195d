"""Job status by id, kept in Kafka only: a compacted topic of transitions keyed by job id.

- ``record``: the record format, ``status_topic``, ``partition_for``, ``Transition``;
- ``timeline``: ``JobStatus``, a job's transitions folded by fixed rules;
- ``lookup``: one job read from the one partition its id hashes to (``lookup``, ``watch``);
- ``index``: ``StatusIndex``, every job in bounded memory (the dashboard server's);
- ``writer``: ``StatusWriter``, how emit, reprocess and replay write records.

The worker's writes live in ``streamjobs._worker.statuses``. See docs/status.md.
"""

from __future__ import annotations

from .._names import status_topic
from .index import StatusIndex
from .lookup import Follower, lookup, watch
from .record import FINAL, MODES, STATES, Transition, partition_for
from .timeline import JobStatus

__all__ = [
    "FINAL",
    "MODES",
    "STATES",
    "Follower",
    "JobStatus",
    "StatusIndex",
    "Transition",
    "lookup",
    "partition_for",
    "status_topic",
    "watch",
]
