"""``App``: the handler registry a worker runs.

    app = App(schemas="schemas")

    @app.job("send_welcome_email")
    def send_welcome_email(payload: dict, ctx: JobContext) -> None: ...

Sync handlers run in a bounded thread pool, ``async def`` handlers on one asyncio loop in its
own thread. ``topic_prefix`` prefixes every catalogue topic (and so its retry tiers and
dead-letter topic): several environments can share one cluster, and tests get private topics.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..catalogue import Catalogue, JobType
from ..errors import ConfigError, UnknownJobType
from .context import JobContext

__all__ = ["App", "Handler", "HandlerFunc"]

HandlerFunc = Callable[[dict[str, Any], JobContext], Any]
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Handler:
    job_type: str
    func: Callable[[dict[str, Any], JobContext], Any]
    is_async: bool
    timeout: float | None = None  # overrides the job type's catalogue timeout


class App:
    def __init__(self, schemas: str | Path | Catalogue = "schemas", *, name: str | None = None,
                 topic_prefix: str = "") -> None:
        self._schemas = schemas
        self._catalogue: Catalogue | None = schemas if isinstance(schemas, Catalogue) else None
        self.name = name
        self.topic_prefix = topic_prefix
        self.handlers: dict[str, Handler] = {}

    @property
    def catalogue(self) -> Catalogue:
        """Loaded on first use, so importing an app module never touches the disk."""
        if self._catalogue is None:
            self._catalogue = Catalogue.load(Path(self._schemas))  # type: ignore[arg-type]
        return self._catalogue

    def job(self, job_type: str, *, timeout: float | None = None) -> Callable[[F], F]:
        """Register the decorated function as the handler of ``job_type``; ``timeout``
        (seconds) overrides the catalogue's ``timeout`` of the job type."""
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"handlers.{job_type}.timeout", f"must be > 0, got {timeout!r}")

        def register(func: F) -> F:
            if job_type in self.handlers:
                raise ConfigError(f"handlers.{job_type}", "a handler is already registered "
                                  f"({self.handlers[job_type].func.__qualname__})")
            self.handlers[job_type] = Handler(job_type, func,
                                              inspect.iscoroutinefunction(func), timeout)
            return func

        return register

    def handler(self, job_type: str) -> Handler:
        try:
            return self.handlers[job_type]
        except KeyError:
            raise UnknownJobType(job_type, tuple(self.handlers)) from None

    def topic(self, job: JobType) -> str:
        """The Kafka topic of ``job`` (with the prefix)."""
        return self.topic_prefix + job.topic

    def check(self, job_types: tuple[str, ...] = ()) -> tuple[JobType, ...]:
        """The job types a worker runs (``job_types`` or every handled one), checked: each is
        in the catalogue and handled, and every job type sharing their topics is handled too
        (a worker consumes whole topics; an unhandled type there would be dead-lettered)."""
        catalogue = self.catalogue
        for name in self.handlers:
            catalogue.get(name)  # UnknownJobType naming the catalogue's types
        wanted = job_types or tuple(self.handlers)
        if not wanted:
            raise ConfigError("handlers", "the app registers no handler (use @app.job(...))")
        out: list[JobType] = []
        for name in wanted:
            job = catalogue.get(name)
            if name not in self.handlers:
                raise ConfigError("job_types", f"{name!r} has no handler in this app")
            out.append(job)
        for job in list(out):
            for other in catalogue.for_topic(job.topic):
                if other.name not in self.handlers:
                    raise ConfigError("handlers", f"job type {other.name!r} shares topic "
                                      f"{job.topic!r} with {job.name!r} but has no handler")
                if other not in out:
                    out.append(other)
        return tuple(out)


AsyncHandlerFunc = Callable[[dict[str, Any], JobContext], Awaitable[Any]]
