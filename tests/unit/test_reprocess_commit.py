"""How a reprocess run ends a batch's transaction (``Reprocessor._commit``) when the broker
does not simply accept it: a retriable refusal is retried (librdkafka: the commit's outcome is
only known from a later commit call), one needing an abort returns its reason, a fencing
raises ``ProducerFenced`` (also when ``produce`` reports it only as a bare fatal error). On
the real broker: tests/kafka/test_reprocess_fencing.py."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError as RdError
from confluent_kafka import KafkaException

from streamjobs._config import KafkaConfig
from streamjobs._ops.dlq import Filter
from streamjobs._ops.reprocess import Reprocessor
from streamjobs.errors import ProducerFenced


class _Producer:
    def __init__(self, *refusals: KafkaException) -> None:
        self.refusals = list(refusals)
        self.commits = 0

    def abort_transaction(self, timeout: float) -> None:
        # In librdkafka's fatal state a transactional call fails at once with the cause.
        raise KafkaException(RdError(RdError._FENCED, "fenced by a newer instance", fatal=True))

    def commit_transaction(self, timeout: float) -> None:
        self.commits += 1
        if self.refusals:
            raise self.refusals.pop(0)


def _run(producer: _Producer) -> Reprocessor:
    run = Reprocessor(KafkaConfig(bootstrap_servers="127.0.0.1:1"), None, "t.dlq", Filter())
    run._producer = producer  # type: ignore[assignment]
    return run


def test_a_retriable_refusal_is_retried() -> None:
    producer = _Producer(KafkaException(RdError(RdError._TIMED_OUT, "timed out",
                                                retriable=True)))
    assert _run(producer)._commit() is None
    assert producer.commits == 2


def test_a_refusal_needing_an_abort_returns_its_reason() -> None:
    producer = _Producer(KafkaException(RdError(RdError.INVALID_TXN_STATE, "gone",
                                                txn_requires_abort=True)))
    assert "gone" in str(_run(producer)._commit())
    assert producer.commits == 1


def test_a_fencing_raises() -> None:
    producer = _Producer(KafkaException(RdError(RdError._FENCED, "fenced", fatal=True)))
    with pytest.raises(ProducerFenced):
        _run(producer)._commit()


def test_a_bare_fatal_from_produce_is_told_apart_by_its_cause() -> None:
    """produce() in a fatal state says only "Fatal error"; the fencing behind it is found
    (a fenced run says "took over", not a generic Kafka error)."""
    with pytest.raises(ProducerFenced):
        _run(_Producer())._raise(KafkaException(RdError(  # as librdkafka 2.16 raises it
            RdError._FATAL, "Unable to produce message: Local: Fatal error", fatal=False)))


class _FencedOnPoll(_Producer):
    def begin_transaction(self) -> None:
        pass

    def produce(self, *args: object, **kwargs: object) -> None:
        pass

    def poll(self, timeout: float = 0) -> int:
        raise KafkaException(RdError(RdError._FENCED, "fenced by a newer instance",
                                     fatal=True))


def test_a_fencing_raised_by_poll_stops_the_run_as_fenced() -> None:
    """confluent-kafka raises a fatal error from ``poll`` too: a fenced run still says
    "took over" (no traceback)."""
    run = _run(_FencedOnPoll())
    with pytest.raises(ProducerFenced):
        run._produce("t", None, b"v", None, "t.dlq/0/0")
