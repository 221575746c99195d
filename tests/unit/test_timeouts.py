"""Job timeouts: the catalogue setting, the per-handler override, the cancelling of an async
handler (JobTimeout into the retry path)."""

from __future__ import annotations

import asyncio
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App
from streamjobs._worker.executor import Executor
from streamjobs._worker.ordering import Lanes
from streamjobs.errors import ConfigError, JobTimeout
from streamjobs.events import EventBus, JobTimedOut
from tests.unit.test_catalogue import GOOD, load_error, make_dir


def test_timeout_from_defaults_and_jobs(tmp_path: Path) -> None:
    toml = '[defaults]\ntimeout = "30s"\n' + GOOD + '[jobs.b]\nschema = "t.User"\n' \
        'topic = "t.b"\ntimeout = "250ms"\n'
    cat = Catalogue.load(make_dir(tmp_path, toml))
    assert cat.get("a").timeout_s == 30.0
    assert cat.get("b").timeout_s == 0.25
    err = load_error(make_dir(tmp_path, GOOD + 'timeout = "0s"\n'))
    assert err.entry == "jobs.a" and "timeout must be > 0" in err.reason
    err = load_error(make_dir(tmp_path, GOOD + 'timeout = "later"\n'))
    assert "timeout: invalid duration" in err.reason


def test_handler_timeout_overrides_and_is_checked() -> None:
    app = App("unused")

    @app.job("a", timeout=2.5)
    def a(payload: dict[str, Any], ctx: Any) -> None: ...

    assert app.handlers["a"].timeout == 2.5
    with pytest.raises(ConfigError, match=r"handlers\.b\.timeout"):
        app.job("b", timeout=0)


class _Ctx:
    """What ``Executor._call_async`` reads of a job context."""

    def __init__(self, func: Any, timeout: float | None, catalogue_timeout: float | None) -> None:
        app = App("unused")
        app.job("t", timeout=timeout)(func)
        self._handler = app.handlers["t"]
        self._job = type("J", (), {"timeout_s": catalogue_timeout})()
        self.payload: dict[str, Any] = {}
        self.job_id, self.job_type, self.topic = "id", "t", "topic"
        self.partition, self.offset, self.attempt = 0, 7, 1


def _run(ctx: _Ctx) -> list[Any]:
    bus = EventBus()
    seen: list[Any] = []
    bus.subscribe(seen.append, JobTimedOut)
    ex = Executor(1, bus, Lanes(), deque(), use_async=False)
    try:
        asyncio.run(ex._call_async(ctx))  # type: ignore[arg-type]
    finally:
        ex.shutdown()
    return seen


def test_async_handler_past_its_timeout_is_cancelled() -> None:
    cancelled: list[bool] = []

    async def hang(payload: dict[str, Any], ctx: Any) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with pytest.raises(JobTimeout) as info:
        _run(_Ctx(hang, None, 0.05))  # the catalogue's timeout
    assert info.value.timeout_s == 0.05 and cancelled == [True]


def test_handler_timeout_wins_and_fast_handlers_pass() -> None:
    async def quick(payload: dict[str, Any], ctx: Any) -> None:
        await asyncio.sleep(0.01)

    assert _run(_Ctx(quick, 5.0, 0.001)) == []  # the handler's 5 s beats the catalogue's 1 ms


def test_a_handlers_own_timeout_error_is_not_a_job_timeout() -> None:
    async def own(payload: dict[str, Any], ctx: Any) -> None:
        raise TimeoutError("upstream API")

    with pytest.raises(TimeoutError, match="upstream API"):
        _run(_Ctx(own, 5.0, None))
