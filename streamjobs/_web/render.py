"""Server-rendered pages: one Jinja2 environment with autoescape on for every template, so
payloads, keys and headers always reach the browser as text."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse

from .state import web

__all__ = ["fragment", "page"]

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True, trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)

BADGES = {"emitted": "info", "started": "info", "succeeded": "ok", "retrying": "warn",
          "dead": "bad", "reprocessed": "info", "replayed": "info"}


def _ts(ms: int | None) -> str:
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _ago(ms: int | None) -> str:
    if not ms:
        return "-"
    s = int(time.time() - ms / 1000)
    if s < 0:
        return f"in {_span(-s)}"
    return f"{_span(s)} ago"


def _span(s: int) -> str:
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


_env.filters.update(ts=_ts, ago=_ago, pretty=_json,
                    badge=lambda state: BADGES.get(str(state), "info"))


def _context(request: Request, ctx: dict[str, Any]) -> dict[str, Any]:
    w = web(request)
    root = request.scope.get("root_path", "").rstrip("/")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return {"request": request, "root": root, "here": here, "settings": w.settings,
            "logged_in": w.guard.logged_in(request), "csrf": w.guard.csrf_token(request),
            "actions": w.settings.actions_enabled, **ctx}


def fragment(request: Request, name: str, **ctx: Any) -> str:
    return _env.get_template(name).render(_context(request, ctx))


def page(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    return HTMLResponse(fragment(request, name, **ctx), status_code=status_code)
