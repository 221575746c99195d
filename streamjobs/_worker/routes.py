"""Which topics a worker reads and what each record on them means.

Built once at start-up from the app and its catalogue: job topics (with the app's topic prefix),
their wait-tier topics (``<topic>.retry.<tier>``, plus old tiers still on the broker, drained
but never written) and dead-letter topics, and a lookup from the
``sj-type`` header bytes to (job type, handler, job topic) so the hot path decodes a header
with one dict lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .._names import dlq_topic, retry_topic
from .._retry import old_tier_topics
from .._schemas.catalogue import JobType
from .app import App, Handler

__all__ = ["Route", "Routes"]


@dataclass(frozen=True, slots=True, eq=False)  # identity hash: a hot dict key
class Route:
    job: JobType
    handler: Handler
    topic: str  # the job topic, prefixed
    type_b: bytes  # the job type's name as the ``sj`` header carries it
    tail: bytes  # the end of this type's ``sj`` header value: b";" + type_b


class Routes:
    def __init__(self, app: App, jobs: tuple[JobType, ...],
                 wrap: Callable[[Handler], Handler] | None = None) -> None:
        """``wrap``: each handler as the worker runs it (``--ordering key-strict``: behind
        its key check, keyhold.py)."""
        self.by_type: dict[bytes, Route] = {}
        self.job_topics: dict[str, tuple[Route, ...]] = {}
        self.tiers: dict[str, tuple[float, ...]] = {}
        self.wait: dict[str, tuple[str, float]] = {}  # wait topic -> (job topic, tier)
        for job in jobs:
            handler = app.handlers[job.name]
            type_b = job.name.encode("utf-8")
            route = Route(job, wrap(handler) if wrap is not None else handler, app.topic(job),
                          type_b, b";" + type_b)
            self.by_type[type_b] = route
            # A job type with priority lanes has a job topic per lane (priorities.py): each
            # with its own tiers and dead letters, so a retry returns to its lane.
            for topic in app.catalogue.get(job.name).topics:
                self.job_topics[topic] = (*self.job_topics.get(topic, ()), route)
                tiers = app.catalogue.wait_tiers(topic)
                self.tiers[topic] = tiers
                for tier in tiers:
                    self.wait[retry_topic(topic, tier)] = (topic, tier)

    def add_old_tiers(self, names: Iterable[str]) -> dict[str, float]:
        """Also read the wait topics of old tiers present among ``names`` (the broker's
        topics): records still waiting there run when due, or move to a current tier; none is
        written there. Returns them (wait topic -> tier)."""
        found: dict[str, float] = {}
        for job_topic, tiers in self.tiers.items():
            old = old_tier_topics(job_topic, tiers, names)
            for name, tier in old.items():
                self.wait[name] = (job_topic, tier)
            found.update(old)
        return found

    def all_async(self, job_topic: str) -> bool:
        """Every handler of ``job_topic`` is ``async def`` (its chunks run on the loop)."""
        return all(r.handler.is_async for r in self.job_topics[job_topic])

    def subscriptions(self) -> list[str]:
        return sorted({*self.job_topics, *self.wait})

    def produced(self) -> list[str]:
        """Topics the worker writes to (retry tiers and dead-letter topics)."""
        return sorted({*(retry_topic(t, tier) for t, tiers in self.tiers.items() for tier in tiers),
                       *(dlq_topic(t) for t in self.job_topics)})

    def job_topic_of(self, topic: str) -> str:
        """The job topic a record read from ``topic`` belongs to."""
        wait = self.wait.get(topic)
        return wait[0] if wait is not None else topic
