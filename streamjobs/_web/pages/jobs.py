"""Jobs by id: the search box, the job page (timeline live over SSE) and the JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..live import ALL, sse_stream
from ..render import fragment, page
from ..state import web

__all__ = ["routes"]

_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _as_dict(status: Any) -> Any:
    return status.as_dict()


async def search(request: Request) -> Response:
    job_id = request.query_params.get("id", "").strip()
    root = request.scope.get("root_path", "")
    if job_id:
        return RedirectResponse(f"{root}/jobs/{quote(job_id, safe='')}", status_code=303)
    state = request.query_params.get("state") or None
    index = web(request).sources.index
    recent = index.recent(50, state=state) if index.ready else []
    return page(request, "jobs.html", recent=recent, state=state, ready=index.ready)


async def job_page(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    index = web(request).sources.index
    return page(request, "job.html", job_id=job_id, status=index.get(job_id), ready=index.ready)


async def timeline(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    index = web(request).sources.index
    html = fragment(request, "_timeline.html", job_id=job_id, status=index.get(job_id),
                    ready=index.ready)
    return Response(html, media_type="text/html")


async def api_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    index = web(request).sources.index
    status = index.get(job_id)
    if status is None:
        if not index.ready:
            return JSONResponse({"error": "status index is still loading", "job_id": job_id},
                                status_code=503, headers={"Retry-After": "2"})
        return JSONResponse({"error": "unknown job", "job_id": job_id}, status_code=404)
    return JSONResponse(status.as_dict())


def _stream(request: Request, key: str, current: bool) -> StreamingResponse:
    w = web(request)

    async def events() -> AsyncIterator[bytes]:
        # Listen before reading the current status, so no update falls in between.
        with w.live.listen(key) as sub:
            first = w.sources.index.get(key) if current else None
            async for chunk in sse_stream(sub, first, _as_dict, request.is_disconnected):
                yield chunk

    return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)


async def api_job_events(request: Request) -> Response:
    """The job's current status (if known), then each update, as ``event: status``."""
    return _stream(request, request.path_params["job_id"], current=True)


async def api_events(request: Request) -> Response:
    """Every status update of every job, as it reaches the index."""
    return _stream(request, ALL, current=False)


routes = [
    Route("/jobs", search),
    Route("/jobs/{job_id}", job_page),
    Route("/jobs/{job_id}/timeline", timeline),
    Route("/api/events", api_events),
    Route("/api/jobs/{job_id}", api_job),
    Route("/api/jobs/{job_id}/events", api_job_events),
]
