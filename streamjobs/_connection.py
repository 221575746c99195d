"""The Kafka adapter: the one module that talks to confluent-kafka's API surface.

It builds every client (producer, transactional producer, consumer, admin) from a
``KafkaConfig`` and the caller's overrides, translates confluent-kafka's errors into the
``streamjobs.errors`` tree, owns the back-off on a full local queue (``BufferError``) and the
retry of admin calls that fail while a group coordinator moves, and re-exports the few
confluent-kafka names the rest of the package needs, from their public modules only.

The clients returned are confluent-kafka's own objects, not wrappers: ``poll``, ``produce``
and ``commit`` stay direct C calls on the worker's hot path. Callers catch ``ClientError``
around calls that are not per record and turn it into a streamjobs error with ``translate``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    OFFSET_INVALID,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka import KafkaError as RdKafkaError

# Documented public names of confluent_kafka.admin; the package has no ``__all__``, so mypy
# (no implicit re-export) would only accept them from the private modules they are defined in.
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from . import _kafka_log
from .errors import BrokerUnavailable, KafkaError

if TYPE_CHECKING:
    from ._config import KafkaConfig

__all__ = [
    "OFFSET_BEGINNING",
    "OFFSET_END",
    "OFFSET_INVALID",
    "TIMESTAMP_CREATE_TIME",
    "AdminClient",
    "AlterConfigOpType",
    "ClientError",
    "ConfigEntry",
    "ConfigResource",
    "Consumer",
    "ConsumerGroupState",
    "ConsumerGroupTopicPartitions",
    "Message",
    "NewPartitions",
    "NewTopic",
    "OffsetSpec",
    "Producer",
    "RdKafkaError",
    "ResourceType",
    "ScramCredentialInfo",
    "ScramMechanism",
    "TopicPartition",
    "UserScramCredentialAlteration",
    "UserScramCredentialUpsertion",
    "admin",
    "admin_call",
    "check_reachable",
    "client_settings",
    "code_of",
    "consumer",
    "kafka_error",
    "no_answer",
    "producer",
    "refusal",
    "settings_problem",
    "transactional_producer",
    "translate",
    "until_queued",
    "until_queued_async",
]

T = TypeVar("T")

# What confluent-kafka raises for a client or broker error; its ``args[0]`` is the
# ``confluent_kafka.KafkaError`` with the code. Call sites catch it under this one name.
ClientError = KafkaException

# librdkafka codes meaning "no broker answered" rather than "the broker said no".
UNREACHABLE = frozenset({"_TRANSPORT", "_TIMED_OUT", "_ALL_BROKERS_DOWN", "_RESOLVE"})
# Group admin calls fail with these while the coordinator moves or loads: worth a retry.
_RETRIABLE = frozenset({"NOT_COORDINATOR", "COORDINATOR_LOAD_IN_PROGRESS",
                        "COORDINATOR_NOT_AVAILABLE"})
_REFUSED = (RdKafkaError._AUTHENTICATION, RdKafkaError._SSL)


# -- clients ---------------------------------------------------------------------------------

def client_settings(kafka: KafkaConfig, role: Literal["producer", "consumer"],
                    settings: Mapping[str, Any] | None = None, *,
                    overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Every client's librdkafka settings, in one order: the connection's, then the caller's
    ``settings``, then the user's ``producer_config``/``consumer_config`` (the user's win over
    ours), then a caller's explicit ``overrides`` (what the caller cannot work without)."""
    return {**kafka.client_settings(), **(settings or {}), **kafka.role_settings(role),
            **(overrides or {})}


def producer(kafka: KafkaConfig, settings: Mapping[str, Any] | None = None, *,
             overrides: Mapping[str, Any] | None = None) -> Producer:
    """A producer: connection settings, then ``settings``, then the user's
    ``producer_config`` (the user's win), then a caller's explicit ``overrides``."""
    return Producer(client_settings(kafka, "producer", settings, overrides=overrides))


def transactional_producer(kafka: KafkaConfig, transactional_id: str,
                           settings: Mapping[str, Any] | None = None, *,
                           overrides: Mapping[str, Any] | None = None) -> Producer:
    """A producer writing in transactions under ``transactional_id`` (``init_transactions``
    is the caller's: it blocks and may raise)."""
    return producer(kafka, settings,
                    overrides={**(overrides or {}), "transactional.id": transactional_id})


def consumer(kafka: KafkaConfig, settings: Mapping[str, Any], *,
             overrides: Mapping[str, Any] | None = None) -> Consumer:
    """A consumer: connection settings, then ``settings`` (``group.id`` among them), then the
    user's ``consumer_config``, then a caller's explicit ``overrides``."""
    return Consumer(client_settings(kafka, "consumer", settings, overrides=overrides))


def admin(kafka: KafkaConfig, settings: Mapping[str, Any] | None = None) -> AdminClient:
    return AdminClient({**kafka.client_settings(), **(settings or {})})


def settings_problem(role: str, conf: Mapping[str, Any]) -> str | None:
    """Why librdkafka refuses ``conf`` for a consumer (``role == "consumer_config"``) or a
    producer, None when it takes them. Connects nowhere: ``conf`` has no bootstrap servers."""
    try:
        if role == "consumer_config":
            Consumer({"group.id": "streamjobs-check", **conf, "log_level": 0}).close()
        else:
            Producer({**conf, "log_level": 0})
    except KafkaException as exc:
        return str(exc.args[0].str())
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


# -- errors ----------------------------------------------------------------------------------

