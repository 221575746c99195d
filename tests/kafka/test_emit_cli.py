"""`streamjobs emit` as a subprocess: output, exit codes, --file, delays, no tracebacks."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import orjson
import pytest

from streamjobs import _headers as h
from streamjobs._config import KafkaConfig
from streamjobs._names import retry_topic
from streamjobs._retry import pick_tier
from streamjobs._schemas.catalogue import Catalogue

from .jobs_catalogue import read, total_records, write_catalogue

JOB = "send_welcome_email"


@pytest.fixture
def schemas(tmp_path: Path, unique: str) -> Path:
    return write_catalogue(tmp_path / "schemas", unique)


@pytest.fixture
def topic(make_topic: object) -> str:
    return make_topic("emails", partitions=2)  # type: ignore[operator,no-any-return]


def test_emit_json_prints_the_id(run_cli: object, kafka_config: KafkaConfig, schemas: Path,
                                 topic: str) -> None:
    """`emit TYPE --json` sends one job with --key/--header and prints its id."""
    r = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "a@b"}',  # type: ignore[operator]
                "--key", "k1", "--header", "tenant=acme", "--schemas", str(schemas))
    assert r.returncode == 0, r.stderr
    job_id = r.stdout.strip()
    assert uuid.UUID(job_id).version == 7
    (msg,) = read(kafka_config, topic, 1)
    assert h.JobMeta.from_headers(msg.headers()).job_id == job_id
    assert h.get(msg.headers(), "tenant") == "acme"
    assert msg.key() == b"k1"


def test_emit_file_with_progress_and_json_output(run_cli: object, kafka_config: KafkaConfig,
                                                 schemas: Path, topic: str,
                                                 tmp_path: Path) -> None:
    """--file sends every line (TYPE as the default type), shows a progress bar on stderr with
    --progress, and --format json prints one object per job with its line number."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join([
        '{"payload": {"user_id": "u1", "email": "e1"}}',
        "",
        '{"type": "send_welcome_email", "payload": {"user_id": "u2", "email": "e2"}, '
        '"key": "kk"}',
        '{"payload": {"user_id": "u3", "email": "e3"}, "headers": {"x": "y"}}',
    ]) + "\n")
    r = run_cli("emit", JOB, "--file", str(jobs), "--progress",  # type: ignore[operator]
                "--format", "json", "--schemas", str(schemas))
    assert r.returncode == 0, r.stderr
    out = [orjson.loads(line) for line in r.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 3, 4]
    assert "emitting" in r.stderr
    msgs = read(kafka_config, topic, 3)
    assert {h.JobMeta.from_headers(m.headers()).job_id for m in msgs} == {o["id"] for o in out}
    assert {m.key() for m in msgs} == {b"u1", b"kk", b"u3"}


