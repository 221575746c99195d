"""Live status updates: the status index's thread -> per-client asyncio queues -> SSE.

One callback is subscribed to the index; it hands each update to the clients following that
job (or every job) with ``loop.call_soon_threadsafe``, so the index thread never waits for a
slow client. A client's queue keeps the newest updates: when it is full the oldest is dropped
(a status page only needs the latest state; the timeline is in every update).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson

__all__ = ["ALL", "Broadcaster", "Subscriber", "sse_event", "sse_stream"]

ALL = "*"  # follow every job
_END = object()  # offered to every stream when the server stops
QUEUE_SIZE = 1024
KEEPALIVE_S = 15.0


class Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.dropped = 0

    def offer(self, item: Any) -> None:
        """Thread-safe: called on the index thread."""
        self.loop.call_soon_threadsafe(self._put, item)

    def _put(self, item: Any) -> None:
        if self.queue.full() and item is not _END:
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(item)


class Broadcaster:
    """Fans index updates (anything with a ``job_id``) out to subscribers by job id."""

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscriber]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """End every open stream (the server is stopping: do not make it wait for them)."""
        with self._lock:
            self._closed = True
            subs = [sub for group in self._subs.values() for sub in group]
        for sub in subs:
            sub.offer(_END)

    def publish(self, status: Any) -> None:
        """The index's subscribe callback (runs on the index thread)."""
        with self._lock:
            targets = [*self._subs.get(status.job_id, ()), *self._subs.get(ALL, ())]
        for sub in targets:
            sub.offer(status)

    @property
    def clients(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subs.values())

    @contextmanager
    def listen(self, job_id: str) -> Iterator[Subscriber]:
        sub = Subscriber(asyncio.get_running_loop())
        with self._lock:
            self._subs.setdefault(job_id, set()).add(sub)
            if self._closed:
                sub.offer(_END)
        try:
            yield sub
        finally:
            with self._lock:
                subs = self._subs.get(job_id)
                if subs is not None:
                    subs.discard(sub)
                    if not subs:
                        del self._subs[job_id]


def sse_event(data: Any, event: str = "status") -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def sse_stream(sub: Subscriber, first: Any | None, encode: Callable[[Any], Any],
                     disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
    """``first`` (the current status, if any), then every update, with keep-alive comments
    so proxies do not close an idle stream."""
    yield b"retry: 2000\n\n"
    if first is not None:
        yield sse_event(encode(first))
    while True:
        try:
            item = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
        except TimeoutError:
            if await disconnected():
                return
            yield b": keep-alive\n\n"
            continue
        if item is _END:
            return
        yield sse_event(encode(item))
