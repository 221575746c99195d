"""The registry client: its frozen config, and what a stand-in HTTP registry sees of it: caching
(no request per record), errors by kind, a 403 and a 5xx, which a real registry does not give on
demand. Basic auth and TLS against a real registry: tests/kafka/test_registry_auth.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from streamjobs._schemas.registry import REGISTRY_ENV, RegistryConfig, SchemaRegistry
from streamjobs.errors import ConfigError, RegistryError, RegistryUnavailable

SCHEMA = '{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}'


class _Registry(BaseHTTPRequestHandler):
    """Answers like a Confluent-compatible registry holding schema id 7 under subject s."""

    seen: list[tuple[str, str, str | None]]
    status = 200

    def _answer(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Authorization")))
        if self.status != 200:
            self.send_response(self.status)
            self.end_headers()
            self.wfile.write(b'{"error_code": 50001, "message": "store down"}')
            return
        body: Any = {"error_code": 40403, "message": "Schema not found"}
        code = 404
        if self.path == "/api/schemas/ids/7":
            body, code = {"schema": SCHEMA}, 200
        elif self.path == "/api/subjects/s" and self.command == "POST":
            body, code = {"id": 7, "version": 1, "subject": "s", "schema": SCHEMA}, 200
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: Any) -> None:
        pass


def _serve(status: int = 200) -> tuple[ThreadingHTTPServer, list[tuple[str, str, str | None]]]:
    seen: list[tuple[str, str, str | None]] = []
    handler = type("H", (_Registry,), {"seen": seen, "status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def http() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    server, seen = _serve()
    yield f"http://127.0.0.1:{server.server_address[1]}/api", seen
    server.shutdown()


def test_config_is_validated_and_hides_the_password(tmp_path: Path) -> None:
    cfg = RegistryConfig("http://r:8081/apis/ccompat/v7/", username="u", password="secret")
    assert cfg.url == "http://r:8081/apis/ccompat/v7" and "secret" not in repr(cfg)
    for kwargs, field in [({"url": "r:8081"}, "registry_url"),
                          ({"url": "ftp://r"}, "registry_url"),
                          ({"url": "http://r", "username": "u"}, "registry_username"),
                          ({"url": "http://r", "ca_location": str(tmp_path / "no.pem")},
                           "registry_ca_location"),
                          ({"url": "http://r", "timeout": 0}, "registry_timeout")]:
        with pytest.raises(ConfigError) as info:
            RegistryConfig(**kwargs)
        assert info.value.field == field


def test_config_from_environment() -> None:
    assert RegistryConfig.from_env({}) is None
    env = {REGISTRY_ENV["url"]: "https://r/ccompat", REGISTRY_ENV["username"]: "u",
           REGISTRY_ENV["password"]: "p", REGISTRY_ENV["timeout"]: "2.5"}
    cfg = RegistryConfig.from_env(env)
    assert cfg == RegistryConfig("https://r/ccompat", "u", "p", None, 2.5)
    assert RegistryConfig.from_env(env, url="http://other") == RegistryConfig(
        "http://other", "u", "p", None, 2.5)
    with pytest.raises(ConfigError) as info:
        RegistryConfig.from_env({REGISTRY_ENV["username"]: "u"})
    assert info.value.field == "registry_url"


def test_basic_auth_is_sent_and_answers_are_cached(
        http: tuple[str, list[tuple[str, str, str | None]]]) -> None:
    url, seen = http
    client = SchemaRegistry(RegistryConfig(url, username="alice", password="s3cret"))
    for _ in range(3):
        assert client.schema(7) == SCHEMA
        assert client.lookup("s", SCHEMA) == 7
    assert [(m, p) for m, p, _ in seen] == [("GET", "/api/schemas/ids/7"),
                                            ("POST", "/api/subjects/s")]
    assert {a for _, _, a in seen} == {"Basic YWxpY2U6czNjcmV0"}  # base64("alice:s3cret")
    assert client.lookup("other", SCHEMA) is None  # 404: not registered there
    with pytest.raises(RegistryError) as info:
        client.schema(8)
    assert (info.value.status, info.value.code) == (404, 40403)
    assert not isinstance(info.value, RegistryUnavailable)


def test_unreachable_and_failing_registries_are_unavailable() -> None:
    server, _ = _serve(status=500)
    port = server.server_address[1]
    try:
        with pytest.raises(RegistryUnavailable, match="store down"):
            SchemaRegistry(RegistryConfig(f"http://127.0.0.1:{port}/api")).schema(7)
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(RegistryUnavailable, match="GET /schemas/ids/7"):
        SchemaRegistry(RegistryConfig(f"http://127.0.0.1:{port}/api", timeout=2)).schema(7)



def test_refusals_are_told_apart_from_an_unreachable_registry() -> None:
    server, _ = _serve(status=403)
    port = server.server_address[1]
    config = RegistryConfig(f"http://127.0.0.1:{port}/api", username="u", password="p")
    try:
        with pytest.raises(RegistryUnavailable) as info:
            SchemaRegistry(config).schema(7)
        assert info.value.refused and info.value.status == 403
        assert "the registry denied access of user 'u'" in str(info.value)
        assert SchemaRegistry(config).refusal() == str(info.value).replace(
            "GET /schemas/ids/7", "GET /subjects")
    finally:
        server.shutdown()
        server.server_close()
    assert SchemaRegistry(RegistryConfig(f"http://127.0.0.1:{port}/api", timeout=2)
                          ).refusal() is None  # nothing listens: left to the retry ladder
