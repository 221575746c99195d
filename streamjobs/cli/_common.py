"""Options and helpers shared by command groups. Every option has a ``STREAMJOBS_*`` variable."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
import orjson

from ..catalogue import Catalogue
from ..config import ENV, KafkaConfig
from ..errors import BrokerUnavailable, ConfigError, StreamjobsError
from ..settings import ENV as SETTINGS_ENV
from ..settings import Settings

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
    @click.option("--client-id", envvar=ENV["client_id"], default=None,
                  help="client.id the brokers see (quotas, logs). [default: streamjobs]")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
                 "sasl_password", "ssl_ca_location", "ssl_certificate_location",
                 "ssl_key_location", "ssl_key_password", "client_id")
        overrides = {n: kwargs.pop(n) for n in names}
        global _active_kafka
        try:
            kwargs["kafka"] = _active_kafka = KafkaConfig.from_env({}, **overrides)
        except ConfigError as exc:
            fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def explain_unreachable(message: str, kafka: KafkaConfig) -> str:
    """``message``, replaced by the broker's reason when it answers but refuses the SASL
    credentials or the TLS handshake: librdkafka reports both as a mere transport failure."""
    reason = kafka.refusal()
    if reason is None:
        return message
    who = (f" for user {kafka.sasl_username!r} ({kafka.sasl_mechanism})"
           if kafka.security_protocol.startswith("SASL") else "")
    return f"Kafka at {kafka.bootstrap_servers} refused the connection{who}: {reason}"


_PREFIX_KEY = "streamjobs.topic_prefix"


def _remember_prefix(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    try:
        ctx.meta[_PREFIX_KEY] = Settings(topic_prefix=value or "")
    except ConfigError as exc:
        raise click.BadParameter(exc.reason) from None


def topic_prefix_option(func: F) -> F:
    """``--topic-prefix`` (env ``STREAMJOBS_TOPIC_PREFIX``); read it with ``settings()``."""
    return click.option(
        "--topic-prefix", envvar=SETTINGS_ENV["topic_prefix"], default=None,
        expose_value=False, callback=_remember_prefix, is_eager=True,
        help="Prefix of every catalogue topic and default group id (environments sharing a "
             "cluster); --topic names are taken under it.")(func)


def schemas_option(func: F) -> F:
    """``--schemas DIR`` and ``--topic-prefix``; load the catalogue with ``load_catalogue``."""
    func = topic_prefix_option(func)
    return click.option(
        "--schemas", "schemas_dir", envvar="STREAMJOBS_SCHEMAS", default="schemas",
        show_default=True, type=click.Path(file_okay=False),
        help="Directory with the .avsc files and catalogue.toml.")(func)


def settings() -> Settings:
    """The ``Settings`` of the running command: its ``--topic-prefix``, else the environment."""
    ctx = click.get_current_context(silent=True)
    found = ctx.meta.get(_PREFIX_KEY) if ctx is not None else None
    return found if isinstance(found, Settings) else Settings.from_env()


def load_catalogue(schemas_dir: str) -> Catalogue:
    """The catalogue of ``--schemas`` with the ``--topic-prefix`` of the running command."""
    return Catalogue.load(schemas_dir, topic_prefix=settings().topic_prefix)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, envvar="STREAMJOBS_JSON",
                        help="Machine-readable JSON output.")(func)


# The connection of the running command (set by kafka_options), so that every command's
# "unreachable" error can name a refused password or TLS handshake (see fail).
_active_kafka: KafkaConfig | None = None


def fail(message: str, code: int = EXIT_FAILURE) -> NoReturn:
    if code == EXIT_UNREACHABLE and _active_kafka is not None:
        message = explain_unreachable(message, _active_kafka)
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def print_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


@contextmanager
def exit_on_errors(*extra: tuple[type[Exception], int]) -> Iterator[None]:
    """Library errors -> one line and the documented exit code, never a traceback.
    ``extra`` (exception type, exit code) pairs are tried first, in order; then
    BrokerUnavailable exits 4 and any other StreamjobsError 1."""
    try:
        yield
    except Exception as exc:
        for kind, code in extra:
            if isinstance(exc, kind):
                fail(str(exc), code)
        if isinstance(exc, BrokerUnavailable):
            fail(str(exc), EXIT_UNREACHABLE)
        if isinstance(exc, StreamjobsError):
            fail(str(exc), EXIT_FAILURE)
        raise


def handle_errors(func: F) -> F:
    """``exit_on_errors`` around a whole command."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with exit_on_errors():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
