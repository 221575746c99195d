"""The fixed wait-tier ladder: any retry policy maps onto the same few tiers, long or odd
delays hop down the ladder without ever waking before the due time, and old tier topics are
recognised (drained by workers, listed as removable by ``topics plan``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamjobs._names import retry_topic
from streamjobs._ops.topics import desired_topics, footprint
from streamjobs._retry import (
    DEFAULT_DELAY_TIERS,
    Exponential,
    RetryPolicy,
    old_tier_topics,
    pick_tier,
)
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._worker import App
from streamjobs._worker.routes import Routes

ROOT = Path(__file__).resolve().parents[2]


def walk(delay: float, tiers: tuple[float, ...] = DEFAULT_DELAY_TIERS) -> list[float]:
    """The tiers a record visits for ``delay`` seconds, as the worker moves it: each stay in
    tier T ends at min(due, append + T); a record not yet due moves to ``pick_tier``."""
    stays = []
    remaining = delay
    while True:
        tier = pick_tier(remaining, tiers)
        stays.append(tier)
        if tier >= remaining:  # wakes at its due time (the stay ends at min(due, ...))
            return stays
        remaining -= tier


@pytest.mark.parametrize("delay", [0.2, 1, 5, 7, 9.5, 30, 45, 90, 300, 599, 3599, 7200, 86400])
def test_every_delay_walks_the_ladder_without_overshooting(delay: float) -> None:
    stays = walk(delay)
    # Every full stay fits in what remains, so nothing wakes early and the wake times of a
    # tier partition stay monotonic (append + T); only the last stay may end at the due time.
    remaining = delay
    for tier in stays[:-1]:
        assert tier <= remaining
        remaining -= tier
    assert remaining <= stays[-1] or remaining < min(DEFAULT_DELAY_TIERS)
    assert sum(stays[:-1]) < delay


def test_hops_per_delay_are_bounded_by_the_ladder_ratio() -> None:
    # Between tiers 1s and 10s a delay takes at most 9 stays of 1s (+ the final one); a day
    # takes 24 stays in the 1h tier.
    assert walk(5) == [1.0] * 5
    assert walk(30) == [10.0, 10.0, 10.0]
    assert walk(90) == [60.0, 10.0, 10.0, 10.0]
    assert len(walk(86400)) == 24
    assert max(len(walk(d)) for d in range(1, 3600)) <= 9 + 5 + 9 + 5 + 1


def test_any_policy_maps_onto_the_fixed_tiers(tmp_path: Path) -> None:
    (tmp_path / "t.User.v1.avsc").write_text(
        '{"type": "record", "name": "User", "namespace": "t", "fields": '
        '[{"name": "id", "type": "string"}]}')
    (tmp_path / "catalogue.toml").write_text(
        '[jobs.a]\nschema = "t.User"\ntopic = "t.a"\nretry = { delays = ["7s", "13m"], '
        'max_attempts = 3 }\n'
        '[jobs.b]\nschema = "t.User"\ntopic = "t.b"\nretry = { exponential = { base = "1s", '
        'factor = 3, cap = "2h" }, max_attempts = 12 }\n')
    cat = Catalogue.load(tmp_path)
    assert RetryPolicy(exponential=Exponential(1, 3, 7200), max_attempts=12).tiers() != \
        DEFAULT_DELAY_TIERS  # the policy alone would want many more tiers
    for topic in ("t.a", "t.b"):
        assert cat.wait_tiers(topic) == DEFAULT_DELAY_TIERS
        assert footprint(cat)[topic] == {
            "topics": 7, "wait_tiers": ["1s", "10s", "1m", "10m", "1h"],
            "partitions": 42, "wait_partitions": 30}
    names = [s.name for s in desired_topics(cat) if s.role != "workers" and s.role != "status"]
    assert len(names) == 14


def test_old_tier_topics_are_found_by_name() -> None:
    names = ["demo.emails", "demo.emails.dlq", "demo.emails.retry.1s", "demo.emails.retry.5s",
             "demo.emails.retry.30s", "demo.emails.retry.10s", "demo.images.retry.5s",
             "demo.emails.retry.60s",  # not a canonical tier name: not ours
             "other"]
    assert old_tier_topics("demo.emails", DEFAULT_DELAY_TIERS, names) == {
        "demo.emails.retry.5s": 5.0, "demo.emails.retry.30s": 30.0}
    assert old_tier_topics("demo.images", DEFAULT_DELAY_TIERS, names) == {
        "demo.images.retry.5s": 5.0}
    assert old_tier_topics("demo.emails", (1.0, 5.0, 10.0, 30.0), names) == {}


def test_worker_routes_drain_old_tiers_but_never_write_them() -> None:
    app = App(ROOT / "schemas")

    @app.job("send_welcome_email")
    def send(payload: dict[str, object], ctx: object) -> None: ...

    @app.job("make_thumbnail")
    def thumb(payload: dict[str, object], ctx: object) -> None: ...

    routes = Routes(app, app.check(()))
    before = set(routes.subscriptions())
    assert routes.add_old_tiers(["demo.emails.retry.5s", "demo.emails.retry.10s",
                                 "demo.images.retry.30s", "unrelated"]) == {
        "demo.emails.retry.5s": 5.0, "demo.images.retry.30s": 30.0}
    assert set(routes.subscriptions()) - before == {"demo.emails.retry.5s",
                                                    "demo.images.retry.30s"}
    assert routes.job_topic_of("demo.emails.retry.5s") == "demo.emails"
    assert routes.wait["demo.images.retry.30s"] == ("demo.images", 30.0)
    # Records woken there move on to current tiers only.
    assert "demo.emails.retry.5s" not in routes.produced()
    assert routes.tiers["demo.emails"] == DEFAULT_DELAY_TIERS
    assert retry_topic("demo.emails", pick_tier(4.0, routes.tiers["demo.emails"])) == \
        "demo.emails.retry.1s"
