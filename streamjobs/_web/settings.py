"""The dashboard server's settings: one frozen value, validated at construction."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["WebSettings", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


@dataclass(frozen=True)
class WebSettings:
    """``token`` None: no action that changes anything is possible (see docs/web.md)."""

    host: str = "127.0.0.1"
    port: int = 8080
    read_only: bool = False
    root_path: str = ""
    token: str | None = None
    topic_prefix: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", "must be 0..65535")
        root = self.root_path.rstrip("/")
        if root and not root.startswith("/"):
            raise ConfigError("root_path", f"must start with '/', got {self.root_path!r}")
        object.__setattr__(self, "root_path", root)
        if self.token is not None and len(self.token) < 8:
            raise ConfigError("token", "STREAMJOBS_WEB_TOKEN must be at least 8 characters")
        if not is_loopback(self.host) and self.token is None:
            raise ConfigError("host", f"{self.host} is not a loopback address: set "
                                      f"STREAMJOBS_WEB_TOKEN to serve it beyond this machine")

    @property
    def actions_enabled(self) -> bool:
        """Changing actions need a token, and are off in read-only mode."""
        return self.token is not None and not self.read_only
