"""Options and helpers shared by command groups. Every option has a ``STREAMJOBS_*`` variable."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
import orjson

from .. import _connection as connection
from .. import _kafka_log
from .._config import ENV, KafkaConfig, parse_settings, split_settings
from .._schemas.catalogue import Catalogue
from .._schemas.registry import REGISTRY_ENV, RegistryConfig
from .._settings import ENV as SETTINGS_ENV
from .._settings import Settings
from ..errors import BrokerUnavailable, ConfigError, RegistryUnavailable, StreamjobsError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_UNREACHABLE = 4


UNREACHABLE_HINT = ("check --bootstrap-servers / STREAMJOBS_BOOTSTRAP_SERVERS and that the "
                    "broker is up")
_CONNECTION = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username",
               "sasl_password", "ssl_ca_location", "ssl_certificate_location", "ssl_key_location",
               "ssl_key_password", "client_id")
LOG_LEVELS = ("debug", "info", "warning", "error")


class _Settings(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A ``KEY=VALUE`` librdkafka setting; the environment variable holds a list of them
    (``config.split_settings``: commas or whitespace between pairs)."""

    name = "KEY=VALUE"

    def split_envvar_value(self, rv: str) -> list[str]:
        return split_settings(rv)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None
                ) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        try:
            [(key, val)] = parse_settings([str(value)], "").items()
        except ConfigError as exc:
            self.fail(exc.reason, param, ctx)
        return key, val


def kafka_options(func: F) -> F:
    """Adds the connection options, ``--connect-timeout``, ``--log-level`` and the librdkafka
    ``--consumer-config`` / ``--producer-config``; passes ``kafka: KafkaConfig`` to the command
    (and ``log_level`` / ``connect_timeout`` when its signature takes them).

    Before the command runs, a broker must answer within ``--connect-timeout``: otherwise one
    line (the address and what to check) and exit 4. A command whose signature takes
    ``require_broker`` gets that check as a function to call when it needs Kafka. librdkafka's
    own log lines reach stderr only with ``--log-level debug``."""
    takes = set(inspect.signature(func).parameters)

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
    @click.option("--connect-timeout", type=float, default=10.0, show_default=True,
                  envvar="STREAMJOBS_CONNECT_TIMEOUT",
                  help="Seconds to wait for a broker to answer before exiting 4.")
    @click.option("--consumer-config", multiple=True, type=_Settings(),
                  envvar=ENV["consumer_config"],
                  help="librdkafka consumer setting, repeatable; wins over streamjobs' own.")
    @click.option("--producer-config", multiple=True, type=_Settings(),
                  envvar=ENV["producer_config"],
                  help="librdkafka producer setting, repeatable; wins over streamjobs' own.")
    @click.option("--log-level", default="info", show_default=True, envvar="STREAMJOBS_LOG_LEVEL",
                  type=click.Choice(LOG_LEVELS, case_sensitive=False),
                  help="debug also shows librdkafka's own log lines (logger streamjobs.kafka).")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        overrides = {n: kwargs.pop(n) for n in _CONNECTION}
        overrides["consumer_config"] = dict(kwargs.pop("consumer_config"))
        overrides["producer_config"] = dict(kwargs.pop("producer_config"))
        connect_timeout: float = kwargs.pop("connect_timeout")
        log_level: str = kwargs.pop("log_level").lower()
        if not connect_timeout > 0:
            fail("invalid option connect-timeout: must be > 0", EXIT_USAGE)
        _show_kafka_log(log_level, handled_by_command="log_level" in takes)
        global _active_kafka
        try:
            kafka = _active_kafka = KafkaConfig.from_env({}, **overrides)
        except ConfigError as exc:
            fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)

        def require_broker() -> None:
            global _active_kafka
            try:
                connection.check_reachable(kafka, connect_timeout)
            except BrokerUnavailable as exc:
                _active_kafka = None  # the reason is in the message already
                hint = "" if exc.code == "_AUTHENTICATION" else f"; {UNREACHABLE_HINT}"
                fail(f"{exc}{hint}", EXIT_UNREACHABLE)

        if "require_broker" in takes:
            # The command checks its own input first, or may not need Kafka at all.
            kwargs["require_broker"] = require_broker
        else:
            require_broker()
        kwargs["kafka"] = kafka
        if "log_level" in takes:
            kwargs["log_level"] = log_level
        if "connect_timeout" in takes:
            kwargs["connect_timeout"] = connect_timeout
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _show_kafka_log(level: str, *, handled_by_command: bool) -> None:
    """librdkafka's lines only at debug. A command that takes ``log_level`` configures logging
    itself (the worker); for the others a plain stderr handler shows them."""
    _kafka_log.show(level)
    if level == "debug" and not handled_by_command:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("streamjobs")
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)


def registry_options(func: F) -> F:
    """Adds the schema registry options and passes ``registry: RegistryConfig | None`` (None:
    no URL given) to the command."""

    @click.option("--registry-url", envvar=REGISTRY_ENV["url"], default=None,
                  help="Confluent-compatible schema registry API (Apicurio: "
                       "http://host:port/apis/ccompat/v7); needed by registry framing.")
    @click.option("--registry-username", envvar=REGISTRY_ENV["username"], default=None,
                  help="Basic auth user of the registry.")
    @click.option("--registry-password", envvar=REGISTRY_ENV["password"], default=None,
                  help="Basic auth password; prefer the environment variable; never logged.")
    @click.option("--registry-ca-location", envvar=REGISTRY_ENV["ca_location"], default=None,
                  help="PEM bundle trusted for an https registry URL.")
    @click.option("--registry-timeout", envvar=REGISTRY_ENV["timeout"], type=float,
                  default=None, help="Seconds per registry request. [default: 10]")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        overrides = {n: kwargs.pop(f"registry_{n}") for n in REGISTRY_ENV}
        try:
            kwargs["registry"] = RegistryConfig.from_env({}, **overrides)
        except ConfigError as exc:
            fail(f"invalid option {exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def explain_unreachable(message: str, kafka: KafkaConfig) -> str:
    """``message``, replaced by the broker's reason when it answers but refuses the SASL
    credentials or the TLS handshake: librdkafka reports both as a mere transport failure."""
    reason = connection.refusal(kafka)
    return message if reason is None else kafka.refused_message(reason)


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
        if isinstance(exc, BrokerUnavailable | RegistryUnavailable):
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
