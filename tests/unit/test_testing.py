"""``streamjobs.testing``: handlers run through the real codec, retry policy and dead-letter
decisions on a fake clock, with the JobContext and headers a worker gives them."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from streamjobs import _headers as h
from streamjobs._worker import App, JobContext
from streamjobs.errors import (
    ConfigError,
    PayloadError,
    PermanentError,
    Retry,
    RunawayJobs,
    UnknownJobType,
)
from streamjobs.testing import JobRunner, assert_dead_lettered, assert_succeeded

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
T0 = 1_700_000_000.0
THUMB = {"image_id": "img-1", "url": "https://x/1.png", "width": 64, "height": 48}
EMAIL = {"user_id": "u1", "email": "a@example.com"}


class BadAddress(Exception):
    pass


def thumbnail_app(handler: Any, prefix: str = "") -> App:
    app = App(schemas=SCHEMAS, topic_prefix=prefix)
    app.job("make_thumbnail")(handler)
    return app


def flaky(failures: int, exc: BaseException) -> tuple[list[JobContext], Any]:
    """A handler raising ``exc`` on its first ``failures`` runs; records every ctx."""
    seen: list[JobContext] = []

    def handler(payload: dict[str, Any], ctx: JobContext) -> None:
        seen.append(ctx)
        if len(seen) <= failures:
            raise exc
    return seen, handler


def test_success_runs_decoded_payload_with_worker_like_context() -> None:
    seen, handler = flaky(0, RuntimeError())
    runner = JobRunner(thumbnail_app(handler, prefix="t."), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB, headers={"tenant": "acme"})
    assert seen == [] and runner.pending == [(T0, job_id)]  # nothing runs at emit

    report = runner.run()

    assert (report.succeeded, report.retried, report.dead_lettered, report.pending) == (1, 0, 0, 0)
    out = assert_succeeded(runner, job_id, attempts=1)
    assert out.ran_at == T0 and runner.now == T0
    [ctx] = seen
    assert ctx.payload == THUMB
    assert (ctx.job_id, ctx.job_type, ctx.attempt) == (job_id, "make_thumbnail", 1)
    assert (ctx.topic, ctx.job_topic) == ("t.demo.images", "t.demo.images")
    assert ctx.key == b"img-1"  # the catalogue's key_field
    assert ctx.partition == zlib.crc32(b"img-1") % 6 and ctx.offset == 0
    assert ctx.created_at_ms == int(T0 * 1000)
    # As Producer.emit writes it: one compact header; attempt and created-at are implied.
    assert ctx.header(h.META) == f"{job_id};make_thumbnail"
    assert ctx.header(h.JOB_ID) is None and ctx.header(h.ATTEMPT) is None
    assert ctx.header("tenant") == "acme"
    ctx.log.info("bound logger works")
    assert runner.outcome(job_id) is out and runner.succeeded == [out]
    runner.emit("make_thumbnail", THUMB)  # same key: same partition, next offset
    runner.run()
    assert (seen[1].partition, seen[1].offset) == (ctx.partition, 1)


def test_invalid_payload_raises_payload_error_at_emit_and_queues_nothing() -> None:
    runner = JobRunner(thumbnail_app(flaky(0, RuntimeError())[1]))
    with pytest.raises(PayloadError) as err:
        runner.emit("make_thumbnail", {**THUMB, "width": "wide"})
    assert err.value.field == "width"
    with pytest.raises(PayloadError, match="missing"):
        runner.emit("make_thumbnail", {"image_id": "i", "url": "u", "width": 1})
    with pytest.raises(ValueError, match="set by emit"):
        runner.emit("make_thumbnail", THUMB, headers={h.ATTEMPT: "3"})
    with pytest.raises(UnknownJobType):
        runner.emit("no_such_job", {})
    assert runner.pending == [] and runner.run().outcomes == []


def test_unhandled_job_type_is_refused_like_worker_start_up() -> None:
    runner = JobRunner(thumbnail_app(flaky(0, RuntimeError())[1]))
    with pytest.raises(ConfigError, match="has no handler"):
        runner.emit("send_welcome_email", EMAIL)


def test_transient_failure_retries_after_policy_delay_with_retry_headers() -> None:
    seen, handler = flaky(1, ConnectionError("smtp down"))
    runner = JobRunner(thumbnail_app(handler), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB)

    report = runner.run()

    assert (report.retried, report.succeeded) == (1, 1)
    first, second = runner.attempts(job_id)
    assert (first.status, first.delay, first.error_class) == ("retried", 1.0, "ConnectionError")
    assert isinstance(first.error, ConnectionError) and first.message == "smtp down"
    assert second.ran_at - first.ran_at == 1.0  # delays = ["1s", ...] in schemas/catalogue.toml
    retry_ctx = seen[1]
    assert (retry_ctx.job_id, retry_ctx.attempt) == (job_id, 2)
    assert retry_ctx.topic == "demo.images.retry.1s" and retry_ctx.job_topic == "demo.images"
    assert retry_ctx.header(h.ATTEMPT) == "2" and retry_ctx.header(h.META) is None
    assert retry_ctx.header(h.JOB_ID) == job_id
    assert retry_ctx.header(h.CREATED_AT) == str(int(T0 * 1000))
    assert retry_ctx.header(h.DUE_AT) == str(int((T0 + 1) * 1000))
    assert retry_ctx.header(h.ERROR_CLASS) == "ConnectionError"
    assert retry_ctx.header(h.ORIG_TOPIC) == "demo.images"
    assert retry_ctx.header(h.ORIG_OFFSET) == "0"
    assert retry_ctx.created_at_ms == int(T0 * 1000)  # unchanged across the retry chain


def test_retry_after_overrides_policy_delay() -> None:
    _, handler = flaky(1, Retry(after=7, reason="rate limited"))
    runner = JobRunner(thumbnail_app(handler), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB)
    runner.run()
    first, second = runner.attempts(job_id)
    assert first.delay == 7 and second.ran_at == T0 + 7 and second.status == "succeeded"
    # 7 s waits in the 5s tier, then moves to the 1s tier for the rest (as the worker does)
    assert second.topic == "demo.images.retry.1s"


def test_permanent_error_is_dead_lettered_at_first_attempt() -> None:
    seen, handler = flaky(99, PermanentError("no such image"))
    runner = JobRunner(thumbnail_app(handler), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB)
    runner.run()
    out = assert_dead_lettered(runner, job_id, reason="permanent_error", attempts=1)
    assert len(seen) == 1 and runner.now == T0
    assert out.topic == "demo.images.dlq"
    assert h.get(out.headers, h.DLQ_REASON) == "permanent_error"
    assert h.get(out.headers, h.ERROR_CLASS) == "streamjobs.errors.PermanentError"


def test_catalogue_permanent_errors_dead_letter_at_once(tmp_path: Path) -> None:
    # schemas/catalogue.toml: permanent_errors = ["ValueError"]
    _, handler = flaky(99, ValueError("bad url"))
    runner = JobRunner(thumbnail_app(handler))
    job_id = runner.emit("make_thumbnail", THUMB)
    runner.run()
    assert_dead_lettered(runner, job_id, reason="permanent_error", attempts=1)
    # a module-qualified class of the app's own, from a private catalogue
    (tmp_path / "catalogue.toml").write_text(
        '[jobs.ping]\nschema = "t.Ping"\ntopic = "t.pings"\n'
        f'permanent_errors = ["{__name__}.BadAddress"]\n'
        'retry = { delays = ["2s"], max_attempts = 3 }\n')
    (tmp_path / "t.Ping.v1.avsc").write_text(
        '{"type": "record", "name": "Ping", "namespace": "t", '
        '"fields": [{"name": "n", "type": "int"}]}')
    app = App(schemas=tmp_path)
    app.job("ping")(flaky(99, BadAddress("x"))[1])
    runner = JobRunner(app)
    job_id = runner.emit("ping", {"n": 1})
    runner.run()
    assert_dead_lettered(runner, job_id, reason="permanent_error", attempts=1)


def test_exhausted_attempts_dead_letter_with_max_attempts_after_policy_delays() -> None:
    seen, handler = flaky(99, TimeoutError("slow"))
    runner = JobRunner(thumbnail_app(handler), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB)
    runner.run()
    # max_attempts = 4, delays 1s, 5s, 30s
    assert_dead_lettered(runner, job_id, reason="max_attempts", attempts=4)
    assert [c.attempt for c in seen] == [1, 2, 3, 4]
    assert [o.ran_at - T0 for o in runner.attempts(job_id)] == [0, 1, 6, 36]
    assert [o.status for o in runner.failed] == ["retried"] * 3 + ["dead_lettered"]
    assert {c.job_id for c in seen} == {job_id}


def test_async_handler_and_exponential_policy_with_jitter() -> None:
    app = App(schemas=SCHEMAS)
    attempts: list[int] = []

    @app.job("send_welcome_email")
    async def send(payload: dict[str, Any], ctx: JobContext) -> None:
        await asyncio.sleep(0)
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("later")

    with JobRunner(app, now=T0) as runner:
        job_id = runner.emit("send_welcome_email", EMAIL)
        runner.run()
    assert attempts == [1, 2, 3]
    assert not [t for t in threading.enumerate() if t.name == "sj-testing-asyncio"]  # closed
    runs = runner.attempts(job_id)
    assert runs[-1].status == "succeeded" and runs[-1].payload == {**EMAIL, "locale": "en"}
    # exponential base 1s, factor 2, jitter 0.1: 1s then 2s, each shortened by up to 10%
    assert runs[0].delay is not None and 0.9 <= runs[0].delay <= 1.0
    assert runs[1].delay is not None and 1.8 <= runs[1].delay <= 2.0


def test_async_handler_runs_from_inside_a_running_event_loop() -> None:
    app = App(schemas=SCHEMAS)
    done: list[str] = []

    @app.job("send_welcome_email")
    async def send(payload: dict[str, Any], ctx: JobContext) -> None:
        done.append(ctx.job_id)

    async def async_test() -> None:
        with JobRunner(app) as runner:
            job_id = runner.emit("send_welcome_email", EMAIL)
            runner.run()
        assert done == [job_id]

    asyncio.run(async_test())


def test_delayed_jobs_run_in_due_order_on_the_fake_clock() -> None:
    order: list[int] = []
    runner = JobRunner(thumbnail_app(lambda p, ctx: order.append(p["width"])), now=T0)
    late = runner.emit("make_thumbnail", {**THUMB, "width": 60}, delay=60)
    soon = runner.emit("make_thumbnail", {**THUMB, "width": 1}, delay=1)
    runner.emit("make_thumbnail", {**THUMB, "width": 0})
    started = time.monotonic()

    runner.run()

    assert order == [0, 1, 60]
    assert runner.outcome(soon).ran_at == T0 + 1 and runner.outcome(late).ran_at == T0 + 60
    assert runner.outcome(late).topic == "demo.images.retry.1m"  # the delay's wait tier
    assert time.monotonic() - started < 30  # the 60 s were not slept


def test_run_due_and_until_do_not_run_the_future() -> None:
    runner = JobRunner(thumbnail_app(lambda p, ctx: None), now=T0)
    job_id = runner.emit("make_thumbnail", THUMB, delay=10)
    assert runner.run_due().outcomes == [] and runner.run(until=T0 + 9).pending == 1
    assert runner.now == T0
    runner.advance(10)
    report = runner.run_due()
    assert report.succeeded == 1 and runner.outcome(job_id).ran_at == T0 + 10


def test_older_schema_version_is_resolved_into_the_current_one() -> None:
    app = App(schemas=SCHEMAS)
    got: list[dict[str, Any]] = []
    app.job("send_welcome_email")(lambda p, ctx: got.append(p))
    runner = JobRunner(app)
    runner.emit("send_welcome_email", EMAIL, schema_version=1)
    runner.run()
    assert got == [{**EMAIL, "locale": "en"}]  # v2's default for the field v1 lacks
    with pytest.raises(PayloadError):
        runner.emit("send_welcome_email", {**EMAIL, "locale": "fr"}, schema_version=1)


def test_undecodable_bytes_are_dead_lettered_as_decode_error() -> None:
    seen, handler = flaky(0, RuntimeError())
    runner = JobRunner(thumbnail_app(handler))
    job_id = runner.emit_raw("make_thumbnail", b"not avro")
    runner.run()
    out = assert_dead_lettered(runner, job_id, reason="decode_error", attempts=1)
    assert seen == [] and out.payload is None and out.error_class == "DecodeError"


def test_runaway_job_chain_is_stopped() -> None:
    app = App(schemas=SCHEMAS)
    runner = JobRunner(app)
    app.job("make_thumbnail")(lambda p, ctx: runner.emit("make_thumbnail", p))
    runner.emit("make_thumbnail", THUMB)
    with pytest.raises(RunawayJobs) as err:
        runner.run(max_jobs=50)
    assert err.value.pending == 1 and len(runner.succeeded) == 50


def test_assertion_message_shows_every_run_and_the_traceback() -> None:
    runner = JobRunner(thumbnail_app(flaky(99, TimeoutError("slow upstream"))[1]))
    job_id = runner.emit("make_thumbnail", THUMB)
    runner.run()
    with pytest.raises(AssertionError) as err:
        assert_succeeded(runner, job_id)
    text = str(err.value)
    assert "attempt 4" in text and "max_attempts" in text and "Traceback" in text
    assert "slow upstream" in text
    with pytest.raises(KeyError, match="never emitted"):
        runner.outcome("nope")


def test_docs_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ```python block of docs/testing.md, executed; its test_* functions called."""
    text = (ROOT / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {"__name__": "docs_testing_example"}
    exec(compile("\n".join(blocks), "docs/testing.md", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(tests) >= 3
    for test in tests:
        test()


# -- ctx.emit ---------------------------------------------------------------------------------

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def chain_app(*, fail_after_emit: int = 0, exactly_once: bool = False,
              handle_email: bool = True) -> tuple[App, list[JobContext]]:
    """make_thumbnail emits one send_welcome_email (then fails its first
    ``fail_after_emit`` runs); the emails it sends are recorded."""
    app = App(schemas=SCHEMAS, exactly_once=exactly_once)
    emails: list[JobContext] = []

    @app.job("make_thumbnail")
    def thumb(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.emit("send_welcome_email", {"user_id": payload["image_id"], "email": "a@b.c"})
        if ctx.attempt <= fail_after_emit:
            raise ConnectionError("storage busy")

    if handle_email:
        app.job("send_welcome_email")(lambda payload, ctx: emails.append(ctx))
    return app, emails


def test_emitted_followups_carry_parent_id_and_trace_and_run() -> None:
    """Rule: ``ctx.emit`` in a runner's handler builds the follow-up as a worker does
    (``sj-parent-id``, the parent's ``traceparent``, the key from the job type's key field);
    it is listed on the runner, the parent's outcome and the run's report, and runs in the
    same ``run``."""
    app, emails = chain_app()
    runner = JobRunner(app, now=T0)
    parent = runner.emit("make_thumbnail", THUMB, traceparent=TP)
    report = runner.run()
    assert report.succeeded == 2
    (follow,) = runner.emitted
    assert report.emitted == [follow] and runner.outcome(parent).emitted == (follow,)
    assert follow.parent_id == parent and follow.runs and follow.due_at is None
    assert follow.payload == {"user_id": "img-1", "email": "a@b.c", "locale": "en"}
    assert follow.key == b"img-1" and follow.topic == "demo.emails"
    assert follow.partition == zlib.crc32(b"img-1") % 6
    (ctx,) = emails
    assert ctx.job_id == follow.job_id and ctx.header(h.PARENT_ID) == parent
    assert ctx.header(h.TRACEPARENT) == TP
    assert_succeeded(runner, follow.job_id, attempts=1)


def test_emit_is_validated_by_the_workers_code() -> None:
    """Rule: a follow-up is validated like any emit, by the worker's ``follow_up`` (one
    implementation): a bad payload or a reserved header raises in the handler, which fails
    like any exception, with nothing sent."""
    import streamjobs._worker.followups as worker_followups
    import streamjobs.testing.followups as testing_followups

    assert testing_followups.follow_up is worker_followups.follow_up
    app = App(schemas=SCHEMAS)

    @app.job("make_thumbnail")
    def thumb(payload: dict[str, Any], ctx: JobContext) -> None:
        if payload["image_id"] == "bad-payload":
            ctx.emit("send_welcome_email", {"user_id": 7, "email": "a@b.c"})
        ctx.emit("send_welcome_email", {"user_id": "u", "email": "e"},
                 headers={h.PARENT_ID: "forged"})

    runner = JobRunner(app, now=T0)
    bad_payload = runner.emit("make_thumbnail", {**THUMB, "image_id": "bad-payload"})
    forged = runner.emit("make_thumbnail", THUMB)
    runner.run()
    assert runner.attempts(bad_payload)[0].error_class == "streamjobs.errors.PayloadError"
    out = runner.attempts(forged)[0]
    assert out.error_class == "ValueError" and "set by emit itself" in str(out.message)
    assert runner.failed and runner.emitted == [] and not runner.succeeded


def test_async_handlers_emit_too() -> None:
    """Rule: ``ctx.emit`` works in ``async def`` handlers (the runner's loop thread)."""
    app = App(schemas=SCHEMAS)

    @app.job("make_thumbnail")
    async def thumb(payload: dict[str, Any], ctx: JobContext) -> None:
        await asyncio.sleep(0)
        ctx.emit("send_welcome_email", {"user_id": "u9", "email": "a@b.c"})

    with JobRunner(app) as runner:
        parent = runner.emit("make_thumbnail", THUMB)
        runner.run()
    (follow,) = runner.emitted
    assert follow.parent_id == parent and not follow.runs  # no handler for it in this app
    assert runner.pending == [] and len(runner.outcomes) == 1


def test_a_failed_parent_keeps_its_followups_sent_at_least_once() -> None:
    """Rule: at-least-once, a parent that fails after emitting leaves its follow-up sent; its
    retry emits another (two follow-ups, same parent id, different job ids)."""
    app, emails = chain_app(fail_after_emit=1)
    runner = JobRunner(app, now=T0)
    parent = runner.emit("make_thumbnail", THUMB)
    runner.run()
    failed, ok = runner.attempts(parent)
    assert failed.status == "retried" and len(failed.emitted) == 1 and len(ok.emitted) == 1
    assert {f.parent_id for f in runner.emitted} == {parent}
    assert len({f.job_id for f in runner.emitted}) == 2 and len(emails) == 2


def test_a_failed_parent_drops_its_followups_exactly_once() -> None:
    """Rule: exactly-once (the app's setting, or the runner's), the follow-ups of a failed run
    are dropped with it; only the succeeding run's are sent."""
    for app, runner_mode in ((chain_app(fail_after_emit=1, exactly_once=True)[0], None),
                             (chain_app(fail_after_emit=1)[0], True)):
        runner = JobRunner(app, now=T0, exactly_once=runner_mode)
        parent = runner.emit("make_thumbnail", THUMB)
        runner.run()
        failed, ok = runner.attempts(parent)
        assert failed.status == "retried" and failed.emitted == ()
        assert runner.emitted == list(ok.emitted) and len(ok.emitted) == 1
        assert_succeeded(runner, ok.emitted[0].job_id)


def test_delayed_followups_wait_on_the_fake_clock() -> None:
    """Rule: a follow-up emitted with ``delay`` (or ``run_at``) is due on the runner's fake
    clock; a worker's headers (``sj-due-at``, created-at) are the fake clock's too."""
    app = App(schemas=SCHEMAS)
    ran: list[tuple[float, JobContext]] = []
    runner = JobRunner(app, now=T0)

    @app.job("make_thumbnail")
    def thumb(payload: dict[str, Any], ctx: JobContext) -> None:
        ctx.emit("send_welcome_email", {"user_id": "u", "email": "e"}, delay=30)

    app.job("send_welcome_email")(lambda payload, ctx: ran.append((runner.now, ctx)))
    runner.emit("make_thumbnail", THUMB)
    runner.run_due()
    (follow,) = runner.emitted
    assert follow.due_at == T0 + 30 and ran == []
    assert runner.pending == [(T0 + 30, follow.job_id)]
    runner.run()
    ((at, ctx),) = ran
    assert at == T0 + 30 and ctx.created_at_ms == T0 * 1000
    assert ctx.header(h.DUE_AT) == str(int((T0 + 30) * 1000))
