"""``App``: the handler registry a worker runs.

    app = App(schemas="schemas")

    @app.job("send_welcome_email")
    def send_welcome_email(payload: dict, ctx: JobContext) -> None: ...

Sync handlers run in a bounded thread pool, ``async def`` handlers on one asyncio loop in its
own thread. ``topic_prefix`` prefixes every catalogue topic (and so its retry tiers and
dead-letter topic) and the default consumer group: several environments can share one cluster,
and tests get private topics. Left out (None), it is ``STREAMJOBS_TOPIC_PREFIX``, as for
``Catalogue.load`` and the CLI (``streamjobs._settings``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from .._names import default_group_id
from .._schemas.catalogue import Catalogue, JobType
from .._settings import Settings
from ..errors import ConfigError, UnknownJobType
from .context import Handler, HandlerFunc, JobContext

__all__ = ["App", "Handler", "HandlerFunc", "check_handler"]

F = TypeVar("F", bound=Callable[..., Any])


class App:
    def __init__(self, schemas: str | Path | Catalogue = "schemas", *, name: str | None = None,
                 topic_prefix: str | None = None) -> None:
        self._schemas = schemas
        self._loaded: Catalogue | None = schemas if isinstance(schemas, Catalogue) else None
        self.name = name
        self.topic_prefix = (Settings.from_env().topic_prefix if topic_prefix is None
                             else Settings(topic_prefix).topic_prefix)
        self.handlers: dict[str, Handler] = {}

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue under this app's ``topic_prefix`` (whatever prefix a given Catalogue
        had). Loaded on first use, so importing an app module never touches the disk."""
        if self._loaded is None:
            self._loaded = Catalogue.load(Path(self._schemas),  # type: ignore[arg-type]
                                          topic_prefix=self.topic_prefix)
        # topic_prefix may be set after construction (the CLI's --topic-prefix, tests).
        if self._loaded.topic_prefix != self.topic_prefix:
            self._loaded = self._loaded.with_topic_prefix(self.topic_prefix)
        return self._loaded

    def default_group_id(self, fallback_name: str = "app") -> str:
        """``<topic prefix>streamjobs-<app name>``: the worker group when none is given."""
        return default_group_id(self.name or fallback_name, self.topic_prefix)

    def job(self, job_type: str, *, timeout: float | None = None) -> Callable[[F], F]:
        """Register the decorated function as the handler of ``job_type``; ``timeout``
        (seconds) overrides the catalogue's ``timeout`` of the job type."""
        if timeout is not None and not timeout > 0:
            raise ConfigError(f"handlers.{job_type}.timeout", f"must be > 0, got {timeout!r}")

        def register(func: F) -> F:
            check_handler(job_type, func)
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
        """The Kafka topic of ``job`` under this app's prefix."""
        return self.catalogue.get(job.name).topic

    def check(self, job_types: tuple[str, ...] = ()) -> tuple[JobType, ...]:
        """The job types a worker runs (``job_types`` or every handled one), checked: each is
        in the catalogue and handled, and every job type sharing their topics is handled too
        (a worker consumes whole topics; an unhandled type there would be dead-lettered)."""
        catalogue = self.catalogue
        for name, handler in self.handlers.items():
            check_handler(name, handler.func)
            try:
                catalogue.get(name)
            except UnknownJobType as exc:
                where = catalogue.schemas_dir / "catalogue.toml"
                raise ConfigError(f"handlers.{name}", f"{handler.func.__qualname__} handles "
                                  f"{name!r}, which {where} does not define (known: "
                                  f"{', '.join(exc.known) or 'none'})") from None
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


def check_handler(job_type: str, func: Any) -> None:
    """A handler is called as ``func(payload, ctx)``: refuse anything else at registration,
    not at the first job."""
    if not callable(func):
        raise ConfigError(f"handlers.{job_type}", f"{func!r} is not callable")
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return  # a builtin or C callable: nothing to read, it will tell at the first call
    try:
        sig.bind(None, None)
    except TypeError:
        name = getattr(func, "__qualname__", repr(func))
        params = sig.replace(return_annotation=inspect.Signature.empty)
        raise ConfigError(f"handlers.{job_type}", f"{name}{params} cannot be called as "
                          "handler(payload, ctx)") from None


AsyncHandlerFunc = Callable[[dict[str, Any], JobContext], Awaitable[Any]]
