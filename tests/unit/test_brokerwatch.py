"""BrokerWatch: when the worker reports its brokers unreachable, and what proves them back."""

from __future__ import annotations

import orjson
from confluent_kafka import KafkaError

from streamjobs._worker.brokerwatch import BrokerWatch
from streamjobs.events import BrokerStatus, EventBus


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def watch() -> tuple[BrokerWatch, list[BrokerStatus], Clock]:
    bus, seen, clock = EventBus(), [], Clock()
    bus.subscribe(seen.append, BrokerStatus)
    return BrokerWatch(bus, clock=clock), seen, clock


def stats(*brokers: tuple[str, float]) -> str:
    """librdkafka statistics with one connection per (state, seconds in that state)."""
    return orjson.dumps({"brokers": {
        f"127.0.0.1:9092/{i}": {"nodeid": i, "state": state, "stateage": int(age * 1e6)}
        for i, (state, age) in enumerate(brokers)}}).decode()


def test_start_then_all_brokers_down_then_any_connection_up() -> None:
    w, seen, _ = watch()
    w.started()
    w.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down"))
    w.on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "again"))  # no repeat while down
    assert [(e.reachable, e.detail) for e in seen] == [
        (True, "connected"), (False, "all brokers down: 1/1 brokers are down")]
    w.on_stats(stats(("DOWN", 1), ("UP", 60)))  # not a new connection, but after a plain
    assert seen[-1] == BrokerStatus(True, "broker connection up")  # outage any UP will do
    assert not w.down


def test_a_lone_transport_error_changes_nothing() -> None:
    w, seen, _ = watch()
    w.on_error(KafkaError(KafkaError._TRANSPORT, "Disconnected (after 600000ms in state UP)"))
    assert seen == [] and not w.down


def test_no_connection_up_in_the_statistics_is_unreachable() -> None:
    w, seen, _ = watch()
    w.on_stats(stats(("UP", 3)))
    assert seen == []
    w.on_stats(stats(("CONNECT", 0.2), ("DOWN", 4)))
    assert seen == [BrokerStatus(False, "no broker connection is up")]


def test_after_an_authentication_failure_only_a_newer_connection_counts() -> None:
    w, seen, clock = watch()
    w.on_error(KafkaError(KafkaError.SASL_AUTHENTICATION_FAILED, "Invalid credentials"))
    assert seen[-1] == BrokerStatus(False, "authentication failed: Invalid credentials")
    clock.now += 5
    w.on_stats(stats(("UP", 60)))  # up since before the failure: proves nothing
    assert w.down and len(seen) == 1
    w.on_stats(stats(("UP", 60), ("AUTH_REQ", 0.1)))
    assert w.down
    w.on_stats(stats(("UP", 60), ("UP", 2)))  # came up 2 s ago, after the failure
    assert not w.down and seen[-1] == BrokerStatus(True, "broker connection up")


def test_records_arriving_prove_contact() -> None:
    w, seen, _ = watch()
    w.records_arrived()
    assert seen == []  # nothing to report while up
    w.on_error(KafkaError(KafkaError._SSL, "handshake failed"))
    w.records_arrived()
    assert [e.reachable for e in seen] == [False, True]
    assert seen[0].detail == "TLS failed: handshake failed"


def test_unreadable_statistics_are_ignored() -> None:
    w, seen, _ = watch()
    w.on_stats("{not json")
    w.on_stats("{}")  # no brokers listed: nothing is up
    assert seen == [BrokerStatus(False, "no broker connection is up")]
