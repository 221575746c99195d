"""The Kafka adapter's pure logic: error translation, the BufferError back-off, the admin
retry; and the package-wide rule that only the adapter touches confluent-kafka."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from streamjobs import _connection as connection
from streamjobs._connection import ClientError, RdKafkaError
from streamjobs.errors import BrokerUnavailable, KafkaError

PACKAGE = Path(connection.__file__).parent


def _client_error(code: int, text: str = "") -> ClientError:
    return ClientError(RdKafkaError(code, text) if text else RdKafkaError(code))


class _Polls:
    """Counts the back-off's ``poll`` calls (the only client method it uses)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def poll(self, timeout: float) -> int:
        self.calls.append(timeout)
        return 0


def test_translate_keeps_the_code_and_topic() -> None:
    err = connection.translate(_client_error(RdKafkaError.UNKNOWN_TOPIC_OR_PART, "no such"),
                               "cannot produce", topic="t1")
    assert type(err) is KafkaError
    assert err.code == "UNKNOWN_TOPIC_OR_PART"
    assert err.topic == "t1"
    assert str(err) == "cannot produce: no such"


@pytest.mark.parametrize("code", [RdKafkaError._TRANSPORT, RdKafkaError._TIMED_OUT,
                                  RdKafkaError._ALL_BROKERS_DOWN, RdKafkaError._RESOLVE])
def test_translate_no_answer_is_broker_unavailable(code: int) -> None:
    err = connection.translate(_client_error(code), "list topics")
    assert isinstance(err, BrokerUnavailable)
    assert err.code == RdKafkaError(code).name()


def test_translate_of_a_non_kafka_exception_is_a_kafka_error() -> None:
    err = connection.translate(RuntimeError("boom"), "describe")
    assert type(err) is KafkaError and err.code is None and str(err) == "describe: boom"


def test_code_of() -> None:
    assert connection.code_of(_client_error(RdKafkaError.NOT_COORDINATOR)) == "NOT_COORDINATOR"
    assert connection.code_of(ValueError("x")) is None


def test_until_queued_polls_between_attempts_until_the_queue_takes_it() -> None:
    client, tries = _Polls(), iter([BufferError(), BufferError(), None])

    def send() -> str:
        exc = next(tries)
        if exc is not None:
            raise exc
        return "sent"

    assert connection.until_queued(client, send, step=0.01) == (True, "sent")  # type: ignore[arg-type]
    assert client.calls == [0.01, 0.01]


def test_until_queued_gives_up_after_its_timeout() -> None:
    client = _Polls()

    def full() -> None:
        raise BufferError

    started = time.monotonic()
    assert connection.until_queued(client, full, timeout=0.05, step=0.001) == (False, None)  # type: ignore[arg-type]
    assert time.monotonic() - started >= 0.05
    assert client.calls


def test_until_queued_lets_client_errors_through() -> None:
    def refused() -> None:
        raise _client_error(RdKafkaError.MSG_SIZE_TOO_LARGE)

    with pytest.raises(ClientError):
        connection.until_queued(_Polls(), refused)  # type: ignore[arg-type]


def test_admin_call_retries_while_the_coordinator_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection.time, "sleep", lambda _s: None)
    answers = iter([RdKafkaError.NOT_COORDINATOR, RdKafkaError.COORDINATOR_LOAD_IN_PROGRESS])

    def call() -> str:
        code = next(answers, None)
        if code is not None:
            raise _client_error(code)
        return "ok"

    assert connection.admin_call("describe group", call) == "ok"


def test_admin_call_gives_up_after_its_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection.time, "sleep", lambda _s: None)
    calls = []

    def call() -> None:
        calls.append(1)
        raise _client_error(RdKafkaError.COORDINATOR_NOT_AVAILABLE)

    with pytest.raises(KafkaError) as info:
        connection.admin_call("describe group", call, attempts=3)
    assert len(calls) == 3 and info.value.code == "COORDINATOR_NOT_AVAILABLE"
    assert not isinstance(info.value, BrokerUnavailable)


def test_admin_call_no_answer_is_broker_unavailable_at_once() -> None:
    calls = []

    def call() -> None:
        calls.append(1)
        raise _client_error(RdKafkaError._TRANSPORT, "transport failure")

    with pytest.raises(BrokerUnavailable) as info:
        connection.admin_call("list groups", call)
    assert calls == [1] and str(info.value) == "list groups: transport failure"


def test_settings_problem_names_librdkafkas_reason() -> None:
    assert connection.settings_problem("producer_config", {"linger.ms": "5"}) is None
    problem = connection.settings_problem("consumer_config", {"no.such.setting": "1"})
    assert problem is not None and "no.such.setting" in problem


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))]


def test_no_private_confluent_kafka_import() -> None:
    private = re.compile(r"^\s*(from|import)\s+confluent_kafka[\w.]*\._|confluent_kafka\.cimpl",
                         re.M)
    found = [str(p.relative_to(PACKAGE)) for p, text in _sources() if private.search(text)]
    assert found == []


def test_only_the_adapter_imports_confluent_kafka_or_catches_its_exception() -> None:
    imports = re.compile(r"^\s*(from|import)\s+confluent_kafka\b", re.M)
    catches = re.compile(r"except\s*\(?[^:]*\bKafkaException\b")
    found = [str(p.relative_to(PACKAGE)) for p, text in _sources()
             if p.name != "_connection.py" and (imports.search(text) or catches.search(text))]
    assert found == []


def test_until_queued_async_sleeps_between_attempts_and_gives_up() -> None:
    tries = iter([BufferError(), None])

    def send() -> str:
        exc = next(tries)
        if exc is not None:
            raise exc
        return "sent"

    def full() -> None:
        raise BufferError

    assert asyncio.run(connection.until_queued_async(send, timeout=5, step=0.001)) == (
        True, "sent")
    assert asyncio.run(connection.until_queued_async(full, timeout=0.02, step=0.001)) == (
        False, None)


def test_kafka_config_makes_no_network_call() -> None:
    """Probing the broker is the adapter's (``check_reachable``, ``refusal``): the settings
    object only validates and hands out settings."""
    from streamjobs import _config as config

    source = Path(config.__file__).read_text()
    assert not re.search(r"list_topics|AdminClient|\.poll\(", source)
    assert not hasattr(config.KafkaConfig, "check_reachable")
    assert not hasattr(config.KafkaConfig, "refusal")


def test_no_answer_names_the_address_the_wait_and_the_reason() -> None:
    from streamjobs._config import KafkaConfig

    err = connection.no_answer(KafkaConfig(bootstrap_servers="b1:9092"), 2,
                               _client_error(RdKafkaError._TRANSPORT, "refused"))
    assert isinstance(err, BrokerUnavailable) and err.code == "_TRANSPORT"
    assert str(err) == "no Kafka broker answered at b1:9092 within 2s (refused)"
