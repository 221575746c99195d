"""Options and helpers shared by command groups. Every option has a ``STREAMJOBS_*`` variable."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
import orjson

from ..config import ENV, KafkaConfig
from ..errors import BrokerUnavailable, ConfigError, StreamjobsError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4


def kafka_options(func: F) -> F:
    """Adds the connection options and passes ``kafka: KafkaConfig`` to the command."""

    @click.option("--bootstrap-servers", envvar=ENV["bootstrap_servers"], default=None,
                  help="Kafka bootstrap servers, host:port[,...]. [default: 127.0.0.1:9092]")
    @click.option("--security-protocol", envvar=ENV["security_protocol"], default=None,
                  help="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.")
    @click.option("--sasl-mechanism", envvar=ENV["sasl_mechanism"], default=None,
                  help="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    @click.option("--sasl-username", envvar=ENV["sasl_username"], default=None)
    @click.option("--sasl-password", envvar=ENV["sasl_password"], default=None,
                  help="Prefer the environment variable; never logged.")
    @click.option("--ssl-ca-location", envvar=ENV["ssl_ca_location"], default=None)
    @click.option("--ssl-certificate-location", envvar=ENV["ssl_certificate_location"],
                  default=None)
    @click.option("--ssl-key-location", envvar=ENV["ssl_key_location"], default=None)
    @click.option("--ssl-key-password", envvar=ENV["ssl_key_password"], default=None)
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
                 "sasl_password", "ssl_ca_location", "ssl_certificate_location",
                 "ssl_key_location", "ssl_key_password")
        overrides = {n: kwargs.pop(n) for n in names}
        try:
            kwargs["kafka"] = KafkaConfig.from_env({}, **overrides)
        except ConfigError as exc:
            fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
        try:
            return func(*args, **kwargs)
        except BrokerUnavailable as exc:  # reached only when handle_errors is the outer one
            raise explain_unavailable(exc, kwargs["kafka"]) from None

    return wrapper  # type: ignore[return-value]


def explain_unavailable(exc: BrokerUnavailable, kafka: KafkaConfig) -> BrokerUnavailable:
    """``exc`` with the reason when the brokers answer but refuse the SASL credentials or the
    TLS handshake (librdkafka reports both as a transport failure)."""
    reason = kafka.refusal()
    if reason is None:
        return exc
    who = (f" for user {kafka.sasl_username!r} ({kafka.sasl_mechanism})"
           if kafka.security_protocol.startswith("SASL") else "")
    return BrokerUnavailable(f"Kafka at {kafka.bootstrap_servers} refused the connection"
                             f"{who}: {reason}", code=exc.code, topic=exc.topic)


def schemas_option(func: F) -> F:
    return click.option(
        "--schemas", "schemas_dir", envvar="STREAMJOBS_SCHEMAS", default="schemas",
        show_default=True, type=click.Path(file_okay=False),
        help="Directory with the .avsc files and catalogue.toml.")(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, envvar="STREAMJOBS_JSON",
                        help="Machine-readable JSON output.")(func)


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def handle_errors(func: F) -> F:
    """Turns streamjobs errors into one-line messages and exit codes, never tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BrokerUnavailable as exc:
            kafka = kwargs.get("kafka")
            if isinstance(kafka, KafkaConfig):
                exc = explain_unavailable(exc, kafka)
            fail(str(exc), EXIT_UNREACHABLE)
        except StreamjobsError as exc:
            fail(str(exc), EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]
