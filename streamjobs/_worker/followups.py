"""Follow-up jobs: what a handler emits with ``ctx.emit`` and when its parent counts finished.

A follow-up is validated and encoded by ``Producer``'s own code (``_prepare`` and
``_check_size``: one implementation of emit's rules) on the handler's thread, so a bad payload
raises in the handler, and handed to the poll thread through a deque. It carries the parent's
``traceparent`` (unless the handler gives its own) and ``sj-parent-id``.

At-least-once: the poll thread produces it through the worker's outbox at once; the parent's
offset is finished only when the handler (or its retry/dead-letter record) is done AND every
follow-up it emitted was acknowledged by the broker (``gate``/``holds``). A parent that fails
after emitting leaves its follow-ups sent: its retry emits them again (duplicates downstream).

Exactly-once (``transactions.py``): nothing is produced at once. Records wait here, per parent,
until the parent's offset is below the partition's commit watermark; the transaction that
commits that offset carries them (``release``).

A follow-up's ``emitted`` status record (job types recording ``all``) is written once the
follow-up is in Kafka: on its acknowledgement, or (exactly-once) once its transaction
committed, never for a follow-up a ``read_committed`` reader will not see. That is on the poll
thread, so it never waits for room in the encoder's local queue: a full queue keeps the status
for the next loop turns (``take``), as the worker's own status records do (``statuses.py``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import _headers as h
from .outbox import Outgoing, release_below

if TYPE_CHECKING:
    from .._producer import Producer, _Record

_log = logging.getLogger("streamjobs.worker")

__all__ = ["FollowUps", "follow_up"]


def _nothing() -> None:
    pass


def follow_up(encoder: Producer, parent_headers: h.Headers, parent_id: str, job_type: str,
              payload: Mapping[str, Any], *, key: str | bytes | None,
              headers: Mapping[str, str | bytes] | None, traceparent: str | None,
              delay: float | timedelta | None, run_at: datetime | None,
              job_id: str | None) -> _Record:
    """The record of a follow-up job: ``encoder``'s (``Producer``'s) validation, encoding and
    size check, the parent's ``traceparent`` unless one is given, and ``sj-parent-id``.
    Raises (PayloadError, UnknownJobType, RecordTooLarge, ValueError) with nothing sent. The
    worker's ``ctx.emit`` and ``streamjobs.testing.JobRunner``'s share it."""
    if traceparent is None:
        traceparent = h.get(parent_headers, h.TRACEPARENT)
    rec = encoder._prepare(job_type, payload, key, headers, traceparent, delay, run_at, job_id)
    pid = parent_id.encode()
    rec[3].append((h.PARENT_ID, pid))
    rec = (*rec[:5], rec[5] + len(h.PARENT_ID) + len(pid) + 8, rec[6])
    encoder._check_size(rec)
    return rec


# (part, parent offset, topic, key, value, headers, writes its emitted status)
_Pending = tuple[Any, int, str, bytes | None, bytes, Any, Callable[[], None]]


class FollowUps:
    """One per worker. ``emit`` runs on handler threads; everything else on the poll thread."""

    def __init__(self, outbox: Any, finish: Callable[[Any, int], None],
                 encoder: Callable[[], Producer], *, transactional: bool = False) -> None:
        self._outbox = outbox
        self._finish = finish
        self._make_encoder = encoder
        self._encoder: Producer | None = None
        self._lock = threading.Lock()
        self._inbox: deque[_Pending] = deque()
        self.transactional = transactional
        # part -> {parent offset: follow-ups not yet acknowledged}
        self.pending: dict[Any, dict[int, int]] = {}
        # part -> parent offsets finished but for their follow-ups
        self._waiting: dict[Any, set[int]] = {}
        # exactly-once: part -> {parent offset: records not yet in a transaction}
        self.held: dict[Any, dict[int, list[Outgoing]]] = {}
        self.emitted = 0
        # emitted statuses a full local queue refused: (produce call, job id), oldest first
        self._late: deque[tuple[Callable[[], None], str]] = deque()

    # -- handler threads ----------------------------------------------------------------------

    def emit(self, parent: Any, job_type: str, payload: Mapping[str, Any], *,
             key: str | bytes | None, headers: Mapping[str, str | bytes] | None,
             traceparent: str | None, delay: float | timedelta | None,
             run_at: datetime | None, job_id: str | None) -> str:
        p = self._encoder or self._encoder_now()
        rec = follow_up(p, parent.headers, parent.job_id, job_type, payload, key=key,
                        headers=headers, traceparent=traceparent, delay=delay, run_at=run_at,
                        job_id=job_id)
        part = getattr(parent, "_part", None)
        self._inbox.append((part if part is not None else (parent.topic, parent.partition),
                            parent.offset, rec[0], rec[1], rec[2], rec[3],
                            functools.partial(self._record_emitted, p, job_type, rec)))
        return rec[4]

    def _encoder_now(self) -> Producer:
        with self._lock:
            if self._encoder is None:
                self._encoder = self._make_encoder()
            return self._encoder

    # -- poll thread --------------------------------------------------------------------------

    def take(self, resolve: Callable[[Any], Any]) -> None:
        """Send (or, exactly-once, hold) what handlers emitted since the last call. ``resolve``
        turns a (topic, partition) placeholder into the current ``Part`` (None: gone)."""
        if self._late:
            self._send_late()
        inbox = self._inbox
        while inbox:
            part, offset, topic, key, value, hdrs, status = inbox.popleft()
            if isinstance(part, tuple):
                part = resolve(part)
                if part is None:
                    continue
            if part.gone:
                continue  # its parent runs again where the partition went
            self.emitted += 1
            if self.transactional:  # sent with the commit of its parent's offset
                self.held.setdefault(part, {}).setdefault(offset, []).append(
                    Outgoing(topic, key, value, hdrs, _nothing, on_commit=status))
                continue
            counts = self.pending.get(part)
            if counts is None:
                counts = self.pending[part] = {}
            counts[offset] = counts.get(offset, 0) + 1
            self._outbox.send(Outgoing(topic, key, value, hdrs,
                                       self._acked_cb(part, offset, status)))

    def _record_emitted(self, encoder: Producer, job_type: str, rec: _Record) -> None:
        """The follow-up's ``emitted`` status, through the encoder's own client, never
        waiting (poll thread): a full local queue keeps it for later; a failure is logged,
        the follow-up itself is written."""
        try:
            write = encoder._emitted_write(job_type, rec)
        except Exception as exc:  # status is best effort: never the end of the loop
            _log.warning("emitted status of follow-up %s not written: %s", rec[4], exc)
            return
        if write is not None:
            self._late.append((write, rec[4]))
            self._send_late()

    def _send_late(self) -> None:
        late = self._late
        while late:
            write, job_id = late[0]
            try:
                write()
            except BufferError:
                return  # still full: the next turn
            except Exception as exc:
                _log.warning("emitted status of follow-up %s not written: %s", job_id, exc)
            late.popleft()

    def _acked_cb(self, part: Any, offset: int,
                  status: Callable[[], None]) -> Callable[[], None]:
        def acked() -> None:
            try:
                self._acked(part, offset)
            finally:  # the parent's bookkeeping first: a status failure cannot hold it
                status()

        return acked

    def _acked(self, part: Any, offset: int) -> None:
        counts = self.pending.get(part)
        if counts is None:
            return
        left = counts[offset] - 1
        if left:
            counts[offset] = left
            return
        del counts[offset]
        if not counts:
            del self.pending[part]
        waiting = self._waiting.get(part)
        if waiting is not None and offset in waiting:
            waiting.discard(offset)
            if not waiting:
                del self._waiting[part]
            self._finish(part, offset)

    def gate(self, part: Any, offsets: Sequence[int]) -> Sequence[int]:
        """Of ``offsets`` (finished by their handlers), those that are finished now; the
        others wait for their follow-ups' acknowledgements. Exactly-once: all of them (their
        follow-ups wait for the watermark instead)."""
        counts = self.pending.get(part)
        if counts is None or self.transactional:
            return offsets
        ready = [o for o in offsets if o not in counts]
        if len(ready) < len(offsets):
            waiting = self._waiting.setdefault(part, set())
            waiting.update(o for o in offsets if o in counts)
        return ready

    def holds(self, part: Any, offset: int) -> bool:
        """``offset`` waits for its follow-ups (its finish comes with the last ack)."""
        counts = self.pending.get(part)
        if counts is None or self.transactional or offset not in counts:
            return False
        self._waiting.setdefault(part, set()).add(offset)
        return True

    def unacked(self, part: Any) -> int:
        """Parents of ``part`` whose follow-ups are not all acknowledged."""
        counts = self.pending.get(part)
        return len(counts) if counts else 0

    def discard(self, part: Any, offset: int) -> None:
        """Exactly-once: the parent at ``offset`` failed; the follow-ups of that attempt
        go with it (the attempt that succeeds emits its own)."""
        held = self.held.get(part)
        if held is not None and held.pop(offset, None) is not None and not held:
            del self.held[part]

    def release(self, part: Any, below: int) -> list[Outgoing]:
        """Exactly-once: the held records of parents below ``below`` (the watermark)."""
        return release_below(self.held, part, below)

    def close(self, timeout: float = 5.0) -> None:
        """On shutdown: the statuses a full queue held back get up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self._late and time.monotonic() < deadline:
            self._send_late()
            if self._late:
                time.sleep(0.05)  # the encoder's own poll thread drains its queue
        if self._late:
            _log.warning("%d emitted status(es) of follow-ups not written: local queue full",
                         len(self._late))
        if self._encoder is not None:
            self._encoder.close()  # its client sent only status records, if any

    def forget(self, part: Any) -> None:
        """``part`` left the assignment: its parents run again elsewhere."""
        self.pending.pop(part, None)
        self._waiting.pop(part, None)
        self.held.pop(part, None)
