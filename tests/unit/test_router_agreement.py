"""The worker and ``streamjobs.testing.JobRunner`` route failures alike: the same failing
handlers (retry then succeed, exhaust to the dead-letter topic, a non-retryable error, a
handler's ``Retry(after=...)``, an unknown writer schema, undecodable bytes) run through the
real worker loop (over ``fakekafka``'s stand-in clients) and through ``JobRunner``, and the
retry and dead-letter records they produce are the same: topic, key, value and headers, except
the headers that carry a wall-clock time or a traceback (they must differ)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from streamjobs import _headers as h
from streamjobs._avro.codec import Codec
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App, JobContext, WorkerSettings
from streamjobs.errors import Retry
from streamjobs.testing import JobRunner
from tests.unit.fakekafka import Broker, Running, wait_for
from tests.unit.test_catalogue import USER, make_dir

TYPES = ("flaky", "doomed", "perm", "asks", "alien", "garbage")
TOML = """
[defaults]
partitions = 1
status = "none"
retry = { delays = ["100ms"], max_attempts = 2 }
permanent_errors = ["ValueError"]
""" + "".join(f'\n[jobs.{t}]\nschema = "t.User"\ntopic = "t.{t}"\n' for t in TYPES)
# How many records each produces: retry/dead-letter records, in order.
EXPECTED = {"flaky": ["t.flaky.retry.1s"],
            "doomed": ["t.doomed.retry.1s", "t.doomed.dlq"],
            "perm": ["t.perm.dlq"],
            "asks": ["t.asks.retry.1s"],
            "alien": ["t.alien.retry.1s", "t.alien.dlq"],
            "garbage": ["t.garbage.dlq"]}
# Wall-clock times and tracebacks (the worker's frames are not the runner's).
VARYING = {h.DUE_AT, h.FIRST_FAILURE_AT, h.DLQ_AT, h.ORIG_TIMESTAMP, h.CREATED_AT,
           h.ERROR_TRACE}


def _app(cat: Catalogue) -> App:
    app = App(cat, topic_prefix="")
    runs: dict[str, int] = {}

    def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        n = runs[ctx.job_type] = runs.get(ctx.job_type, 0) + 1
        if ctx.job_type == "flaky" and n == 1:
            raise RuntimeError("once")
        if ctx.job_type == "doomed":
            raise RuntimeError(f"always ({payload['id']})")
        if ctx.job_type == "perm":
            raise ValueError("bad address")
        if ctx.job_type == "asks" and n == 1:
            raise Retry(after=0.1, reason="rate limited upstream")

    for t in TYPES:
        app.job(t)(handler)
    return app


def _inputs(codec: Codec) -> dict[str, tuple[bytes, bytes, h.Headers]]:
    out = {}
    for t in TYPES:
        value = codec.encode(t, {"id": f"u-{t}", "n": 1})
        if t == "alien":  # a writer schema this deploy does not know (a newer deploy's)
            value = value[:2] + bytes(8) + value[10:]
        if t == "garbage":
            value = b"\x07garbage"
        out[t] = (f"k-{t}".encode(), value, [(h.META, h.compact(h.new_job_id(), t).encode())])
    return out


def _comparable(topic: str, key: bytes | None, value: bytes | None,
                headers: h.Headers) -> tuple[Any, ...]:
    return (topic, key, value, [(n, v) for n, v in headers if n not in VARYING])


def test_worker_and_job_runner_produce_the_same_failure_records(tmp_path: Path) -> None:
    cat = Catalogue.load(make_dir(tmp_path, TOML, **{"t.User.v1.avsc": USER}))
    codec = Codec(cat)
    inputs = _inputs(codec)

    runner = JobRunner(_app(cat), now=time.time() - 60, host=h.hostname())
    for t, (key, value, hdrs) in inputs.items():
        runner.emit_raw(t, value, key=key, headers=list(hdrs))
    runner.run()
    by_runner: dict[str, list[Any]] = {t: [] for t in TYPES}
    for r in runner.produced:
        by_runner[r.topic.split(".")[1]].append(_comparable(r.topic, r.key, r.value, r.headers))
    assert {t: [c[0] for c in recs] for t, recs in by_runner.items()} == EXPECTED

    broker = Broker()
    for t, (key, value, hdrs) in inputs.items():
        broker.append(f"t.{t}", value, key=key, headers=list(hdrs))

    def produced(t: str) -> list[Any]:
        return [_comparable(m.topic(), m.key(), m.value(), m.headers() or [])
                for topic in (f"t.{t}.retry.1s", f"t.{t}.dlq") for m in broker.log(topic)]

    settings = WorkerSettings(job_types=TYPES, concurrency=2, grace_period=1.0)
    with Running(_app(cat), broker, settings):
        wait_for(lambda: all(len(produced(t)) == len(EXPECTED[t]) for t in TYPES))
    for t in TYPES:
        assert produced(t) == by_runner[t], t
    # What is compared is the substance: the provenance, error and reason headers.
    dead = broker.log("t.doomed.dlq")[0].headers() or []
    assert {n for n, _ in dead} >= {h.DLQ_REASON, h.ERROR_CLASS, h.ORIG_TOPIC, h.WORKER_HOST}
