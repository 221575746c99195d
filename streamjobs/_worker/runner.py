"""The poll loop: one thread owns the consumers, the producer and all offset state.

It never waits on a handler. Each iteration: drain finished chunks (offsets, failures through
the router), fire wait timers, apply pauses, take a batch of records, apply what intake
decided (jobs to lanes, records to send, pauses), run the chunks of short sync handlers
promoted to this thread (a few ms at most, inline.py), serve producer callbacks. ``consume`` is
called with a short timeout so a job longer than ``max.poll.interval.ms`` never costs the
partitions and SIGTERM is honoured promptly. Data flows one way: intake (``intake.py``) and
the failure router (``router.py``) return decisions, this module acts on them; partition state
and pausing live in ``partition.py``, lag and burst's end-of-log check in ``backlog.py``,
client construction in ``clients.py``. This module is the lifecycle: start-up, the loop,
rebalances, commits, shutdown.

Two consumers: one for the job topics and, when there are wait tiers, one for them in the
group ``<group>.wait`` (``wait_group``). Every record appended to a job topic answers the job
consumer's pending fetch, and the broker's work for a fetch grows with the partitions in it,
so idle tiers in the same fetches would slow the job topics' latency (docs/worker.md); the
wait consumer's fetches long-poll idle tiers. Its own group, because in a shared one every
join of a wait consumer makes the job consumers rejoin too, stalling their jobs. The loop
waits on the job consumer only and sweeps the wait consumer without waiting, at least every
``WAIT_SWEEP_EVERY`` s.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Sequence
from types import FrameType
from typing import Any

from .. import _headers as h
from .. import _kafka_log
from .._avro.codec import Codec
from .._avro.framing import REGISTRY
from .._config import KafkaConfig
from .._connection import (
    OFFSET_BEGINNING,
    ClientError,
    TopicPartition,
    client_settings,
    no_answer,
    translate,
)
from .._connection import RdKafkaError as KafkaError
from .._names import wait_group
from .._schemas.registry import RegistryConfig, SchemaRegistry
from ..errors import ConfigError
from ..events import (
    CommitDone,
    CommitFailed,
    EventBus,
    InFlightChanged,
    JobReceived,
    JobsReceived,
    LagSampled,
    LoopAlive,
    PartitionsAssigned,
    PartitionsLost,
    PartitionsRevoked,
    TransactionAborted,
    WorkerStarted,
    WorkerStopped,
    WorkerStopping,
)
from .app import App
from .backlog import read_to_end, sample_lag
from .brokerwatch import STATS_INTERVAL_MS, BrokerWatch
from .clients import Clients
from .context import JobContext
from .executor import Chunk, Completion, Executor
from .failures import Decision, Failure
from .followups import FollowUps
from .inline import Pace, under_seconds
from .intake import Intake, Taken, announce
from .keyhold import HELD_CLASS, KeyHold
from .lanes import LaneGate, lane_ranks
from .ordering import Lanes, dispatch
from .outbox import Outbox
from .partition import Part, Pauses, by_consumer
from .router import Routed, Router
from .routes import Routes
from .scheduler import Scheduler
from .settings import WorkerSettings
from .statuses import SAMPLE_EVERY, StatusRecorder
from .throttle import FETCH_WAIT_MS, Throttle
from .transactions import TXN_TIMEOUT, Aborted, TransactionalOutbox, transactional_id
from .uniqueness import Uniqueness

__all__ = [
    "Worker",
    "run_worker",
]

LAG_EVERY = 5.0
ALIVE_EVERY = 1.0
BURST_CHECK_EVERY = 0.5
WAIT_SWEEP_EVERY = 0.05  # the longest a due wait-tier record waits for the loop to look
FETCH_QUEUE_BACKOFF_MS = 10
HOLD_SLEEP = 0.001  # at the in-flight bound, not paused yet: between looks at completions


class Worker:
    """One worker process's engine. ``run()`` blocks until ``stop()`` (or a signal, or burst
    drained) and returns the exit code."""

    def __init__(self, app: App, settings: WorkerSettings | None = None,
                 kafka: KafkaConfig | None = None, bus: EventBus | None = None, *,
                 registry: RegistryConfig | None = None, clients: Clients | None = None) -> None:
        self.app = app
        self.clients = clients or Clients()  # every consumer and producer of the loop
        self.settings = settings or WorkerSettings()
        self.kafka = kafka or KafkaConfig.from_env()
        # Writer schemas of registry-framed records (None: STREAMJOBS_REGISTRY_* or none).
        self.registry = registry if registry is not None else RegistryConfig.from_env()
        self.bus = bus or EventBus()
        jobs = app.check(self.settings.job_types)
        framed = [j.name for j in jobs if j.framing == REGISTRY]
        if framed and self.registry is None:
            raise ConfigError("registry_url", f"{', '.join(framed)}: registry framing needs a "
                                              "schema registry URL (STREAMJOBS_REGISTRY_URL)")
        if self.settings.ordering == "key-strict":
            # A sync handler past its timeout keeps running on an abandoned thread, outside
            # the key hold's bookkeeping: its key could neither be held nor released reliably.
            timed = [j.name for j in jobs if (hd := app.handlers.get(j.name)) is not None
                     and not hd.is_async and (hd.timeout or j.timeout_s) is not None]
            if timed:
                raise ConfigError("ordering", f"key-strict cannot be combined with a timeout "
                                              f"on a sync handler ({', '.join(timed)})")
        # --ordering key-strict: keys waiting behind a job being retried (keyhold.py); its
        # waiting jobs have their own bound (twice the in-flight one), and a partition whose
        # commit position a blocked job holds pauses once 10x max_in_flight records sit above.
        self.keyhold = (KeyHold(self.settings.key_dead_letter,
                                2 * (self.settings.max_in_flight or 1),
                                10 * (self.settings.max_in_flight or 1))
                        if self.settings.ordering == "key-strict" else None)
        self.routes = Routes(app, jobs, self.keyhold.wrap if self.keyhold is not None else None)
        self.lane_ranks = lane_ranks(app.catalogue, [j.name for j in jobs])  # priority lanes
        self.lane_gate = LaneGate(self.lane_ranks, self.settings.concurrency,
                                  self.settings.max_in_flight or 1) if self.lane_ranks else None
        self._eos = self.settings.exactly_once or app.exactly_once
        self.paces = self._paces()  # job type -> its pace, for those that may run inline
        self.group_id = self.settings.group_id or app.default_group_id()
        self.parts: dict[tuple[str, int], Part] = {}
        self.completions: deque[Completion] = deque()
        self.lanes: Lanes[Chunk] = Lanes()
        self.in_flight = 0
        self.stop_reason: str | None = None
        self._pauses = Pauses()
        self._touched: set[Part] = set()
        self._finished = 0
        self._finished_at_commit = 0
        self._txn_at = 0.0  # exactly-once: when the last transaction committed (monotonic)
        self.broker = BrokerWatch(self.bus)
        self._signals = 0
        self._started_at = time.monotonic()
        self.consumer: Any = None  # job topics
        self.waiter: Any = None  # wait tiers (None when no job type has any)
        self.outbox: Any = None
        self.executor: Any = None
        self.intake: Any = None
        self.status: StatusRecorder | None = None  # None: no status record is written
        self.uniqueness: Any = None
        self.followups: Any = None  # what handlers emit with ctx.emit (followups.py)
        self.scheduler: Scheduler | None = None  # when the catalogue has schedules
        self.throttle: Throttle | None = None  # rate/concurrency limits, breakers (throttle.py)

    # -- public -------------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Ask the loop to stop (thread-safe; idempotent)."""
        if self.stop_reason is None:
            self.stop_reason = reason

    def run(self, *, install_signals: bool = True) -> int:
        self._start()
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, self._on_signal)
        try:
            self._loop()
        finally:
            self._shutdown()
        return 1 if self.scheduler is not None and self.scheduler.error is not None else 0

    # -- start-up -----------------------------------------------------------------------------

    def consumer_settings(self) -> dict[str, Any]:
        """The job consumer's librdkafka settings: ours, then ``KafkaConfig.consumer_config``,
        then ``WorkerSettings.consumer_config`` (the user's win)."""
        s = self.settings
        conf: dict[str, Any] = {
            "group.id": self.group_id,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            "auto.commit.interval.ms": int(s.commit_interval * 1000),
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "max.poll.interval.ms": s.max_poll_interval_ms,
            "on_commit": self._on_commit,
            "error_cb": self._on_kafka_error,
            "stats_cb": self.broker.on_stats,
            "statistics.interval.ms": STATS_INTERVAL_MS,
            # librdkafka's default (1000) idles a partition for a second whenever its pre-fetch
            # queue is full: a fast worker then waits for records that are already on the
            # broker.
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
        if self._eos:  # offsets commit in the producer's transactions
            conf.update({"enable.auto.commit": False, "isolation.level": "read_committed"})
        if self.lane_gate is not None or self.keyhold is not None or Throttle.wanted(
                r.job for r in self.routes.by_type.values()):
            conf["fetch.wait.max.ms"] = FETCH_WAIT_MS  # a released partition's next fetch
        if s.group_protocol == "consumer":
            conf["group.protocol"] = "consumer"  # KIP-848: the broker assigns; no strategy
        else:
            conf["partition.assignment.strategy"] = s.assignment_strategy
            conf["session.timeout.ms"] = s.session_timeout_ms
        return client_settings(self.kafka, "consumer", conf, overrides=s.consumer_config)

    def _start(self) -> None:
        s = self.settings
        conf = self.consumer_settings()
        self.consumer = self.clients.consumer(conf)
        try:
            meta = self.consumer.list_topics(timeout=s.connect_timeout)
        except ClientError as exc:
            self.consumer.close()
            raise no_answer(self.kafka, s.connect_timeout, exc) from None
        scheduler = self._scheduler()
        self.uniqueness = Uniqueness(self, self.routes, {
            s.job_type for s in self.app.catalogue.schedules.values()}, self.kafka, self.bus)
        needed = self.routes.subscriptions() + self.routes.produced() + self.uniqueness.topics()
        if scheduler is not None:
            needed.append(scheduler.topic)
        missing = [t for t in needed if t not in meta.topics]
        if missing:
            self.consumer.close()
            raise ConfigError("topics", f"missing: {', '.join(missing)} (create them with "
                                        f"`streamjobs topics apply`)")
        self.routes.add_old_tiers(meta.topics)  # drained, never written (docs/topics.md)
        self.throttle = Throttle.of(
            [r.job for r in self.routes.by_type.values()],
            {t: len(tm.partitions) for t in self.routes.job_topics
             if (tm := meta.topics.get(t)) is not None},
            self.bus, self._pauses, self.parts.values, s.concurrency)
        self.broker.started()
        producer = client_settings(self.kafka, "producer", {"error_cb": self._on_kafka_error})
        self.outbox = (TransactionalOutbox(producer, transactional_id(self.group_id),
                                           timeout=max(s.connect_timeout, TXN_TIMEOUT),
                                           finish=self.finish, make=self.clients.producer)
                       if self._eos else Outbox(producer, self.clients.producer))
        self.executor = Executor(s.concurrency, self.bus, self.lanes, self.completions,
                                 use_async=any(h.is_async for h in self.app.handlers.values()),
                                 stuck_limit=s.stuck_limit, ranks=self.lane_ranks)
        self._start_status(meta)
        self.followups = self.executor.followups = FollowUps(
            self.outbox, self.finish, self._encoder, transactional=self._eos)
        self.router = Router(self.routes.tiers, h.hostname(), self.group_id,
                             records_status=self.status is not None)
        self.intake = Intake(self.routes, Codec(self.app.catalogue, registry=(
            SchemaRegistry(self.registry) if self.registry is not None else None)),
            self.router, self.bus, s.wake_horizon, self.throttle)
        topics = self.routes.subscriptions()
        callbacks = {"on_assign": self._on_assign, "on_revoke": self._on_revoke,
                     "on_lost": self._on_lost}
        self.consumer.subscribe(sorted(self.routes.job_topics), **callbacks)
        if self.routes.wait:
            # No stats_cb: broker health is judged by the job consumer's connections.
            self.waiter = self.clients.consumer({
                **{k: v for k, v in conf.items()
                   if k not in ("stats_cb", "statistics.interval.ms")},
                "group.id": wait_group(self.group_id)})
            self.waiter.subscribe(sorted(self.routes.wait), **callbacks)
        self._started_at = time.monotonic()
        if scheduler is not None:
            self.scheduler = scheduler
            scheduler.start()
        self.bus.emit(WorkerStarted(self.group_id, tuple(topics), s.concurrency, os.getpid()))

    def _paces(self) -> dict[str, Pace]:
        """Job types that may run inline on the poll thread once measured short (inline.py):
        sync handlers without a timeout (a timeout needs its own thread: stuck.py), outside
        exactly-once transactions."""
        under = under_seconds(self.settings.inline_under)
        if not under or self._eos:
            return {}
        return {r.job.name: Pace(r.job.name, under) for r in self.routes.by_type.values()
                if not r.handler.is_async and r.handler.timeout is None
                and r.job.timeout_s is None}

    def _encoder(self) -> Any:
        # Producer's own validation and encoding for ctx.emit (its client sends nothing).
        from .._producer import Producer
        return Producer(self.app.catalogue, self.kafka, registry=self.registry,
                        connect_timeout=self.settings.connect_timeout)

    def _on_kafka_error(self, err: Any) -> None:
        self.broker.on_error(err)  # readiness and the broker.unreachable event
        _kafka_log.on_error(err)  # and the line on streamjobs.kafka, like every other client

    def _start_status(self, meta: Any) -> None:
        modes = {r.job.status for r in self.routes.by_type.values()}
        if modes <= {"none"}:
            return
        prefix = self.app.catalogue.topic_prefix  # the app's prefix, applied to its catalogue
        own = (client_settings(self.kafka, "producer", {"error_cb": self._on_kafka_error})
               if "all" in modes or self._eos  # a transactional client writes in
               else None)  # transactions only; None: the outbox's client serves
        self.status = StatusRecorder.connect(self.outbox, prefix, meta, h.hostname(), own,
                                             self.clients.producer)
        if self.status is not None and "all" in modes:
            self.executor.record_ok = self.executor.track_running = True

    def _scheduler(self) -> Scheduler | None:
        catalogue = self.app.catalogue  # already under the app's topic prefix
        if not catalogue.schedules or not self.settings.schedules:
            return None
        return Scheduler(catalogue, self.kafka, self.bus, prefix=catalogue.topic_prefix)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(128 + signum)  # second signal: at once, nothing more is waited for
        self.stop(signal.Signals(signum).name)

    # -- the loop -----------------------------------------------------------------------------

    def _loop(self) -> None:
        s = self.settings
        max_in_flight = bound = s.max_in_flight or 1
        resume_at = s.resume_at
        keyhold = self.keyhold
        intake = self.intake
        outbox = self.outbox
        waiter = self.waiter
        now = time.monotonic()
        alive_at = lag_at = burst_at = sample_at = 0.0
        executor = self.executor
        status = self.status
        sampling = status is not None and executor.track_running
        started = now
        last_inflight = -1
        fired = Taken(0)  # reused: most turns fire nothing
        while self.stop_reason is None:
            self._drain()
            now_ms = time.time() * 1000.0
            fired.in_flight = self.in_flight
            next_wake = intake.fire(now_ms, fired)
            if fired.jobs or fired.routed:
                self._apply(fired)
                fired.jobs, fired.routed = [], []
            self._count_in_flight()
            if keyhold is not None:  # jobs waiting behind a blocked key: their own bound
                bound, resume_at = keyhold.bounds(max_in_flight, s.resume_at)
                for part, until in keyhold.stalled():  # a commit position held too long
                    if part.hold_until_ms <= now_ms:
                        self.hold(part, now_ms + (until - time.monotonic()) * 1000.0)
            if self.lane_gate is not None:
                self.lane_gate.apply(self.parts.values(), self, now_ms)
            self._pauses.reconcile(self.parts.values(), in_flight=self.in_flight,
                                   max_in_flight=bound, resume_at=resume_at,
                                   stopping=self.stop_reason is not None, now_ms=now_ms)
            self._store()
            now = time.monotonic()
            if now - alive_at >= ALIVE_EVERY:
                alive_at = now
                self.bus.emit(LoopAlive(now))
                if self.scheduler is not None and self.scheduler.error is not None:
                    self.stop(f"scheduler failed: {self.scheduler.error}")
                if self.in_flight != last_inflight and self.bus.wants(InFlightChanged):
                    last_inflight = self.in_flight
                    self.bus.emit(InFlightChanged(self.in_flight))
            if sampling and now - sample_at >= SAMPLE_EVERY:
                sample_at = now
                assert status is not None
                status.sample([*executor.running, *list(executor.running_async)])
            if now - lag_at >= LAG_EVERY:
                lag_at = now
                if self.bus.wants(LagSampled):
                    sample_lag(self.parts.values(), self.bus)
            if s.burst and now - burst_at >= BURST_CHECK_EVERY:
                burst_at = now
                if self._drained(now - started):
                    self.stop("burst: drained")
                    break
            timeout = 0.005 if self._pauses.for_in_flight else 0.1
            if waiter is not None:
                timeout = min(timeout, WAIT_SWEEP_EVERY)
            if next_wake is not None:
                timeout = max(0.0, min(timeout, (next_wake - now_ms) / 1000.0))
            if executor.inline_waiting:  # handed over by a handler thread: run them soon
                timeout = 0.0
            if keyhold is not None and keyhold.due is not None:
                timeout = max(0.0, min(timeout, keyhold.due - now))
            if self.throttle is not None:
                held = self.throttle.next_wake_ms(self.parts.values())
                if held is not None:
                    timeout = max(0.0, min(timeout, (held - now_ms) / 1000.0))
            room = bound - self.in_flight
            if self._pauses.holding and not self._pauses.for_in_flight:
                # At the bound, not paused yet (partition.py): take nothing, let jobs finish.
                time.sleep(HOLD_SLEEP)
            else:
                msgs = self._fetch(min(s.batch_size, max(room, 1)), timeout)
                if msgs:
                    if self.broker.down:
                        self.broker.records_arrived()
                    self._apply(intake.take(msgs, self.parts, self.in_flight, bound))
            if waiter is not None and not self._pauses.holding:
                room = bound - self.in_flight
                msgs = waiter.consume(min(s.batch_size, max(room, 1)), 0)
                if msgs:
                    self._apply(intake.take(msgs, self.parts, self.in_flight, bound))
            executor.run_inline()  # promoted handlers' jobs, within a time budget
            outbox.poll(0)
            if status is not None:
                status.poll()

    def _fetch(self, n: int, timeout: float) -> list[Any]:
        # consume(n, t) waits for n records or t; poll(t) returns on the first record. So: take
        # what is buffered without waiting, else wait for one record and sweep the rest.
        consumer = self.consumer
        msgs: list[Any] = consumer.consume(n, 0)
        if msgs or timeout <= 0:
            return msgs
        first = consumer.poll(timeout)
        if first is None:
            return []
        if n > 1:
            return [first, *consumer.consume(n - 1, 0)]
        return [first]

    def _apply(self, taken: Taken) -> None:
        """Act on what intake decided: send poison and re-wait records, pause, run jobs."""
        self.in_flight = taken.in_flight
        for part, routed in taken.routed:
            self._send(part, routed)
        if taken.pause:
            self._pauses.request()
        if taken.held:
            self._pauses.dirty = True
        if not taken.jobs:
            return
        bus = self.bus
        each = bus.wants_each(JobReceived)
        summary = not each and bus.wants(JobsReceived)
        for part, jobs, offs in taken.jobs:
            if offs is not None:  # a batch just taken (not wait-tier jobs that fell due)
                if part.dedupe is not None:
                    jobs, offs = self.uniqueness.filter(part, part.dedupe, jobs, offs)
                    if not jobs:
                        continue
                if each or summary:
                    announce(bus, part, jobs, each)
            self.dispatch(part, jobs, offs)

    def _send(self, part: Part, routed: Routed) -> None:
        """Produce a retry, re-wait or dead-letter record; the record it carries on is
        finished once it (and its status record) are acknowledged."""
        bus = self.bus
        event = routed.event if routed.event is not None and bus.wants(type(routed.event)) \
            else None
        offset = routed.offset
        part.acks += 1

        def done() -> None:
            part.acks -= 1
            self.finish(part, offset)
            if event is not None:
                bus.emit(event)

        self.outbox.carry(routed, self.status, done, cause=(part, offset))

    def dispatch(self, part: Part, jobs: list[JobContext],
                 offsets: Sequence[int] | None = None) -> None:
        """Hand a partition's jobs to lanes and the executor (``ordering.dispatch``); with
        ``key-strict`` the jobs of a key waiting behind a retried job stay back (keyhold.py)."""
        if offsets is None and self.throttle is not None:
            self.throttle.waited(part, jobs)  # wait-tier jobs that fell due
        hold = self.keyhold
        if hold is not None:
            dispatch(part, jobs, offsets, "key", self.lanes, self.executor.submit,
                     self.settings.concurrency, hold.held_keys(part), hold.keep_back)
            return
        dispatch(part, jobs, offsets, self.settings.ordering, self.lanes, self.executor.submit,
                 self.settings.concurrency)

    def _release(self, part: Part, jobs: list[JobContext]) -> None:
        """key-strict: one key's jobs, just unblocked, in order: one chunk of its lane."""
        if self.throttle is not None:
            self.throttle.waited(part, jobs)
        lane = (part, jobs[0].key)
        chunk = (jobs, [ctx.offset for ctx in jobs])
        if self.lanes.offer(lane, chunk):
            part.tasks += 1
            self.executor.submit(part, lane, chunk, part.is_async)

    # -- completions and offsets --------------------------------------------------------------

    def _drain(self) -> None:
        completions = self.completions
        touched = self._touched
        status = self.status
        followups = self.followups
        # Completions counted first: a handler hands its follow-ups over before its
        # completion, so each of these n has its follow-ups registered by take().
        n = len(completions)
        followups.take(self._part_of)
        if self.keyhold is not None:
            self.keyhold.fire(self._release, self.lanes.is_busy, self._behind_dead)
        for _ in range(n):
            part, done, failed, ended, ok = completions.popleft()
            if ended:
                part.tasks -= 1
            if ok and status is not None:
                # Even for a partition gone meanwhile: these handlers did return.
                status.succeeded(part, ok)
            if part.gone:
                continue
            if self.throttle is not None:
                self.throttle.finished(part, done, failed)
            if done:
                if followups.pending:
                    done = followups.gate(part, done)
                part.tracker.done_many(done)
                touched.add(part)
                self._finished += len(done)
            if failed:
                for ctx, failure, decision in failed:
                    if self._eos:
                        followups.discard(part, ctx.offset)
                    if self.keyhold is not None and self._held(part, ctx, failure, decision):
                        continue
                    self._send(part, self.router.failed(ctx, failure, decision,
                                                        int(time.time() * 1000)))

    def _held(self, part: Part, ctx: JobContext, failure: Failure,
              decision: Decision) -> bool:
        """key-strict: a failure kept in its key's order (True), or one for the failure
        router (False; a dead letter then releases or dead-letters the jobs behind it)."""
        hold = self.keyhold
        assert hold is not None
        if ctx.key is None or not hasattr(ctx, "_part"):
            return False  # no key (or a plain JobContext): as with --ordering key
        if failure.error_class == HELD_CLASS:
            what = hold.held(part, ctx)
            if what == "run":
                self._release(part, [ctx])
            elif what == "dead":
                self._key_held(part, ctx, "")
            return True
        if decision.delay is not None and hold.is_blocked(part, ctx.key):
            hold.retry_later(part, ctx, decision.delay)
            return True
        self._send(part, self.router.failed(ctx, failure, decision, int(time.time() * 1000)))
        hold.dead_lettered(part, ctx.key, ctx.job_id)  # its waiting jobs: _behind_dead
        return True

    def _behind_dead(self, part: Part, jobs: list[JobContext], job_id: str) -> None:
        """key-strict: a dead-lettered job's key is let go: its waiting jobs run (release)
        or are dead-lettered behind it, in order (hold)."""
        if self.keyhold is not None and self.keyhold.on_dead_letter == "hold":
            for job in jobs:
                self._key_held(part, job, job_id)
        elif jobs:
            self._release(part, jobs)

    def _key_held(self, part: Part, ctx: JobContext, behind: str) -> None:
        self._send(part, self.router.failed(ctx, Failure(
            "KeyHeld", f"dead-lettered behind job {behind or 'earlier'} of the same key"),
            Decision(reason="key_held"), int(time.time() * 1000)))

    def finish(self, part: Part, offset: int) -> None:
        """One record is finished (a failure's record was acknowledged)."""
        if not part.gone and not self.followups.holds(part, offset):
            part.tracker.done(offset)
            self._touched.add(part)
            self._finished += 1
            if self.throttle is not None:
                self.throttle.release(part, offset)

    def _part_of(self, where: tuple[str, int]) -> Part | None:
        return self.parts.get(where)

    def _busy(self, part: Part) -> bool:
        """Jobs running, or records of it waiting for the broker (exactly-once: they wait
        for the commit instead)."""
        if self._eos:
            return bool(part.tasks)
        return bool(part.tasks or part.acks or self.followups.unacked(part))

    def _count_in_flight(self) -> None:
        self.in_flight = sum(p.tracker.in_flight for p in self.parts.values())

    def _store(self) -> None:
        if self._eos:
            self._touched.clear()
            due = self._finished - self._finished_at_commit >= self.settings.commit_every
            if due or time.monotonic() - self._txn_at >= self.settings.commit_interval:
                self._commit_txn()
            return
        if not self._touched:
            return
        by_consumer: dict[Any, list[Any]] = {}
        for part in self._touched:
            pos = part.tracker.commit_position()
            if not part.gone and pos is not None and pos > part.stored:
                part.stored = pos
                by_consumer.setdefault(part.consumer, []).append(
                    TopicPartition(part.topic, part.partition, pos))
        self._touched.clear()
        for consumer, tps in by_consumer.items():
            # ClientError: a partition just left the assignment; nothing to store for it.
            with contextlib.suppress(ClientError):
                consumer.store_offsets(offsets=tps)
        if self._finished - self._finished_at_commit >= self.settings.commit_every:
            self._finished_at_commit = self._finished
            self._commit(asynchronous=True)

    def _commit_txn(self) -> None:
        """Exactly-once: one transaction with every finished offset and its records."""
        self._finished_at_commit = self._finished
        self._txn_at = time.monotonic()
        tps = self.outbox.commit(list(self.parts.values()), self.followups)
        if isinstance(tps, Aborted):
            self._rewind(tps)
            return
        if tps and self.bus.wants(CommitDone):
            self.bus.emit(CommitDone(tuple((tp.topic, tp.partition, tp.offset) for tp in tps)))

    def _rewind(self, aborted: Aborted) -> None:
        """Exactly-once: a transaction was aborted (a rebalance refused it, say). Its records
        and those held for later are gone, so every assigned partition starts over from its
        last committed offset as a fresh ``Part`` (late completions of the old one are
        ignored, as after a revoke). A zombie learns of the rebalance at its next poll."""
        parts = list(self.parts.values())
        committed: dict[tuple[str, int], int] = {}
        try:
            for consumer, tps in by_consumer(parts).items():
                for tp in consumer.committed(tps, timeout=TXN_TIMEOUT):
                    committed[(tp.topic, tp.partition)] = tp.offset
        except ClientError as exc:  # no way to rewind: stop (the successor resumes)
            raise translate(exc, f"transaction aborted ({aborted.error}), "
                                 "committed offsets unknown") from None
        self._forget(parts)
        rewound = []
        for old in parts:
            part = self._new_part(old.consumer, old.topic, old.partition)
            offset = committed.get((old.topic, old.partition), -1)
            part.next_fetch = offset if offset >= 0 else -1
            part.paused_kafka = part.paused = old.paused_kafka
            part.hold_until_ms = old.hold_until_ms
            with contextlib.suppress(ClientError):  # revoked meanwhile: its owner reads on
                old.consumer.seek(TopicPartition(
                    old.topic, old.partition, offset if offset >= 0 else OFFSET_BEGINNING))
            rewound.append((old.topic, old.partition, offset))
        self._pauses.dirty = True
        self.bus.emit(TransactionAborted(aborted.error, tuple(rewound)))

    def _consumers(self) -> list[Any]:
        return [c for c in (self.consumer, self.waiter) if c is not None]

    def _commit(self, *, asynchronous: bool, offsets: list[Any] | None = None,
                consumer: Any = None) -> None:
        """Commit the stored offsets of both consumers, or ``offsets`` through ``consumer``."""
        for c in [consumer] if consumer is not None else self._consumers():
            try:
                if offsets is None:
                    c.commit(asynchronous=asynchronous)
                else:
                    c.commit(offsets=offsets, asynchronous=asynchronous)
            except ClientError as exc:
                err = exc.args[0] if exc.args else None
                if getattr(err, "code", lambda: None)() != KafkaError._NO_OFFSET:
                    self.bus.emit(CommitFailed(str(exc)))

    def _on_commit(self, err: Any, tps: list[Any]) -> None:
        if err is not None:
            if err.code() != KafkaError._NO_OFFSET:
                self.bus.emit(CommitFailed(str(err)))
        elif self.bus.wants(CommitDone):
            self.bus.emit(CommitDone(tuple((tp.topic, tp.partition, tp.offset) for tp in tps
                                           if tp.offset >= 0)))

    # -- pause / resume (partition.py) -----------------------------------------------------------

    def request_pause(self) -> None:
        """The in-flight bound was reached while taking a batch."""
        self._pauses.request()

    def hold(self, part: Part, until_ms: float) -> None:
        """Pause ``part`` until ``until_ms`` (a waiting record is not due within the horizon)."""
        self._pauses.hold(part, until_ms)

    @property
    def pauses(self) -> int:
        """Partitions paused so far (tests and debugging)."""
        return self._pauses.count

    # -- rebalances (called inside consume/poll, on this thread) ------------------------------

    def _on_assign(self, consumer: Any, tps: list[Any]) -> None:
        for tp in tps:
            self._new_part(consumer, tp.topic, tp.partition)
        self._pauses.dirty = True  # new partitions join a paused assignment paused
        self.bus.emit(PartitionsAssigned(tuple((tp.topic, tp.partition) for tp in tps)))

    def _new_part(self, consumer: Any, topic: str, partition: int) -> Part:
        part = Part(topic, partition, self.routes, self.settings.ordering, consumer)
        rank = self.lane_ranks.get(topic)
        if part.single_type is not None and (rank is None or rank[1] == 0):
            # A lower priority lane stays in the pool, where its tasks yield to higher ones.
            part.pace = self.paces.get(part.single_type)
        part.dedupe = self.uniqueness.load(topic, partition)
        self.parts[(topic, partition)] = part
        return part

    def _on_revoke(self, consumer: Any, tps: list[Any]) -> None:
        parts = [p for tp in tps if (p := self.parts.get((tp.topic, tp.partition)))]
        for part in parts:
            part.revoked = True  # no new job of these partitions starts
        # Let their running jobs finish (bounded), then commit what is finished.
        deadline = time.monotonic() + self.settings.grace_period
        self.executor.spill()  # inline tasks: the pool ends those of revoked partitions
        while any(self._busy(p) for p in parts) and time.monotonic() < deadline:
            self._drain()
            self.executor.spill()
            self.outbox.poll(0.01)
        self._drain()
        offsets = []
        if self._eos:
            self._commit_txn()  # in the current generation: a zombie's is refused (aborted)
            # An aborted commit rewound them as new Parts: those are the ones to forget.
            parts = [p for tp in tps if (p := self.parts.get((tp.topic, tp.partition)))]
        for part in [] if self._eos else parts:
            pos = part.tracker.commit_position()
            if pos is not None:
                offsets.append(TopicPartition(part.topic, part.partition, pos))
        if offsets:
            # Store them too: with auto commit on, librdkafka commits the *stored* offsets of
            # revoked partitions after this callback, which would move the commit back to an
            # older stored position (docs/faults.md, finding 1).
            with contextlib.suppress(ClientError):
                consumer.store_offsets(offsets=offsets)
            self._commit(asynchronous=False, offsets=offsets, consumer=consumer)
        self._forget(parts)
        self.bus.emit(PartitionsRevoked(tuple((tp.topic, tp.partition) for tp in tps)))

    def _on_lost(self, _consumer: Any, tps: list[Any]) -> None:
        parts = [p for tp in tps if (p := self.parts.get((tp.topic, tp.partition)))]
        for part in parts:
            part.revoked = True
        self._forget(parts)  # never commit: another member may own them already
        self.bus.emit(PartitionsLost(tuple((tp.topic, tp.partition) for tp in tps)))

    def _forget(self, parts: list[Part]) -> None:
        for part in parts:
            part.gone = True
            self.followups.forget(part)
            if self.keyhold is not None:
                self.keyhold.forget(part)
            if self._eos:
                self.outbox.forget(part)
            self._touched.discard(part)
            if self.throttle is not None:
                self.throttle.forget(part)
            self.parts.pop((part.topic, part.partition), None)
        self._count_in_flight()

    # -- periodic -----------------------------------------------------------------------------

    def _drained(self, running_for: float) -> bool:
        """Burst mode: nothing in flight and every assigned partition read to its end."""
        if (self.in_flight or self.outbox.pending or self.followups.held
                or any(p.tasks for p in self.parts.values())):
            return False
        if not self.parts:
            return running_for > 10.0  # this member got no partitions
        return read_to_end(self.parts.values(), time.time() * 1000)

    # -- shutdown -----------------------------------------------------------------------------

    def _shutdown(self) -> None:
        reason = self.stop_reason or "error"
        self.bus.emit(WorkerStopping(reason))
        if self.scheduler is not None:
            self.scheduler.stop()  # hands the firing to another worker at once
        if self.executor is not None:
            self.executor.halt()  # chunks stop between jobs
        deadline = time.monotonic() + self.settings.grace_period
        try:
            if self.consumer is not None and self.parts:
                self._pauses.pause(list(self.parts.values()))
            while (self.parts and any(self._busy(p) for p in self.parts.values())
                   and time.monotonic() < deadline):
                self.consumer.poll(0.02)  # paused: serves callbacks, keeps the membership
                if self.waiter is not None:
                    self.waiter.poll(0)
                self.executor.spill()  # inline tasks: the pool ends them (stopping)
                self._drain()
                self._store()
                self.outbox.poll(0)
            self._drain()
            if self._eos:
                self._commit_txn()
            else:
                self._store()
                if self.parts:
                    self._commit(asynchronous=False)
            if self.outbox is not None:
                self.outbox.flush(max(1.0, deadline - time.monotonic()))
            if self.status is not None:
                self.status.flush(max(1.0, deadline - time.monotonic()))
        finally:
            for consumer in self._consumers():
                consumer.close()  # leaves the group
            if self.executor is not None:
                self.executor.shutdown()
            if self.followups is not None:
                self.followups.close()
            if self._eos and self.outbox is not None:
                self.outbox.close()  # aborts a transaction a failure left open
            self.bus.emit(WorkerStopped(reason, time.monotonic() - self._started_at))


def run_worker(app: App, settings: WorkerSettings | None = None,
               kafka: KafkaConfig | None = None, bus: EventBus | None = None, *,
               install_signals: bool = True, registry: RegistryConfig | None = None) -> int:
    """Run a worker until stopped; returns the exit code."""
    return Worker(app, settings, kafka, bus, registry=registry).run(
        install_signals=install_signals)

