"""The overview: rates per job type, workers and in-flight, group lag, wait tiers, dead
letters. The page re-fetches its figures every few seconds (``/overview/fragment``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..render import fragment, page
from ..state import web

__all__ = ["routes"]


def _plain(value: Any) -> Any:
    """Dataclasses (lag, reports) -> JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


async def _data(request: Request) -> dict[str, Any]:
    return await run_in_threadpool(web(request).sources.overview)


async def overview(request: Request) -> Response:
    return page(request, "overview.html", data=await _data(request))


async def overview_fragment(request: Request) -> Response:
    return Response(fragment(request, "_overview.html", data=await _data(request)),
                    media_type="text/html")


async def api_overview(request: Request) -> Response:
    return JSONResponse(_plain(await _data(request)))


routes = [
    Route("/", overview),
    Route("/overview/fragment", overview_fragment),
    Route("/api/overview", api_overview),
]
