"""Connection settings shared by every Kafka client streamjobs creates.

One frozen ``KafkaConfig`` flows to the producer, worker, admin, dlq and replay clients, so SASL
and TLS are set in one place. Values come from arguments or ``STREAMJOBS_*`` environment
variables and are checked at construction; errors name the field. Secrets never appear in
``repr`` or logs.
Every client's librdkafka log lines and errors go to the ``streamjobs.kafka`` logger
(``_kafka_log``), never straight to stderr.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from . import _kafka_log
from ._connection import settings_problem
from .errors import ConfigError

__all__ = ["ENV", "ROLES", "KafkaConfig", "Role", "parse_settings", "split_settings"]

Role = Literal["consumer", "producer", "admin"]
ROLES: tuple[Role, ...] = ("consumer", "producer", "admin")

# field name -> environment variable; the CLI uses the same variables for its options.
ENV: dict[str, str] = {
    "bootstrap_servers": "STREAMJOBS_BOOTSTRAP_SERVERS",
    "client_id": "STREAMJOBS_CLIENT_ID",
    "security_protocol": "STREAMJOBS_SECURITY_PROTOCOL",
    "sasl_mechanism": "STREAMJOBS_SASL_MECHANISM",
    "sasl_username": "STREAMJOBS_SASL_USERNAME",
    "sasl_password": "STREAMJOBS_SASL_PASSWORD",
    "ssl_ca_location": "STREAMJOBS_SSL_CA_LOCATION",
    "ssl_certificate_location": "STREAMJOBS_SSL_CERTIFICATE_LOCATION",
    "ssl_key_location": "STREAMJOBS_SSL_KEY_LOCATION",
    "ssl_key_password": "STREAMJOBS_SSL_KEY_PASSWORD",
    "consumer_config": "STREAMJOBS_CONSUMER_CONFIG",
    "producer_config": "STREAMJOBS_PRODUCER_CONFIG",
}
_SETTINGS_FIELDS = ("consumer_config", "producer_config")  # KEY=VALUE lists in the environment

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SECRET = {"sasl_password", "ssl_key_password"}


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "streamjobs"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    # Extra librdkafka settings for every client (advanced; validated by librdkafka itself).
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Extra settings for consumers only / producers only (``--consumer-config`` and
    # ``--producer-config``); they win over ``extra`` and over what streamjobs sets itself.
    consumer_config: Mapping[str, Any] = field(default_factory=dict)
    producer_config: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("bootstrap_servers", "must not be empty")
        for part in self.bootstrap_servers.split(","):
            host, _, port = part.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError("bootstrap_servers", f"{part!r} is not host:port")
        proto = self.security_protocol.upper()
        if proto not in _PROTOCOLS:
            raise ConfigError("security_protocol", f"must be one of {', '.join(_PROTOCOLS)}")
        object.__setattr__(self, "security_protocol", proto)
        if proto.startswith("SASL"):
            if self.sasl_mechanism is None:
                raise ConfigError("sasl_mechanism", f"required with {proto}")
            if self.sasl_mechanism.upper() not in _MECHANISMS:
                raise ConfigError("sasl_mechanism", f"must be one of {', '.join(_MECHANISMS)}")
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError("sasl_username", f"username and password required with {proto}")
        _check_settings("consumer_config", self.consumer_config)
        _check_settings("producer_config", self.producer_config)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> KafkaConfig:
        """Build from ``STREAMJOBS_*`` variables; keyword arguments that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in ENV.items():
            if var in env and env[var] != "":
                values[name] = (parse_settings(split_settings(env[var]), name)
                                if name in _SETTINGS_FIELDS else env[var])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings for any client (producer, consumer, admin), with the ``logger``
        and ``error_cb`` that send librdkafka's output to the ``streamjobs.kafka`` logger (a
        caller's own ``error_cb`` may replace the latter). Add ``role_settings`` last."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            "logger": _kafka_log.FORWARDER,
            "error_cb": _kafka_log.on_error,
        }
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanism"] = (self.sasl_mechanism or "").upper()
            conf["sasl.username"] = self.sasl_username
            conf["sasl.password"] = self.sasl_password
        for name, key in (
            ("ssl_ca_location", "ssl.ca.location"),
            ("ssl_certificate_location", "ssl.certificate.location"),
            ("ssl_key_location", "ssl.key.location"),
            ("ssl_key_password", "ssl.key.password"),
        ):
            value = getattr(self, name)
            if value is not None:
                conf[key] = value
        conf.update(self.extra)
        return conf

    def role_settings(self, role: Role) -> dict[str, Any]:
        """The extras of one kind of client (``consumer_config``, ``producer_config``); a caller
        applies them after its own settings, so that the user's win."""
        if role == "consumer":
            return dict(self.consumer_config)
        if role == "producer":
            return dict(self.producer_config)
        return {}

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.name in _SECRET and value is not None else value
        return out

    def refused_message(self, reason: str) -> str:
        who = (f" for user {self.sasl_username!r} ({self.sasl_mechanism})"
               if self.security_protocol.startswith("SASL") else "")
        return f"Kafka at {self.bootstrap_servers} refused the connection{who}: {reason}"


def split_settings(text: str) -> list[str]:
    """``"a=1, b=2 c=x,y"`` -> ``["a=1", "b=2", "c=x,y"]``: pairs separated by commas or
    whitespace; a piece without ``=`` continues the previous value (``range,roundrobin``)."""
    out: list[str] = []
    for piece in text.replace(",", " , ").split():
        if piece == ",":
            continue
        if "=" not in piece and out:
            out[-1] += "," + piece
        else:
            out.append(piece)
    return out


def parse_settings(pairs: list[str], field_name: str) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` -> a dict; ``ConfigError(field_name)`` for a piece without ``=``."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(field_name, f"{pair!r} is not KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _check_settings(name: str, settings: Mapping[str, Any]) -> None:
    """Let librdkafka judge the settings now (a client that connects nowhere takes ~2 ms), so
    a typo fails at construction, naming the field and, when one alone is wrong, the setting."""
    conf = {k: v for k, v in settings.items() if k != "bootstrap.servers"}  # would connect
    problem = settings_problem(name, conf)
    if problem is None:
        return
    for key, value in conf.items():  # which one? (some only fail together: report the set)
        alone = settings_problem(name, {key: value})
        if alone is not None:
            raise ConfigError(name, f"{key}={value}: {alone}")
    raise ConfigError(name, problem)
