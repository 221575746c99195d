"""The dashboard's routes and security with Starlette's TestClient and an in-memory status
index (no Kafka: no catalogue, no reports, no groups, so no page reads the broker)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from streamjobs._config import KafkaConfig
from streamjobs._status import JobStatus, Transition
from streamjobs._web import Sources, WebSettings, create_app, is_loopback
from streamjobs.cli import main
from streamjobs.errors import ConfigError

TOKEN = "s3cret-token-for-tests"


class MemoryIndex:
    """The StatusIndex surface the dashboard uses, fed by the test."""

    def __init__(self, ready: bool = True) -> None:
        self.ready = ready
        self.jobs: dict[str, JobStatus] = {}
        self.subs: list[Callable[[JobStatus], None]] = []

    def start(self) -> None: ...
    def close(self) -> None: ...

    def get(self, job_id: str) -> JobStatus | None:
        return self.jobs.get(job_id)

    def recent(self, limit: int = 50, state: str | None = None) -> list[JobStatus]:
        return [j for j in self.jobs.values() if state is None or j.state == state][:limit]

    def subscribe(self, callback: Callable[[JobStatus], None]) -> Callable[[], None]:
        self.subs.append(callback)
        return lambda: self.subs.remove(callback)

    def stats(self) -> dict[str, Any]:
        return {"jobs": len(self.jobs), "approx_bytes": 100 * len(self.jobs)}

    def put(self, status: JobStatus) -> None:
        self.jobs[status.job_id] = status
        for cb in list(self.subs):
            cb(status)


def status(job_id: str, *states: str, message: str | None = None) -> JobStatus:
    steps = tuple(Transition(s, 1_700_000_000_000 + i, attempt=1, error_class="RuntimeError"
                             if message else None, error_message=message)
                  for i, s in enumerate(states))
    return JobStatus(job_id, "task", states[-1], steps)


def client(index: MemoryIndex | None = None, **settings: Any) -> TestClient:
    sources = Sources(KafkaConfig(), None, index or MemoryIndex(), None)
    return TestClient(create_app(WebSettings(**settings), sources))


@pytest.fixture
def index() -> MemoryIndex:
    return MemoryIndex()


def test_healthz_waits_for_the_index() -> None:
    idx = MemoryIndex(ready=False)
    with client(idx) as c:
        assert c.get("/healthz").status_code == 503
        idx.ready = True
        assert c.get("/healthz").text == "ok\n"


def test_api_job_known_unknown_and_loading(index: MemoryIndex) -> None:
    index.put(status("j1", "emitted", "started", "succeeded"))
    with client(index) as c:
        r = c.get("/api/jobs/j1")
        assert r.status_code == 200
        assert r.json()["state"] == "succeeded"
        assert [t["state"] for t in r.json()["transitions"]] == ["emitted", "started",
                                                                  "succeeded"]
        assert c.get("/api/jobs/nope").status_code == 404
        index.ready = False
        assert c.get("/api/jobs/nope").status_code == 503


def test_job_page_escapes_what_jobs_carry(index: MemoryIndex) -> None:
    index.put(status("j2", "emitted", "retrying", message="<script>alert(1)</script>"))
    with client(index) as c:
        html = c.get("/jobs/j2").text
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'data-sse="/api/jobs/j2/events"' in html


def test_search_box_opens_the_job_page(index: MemoryIndex) -> None:
    with client(index) as c:
        r = c.get("/jobs", params={"id": " a/b "}, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/jobs/a%2Fb"


def _events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[6:]


def test_sse_sends_current_status_then_each_update(index: MemoryIndex) -> None:
    index.put(status("j3", "emitted"))
    with client(index) as c, c.stream("GET", "/api/jobs/j3/events") as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = _events(r.iter_lines())
        assert '"state":"emitted"' in next(events)

        def later() -> None:
            time.sleep(0.2)  # from another thread, as the index thread does
            index.put(status("j3", "emitted", "started"))
            index.put(status("other", "emitted"))
            index.put(status("j3", "emitted", "started", "succeeded"))

        threading.Thread(target=later).start()
        assert '"state":"started"' in next(events)
        assert '"state":"succeeded"' in next(events)


def test_actions_refused_without_a_configured_token(index: MemoryIndex) -> None:
    with client(index) as c:
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"})
        assert r.status_code == 403
        assert "actions are disabled" in r.text
        assert c.post("/login", data={"token": "anything"}).status_code == 403


def _login(c: TestClient, token: str = TOKEN) -> None:
    r = c.post("/login", data={"token": token, "next": "/dead-letters"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/dead-letters"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and TOKEN not in cookie


def test_token_login_and_csrf(index: MemoryIndex) -> None:
    with client(index, token=TOKEN) as c:
        # not logged in
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"})
        assert r.status_code == 403 and "log in" in r.text
        # wrong token
        assert c.post("/login", data={"token": "wrong-token-x"}).status_code == 403
        assert c.post("/dead-letters/reprocess", data={"scope": "matching"}).status_code == 403
        _login(c)
        csrf = c.app.state.web.guard.csrf_token(_request_with(c))  # type: ignore[attr-defined]
        # logged in, but no CSRF field / a wrong one
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"})
        assert r.status_code == 403 and "CSRF" in r.text
        r = c.post("/dead-letters/reprocess", data={"scope": "matching", "csrf": "0" * 64})
        assert r.status_code == 403
        # another site posting with the victim's cookie
        r = c.post("/dead-letters/reprocess", data={"scope": "matching", "csrf": csrf},
                   headers={"origin": "https://evil.example"})
        assert r.status_code == 403 and "cross-origin" in r.text
        # behind a proxy that names the public host
        r = c.post("/dead-letters/reprocess", data={"scope": "matching", "csrf": csrf},
                   headers={"origin": "https://jobs.example", "x-forwarded-host": "jobs.example"})
        assert r.status_code == 400
        # all checks passed: the request reaches the action (no catalogue -> no topic)
        r = c.post("/dead-letters/reprocess", data={"scope": "matching", "csrf": csrf},
                   headers={"origin": "http://testserver"})
        assert r.status_code == 400 and "no dead-letter topic" in r.text
        c.post("/logout")
        c.cookies.clear()
        assert c.post("/dead-letters/reprocess",
                      data={"scope": "matching", "csrf": csrf}).status_code == 403


def _request_with(c: TestClient) -> Any:
    from starlette.requests import Request

    cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    return Request({"type": "http", "headers": [(b"cookie", cookie.encode())]})


def test_bearer_token_needs_no_csrf_field(index: MemoryIndex) -> None:
    with client(index, token=TOKEN) as c:
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"},
                   headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 400 and "no dead-letter topic" in r.text
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"},
                   headers={"authorization": "Bearer wrong-token-x"})
        assert r.status_code == 403


def test_read_only_hides_and_refuses_actions(index: MemoryIndex) -> None:
    with client(index, token=TOKEN, read_only=True) as c:
        assert "read-only" in c.get("/").text
        r = c.post("/dead-letters/reprocess", data={"scope": "matching"},
                   headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403 and "read-only" in r.text
        r = c.post("/replay", data={"group": "g", "topics": "t", "confirm": "yes"},
                   headers={"authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 403


def test_login_never_redirects_off_site(index: MemoryIndex) -> None:
    with client(index, token=TOKEN) as c:
        for nxt in ("https://evil.example/", "//evil.example/x"):
            r = c.post("/login", data={"token": TOKEN, "next": nxt}, follow_redirects=False)
            assert r.headers["location"] == "/"


def test_root_path_prefixed_or_stripped(index: MemoryIndex) -> None:
    index.put(status("j4", "emitted"))
    with client(index, root_path="/sj/") as c:
        for path in ("/sj/healthz", "/healthz"):  # ingress passing or stripping the prefix
            assert c.get(path).status_code == 200
        html = c.get("/sj/jobs/j4").text
        assert 'href="/sj/static/style.css"' in html
        assert 'data-sse="/sj/api/jobs/j4/events"' in html
        hrefs = re.findall(r'(?:href|action|src)="(/[^"]*)"', html)
        assert hrefs and all(h.startswith("/sj/") for h in hrefs), hrefs
        assert c.get("/sj/static/style.css").status_code == 200
        r = c.get("/sj/jobs", params={"id": "j4"}, follow_redirects=False)
        assert r.headers["location"] == "/sj/jobs/j4"


def test_metrics_count_requests_and_index(index: MemoryIndex) -> None:
    index.put(status("j5", "emitted"))
    with client(index) as c:
        c.get("/api/jobs/j5")
        body = c.get("/metrics").text
    assert 'streamjobs_web_requests_total{method="GET",route="api_job",status="200"} 1.0' in body
    assert "streamjobs_web_index_jobs 1.0" in body
    assert "streamjobs_web_index_ready 1.0" in body


def test_settings_refuse_a_public_address_without_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    with pytest.raises(ConfigError) as exc:
        WebSettings(host="0.0.0.0")
    assert exc.value.field == "host"
    assert WebSettings(host="0.0.0.0", token=TOKEN).actions_enabled
    with pytest.raises(ConfigError):
        WebSettings(root_path="sj")
    with pytest.raises(ConfigError):
        WebSettings(token="short")


def test_cli_refuses_public_host_without_token_in_one_line() -> None:
    result = CliRunner().invoke(main, ["web", "--host", "0.0.0.0"],
                                env={"STREAMJOBS_WEB_TOKEN": ""})
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "STREAMJOBS_WEB_TOKEN" in lines[0], result.output


def test_a_selection_matches_exactly_the_ticked_dead_letters() -> None:
    from starlette.datastructures import FormData

    from streamjobs._ops.dlq import DeadLetter
    from streamjobs._web.pages.deadletters import _selection

    by_part, refs = _selection(FormData([("ref", "0/5"), ("ref", "0/9"), ("ref", "2/1")]))
    assert refs == ["0/5", "0/9", "2/1"]
    assert (by_part[0].partition, by_part[0].from_offset, by_part[0].to_offset) == (0, 5, 9)

    def dl(partition: int, offset: int) -> DeadLetter:
        return DeadLetter("t.dlq", partition, offset, 0, None, None, [])

    assert [o for o in range(4, 11) if by_part[0].matches(dl(0, o))] == [5, 9]
    assert by_part[2].matches(dl(2, 1)) and not by_part[2].matches(dl(0, 1))
    with pytest.raises(ValueError):
        _selection(FormData([("ref", "0/x")]))


def test_closing_the_broadcaster_ends_every_stream() -> None:
    import asyncio

    from streamjobs._web.live import Broadcaster, sse_stream

    async def run() -> list[bytes]:
        live = Broadcaster()

        async def connected() -> bool:
            return False

        with live.listen("j") as sub:
            chunks = []
            stream = sse_stream(sub, status("j", "emitted"), lambda s: s.as_dict(), connected)
            chunks.append(await anext(stream))  # retry hint
            chunks.append(await anext(stream))  # current status
            live.close()  # as on SIGTERM
            chunks.extend([c async for c in stream])
            return chunks

    chunks = asyncio.run(asyncio.wait_for(run(), 5))
    assert len(chunks) == 2 and b'"state":"emitted"' in chunks[1]
