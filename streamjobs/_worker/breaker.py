"""A job type's circuit breaker: closed -> open -> half-open -> closed (or open again).

Closed, every finished job of the type is an outcome: ``failures`` consecutive failures, or a
failed share of at least ``ratio`` among the outcomes of the last ``window`` (once there are
``min_calls`` of them), opens it. Open, the worker holds the type's partitions (nothing new is
taken; jobs already running finish) until the cool-down ends. Then half-open: one job is let
through and the first outcome of a job started since (that probe, or a retry falling due)
closes it on success or re-opens it on failure.

Outcomes are tagged with the *epoch* their job started in (it changes at each transition), so a
job started before the circuit opened and finishing later does not decide a later state. Pure
logic on the poll thread, with the clock passed in (unit-tested without a worker).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .._limits import BreakerPolicy

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "Breaker", "Transition"]

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    previous: str
    state: str
    reason: str  # "failures", "ratio", "cooldown", "probe_succeeded", "probe_failed"


class Breaker:
    __slots__ = ("_failed", "_outcomes", "consecutive", "epoch", "job_type", "open_until", "policy",
                 "probe_at", "state")

    def __init__(self, job_type: str, policy: BreakerPolicy) -> None:
        self.job_type = job_type
        self.policy = policy
        self.state = CLOSED
        self.epoch = 0
        self.consecutive = 0  # failures in a row (closed)
        self._outcomes: deque[tuple[float, bool]] = deque()  # (finished at, ok) in the window
        self._failed = 0  # failures among _outcomes
        self.open_until = 0.0
        self.probe_at: float | None = None  # when the half-open probe was let through

    def blocked_until(self, now: float) -> tuple[float | None, Transition | None]:
        """May a job of this type start now? (None, ...) if so; else the time to look again
        (a cool-down's end, or a fallback while a probe runs). Moves open -> half-open when
        the cool-down is over (the transition is returned)."""
        moved = None
        if self.state == OPEN:
            if now < self.open_until:
                return self.open_until, None
            moved = self._move(HALF_OPEN, "cooldown")
        # A probe is out. If it never reports (a duplicate not run, a lost partition),
        # another one goes after a cool-down.
        if (self.state == HALF_OPEN and self.probe_at is not None
                and now < self.probe_at + self.policy.cooldown_s):
            return self.probe_at + self.policy.cooldown_s, moved
        return None, moved

    def started(self, now: float) -> None:
        """A job was let through (``blocked_until`` said None): in half-open, the probe."""
        if self.state == HALF_OPEN:
            self.probe_at = now

    def record(self, ok: bool, epoch: int, now: float) -> Transition | None:
        """The outcome of a job started in ``epoch``; the transition it causes, if any."""
        if epoch != self.epoch:
            return None
        p = self.policy
        if self.state == HALF_OPEN:
            if ok:
                return self._move(CLOSED, "probe_succeeded")
            self.open_until = now + p.cooldown_s
            return self._move(OPEN, "probe_failed")
        if self.state != CLOSED:
            return None
        if p.failures is not None:
            self.consecutive = 0 if ok else self.consecutive + 1
            if self.consecutive >= p.failures:
                self.open_until = now + p.cooldown_s
                return self._move(OPEN, "failures")
            return None
        assert p.ratio is not None
        outcomes = self._outcomes
        outcomes.append((now, ok))
        if not ok:
            self._failed += 1
        while outcomes and outcomes[0][0] <= now - p.window_s:
            if not outcomes.popleft()[1]:
                self._failed -= 1
        n = len(outcomes)
        if n >= p.min_calls and self._failed / n >= p.ratio:
            self.open_until = now + p.cooldown_s
            return self._move(OPEN, "ratio")
        return None

    def _move(self, state: str, reason: str) -> Transition:
        t = Transition(self.state, state, reason)
        self.state = state
        self.epoch += 1
        self.probe_at = None
        if state == CLOSED:
            self.consecutive = 0
            self._outcomes.clear()
            self._failed = 0
        return t