def code_of(exc: BaseException) -> str | None:
    """The librdkafka error name (``"UNKNOWN_TOPIC_OR_PART"``) of a ``ClientError``."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return err.name() if isinstance(err, RdKafkaError) else None


def kafka_error(err: Any, message: str, *, topic: str | None = None) -> KafkaError:
    """A streamjobs error for a ``confluent_kafka.KafkaError`` (as delivery reports and
    ``ClientError.args[0]`` carry it): ``BrokerUnavailable`` when no broker answered."""
    code = err.name() if hasattr(err, "name") else None
    text = f"{message}: {err.str() if hasattr(err, 'str') else err}"
    if code in UNREACHABLE:
        return BrokerUnavailable(text, code=code, topic=topic)
    return KafkaError(text, code=code, topic=topic)


def translate(exc: BaseException, message: str, *, topic: str | None = None) -> KafkaError:
    """A streamjobs error for a ``ClientError`` (or anything else a client raised)."""
    if isinstance(exc, KafkaException) and exc.args:
        return kafka_error(exc.args[0], message, topic=topic)
    return KafkaError(f"{message}: {exc}", topic=topic)


def no_answer(kafka: KafkaConfig, timeout: float, exc: BaseException) -> BrokerUnavailable:
    """The error of a first request (metadata, say) that ``ClientError`` ended unanswered."""
    err = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    words = err.str() if isinstance(err, RdKafkaError) else str(exc)
    return BrokerUnavailable(f"no Kafka broker answered at {kafka.bootstrap_servers} within "
                             f"{timeout:g}s ({words})", code=code_of(exc) or "_TRANSPORT")


# -- back-off and retry ----------------------------------------------------------------------

def until_queued(client: Producer, send: Callable[[], T], *, timeout: float | None = None,
                 step: float = 0.05) -> tuple[bool, T | None]:
    """Call ``send`` (one ``produce``) until the local queue takes it: on ``BufferError``
    serve delivery reports with ``client.poll(step)`` so the queue drains, then try again.
    ``(True, result)`` once queued; ``(False, None)`` when still full after ``timeout``
    seconds (None: wait as long as it takes), so the caller raises its own error."""
    deadline = 0.0
    while True:
        try:
            return True, send()
        except BufferError:
            if timeout is not None:
                now = time.monotonic()
                deadline = deadline or now + timeout
                if now > deadline:
                    return False, None
            client.poll(step)


async def until_queued_async(send: Callable[[], T], *, timeout: float,
                             step: float = 0.005) -> tuple[bool, T | None]:
    """``until_queued`` for an event loop whose client is served by another thread (the
    producer's poller): sleep ``step`` between attempts instead of polling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return True, send()
        except BufferError:
            if time.monotonic() > deadline:
                return False, None
            await asyncio.sleep(step)


def admin_call(what: str, call: Callable[[], T], *, attempts: int = 8) -> T:
    """Run an admin ``call``, retrying while the group coordinator moves or loads.
    ``BrokerUnavailable`` when no broker answers, ``KafkaError`` naming ``what`` otherwise."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            code = code_of(exc)
            if code in _RETRIABLE and attempt < attempts - 1:
                time.sleep(0.25 * (attempt + 1))
                continue
            if code in UNREACHABLE:
                raise BrokerUnavailable(f"{what}: {exc.args[0].str()}", code=code) from None
            raise KafkaError(f"{what}: {exc}", code=code) from None
    raise AssertionError("unreachable")


# -- reachability ----------------------------------------------------------------------------

def _probe(kafka: KafkaConfig, timeout: float) -> tuple[bool, str | None]:
    """(a broker answered, the first SASL or TLS refusal seen) within ``timeout``."""
    seen: list[str] = []

    def on_error(err: Any) -> None:
        if err.code() in _REFUSED:
            seen.append(err.str())
        _kafka_log.on_error(err)

    client = admin(kafka, {"error_cb": on_error})
    deadline = time.monotonic() + timeout
    # Plain connectivity needs one request; SASL and TLS refusals arrive through error_cb,
    # served by poll between shorter requests.
    step = timeout if kafka.security_protocol == "PLAINTEXT" else 1.0
    while not seen:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            client.list_topics(timeout=min(step, max(0.1, left)))
            return True, None
        except KafkaException:
            client.poll(0.1)
    return False, (seen[0] if seen else None)


def refusal(kafka: KafkaConfig, timeout: float = 5.0) -> str | None:
    """Why the brokers refuse this configuration, if they do: the first SASL authentication
    or TLS handshake error librdkafka reports within ``timeout`` seconds; None when a broker
    answers or the problem is plain connectivity. Explains a ``BrokerUnavailable``: librdkafka
    itself only says "broker transport failure" for a wrong password."""
    if kafka.security_protocol == "PLAINTEXT":
        return None
    answered, reason = _probe(kafka, timeout)
    return None if answered else reason


def check_reachable(kafka: KafkaConfig, timeout: float = 10.0) -> None:
    """Raise ``BrokerUnavailable`` unless a broker answers a metadata request within
    ``timeout`` seconds. The message names the address, or the broker's reason when it
    refuses the SASL credentials or the TLS handshake."""
    answered, reason = _probe(kafka, timeout)
    if answered:
        return
    if reason is not None:
        raise BrokerUnavailable(kafka.refused_message(reason), code="_AUTHENTICATION")
    raise BrokerUnavailable(f"no Kafka broker answered at {kafka.bootstrap_servers} within "
                            f"{timeout:g}s", code="_TRANSPORT")
