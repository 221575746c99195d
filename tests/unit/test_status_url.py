"""`streamjobs status --url`: asks the dashboard's JSON API instead of Kafka (a stand-in
server here: the endpoint's contract is `GET /api/jobs/{id}` -> `JobStatus.as_dict()`)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from click.testing import CliRunner

from streamjobs._status import Transition
from streamjobs._status.timeline import fold_all
from streamjobs.cli import main

JOB = "019ad3c1-1f2e-7a4b-9c3d-5e6f7a8b9c0d"
STATUS = fold_all(JOB, [("send_email", Transition("emitted", 1764500000000, topic="emails")),
                        ("send_email", Transition("dead", 1764500001000, 1, "w1",
                                                  "ValueError", "bad", "emails.dlq", 2, 41,
                                                  reason="permanent_error"))])
seen: list[tuple[str, str | None]] = []


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        seen.append((self.path, self.headers.get("Authorization")))
        if self.headers.get("Authorization") != "Bearer s3cret":
            self.send_response(401)
            self.end_headers()
            return
        if STATUS is None or self.path != f"/prefix/api/jobs/{JOB}":
            self.send_response(404)
            self.end_headers()
            return
        body = orjson.dumps(STATUS.as_dict())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/prefix/"
    finally:
        server.shutdown()


def test_url_mode_sends_the_token_and_prints_the_servers_timeline(url: str) -> None:
    seen.clear()
    r = CliRunner().invoke(main, ["status", JOB, "--url", url],
                           env={"STREAMJOBS_WEB_TOKEN": "s3cret"})
    assert r.exit_code == 0, r.output
    assert seen == [(f"/prefix/api/jobs/{JOB}", "Bearer s3cret")]
    assert "state dead" in r.output and "ValueError: bad" in r.output
    assert "`streamjobs dlq show 2:41 --topic emails.dlq`" in r.output
    r = CliRunner().invoke(main, ["status", JOB, "--url", url, "--json", "--watch"],
                           env={"STREAMJOBS_WEB_TOKEN": "s3cret"})
    assert r.exit_code == 0  # dead is final: --watch ends at once
    assert STATUS is not None and orjson.loads(r.output) == STATUS.as_dict()


def test_url_mode_exit_codes(url: str) -> None:
    """404 -> 3 (unknown), a refused token -> 1, no server -> 4; one line each."""
    env = {"STREAMJOBS_WEB_TOKEN": "s3cret"}
    r = CliRunner().invoke(main, ["status", "nope", "--url", url], env=env)
    assert r.exit_code == 3 and "not known" in r.output
    r = CliRunner().invoke(main, ["status", JOB, "--url", url, "--token", "wrong"])
    assert r.exit_code == 1 and "401" in r.output and "STREAMJOBS_WEB_TOKEN" in r.output
    r = CliRunner().invoke(main, ["status", JOB, "--url", "http://127.0.0.1:9/"], env=env)
    assert r.exit_code == 4 and "unreachable" in r.output
    assert "Traceback" not in r.output