def test_unparseable_line_exits_2_and_sends_nothing(run_cli: object, kafka_config: KafkaConfig,
                                                    schemas: Path, topic: str,
                                                    tmp_path: Path) -> None:
    """A line that is not JSON: exit 2, the message names the line, no traceback, and the
    valid lines before it were not sent either."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"payload": {"user_id": "u1", "email": "e1"}}\n{"payload": {oops\n')
    r = run_cli("emit", JOB, "--file", str(jobs), "--schemas", str(schemas))  # type: ignore[operator]
    assert r.returncode == 2
    assert "line 2" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("emit", JOB, "--json", "{nope", "--schemas", str(schemas))  # type: ignore[operator]
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert total_records(kafka_config, topic) == 0


def test_error_exit_codes(run_cli: object, kafka_config: KafkaConfig, schemas: Path,
                          topic: str, tmp_path: Path) -> None:
    """Invalid payload: 1 naming the field (and line); unknown type: 3; bad usage: 2;
    unreachable broker: 4. Never a traceback; nothing sent."""
    args = ["--schemas", str(schemas)]
    r = run_cli("emit", JOB, "--json", '{"user_id": 1, "email": "e"}', *args)  # type: ignore[operator]
    assert r.returncode == 1 and "user_id" in r.stderr
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"payload": {"user_id": "u", "email": "e"}}\n{"payload": {"user_id": "u"}}\n')
    r = run_cli("emit", JOB, "--file", str(jobs), *args)  # type: ignore[operator]
    assert r.returncode == 1 and "line 2" in r.stderr and "email" in r.stderr
    r = run_cli("emit", "no_such_job", "--json", "{}", *args)  # type: ignore[operator]
    assert r.returncode == 3 and "no_such_job" in r.stderr
    r = run_cli("emit", JOB, *args)  # type: ignore[operator]
    assert r.returncode == 2
    r = run_cli("emit", JOB, "--json", '{"user_id": "u", "email": "e"}',  # type: ignore[operator]
                "--traceparent", "not-a-trace", *args)
    assert r.returncode == 2 and "traceparent" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli("emit", JOB, "--json", '{"user_id": "u", "email": "e"}', *args,  # type: ignore[operator]
                "--connect-timeout", "2", env={"STREAMJOBS_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert r.returncode == 4 and "Traceback" not in r.stderr
    assert total_records(kafka_config, topic) == 0


def test_delay_lands_on_the_wait_tier(run_cli: object, kafka_config: KafkaConfig,
                                      schemas: Path, topic: str, make_topic: object) -> None:
    """--delay 30s writes to the wait tier pick_tier(30s) with sj-due-at and sj-target."""
    tier = pick_tier(30, Catalogue.load(schemas).wait_tiers(topic))
    wait = make_topic(name=retry_topic(topic, tier), partitions=2)  # type: ignore[operator]
    r = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "e"}',  # type: ignore[operator]
                "--delay", "30s", "--schemas", str(schemas),
                env={"STREAMJOBS_TRACEPARENT":
                     "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    assert r.returncode == 0, r.stderr
    (msg,) = read(kafka_config, wait, 1)
    assert h.JobMeta.from_headers(msg.headers()).job_id == r.stdout.strip()
    assert h.get(msg.headers(), h.TARGET) == topic
    assert h.get(msg.headers(), h.TRACEPARENT) is not None
    created, due = h.get_int(msg.headers(), h.CREATED_AT), h.get_int(msg.headers(), h.DUE_AT)
    assert created is not None and due == created + 30_000
    assert total_records(kafka_config, topic) == 0


def test_emit_exits_0_only_once_the_broker_has_the_record(
        run_cli: object, kafka_config: KafkaConfig, schemas: Path, make_topic: object) -> None:
    """Rule: emit prints the job id and exits 0 only after the broker acknowledged the record:
    a record the broker refuses once it arrives (no key, on a compacted topic) exits 1 naming
    the error and prints no job id; an accepted one is in the topic when emit returns."""
    toml = schemas / "catalogue.toml"
    toml.write_text(toml.read_text().replace('key_field = "user_id"\n', ""))  # no key
    topic = make_topic("emails", partitions=1,  # type: ignore[operator]
                       config={"cleanup.policy": "compact"})
    r = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "a@b"}',  # type: ignore[operator]
                "--schemas", str(schemas), "--delivery-timeout", "10")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr
    assert total_records(kafka_config, topic) == 0
    r = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "a@b"}',  # type: ignore[operator]
                "--key", "k", "--schemas", str(schemas))
    assert r.returncode == 0 and uuid.UUID(r.stdout.strip()).version == 7
    assert total_records(kafka_config, topic) == 1  # read at once: no waiting needed


def test_emit_job_id(run_cli: object, kafka_config: KafkaConfig, schemas: Path, topic: str,
                     tmp_path: Path) -> None:
    """--job-id (and a --file line's "job_id") is the record's job id and what is printed; a
    bad id, or --job-id with --file, is a usage error (exit 2) that sends nothing."""
    r = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "a@b"}',  # type: ignore[operator]
                "--job-id", "order-42", "--schemas", str(schemas))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "order-42"
    jobs = tmp_path / "ids.jsonl"
    jobs.write_text('{"payload": {"user_id": "u2", "email": "e"}, "job_id": "order-43"}\n')
    r = run_cli("emit", JOB, "--file", str(jobs), "--schemas", str(schemas))  # type: ignore[operator]
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "order-43"
    ids = sorted(h.JobMeta.from_headers(m.headers()).job_id for m in read(kafka_config, topic, 2))
    assert ids == ["order-42", "order-43"]
    bad = run_cli("emit", JOB, "--json", '{"user_id": "u1", "email": "a@b"}',  # type: ignore[operator]
                  "--job-id", "-no spaces", "--schemas", str(schemas))
    assert bad.returncode == 2 and "job_id" in bad.stderr and "Traceback" not in bad.stderr
    both = run_cli("emit", JOB, "--file", str(jobs), "--job-id", "x1",  # type: ignore[operator]
                   "--schemas", str(schemas))
    assert both.returncode == 2 and "--job-id" in both.stderr
    assert total_records(kafka_config, topic) == 2
