"""Everything a request handler needs, built once by the app factory."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from .live import Broadcaster
from .metrics import WebMetrics
from .security import Guard
from .settings import WebSettings
from .sources import Sources

__all__ = ["WebState", "web"]


@dataclass
class WebState:
    settings: WebSettings
    sources: Sources
    guard: Guard
    live: Broadcaster
    metrics: WebMetrics


def web(request: Request) -> WebState:
    state: WebState = request.app.state.web
    return state
