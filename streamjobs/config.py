"""Connection settings shared by every Kafka client streamjobs creates.

One frozen ``KafkaConfig`` flows to the producer, worker, admin, dlq and replay clients, so SASL
and TLS are set in one place. Values come from arguments or ``STREAMJOBS_*`` environment
variables and are checked at construction; errors name the field. Secrets never appear in
``repr`` or logs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError

__all__ = ["ENV", "KafkaConfig"]

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
}

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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> KafkaConfig:
        """Build from ``STREAMJOBS_*`` variables; keyword arguments that are not None win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, var in ENV.items():
            if var in env and env[var] != "":
                values[name] = env[var]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def client_settings(self) -> dict[str, Any]:
        """librdkafka settings for any client (producer, consumer, admin)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
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

    def redacted(self) -> dict[str, Any]:
        """Settings safe to log."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if f.name in _SECRET and value is not None else value
        return out

    def refusal(self, timeout: float = 5.0) -> str | None:
        """Why the brokers refuse this configuration, if they do: the first SASL authentication
        or TLS handshake error librdkafka reports within ``timeout`` seconds; None when a broker
        answers or the problem is plain connectivity. Explains a ``BrokerUnavailable``: librdkafka
        itself only says "broker transport failure" for a wrong password."""
        if self.security_protocol == "PLAINTEXT":
            return None
        from confluent_kafka import KafkaError as RdKafkaError
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        refused = (RdKafkaError._AUTHENTICATION, RdKafkaError._SSL)
        seen: list[str] = []

        def on_error(err: Any) -> None:
            if err.code() in refused:
                seen.append(err.str())

        # log_level 0: the probe's own failures are reported by the caller, once.
        conf: dict[str, Any] = {**self.client_settings(), "error_cb": on_error, "log_level": 0}
        admin = AdminClient(conf)
        deadline = time.monotonic() + timeout
        while not seen and time.monotonic() < deadline:
            try:
                admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return None
            except KafkaException:
                admin.poll(0.1)  # error_cb events are served by poll
        return seen[0] if seen else None
