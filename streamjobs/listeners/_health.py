"""Liveness and readiness from worker events, served over HTTP with the metrics.

- Live: the poll loop sent ``LoopAlive`` within ``liveness_ttl`` seconds (construction counts
  as the first heartbeat, so a starting worker has one TTL to reach its loop), and fewer sync
  handler threads are stuck past their timeout than the worker's stuck limit (``SlotStuck`` /
  ``SlotFreed``; _worker/stuck.py): at the limit every slot's worth is gone and only a restart
  gets it back.
- ``LivenessFile``: the same verdict for the supervisor of ``--processes``, as a file touched
  at each live heartbeat (the supervisor kills a child whose file has gone stale).
- Ready: a ``PartitionsAssigned`` arrived since start (an empty assignment counts: the worker
  has joined the group, there is just nothing for it), the last ``BrokerStatus`` said
  reachable (no status yet counts as reachable: an assignment proves broker contact), and
  ``WorkerStopping`` has not been seen.

``HealthServer`` answers ``/healthz``, ``/readyz`` and ``/metrics`` from a stdlib
``ThreadingHTTPServer`` in a daemon thread, so probes never touch the worker's loop.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..events import (
    BrokerStatus,
    Event,
    EventBus,
    LoopAlive,
    PartitionsAssigned,
    SlotFreed,
    SlotStuck,
    WorkerStopping,
)

__all__ = ["HealthListener", "HealthServer", "LivenessFile", "serve"]


class HealthListener:
    """Keeps the latest liveness and readiness facts; cheap to query from any thread."""

    def __init__(
        self, liveness_ttl: float = 30.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if liveness_ttl <= 0:
            raise ValueError("liveness_ttl must be > 0")
        self.liveness_ttl = liveness_ttl
        self._clock = clock
        self._last_alive = clock()
        self._assigned = False
        self._broker_reachable = True
        self._broker_detail = ""
        self._stopping: str | None = None
        self._stuck = 0
        self._stuck_limit = 0  # 0: no stuck thread reported yet

    def attach(self, bus: EventBus) -> None:
        bus.subscribe(self.on_stuck, SlotStuck)
        bus.subscribe(self.on_freed, SlotFreed)
        bus.subscribe(self.on_loop_alive, LoopAlive)
        bus.subscribe(self.on_assigned, PartitionsAssigned)
        bus.subscribe(self.on_broker_status, BrokerStatus)
        bus.subscribe(self.on_stopping, WorkerStopping)

    def __call__(self, event: Event) -> None:
        if isinstance(event, LoopAlive):
            self.on_loop_alive(event)
        elif isinstance(event, PartitionsAssigned):
            self.on_assigned(event)
        elif isinstance(event, BrokerStatus):
            self.on_broker_status(event)
        elif isinstance(event, WorkerStopping):
            self.on_stopping(event)
        elif isinstance(event, SlotStuck):
            self.on_stuck(event)
        elif isinstance(event, SlotFreed):
            self.on_freed(event)

    # Plain attribute stores: atomic under the GIL, so no lock between worker and probes.
    def on_loop_alive(self, e: LoopAlive) -> None:
        self._last_alive = max(self._last_alive, e.at)

    def on_assigned(self, e: PartitionsAssigned) -> None:
        self._assigned = True

    def on_broker_status(self, e: BrokerStatus) -> None:
        self._broker_reachable = e.reachable
        self._broker_detail = e.detail

    def on_stopping(self, e: WorkerStopping) -> None:
        self._stopping = e.reason

    def on_stuck(self, e: SlotStuck) -> None:
        self._stuck = e.stuck
        self._stuck_limit = e.limit

    def on_freed(self, e: SlotFreed) -> None:
        self._stuck = e.stuck
        self._stuck_limit = e.limit

    # --- queries ---------------------------------------------------------------------

    def seconds_since_alive(self) -> float:
        return max(0.0, self._clock() - self._last_alive)

    def live(self) -> tuple[bool, str]:
        """(alive?, reason). The reason is empty when alive."""
        age = self.seconds_since_alive()
        if age > self.liveness_ttl:
            return False, f"no poll-loop heartbeat for {age:.1f}s (ttl {self.liveness_ttl:g}s)"
        if self._stuck_limit and self._stuck >= self._stuck_limit:
            return False, (f"{self._stuck} handler threads stuck past their timeout "
                           f"(stuck limit {self._stuck_limit})")
        return True, ""

    def ready(self) -> tuple[bool, str]:
        """(ready?, reason). The reason is empty when ready."""
        if self._stopping is not None:
            return False, f"worker stopping: {self._stopping}"
        if not self._assigned:
            return False, "no partition assignment received yet"
        if not self._broker_reachable:
            detail = f": {self._broker_detail}" if self._broker_detail else ""
            return False, f"broker unreachable{detail}"
        return True, ""


class LivenessFile:
    """Touches ``path`` at each poll-loop heartbeat while ``health`` says live: a supervisor
    reads the file's age as the child's liveness."""

    def __init__(self, path: str, health: HealthListener) -> None:
        self.path = path
        self.health = health
        self.on_loop_alive(None)

    def attach(self, bus: EventBus) -> None:
        """After ``health`` is attached: its verdict then includes this heartbeat."""
        bus.subscribe(self.on_loop_alive, LoopAlive)

    def on_loop_alive(self, _e: LoopAlive | None) -> None:
        if self.health.live()[0]:
            with open(self.path, "a"):
                pass
            os.utime(self.path)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        health = self.server.health
        if path == "/healthz":
            ok, reason = health.live()
            self._send(200 if ok else 503, "text/plain; charset=utf-8",
                       b"ok\n" if ok else f"{reason}\n".encode())  # fmt: skip
        elif path == "/readyz":
            ok, reason = health.ready()
            body: dict[str, Any] = {"ready": ok}
            if not ok:
                body["reason"] = reason
            self._send(200 if ok else 503, "application/json", orjson.dumps(body))
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # probes hit this every few seconds; access logs would drown the job logs


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], health: HealthListener, registry: CollectorRegistry
    ) -> None:
        self.health = health
        self.registry = registry
        super().__init__(address, _Handler)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (port 0 = any free port)."""

    def __init__(
        self,
        port: int,
        health: HealthListener,
        registry: CollectorRegistry,
        *,
        host: str = "0.0.0.0",
    ) -> None:
        self._server = _Server((host, port), health, registry)
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name=f"streamjobs-health:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(port: int, health: HealthListener, registry: CollectorRegistry) -> HealthServer:
    """Start a ``HealthServer`` on ``0.0.0.0:port`` and return it (``.port``, ``.close()``)."""
    return HealthServer(port, health, registry)
