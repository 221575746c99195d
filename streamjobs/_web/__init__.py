"""``streamjobs web``: the dashboard server (docs/web.md).

An ASGI app (Starlette) with server-rendered pages: the overview, jobs by id with their
timeline live over SSE, dead letters (filter, open, reprocess), replay plans, plus a JSON API.
Needs the ``web`` extra: ``pip install 'streamjobs[web]'``.
"""

from .app import create_app
from .settings import WebSettings, is_loopback
from .sources import Sources

__all__ = ["Sources", "WebSettings", "create_app", "is_loopback"]
