"""Who may change anything: the access token (login cookie or ``Authorization: Bearer``) and
the CSRF checks that stop another site from borrowing a logged-in browser.

The session cookie is ``<nonce>.<hmac(token, nonce)>`` (HttpOnly, SameSite=Strict): it never
holds the token itself, and changing the token ends every session. A form's CSRF field is
``hmac(token, "csrf:" + nonce)``; a request whose ``Origin`` names another host is refused
whatever it carries. Bearer requests carry no ambient credential, so they need no CSRF field.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "Guard"]

COOKIE = "sj_session"


class Guard:
    def __init__(self, token: str | None, *, actions_enabled: bool) -> None:
        self._key = token.encode() if token is not None else None
        self.actions_enabled = actions_enabled

    def _mac(self, text: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        return self._key is not None and hmac.compare_digest(given.encode(), self._key)

    def _nonce(self, request: Request) -> str | None:
        """The nonce of a valid session cookie, else None."""
        if self._key is None:
            return None
        nonce, _, mac = request.cookies.get(COOKIE, "").partition(".")
        if nonce and hmac.compare_digest(mac, self._mac(nonce)):
            return nonce
        return None

    def _bearer(self, request: Request) -> bool:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(value.strip())

    def logged_in(self, request: Request) -> bool:
        return self._bearer(request) or self._nonce(request) is not None

    def csrf_token(self, request: Request) -> str:
        """The CSRF field for forms on this page ("" when not logged in)."""
        nonce = self._nonce(request)
        return "" if nonce is None else self._mac("csrf:" + nonce)

    def login(self, response: Response, root_path: str, secure: bool) -> None:
        nonce = secrets.token_hex(16)
        response.set_cookie(COOKIE, f"{nonce}.{self._mac(nonce)}", httponly=True,
                            samesite="strict", secure=secure, path=root_path or "/")

    @staticmethod
    def logout(response: Response, root_path: str) -> None:
        response.delete_cookie(COOKIE, path=root_path or "/")

    @staticmethod
    def same_origin(request: Request) -> bool:
        """No ``Origin`` (curl, a script), or one naming the host we were asked for: ``Host``,
        or ``X-Forwarded-Host`` set by a proxy (a cross-site form cannot set that header, and a
        cross-site script setting it is stopped by the CORS preflight we never answer)."""
        origin = request.headers.get("origin")
        if origin is None:
            return True
        asked = {request.headers.get("host", "").lower(),
                 request.headers.get("x-forwarded-host", "").split(",")[0].strip().lower()}
        return urlsplit(origin).netloc.lower() in asked - {""}

    def refusal(self, request: Request, csrf_field: str | None) -> str | None:
        """Why this changing request is refused, or None when it may go ahead."""
        if not self.actions_enabled:
            return "actions are disabled (read-only mode, or no STREAMJOBS_WEB_TOKEN set)"
        if not self.same_origin(request):
            return "cross-origin request refused"
        if self._bearer(request):
            return None
        nonce = self._nonce(request)
        if nonce is None:
            return "log in with the access token first"
        if not csrf_field or not hmac.compare_digest(csrf_field, self._mac("csrf:" + nonce)):
            return "missing or stale form token (CSRF): reload the page and try again"
        return None
