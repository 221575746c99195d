"""Health, metrics and logging in with the access token."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..render import page
from ..state import web

__all__ = ["routes"]


async def healthz(request: Request) -> Response:
    index = web(request).sources.index
    if index.ready:
        return PlainTextResponse("ok\n")
    return PlainTextResponse("status index loading\n", status_code=503)


async def metrics(request: Request) -> Response:
    body = web(request).metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def _next(request: Request, value: str | None) -> str:
    """Where to go after logging in: a path under our root only (no open redirect)."""
    root = request.scope.get("root_path", "")
    if value and value.startswith(f"{root}/") and not value.startswith("//"):
        return value
    return f"{root}/"


async def login(request: Request) -> Response:
    w = web(request)
    if request.method == "GET":
        return page(request, "login.html", error=None,
                    next=_next(request, request.query_params.get("next")))
    form = await request.form()
    nxt = _next(request, str(form.get("next") or ""))
    if w.settings.token is None:
        return page(request, "login.html", status_code=403, next=nxt,
                    error="No STREAMJOBS_WEB_TOKEN is set: this dashboard is read-only.")
    if not w.guard.same_origin(request) or not w.guard.token_matches(str(form.get("token", ""))):
        w.metrics.actions.labels("login", "refused").inc()
        return page(request, "login.html", status_code=403, next=nxt,
                    error="Wrong access token.")
    response = RedirectResponse(nxt, status_code=303)
    w.guard.login(response, request.scope.get("root_path", ""),
                  secure=request.url.scheme == "https")
    w.metrics.actions.labels("login", "ok").inc()
    return response


async def logout(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    response = RedirectResponse(f"{root}/", status_code=303)
    web(request).guard.logout(response, root)
    return response


routes = [
    Route("/healthz", healthz),
    Route("/metrics", metrics),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
