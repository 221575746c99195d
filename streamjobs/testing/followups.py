"""``ctx.emit`` inside ``JobRunner``: the follow-ups a handler emits in a test.

The record is built by the worker's own ``follow_up`` (``Producer``'s validation, encoding and
size check, the parent's ``traceparent``, ``sj-parent-id``): a payload that would raise in a
worker raises here. What happens to the follow-ups of a run is the worker's rule for its mode:
at-least-once they are sent whatever the handler then does (a failed run's follow-ups stay
sent, its retry emits them again); exactly-once (``App(exactly_once=True)``) those of a failed
run are dropped. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .. import _headers as h
from .._avro.codec import Codec
from .._producer import _CLIENT_MAX, Producer
from .._producer import due_at_ms as due_at_ms_of
from .._schemas.catalogue import Catalogue
from .._worker.followups import follow_up

__all__ = ["Collector", "Emitted"]

# Set again by the runner's queue, on its fake clock.
_SCHEDULING = frozenset({h.DUE_AT, h.TARGET})


class _Encoder(Producer):
    """``Producer``'s rules without a client (nothing is sent; no status topic). The size
    limit is the client's own: there is no broker to ask for the topic's."""

    def __init__(self, catalogue: Catalogue, codec: Codec) -> None:  # no client to build
        self.catalogue = catalogue
        self.codec = codec
        self._types = {}
        self._lanes = {}
        self._status = None
        self._status_opened = True
        self._limits = {}
        self._client_max = _CLIENT_MAX
        self._closed = True

    def _fetch_limit(self, topic: str) -> int:
        self._limits[topic] = self._client_max
        return self._client_max

    def close(self) -> None:
        pass


# (job type, job id, key, value, headers as a worker would send them, due at (fake ms) or None)
Emitted = tuple[str, str, bytes | None, bytes, h.Headers, int | None]


class Collector:
    """What ``ctx.emit`` calls in a runner's handler (bound like a worker's executor:
    ``context.bind_thread``); collects the follow-ups of the run under way."""

    def __init__(self, catalogue: Catalogue, codec: Codec, now_ms: Any) -> None:
        self.followups = self  # ctx.emit looks for the bound executor's ``followups``
        self._encoder = _Encoder(catalogue, codec)
        self._now_ms = now_ms  # the runner's fake clock (a callable: ms)
        self.collected: list[Emitted] = []

    def emit(self, parent: Any, job_type: str, payload: Mapping[str, Any], *,
             key: str | bytes | None, headers: Mapping[str, str | bytes] | None,
             traceparent: str | None, delay: float | timedelta | None,
             run_at: datetime | None, job_id: str | None) -> str:
        now = self._now_ms()
        due = due_at_ms_of(now, delay, run_at)  # emit's own rule, on the fake clock
        if due is not None and due <= now:
            due = None
        rec = follow_up(self._encoder, parent.headers, parent.job_id, job_type, payload,
                        key=key, headers=headers, traceparent=traceparent,
                        delay=None if due is None else (due - now) / 1000, run_at=None,
                        job_id=job_id)
        hdrs: h.Headers = []
        for name, value in rec[3]:
            if name in _SCHEDULING:
                continue
            if name == h.CREATED_AT:  # the rich form of a delayed job: the fake clock's
                value = str(now)
            hdrs.append((name, value.encode() if isinstance(value, str) else value))
        self.collected.append((job_type, rec[4], rec[1], rec[2], hdrs, due))
        return rec[4]

    def take(self) -> list[Emitted]:
        out, self.collected = self.collected, []
        return out
