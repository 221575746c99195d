"""Where librdkafka's own log lines and errors go: the ``streamjobs.kafka`` Python logger.

Without a ``logger`` librdkafka prints every line to stderr itself (``%3|...|FAIL|...``), about
twenty a second while a broker is down; without an ``error_cb`` its errors come out the same way.
``KafkaConfig.client_settings()`` hands every client ``FORWARDER`` and ``on_error`` below, so all
of it reaches one logger, rate-limited per client and kind of line (``BURST`` lines per
``WINDOW_S`` seconds, then a count of the ones left out). The library never configures handlers:
the ``NullHandler`` on ``streamjobs`` keeps Python's last-resort handler from printing warnings
to stderr when the application configures no logging. The CLI shows these lines only with
``--log-level debug`` (``show``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["BURST", "FORWARDER", "LOGGER", "WINDOW_S", "KafkaLogForwarder", "on_error", "show"]

LOGGER = logging.getLogger("streamjobs.kafka")
logging.getLogger("streamjobs").addHandler(logging.NullHandler())

BURST = 5
WINDOW_S = 30.0
_OFF = logging.CRITICAL + 10


class KafkaLogForwarder:
    """librdkafka's ``logger``: confluent-kafka calls ``log(level, "%s [%s] %s", facility,
    client name, text)`` from the thread that polls the client."""

    def __init__(self, logger: logging.Logger, *, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        # (client, kind) -> [window start, lines let through in it, lines left out]
        self._seen: dict[tuple[str, str], list[float]] = {}

    def log(self, level: int, msg: str, *args: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return  # nothing is formatted or counted when nobody listens
        kind, client = (str(args[0]), str(args[1])) if len(args) >= 2 else ("", "")
        left_out = self._admit((client, kind))
        if left_out is None:
            return
        if left_out:
            self.logger.log(level, msg + " (%d similar lines left out)", *args, left_out)
        else:
            self.logger.log(level, msg, *args)

    def _admit(self, key: tuple[str, str]) -> int | None:
        """None: drop this line; else how many lines of ``key`` were dropped before it."""
        now = self._clock()
        with self._lock:
            state = self._seen.get(key)
            if state is None or now - state[0] >= self.window_s:
                dropped = int(state[2]) if state is not None else 0
                self._seen[key] = [now, 1, 0]
                if len(self._seen) > 1000:  # many short-lived clients: forget the oldest
                    self._seen.pop(next(iter(self._seen)))
                return dropped
            if state[1] < self.burst:
                state[1] += 1
                return 0
            state[2] += 1
            return None


FORWARDER = KafkaLogForwarder(LOGGER)


def on_error(err: Any) -> None:
    """librdkafka's ``error_cb`` for clients that have no better use for it: a log line. The
    caller's own check (a metadata request within a timeout, a delivery report) reports the
    failure to the user, once."""
    FORWARDER.log(logging.WARNING, "%s [%s] %s", "ERROR", err.name(), err.str())


def show(level: str) -> None:
    """CLI: librdkafka's lines are shown only at ``debug``; otherwise not even formatted."""
    LOGGER.setLevel(logging.DEBUG if level.lower() == "debug" else _OFF)
