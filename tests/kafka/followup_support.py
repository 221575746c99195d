"""Helpers of the follow-up tests: the chain app's private topics and an in-process worker."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from streamjobs import _headers as h
from streamjobs._schemas.catalogue import Catalogue

from .worker_support import AppWorker, Env

CHAIN_APP = "tests.apps.chain:app"
CHAIN_SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "chain_schemas"


def chain_env(env: Env) -> Env:
    env.catalogue = Catalogue.load(CHAIN_SCHEMAS)
    return env


class ChainWorker(AppWorker):
    """A worker of the chain app running in a thread of the test process."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch, **settings: Any) -> None:
        from tests.apps.chain import app

        super().__init__(env, monkeypatch, app, ("parent",), **settings)


def read_all(env: Env, topic: str, *, committed: bool = False, idle: float = 3.0,
             timeout: float = 30) -> list[Any]:
    """Every record of ``topic`` until none came for ``idle`` seconds (``committed``: as a
    ``read_committed`` consumer sees them)."""
    import time

    c = Consumer({**env.kafka.client_settings(), "group.id": f"reader-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed" if committed else "read_uncommitted"})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    quiet = time.monotonic() + idle
    try:
        while time.monotonic() < min(deadline, quiet):
            for m in c.consume(100, 0.3):
                if m.error() is None:
                    out.append(m)
                    quiet = time.monotonic() + idle
    finally:
        c.close()
    return out


def meta(m: Any) -> h.JobMeta:
    return h.JobMeta.from_headers(m.headers() or [], m.timestamp()[1])


def at_end(env: Env, topic: str) -> bool:
    """The group's committed offsets are at the end of every non-empty partition."""
    committed = env.committed(topic)
    return all(committed[p] == end for p, end in env.end_offsets(topic).items() if end)
