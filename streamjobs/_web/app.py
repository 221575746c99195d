"""The app factory: ``create_app(settings, sources)`` -> a Starlette ASGI app."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .live import Broadcaster
from .metrics import WebMetrics
from .pages import deadletters, jobs, ops, overview, replay
from .security import Guard
from .settings import WebSettings
from .sources import Sources
from .state import WebState

__all__ = ["create_app"]


class _RootPath:
    """Serves under ``root_path`` whether the ingress strips the prefix or passes it on."""

    def __init__(self, app: ASGIApp, root: str) -> None:
        self.app = app
        self.root = root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.root and scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            if path == self.root:
                path += "/"
            elif not path.startswith(self.root + "/"):
                path = self.root + path
            scope = {**scope, "root_path": self.root, "path": path}
        await self.app(scope, receive, send)


class _Counted:
    """Counts every response by method, endpoint and status (``streamjobs_web_requests_total``)."""

    def __init__(self, app: ASGIApp, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                endpoint = scope.get("endpoint")
                route = getattr(endpoint, "__name__", None) or "unmatched"
                self.metrics.requests.labels(scope["method"], route,
                                             str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def create_app(settings: WebSettings, sources: Sources) -> Starlette:
    """The dashboard; serving it starts ``sources`` (index, reports), unless the caller did,
    and closes them at exit."""
    live = Broadcaster()
    metrics = WebMetrics(sources.index.stats, lambda: sources.index.ready, lambda: live.clients)
    state = WebState(settings, sources,
                     Guard(settings.token, actions_enabled=settings.actions_enabled), live,
                     metrics)

    # Subscribed before the index starts, so that no update is missed.
    unsubscribe = sources.index.subscribe(live.publish)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        sources.start()  # a no-op when the caller started them already
        try:
            yield
        finally:
            unsubscribe()
            sources.close()

    static = StaticFiles(directory=Path(__file__).parent / "static")
    routes = [*overview.routes, *jobs.routes, *deadletters.routes, *replay.routes, *ops.routes,
              Mount("/static", static, name="static")]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.web = state
    app.add_middleware(_Counted, metrics=metrics)
    app.add_middleware(_RootPath, root=settings.root_path)
    return app
