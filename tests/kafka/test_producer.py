"""Producer.emit against the real broker: headers, keys, batches, limits, threads, delays."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._config import KafkaConfig
from streamjobs._names import retry_topic
from streamjobs._producer import Job, Producer
from streamjobs._retry import pick_tier
from streamjobs._schemas.catalogue import Catalogue
from streamjobs.errors import (
    BrokerUnavailable,
    DeliveryFailed,
    KafkaError,
    PayloadError,
    RecordTooLarge,
    UnknownJobType,
)

from .jobs_catalogue import read, total_records, write_catalogue

JOB = "send_welcome_email"
TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def catalogue(tmp_path: Path, unique: str) -> Catalogue:
    return Catalogue.load(write_catalogue(tmp_path / "schemas", unique))


@pytest.fixture
def topic(make_topic: object, unique: str) -> str:
    return make_topic("emails", partitions=2)  # type: ignore[operator,no-any-return]


def test_emit_returns_id_before_delivery_and_writes_headers_and_key(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """emit returns a UUIDv7 job id before the broker acknowledges; the record carries the job
    metadata in one compact header (``sj: <id>;<type>``, created-at = its CreateTime, the
    schema fingerprint in the value), the caller's headers, the key_field value as key, and
    the payload."""
    delivered: list[tuple[str, object]] = []
    with Producer(catalogue, kafka_config, linger_ms=300) as p:
        before = time.time_ns() // 1_000_000
        job_id = p.emit(JOB, {"user_id": "u-42", "email": "a@example.com"}, traceparent=TRACE,
                        headers={"tenant": "acme"},
                        on_delivery=lambda jid, err: delivered.append((jid, err)))
        assert delivered == []  # linger 300 ms: nothing can be acknowledged yet
        p.flush()
        assert delivered == [(job_id, None)]
    assert uuid.UUID(job_id).version == 7
    (msg,) = read(kafka_config, topic, 1)
    hdrs = msg.headers()
    assert h.get(hdrs, h.META) == f"{job_id};{JOB}"
    assert [k for k, _ in hdrs if k.startswith("sj")] == [h.META]
    meta = h.JobMeta.from_headers(hdrs, msg.timestamp()[1])
    assert (meta.job_id, meta.job_type, meta.attempt, meta.compact) == (job_id, JOB, 1, True)
    kind, created = msg.timestamp()
    assert kind == TIMESTAMP_CREATE_TIME and meta.created_at_ms == created
    assert before <= created <= time.time_ns() // 1_000_000
    assert msg.value()[2:10] == Codec(catalogue).fingerprint(JOB)
    assert h.get(hdrs, h.TRACEPARENT) == TRACE
    assert h.get(hdrs, "tenant") == "acme"
    assert h.get(hdrs, h.DUE_AT) is None
    assert msg.key() == b"u-42"
    decoded = Codec(catalogue).decode(msg.value())
    assert decoded.payload == {"user_id": "u-42", "email": "a@example.com", "locale": "en"}


def test_explicit_key_wins(kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """An explicit key replaces the key_field value."""
    with Producer(catalogue, kafka_config) as p:
        p.emit(JOB, {"user_id": "u1", "email": "e"}, key="tenant-7")
    assert read(kafka_config, topic, 1)[0].key() == b"tenant-7"


def test_emit_many_validates_everything_before_sending(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """A batch with one bad payload sends nothing (the note names its position); a good batch
    sends all, ids in order, each record as emit writes it (compact header, key_field key,
    an explicit key kept)."""
    good = {"user_id": "u1", "email": "e1"}
    with Producer(catalogue, kafka_config) as p:
        with pytest.raises(PayloadError) as info:
            p.emit_many([(JOB, good), (JOB, {"user_id": 5, "email": "e"}), (JOB, good)])
        assert info.value.field == "user_id"
        assert "job #1 of the batch" in "".join(getattr(info.value, "__notes__", []))
        p.flush()
        assert total_records(kafka_config, topic) == 0
        ids = p.emit_many([(JOB, good), Job(JOB, {"user_id": "u2", "email": "e2"}, key="k"),
                           (JOB, {"user_id": "u1", "email": "e3"})])
    assert len(set(ids)) == 3
    msgs = read(kafka_config, topic, 3)
    got = {h.JobMeta.from_headers(m.headers()).job_id: m for m in msgs}
    assert set(got) == set(ids)
    assert [got[i].key() for i in ids] == [b"u1", b"k", b"u1"]
    for m in msgs:
        assert m.headers() == [(h.META, f"{h.JobMeta.from_headers(m.headers()).job_id};{JOB}"
                                .encode())]
        assert m.timestamp()[0] == TIMESTAMP_CREATE_TIME
    assert [Codec(catalogue).decode(got[i].value()).payload["email"] for i in ids] == \
        ["e1", "e2", "e3"]


def test_invalid_payload_and_unknown_type_send_nothing(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """PayloadError names the field; UnknownJobType names the type; nothing reaches Kafka."""
    with Producer(catalogue, kafka_config) as p:
        with pytest.raises(PayloadError) as info:
            p.emit(JOB, {"user_id": "u1"})
        assert info.value.field == "email" and info.value.job_type == JOB
        with pytest.raises(UnknownJobType) as unknown:
            p.emit("no_such_job", {})
        assert unknown.value.job_type == "no_such_job"
    assert total_records(kafka_config, topic) == 0


def test_record_larger_than_topic_limit_is_refused_before_sending(
        kafka_config: KafkaConfig, tmp_path: Path, unique: str, make_topic: object) -> None:
    """A record over the topic's max.message.bytes raises RecordTooLarge and is not sent;
    records under it still go through."""
    cat = Catalogue.load(write_catalogue(tmp_path / "schemas", unique))
    topic = make_topic("emails", partitions=1,  # type: ignore[operator]
                       config={"max.message.bytes": "2000"})
    with Producer(cat, kafka_config) as p:
        with pytest.raises(RecordTooLarge) as info:
            p.emit(JOB, {"user_id": "u1", "email": "x" * 5000})
        assert info.value.limit == 2000 and info.value.size > 5000
        assert info.value.topic == topic
        p.emit(JOB, {"user_id": "u1", "email": "small"})
    assert total_records(kafka_config, topic) == 1


def test_unreachable_broker_fails_fast(tmp_path: Path, unique: str) -> None:
    """With nothing listening on the bootstrap port, Producer() raises BrokerUnavailable
    within the connect timeout instead of hanging."""
    cat = Catalogue.load(write_catalogue(tmp_path / "schemas", unique))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        Producer(cat, KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}"), connect_timeout=2)
    assert time.monotonic() - start < 6


def test_missing_topic_is_an_error_not_a_timeout(
        kafka_config: KafkaConfig, catalogue: Catalogue) -> None:
    """Emitting to a topic that does not exist fails at once, naming the topic."""
    with Producer(catalogue, kafka_config) as p:
        start = time.monotonic()
        with pytest.raises(KafkaError) as info:
            p.emit(JOB, {"user_id": "u1", "email": "e"})
        assert info.value.code == "UNKNOWN_TOPIC_OR_PART"
        assert time.monotonic() - start < 5


def test_delivery_failure_is_reported_by_flush_and_callback(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str, admin: AdminClient) -> None:
    """A record the broker never acknowledges (its topic vanished) fails within
    delivery_timeout: on_delivery gets the error and flush raises DeliveryFailed with the id."""
    errors: list[tuple[str, object]] = []
    p = Producer(catalogue, kafka_config, delivery_timeout=3)
    try:
        p.emit(JOB, {"user_id": "u0", "email": "e"})
        p.flush()
        admin.delete_topics([topic])[topic].result(timeout=30)
        job_id = p.emit(JOB, {"user_id": "u1", "email": "e"},
                        on_delivery=lambda jid, err: errors.append((jid, err)))
        with pytest.raises(DeliveryFailed) as info:
            p.flush(20)
        assert info.value.job_id == job_id
        assert errors and errors[0][0] == job_id and isinstance(errors[0][1], DeliveryFailed)
        p.flush()  # reported once: the next flush is clean
    finally:
        p.close()


def test_plain_emit_failure_is_reported_by_flush_without_success_reports(
        kafka_config: KafkaConfig, catalogue: Catalogue, make_topic: object,
        admin: AdminClient) -> None:
    """Rule: a producer sends only failure reports into Python (``delivery.report.only.error``)
    until a caller asks for success reports, and a failure of a plain ``emit`` (no callback)
    is still never silent: ``flush`` raises it. Here the broker refuses a record: the topic's
    max.message.bytes was lowered after the producer read it."""
    topic = make_topic("emails", partitions=1)  # type: ignore[operator]
    p = Producer(catalogue, kafka_config, delivery_timeout=10)
    try:
        p.emit(JOB, {"user_id": "u0", "email": "small"})  # reads the limit (1 MB) once
        p.flush(20)
        assert not p._all_reports  # still the error-only client
        res = ConfigResource(ResourceType.TOPIC, topic)
        admin.incremental_alter_configs([ConfigResource(
            ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
                "max.message.bytes", "1000",
                incremental_operation=AlterConfigOpType.SET)])])[res].result(timeout=30)
        for _ in range(50):  # the broker applies a topic config change asynchronously
            entry = admin.describe_configs([res])[res].result(timeout=10)["max.message.bytes"]
            if entry.value == "1000":
                break
            time.sleep(0.1)
        time.sleep(0.5)
        p.emit(JOB, {"user_id": "u1", "email": "x" * 3000})
        with pytest.raises(DeliveryFailed) as info:
            p.flush(20)
        assert info.value.code == "MSG_SIZE_TOO_LARGE" and info.value.topic == topic
        p.flush(20)  # reported once
    finally:
        p.close()
    assert total_records(kafka_config, topic) == 1


def test_first_success_callback_switches_clients_keeping_key_order(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """Rule: the first ``on_delivery=`` moves the producer to a client that reports successes
    too; the records already sent are acknowledged first, so records of one key stay in emit
    order across the switch, and every callback hears of its own record."""
    delivered: list[tuple[str, object]] = []
    with Producer(catalogue, kafka_config, linger_ms=200) as p:
        ids = [p.emit(JOB, {"user_id": "k", "email": f"e{i}"}) for i in range(50)]
        assert not p._all_reports
        ids.append(p.emit(JOB, {"user_id": "k", "email": "e50"},
                          on_delivery=lambda jid, err: delivered.append((jid, err))))
        assert p._all_reports
        ids += [p.emit(JOB, {"user_id": "k", "email": f"e{i}"}) for i in range(51, 60)]
        ids.append(p.emit(JOB, {"user_id": "k", "email": "e60"},
                          on_delivery=lambda jid, err: delivered.append((jid, err))))
    assert sorted(delivered, key=lambda d: ids.index(d[0])) == [(ids[50], None),
                                                               (ids[60], None)]
    got = [h.JobMeta.from_headers(m.headers()).job_id for m in read(kafka_config, topic, 61)]
    assert got == ids  # one key, one partition: emit order


def test_switch_keeps_each_threads_key_order_while_others_emit(
        kafka_config: KafkaConfig, catalogue: Catalogue, topic: str) -> None:
    """Rule: while one thread's first ``on_delivery=`` switches clients, other threads keep
    emitting (plain ``emit`` and ``emit_many``); each thread's records of its key are read
    back in the order it emitted them, none lost."""
    sent: dict[str, list[str]] = {}
    started = threading.Barrier(4)
    with Producer(catalogue, kafka_config, linger_ms=50) as p:
        def plain(key: str) -> None:
            started.wait()
            sent[key] = [p.emit(JOB, {"user_id": key, "email": f"e{i}"}) for i in range(5000)]

        def batches(key: str) -> None:
            started.wait()
            ids: list[str] = []
            for b in range(100):
                ids += p.emit_many([(JOB, {"user_id": key, "email": f"e{b}-{i}"})
                                    for i in range(50)])
            sent[key] = ids

        threads = [threading.Thread(target=plain, args=(f"t{n}",)) for n in range(2)]
        threads.append(threading.Thread(target=batches, args=("batch",)))
        for t in threads:
            t.start()
        started.wait()
        p.emit(JOB, {"user_id": "cb", "email": "e"}, on_delivery=lambda jid, err: None)
        assert any(t.is_alive() for t in threads)  # the switch happened among their emits
        for t in threads:
            t.join()
    got: dict[bytes, list[str]] = {}
    for m in read(kafka_config, topic, 15_001, timeout=60):
        got.setdefault(m.key(), []).append(h.JobMeta.from_headers(m.headers()).job_id or "")
    for key, ids in sent.items():
        assert got[key.encode()] == ids, key


def test_concurrent_emits_from_threads(kafka_config: KafkaConfig, catalogue: Catalogue,
                                       topic: str) -> None:
    """One Producer shared by 4 threads delivers every job exactly once."""
    ids: list[str] = []
    lock = threading.Lock()
    with Producer(catalogue, kafka_config) as p:
        def work(n: int) -> None:
            mine = [p.emit(JOB, {"user_id": f"t{n}-{i}", "email": "e"}) for i in range(250)]
            with lock:
                ids.extend(mine)
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(ids)) == 1000
    got = [h.JobMeta.from_headers(m.headers()).job_id for m in read(kafka_config, topic, 1000)]
    assert sorted(got) == sorted(ids)  # all delivered, none twice


def test_delayed_emit_goes_to_the_wait_tier(kafka_config: KafkaConfig, catalogue: Catalogue,
                                            topic: str, make_topic: object) -> None:
    """delay=5s lands on <topic>.retry.<largest tier <= 5s> with sj-due-at and sj-target;
    a run_at in the past is a plain emit to the job topic."""
    tier = pick_tier(5, catalogue.wait_tiers(topic))
    wait = make_topic(name=retry_topic(topic, tier), partitions=2)  # type: ignore[operator]
    with Producer(catalogue, kafka_config) as p:
        before = time.time_ns() // 1_000_000
        job_id = p.emit(JOB, {"user_id": "u1", "email": "e"}, delay=timedelta(seconds=5))
        p.emit(JOB, {"user_id": "u2", "email": "e"},
               run_at=datetime.now(UTC) - timedelta(minutes=1))
        with pytest.raises(ValueError):
            p.emit(JOB, {"user_id": "u3", "email": "e"}, run_at=datetime.now())  # naive
    (msg,) = read(kafka_config, wait, 1)
    # A delayed job waits on a LogAppendTime tier: it carries the rich headers, created-at too.
    assert h.get(msg.headers(), h.JOB_ID) == job_id and h.get(msg.headers(), h.META) is None
    assert h.get(msg.headers(), h.JOB_TYPE) == JOB and h.get(msg.headers(), h.ATTEMPT) == "1"
    assert before <= (h.get_int(msg.headers(), h.CREATED_AT) or 0) <= before + 60_000
    assert h.get(msg.headers(), h.TARGET) == topic
    due = h.get_int(msg.headers(), h.DUE_AT)
    assert due is not None and before + 5000 <= due <= time.time_ns() // 1_000_000 + 5000
    (plain,) = read(kafka_config, topic, 1)
    assert plain.key() == b"u2" and h.get(plain.headers(), h.DUE_AT) is None


def _native_threads() -> int:
    """Threads of this process as the OS sees them (librdkafka's included)."""
    return len(list(Path("/proc/self/task").iterdir()))


def _settle(target: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while _native_threads() > target and time.monotonic() < deadline:
        time.sleep(0.05)
    return _native_threads()


def test_clients_end_their_threads_on_close_and_on_a_failed_connect(
        catalogue: Catalogue, kafka_config: KafkaConfig, topic: str) -> None:
    """Rule: `close()` and a constructor that raises BrokerUnavailable both end librdkafka's
    threads at once. Left to garbage collection the client (which refers to the delivery
    tracker, which refers back to it) outlived the interpreter, and `streamjobs emit` with a
    refused password crashed at exit (SIGSEGV/SIGABRT) in about 1 run of 20."""
    before = _native_threads()
    p = Producer(catalogue, kafka_config)
    assert _native_threads() > before  # librdkafka's own threads and the poller
    p.emit(JOB, {"user_id": "u1", "email": "u1@example.com"})
    p.flush(30)
    p.close()
    assert read(kafka_config, topic, 1)
    assert _settle(before) == before
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BrokerUnavailable):
        Producer(catalogue, KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}"),
                 connect_timeout=1)
    assert _settle(before) == before
