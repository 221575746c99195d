"""The schema registry of the registry tests: ``STREAMJOBS_TEST_REGISTRY_URL`` when it answers,
else Apicurio started through our own ``streamjobs._dev`` code, once per test session, on a free
port, with its state in a temporary directory; stopped at exit (only what this module started).
A registry that cannot start fails the tests, never skips them.
"""

from __future__ import annotations

import atexit
import os
import tempfile
from pathlib import Path

import pytest

from streamjobs._dev.registry import DevRegistry, answers
from streamjobs.errors import DevBrokerError
from tests.ports import free_port_block

_started: list[DevRegistry] = []
_url: list[str] = []


def _stop() -> None:
    for registry in _started:
        registry.down()


def registry_for_tests() -> DevRegistry | None:
    """The registry this session started (None when an external one is used)."""
    return _started[0] if _started else None


@pytest.fixture(name="registry_url")
def registry_url_fixture() -> str:
    """URL of the Confluent-compatible API of a running schema registry."""
    if _url:
        return _url[0]
    given = os.environ.get("STREAMJOBS_TEST_REGISTRY_URL")
    if given:
        if not answers(given, timeout=5):
            pytest.fail(f"STREAMJOBS_TEST_REGISTRY_URL={given} does not answer")
        _url.append(given)
        return given
    root = Path(tempfile.mkdtemp(prefix="sj-registry-"))
    registry = DevRegistry(free_port_block(1), root=root)
    try:
        registry.up(timeout=180)
    except DevBrokerError as exc:
        registry.down()
        pytest.fail(f"the schema registry could not start: {exc}")
    _started.append(registry)
    atexit.register(_stop)
    _url.append(registry.url)
    return registry.url
