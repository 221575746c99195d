"""Fixtures of the fault suite and its closing summary (one line of figures per scenario)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamjobs._config import KafkaConfig
from streamjobs._dev.broker import DevBroker
from tests.faults.harness import RESULTS, SCALE, Scenario
from tests.ports import free_port_block

MakeScenario = Callable[..., Scenario]


@pytest.fixture
def make_scenario(tmp_path: Path) -> Iterator[MakeScenario]:
    """``make_scenario(name, config, **options)``: a Scenario whose workers, sampler and topics
    are cleaned up after the test."""
    made: list[Scenario] = []

    def make(name: str, config: KafkaConfig, **options: Any) -> Scenario:
        s = Scenario(name, tmp_path / name, config, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()
        s.delete_topics()


_COLUMNS = ("acked", "kills", "lost", "duplicates", "exposure_in_flight",
            "exposure_finished_uncommitted", "reruns", "dead_lettered", "early",
            "lateness_max_ms", "offset_regressions", "offset_skips", "unconfirmed_resent",
            "seconds")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.write_sep("=", f"fault scenarios (scale={SCALE})")
    for r in RESULTS:
        figures = "  ".join(f"{c}={r.get(c)}" for c in _COLUMNS if r.get(c) is not None)
        terminalreporter.write_line(f"{r['scenario']}: {figures}")


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Callable[[int], DevBroker]]:
    """``own_broker(nodes)``: a private DevBroker (cluster) on free ports in a tmp directory,
    for scenarios that kill brokers (the shared broker is never touched). Wiped afterwards."""
    started: list[DevBroker] = []

    def start(nodes: int) -> DevBroker:
        broker = DevBroker(free_port_block(2 * nodes), nodes=nodes, root=tmp_path / "dev")
        started.append(broker)
        broker.up(timeout=180)
        return broker

    yield start
    for b in started:
        b.down(wipe=True)
