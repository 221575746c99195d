"""Whether the worker can reach its brokers, as readiness and the metrics see it.

librdkafka says when things break (the error callback: all brokers down, failed
authentication or TLS handshake) but never when they mend. Records arriving prove contact,
yet an idle worker gets none, so the watch also reads librdkafka's statistics, which the
consumer's poll serves every ``STATS_INTERVAL_MS``: a broker connection that came *up after*
the failure proves the broker is back and accepts our credentials. A connection that was up
all along proves nothing after an authentication failure (credentials rotated under a
running worker break only new connections), hence the age check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from .._connection import RdKafkaError as KafkaError
from ..events import BrokerStatus, EventBus

__all__ = ["STATS_INTERVAL_MS", "BrokerWatch"]

STATS_INTERVAL_MS = 5000
# Error codes that make the worker unready at once, with the words readiness shows.
_FAILURES = {
    KafkaError._ALL_BROKERS_DOWN: "all brokers down",
    KafkaError._AUTHENTICATION: "authentication failed",
    KafkaError.SASL_AUTHENTICATION_FAILED: "authentication failed",
    KafkaError._SSL: "TLS failed",
}


class BrokerWatch:
    """Emits ``BrokerStatus`` on each change; callbacks run on the thread polling librdkafka."""

    def __init__(self, bus: EventBus, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._bus = bus
        self._clock = clock
        self.down = False
        self._down_since = 0.0
        self._needs_new_connection = False

    def started(self) -> None:
        """The start-up metadata request was answered: the first status."""
        self.down = False
        self._bus.emit(BrokerStatus(True, "connected"))

    def records_arrived(self) -> None:
        if self.down:
            self._up("records arriving")

    def on_error(self, err: Any) -> None:
        """librdkafka's ``error_cb``. A lone ``_TRANSPORT`` (one connection dropped, often an
        idle one the broker closed) is left to the statistics."""
        code = err.code()
        what = _FAILURES.get(code)
        if what is not None:
            self._fail(f"{what}: {err.str()}",
                       needs_new_connection=code != KafkaError._ALL_BROKERS_DOWN)

    def on_stats(self, stats_json: str) -> None:
        """librdkafka's ``stats_cb``: down if no connection is UP; up again if one is (after
        an authentication or TLS failure: one that came up since)."""
        try:
            brokers = orjson.loads(stats_json).get("brokers", {})
        except orjson.JSONDecodeError:
            return
        # stateage: microseconds since the connection entered its current state.
        ups = [b.get("stateage", 0) / 1e6 for b in brokers.values() if b.get("state") == "UP"]
        if not ups:
            self._fail("no broker connection is up", needs_new_connection=False)
        elif self.down and (not self._needs_new_connection
                            or min(ups) < self._clock() - self._down_since):
            self._up("broker connection up")

    def _up(self, detail: str) -> None:
        self.down = False
        self._bus.emit(BrokerStatus(True, detail))

    def _fail(self, detail: str, *, needs_new_connection: bool) -> None:
        if not self.down:
            self.down = True
            self._down_since = self._clock()
            self._needs_new_connection = needs_new_connection
            self._bus.emit(BrokerStatus(False, detail))
