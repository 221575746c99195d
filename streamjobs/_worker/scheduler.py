"""The scheduler: fires the catalogue's schedules from whichever worker Kafka picks.

Every worker runs one in a thread of its own. Each joins the consumer group
``<prefix>streamjobs.schedules`` on the single-partition compacted topic of the same name; the
member assigned partition 0 is the *owner* and the only one that fires. On taking ownership it
reads the topic from the beginning to the end offset seen at assignment (schedule name -> last
tick handled), then, in a loop that wakes at the next tick, emits each due tick with the tick's
deterministic job id (``schedules.tick_job_id``), waits for the broker's acknowledgement, and
only then records the tick in the topic. A crash between emit and record makes the next owner
emit that tick again under the same job id; workers deduplicate schedule ticks by job id
(``worker.uniqueness``), so it still runs once. Losing the partition (revoke or lost) stops
firing at once; the callback runs on this thread, between two fires.

The group is catalogue-wide (not per worker group): any worker of any app sharing the catalogue
and prefix may fire, and firing needs only the catalogue (emit), not a handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import Any

from .. import _connection as connection
from .. import _headers as h
from .._config import KafkaConfig
from .._connection import ClientError, TopicPartition
from .._delivery import PRODUCER_SETTINGS
from .._names import schedules_topic
from .._producer import Producer
from .._schedules import MAX_CATCH_UP, ScheduleState, plan_fires, tick_job_id
from .._schemas.catalogue import Catalogue
from ..errors import StreamjobsError
from ..events import EventBus, ScheduleFired, SchedulerOwnership, ScheduleSkipped

__all__ = ["SESSION_TIMEOUT_MS", "Scheduler"]

_log = logging.getLogger("streamjobs.worker")
# A dead owner's partition moves after this long: short, so a failover misses few ticks.
SESSION_TIMEOUT_MS = 10_000
IDLE_WAIT = 0.5  # the longest the loop waits for records before looking at the clock
RETRY_AFTER = 1.0  # after a failed emit or record


class Scheduler:
    """Fires ``catalogue.schedules`` while this process owns the schedule partition."""

    def __init__(self, catalogue: Catalogue, kafka: KafkaConfig, bus: EventBus, *,
                 prefix: str = "", session_timeout_ms: int = SESSION_TIMEOUT_MS) -> None:
        self.catalogue = catalogue  # topics already prefixed
        self.schedules = dict(catalogue.schedules)
        self.kafka = kafka
        self.bus = bus
        self.topic = schedules_topic(prefix)
        self.session_timeout_ms = session_timeout_ms
        self.owner = False
        self.state: dict[str, ScheduleState] = {}
        self._caught_up = False
        self._end: int | None = None  # the topic's end offset when ownership began
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._who = f"{h.hostname()}/{os.getpid()}"
        self._producer: Producer | None = None
        self._recorder: Any = None
        self._consumer: Any = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Connect (raises BrokerUnavailable, PayloadError for a bad schedule payload) and
        start the thread."""
        for s in self.schedules.values():
            self.catalogue.get(s.job_type)
        self._producer = Producer(self.catalogue, self.kafka, linger_ms=0)
        for s in self.schedules.values():
            self._producer.codec.encode(s.job_type, s.payload)  # PayloadError at start-up
        self._recorder = connection.producer(self.kafka, {**PRODUCER_SETTINGS, "linger.ms": 0})
        self._consumer = connection.consumer(self.kafka, {
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": max(500, self.session_timeout_ms // 5),
        }, overrides={  # over the user's consumer_config: the scheduler depends on these
            "group.id": self.topic,
            "enable.auto.commit": False,  # every owner reads the whole (compacted) topic
            "auto.offset.reset": "earliest",
        })
        self._consumer.subscribe([self.topic], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)
        self._thread = threading.Thread(target=self._run, name="streamjobs-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- ownership (callbacks run inside consume, on the scheduler thread) --------------------

    def _on_assign(self, consumer: Any, tps: list[Any]) -> None:
        if not any(tp.partition == 0 for tp in tps):
            return
        self.state.clear()
        self._caught_up = False
        self._end = None  # read by _read_to_end (this may be a topic created moments ago)
        # Nothing is ever committed in this group, so reading starts at the beginning
        # (auto.offset.reset) and every owner rebuilds the state.
        self.owner = True
        self.bus.emit(SchedulerOwnership(True))

    def _on_revoke(self, consumer: Any, tps: list[Any]) -> None:
        if self.owner and any(tp.partition == 0 for tp in tps):
            self.owner = False
            self._caught_up = False
            self.bus.emit(SchedulerOwnership(False))

    # -- the loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        consumer = self._consumer
        try:
            wait = IDLE_WAIT
            while not self._stop.is_set():
                msgs = consumer.consume(100, wait)
                for m in msgs:
                    if m.error() is None and m.key() is not None and m.value() is not None:
                        st = ScheduleState.from_bytes(m.value())
                        if st is not None:
                            self.state[m.key().decode("utf-8", "replace")] = st
                wait = IDLE_WAIT
                if not self.owner:
                    continue
                if not self._caught_up:
                    self._caught_up = self._read_to_end(consumer)
                    if not self._caught_up:
                        wait = 0.05
                        continue
                wait = min(IDLE_WAIT, self._fire_due())
        except Exception as exc:  # the worker sees .error and stops (runner.py)
            self.error = exc
            _log.exception("schedules: the scheduler stopped")
        finally:
            with contextlib.suppress(Exception):
                consumer.close()
            if self._producer is not None:
                self._producer.close()
            if self._recorder is not None:
                self._recorder.flush(5)

    def _read_to_end(self, consumer: Any) -> bool:
        """True once the state written before this ownership began has been read."""
        tp = TopicPartition(self.topic, 0)
        try:
            if self._end is None:
                self._end = int(consumer.get_watermark_offsets(tp, timeout=5)[1])
            pos = consumer.position([tp])[0].offset
        except ClientError as exc:
            _log.debug("schedules: reading %s (%s)", self.topic, exc)  # leader not ready
            return False
        return self._end == 0 or pos >= self._end

    def _fire_due(self) -> float:
        """Fire every due tick; returns seconds until the next one."""
        now_ms = int(time.time() * 1000)
        next_ms: int | None = None
        for s in self.schedules.values():
            if not self.owner or self._stop.is_set():
                break
            prior = self.state.get(s.name)
            fire, last = plan_fires(s, prior.last_tick_ms if prior else None, now_ms)
            if (last is not None and (prior is None or last != prior.last_tick_ms)
                    and not self._handle(s, prior, fire, last, now_ms)):
                return RETRY_AFTER
            nxt = s.next_after(now_ms)
            next_ms = nxt if next_ms is None else min(next_ms, nxt)
        if next_ms is None:
            return IDLE_WAIT
        return max(0.0, (next_ms - int(time.time() * 1000)) / 1000)

    def _handle(self, s: Any, prior: ScheduleState | None, fire: list[int], last: int,
                now_ms: int) -> bool:
        assert self._producer is not None
        fired_tick = prior.fired_tick_ms if prior else None
        job_id = prior.job_id if prior else None
        fired_at = prior.fired_at_ms if prior else None
        try:
            job = self.catalogue.get(s.job_type)
            keyed = job.key_field is not None and s.payload.get(job.key_field) is not None
            for tick in fire:
                tick_id = tick_job_id(s.name, tick)
                # Both emits of a re-fired tick must meet in one partition, where the worker
                # compares job ids: a payload key does that; without one, the id is the key.
                job_id = self._producer.emit(
                    s.job_type, s.payload, job_id=tick_id, key=None if keyed else tick_id,
                    headers={h.SCHEDULE: s.name, h.TICK: str(tick)})
                fired_tick, fired_at = tick, int(time.time() * 1000)
            self._producer.flush(30)
        except StreamjobsError as exc:
            _log.warning("schedules: %s: emit failed (%s); trying again", s.name, exc)
            return False
        skipped = 0
        if prior is not None:  # ticks handled now that were not fired (counted up to a bound)
            skipped = len(s.ticks(prior.last_tick_ms, last, MAX_CATCH_UP)) - len(fire)
        state = ScheduleState(last, fired_tick, job_id, fired_at, self._who)
        if not self._record(s.name, state):
            return False
        self.state[s.name] = state
        for tick in fire:
            self.bus.emit(ScheduleFired(s.name, s.job_type, tick, tick_job_id(s.name, tick),
                                        max(0.0, (now_ms - tick) / 1000)))
        if skipped > 0:
            self.bus.emit(ScheduleSkipped(s.name, skipped, last))
        return True

    def _record(self, name: str, state: ScheduleState) -> bool:
        errors: list[Any] = []
        self._recorder.produce(self.topic, key=name.encode(), value=state.to_bytes(),
                               partition=0, on_delivery=lambda err, _m: errors.append(err))
        self._recorder.flush(30)
        if not errors or errors[0] is not None:
            _log.warning("schedules: %s: recording tick failed (%s); it will be emitted again "
                         "(same job id)", name, errors[0] if errors else "no acknowledgement")
            return False
        return True
