"""A client of a Confluent-compatible schema registry (Confluent, Apicurio ``/apis/ccompat/v7``,
Redpanda, Karapace), for the ``registry`` framing.

``schemas/`` stays the source of truth: the registry learns its versions from ``schemas
register`` / ``topics apply`` (``subjects.py``). At run time the client does two things, both
cached for the life of the process so that no record costs a registry call: the id of a job
type's current schema (emit) and the schema of a writer id (worker, dead-letter tools).

Standard library HTTP only (``urllib``): basic auth, a TLS CA bundle, a timeout. Failures are
``RegistryUnavailable`` (unreachable, timeout, 5xx; ``refused``: credentials or certificate) or
``RegistryError`` (the registry said no).
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, RegistryError, RegistryUnavailable

__all__ = ["REGISTRY_ENV", "RegistryConfig", "SchemaRegistry"]

# field name -> environment variable; the CLI uses the same variables for its options.
REGISTRY_ENV: dict[str, str] = {
    "url": "STREAMJOBS_REGISTRY_URL",
    "username": "STREAMJOBS_REGISTRY_USERNAME",
    "password": "STREAMJOBS_REGISTRY_PASSWORD",
    "ca_location": "STREAMJOBS_REGISTRY_CA_LOCATION",
    "timeout": "STREAMJOBS_REGISTRY_TIMEOUT",
}

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


@dataclass(frozen=True)
class RegistryConfig:
    """Where the registry is and how to log in. ``url`` is the Confluent-compatible API root
    (for Apicurio: ``http://host:8080/apis/ccompat/v7``)."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_location: str | None = None  # PEM bundle trusted for an https URL
    timeout: float = 10.0

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("registry_url", f"{self.url!r} is not an http(s):// URL")
        object.__setattr__(self, "url", self.url.rstrip("/"))
        if (self.username is None) != (self.password is None):
            raise ConfigError("registry_username", "username and password go together")
        if self.ca_location is not None and not os.path.isfile(self.ca_location):
            raise ConfigError("registry_ca_location", f"{self.ca_location!r} is not a file")
        timeout = float(self.timeout)
        if not timeout > 0:
            raise ConfigError("registry_timeout", f"must be > 0 seconds, got {self.timeout!r}")
        object.__setattr__(self, "timeout", timeout)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> RegistryConfig | None:
        """From ``STREAMJOBS_REGISTRY_*``; keyword arguments that are not None win. None when
        no URL is given (no registry configured)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {name: env[var] for name, var in REGISTRY_ENV.items()
                                  if env.get(var)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if not values.get("url"):
            if len(values) > 0:
                raise ConfigError("registry_url", "required with the other registry settings")
            return None
        try:
            values["timeout"] = float(values.get("timeout", 10.0))
        except ValueError:
            raise ConfigError("registry_timeout", f"not a number: {values['timeout']!r}") from None
        return cls(**values)


class SchemaRegistry:
    """Thread safe; share one per process. Ids and schemas are cached (they never change)."""

    def __init__(self, config: RegistryConfig) -> None:
        self.config = config
        self._ssl = (ssl.create_default_context(cafile=config.ca_location)
                     if config.ca_location else None)
        self._auth: str | None = None
        if config.username is not None:
            token = f"{config.username}:{config.password}".encode()
            self._auth = "Basic " + base64.b64encode(token).decode()
        self._schemas: dict[int, str] = {}
        self._ids: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return self.config.url

    def refusal(self) -> str | None:
        """Why the registry refuses this configuration, if it does (our credentials, or a
        certificate our CA bundle does not verify); None when it answers or is merely
        unreachable, which the retry ladder rides out."""
        try:
            self._request("GET", "/subjects")
        except RegistryError as exc:
            return str(exc) if exc.refused else None
        return None

    # -- run time (cached) --------------------------------------------------------------------

    def schema(self, schema_id: int) -> str:
        """The schema text of ``schema_id`` (RegistryError status 404 when unknown)."""
        found = self._schemas.get(schema_id)
        if found is None:
            body = self._request("GET", f"/schemas/ids/{schema_id}")
            found = str(body["schema"])
            with self._lock:
                self._schemas[schema_id] = found
        return found

    def lookup(self, subject: str, schema: str) -> int | None:
        """The id of ``schema`` under ``subject``; None when it is not registered there."""
        key = (subject, schema)
        found = self._ids.get(key)
        if found is None:
            try:
                body = self._request("POST", f"/subjects/{_q(subject)}",
                                     {"schema": schema, "schemaType": "AVRO"})
            except RegistryError as exc:
                if exc.status == 404:
                    return None
                raise
            found = self._remember(key, schema, int(body["id"]))
        return found

    # -- registration and checks (subjects.py) --------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        """Registers ``schema`` as the next version of ``subject`` (idempotent: an already
        registered schema keeps its id and version). Returns its id."""
        body = self._request("POST", f"/subjects/{_q(subject)}/versions",
                             {"schema": schema, "schemaType": "AVRO"})
        return self._remember((subject, schema), schema, int(body["id"]))

    def versions(self, subject: str) -> list[dict[str, Any]]:
        """Every version of ``subject``, oldest first: ``{"version", "id", "schema"}``."""
        try:
            numbers = self._request("GET", f"/subjects/{_q(subject)}/versions")
        except RegistryError as exc:
            if exc.status == 404:
                return []
            raise
        return [self._request("GET", f"/subjects/{_q(subject)}/versions/{int(n)}")
                for n in sorted(numbers)]

    def compatible(self, subject: str, schema: str) -> bool:
        """Whether the registry would accept ``schema`` as the next version of ``subject``
        under the subject's compatibility level (True when the subject does not exist)."""
        try:
            body = self._request("POST",
                                 f"/compatibility/subjects/{_q(subject)}/versions/latest",
                                 {"schema": schema, "schemaType": "AVRO"})
        except RegistryError as exc:
            if exc.status == 404:
                return True
            raise
        return bool(body.get("is_compatible"))

    # -- transport ----------------------------------------------------------------------------

    def _remember(self, key: tuple[str, str], schema: str, schema_id: int) -> int:
        with self._lock:
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, schema)
        return schema_id

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.config.url + path
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", _CONTENT_TYPE)
        if data is not None:
            req.add_header("Content-Type", _CONTENT_TYPE)
        if self._auth is not None:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout,
                                        context=self._ssl) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {}
            err = err if isinstance(err, dict) else {}
            message = str(err.get("message") or raw[:200].decode("utf-8", "replace") or exc.reason)
            if exc.code in (401, 403):
                raise RegistryUnavailable(self.config.url, f"{method} {path}: HTTP {exc.code}: "
                                          f"{self._denied(exc.code)}", status=exc.code,
                                          refused=True) from None
            kind = RegistryUnavailable if exc.code >= 500 else RegistryError
            raise kind(self.config.url, f"{method} {path}: HTTP {exc.code}: {message}",
                       status=exc.code, code=err.get("error_code")) from None
        except (OSError, ValueError) as exc:  # URLError, refused, timeout, bad JSON
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLCertVerificationError):
                trusted = self.config.ca_location or "the system CA bundle"
                raise RegistryUnavailable(
                    self.config.url, f"{method} {path}: TLS refused: {reason.reason}: "
                    f"certificate verify failed: {reason.verify_message} (trusting {trusted}; "
                    "give the registry's CA with --registry-ca-location)", refused=True
                ) from None
            raise RegistryUnavailable(self.config.url, f"{method} {path}: {reason}") from None

    def _denied(self, status: int) -> str:
        if self.config.username is None:
            return ("the registry requires credentials; give --registry-username and "
                    "--registry-password")
        what = "refused the credentials" if status == 401 else "denied access"
        return (f"the registry {what} of user {self.config.username!r} (check "
                "--registry-username and --registry-password)")


def _q(subject: str) -> str:
    return urllib.parse.quote(subject, safe="")
