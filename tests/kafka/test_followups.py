"""Follow-up jobs (``ctx.emit``) in at-least-once mode, on the real broker."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

from streamjobs import _headers as h
from streamjobs._names import dlq_topic
from tests.conftest import wait_for

from .followup_support import ChainWorker, at_end, chain_env, meta, read_all
from .worker_support import Env, env_fixture  # noqa: F401

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("job_type", ["parent", "aparent"])
def test_followups_carry_trace_and_parent_id(env: Env, monkeypatch: pytest.MonkeyPatch,
                                             job_type: str) -> None:
    """Each follow-up a handler (sync or async) emits reaches its topic once, with the
    parent's ``traceparent`` and its job id in ``sj-parent-id``, under the key it was given;
    the parents' offsets are committed to the end."""
    env = chain_env(env)
    env.create_topics(job_type, "child")
    ids = [env.emit(job_type, key=f"k{i}", headers={h.TRACEPARENT: TP}) for i in range(12)]
    env.flush()
    w = ChainWorker(env, monkeypatch, job_types=(job_type,))
    try:
        wait_for(lambda: {x["id"] for x in env.lines()} >= set(ids), 40, what="parents run")
        ends = env.end_offsets(env.topic(job_type))
        wait_for(lambda: env.committed(env.topic(job_type)) == ends, 20, what="commits")
    finally:
        w.stop()
    parents = {x["id"]: x for x in env.lines()}
    children = read_all(env, env.topic("child"))
    assert len(children) == len(ids)
    for m in children:
        hdrs = dict(m.headers())
        parent_id = hdrs[h.PARENT_ID].decode()
        assert hdrs[h.TRACEPARENT].decode() == TP
        assert meta(m).job_type == "child"
        match = [p for p in parents.values() if p["job_id"] == parent_id]
        assert len(match) == 1, parent_id
        assert m.key() == match[0]["key"].encode()


def test_parent_offset_waits_for_followup_ack(env: Env,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A parent whose handler returned is not finished while the broker refuses its
    follow-up (the child topic's max.message.bytes lowered under the record): its offset is
    not committed; once the broker accepts the follow-up (sent again), it is."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    child, parents = env.topic("child"), env.topic("parent")
    first = env.emit("parent", key="k0")
    env.flush()
    w = ChainWorker(env, monkeypatch, commit_interval=0.2)
    try:
        wait_for(lambda: first in {x["id"] for x in env.lines()}, 40, what="first parent")
        wait_for(lambda: at_end(env, parents), 20, what="first commit")
        _topic_config(env, child, "max.message.bytes", "64")
        before = env.committed(parents)
        ids = [env.emit("parent", key=f"k{i}") for i in range(3)]
        env.flush()
        ends = env.end_offsets(parents)
        wait_for(lambda: {x["id"] for x in env.lines()} >= set(ids), 40, what="parents run")
        time.sleep(3)  # 15 commit intervals
        committed = env.committed(parents)
        assert all(committed[p] < end for p, end in ends.items() if end > max(before[p], 0)), (
            committed, ends)
        assert len(read_all(env, child, idle=1)) == 1
        _topic_config(env, child, "max.message.bytes", "1048588")
        wait_for(lambda: at_end(env, parents), 40, what="commits")
    finally:
        w.stop()
    assert env.end_offsets(parents) == ends
    assert len(read_all(env, child)) == 4


def test_failed_parent_leaves_followups_sent(env: Env,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """At-least-once: a parent that fails after emitting keeps the follow-up it sent, and its
    retry emits another (two children with the same parent id, different job ids); an invalid
    follow-up raises in the handler with nothing sent (the parent dead-letters)."""
    env = chain_env(env)
    env.create_topics("parent", "child")
    retried = env.emit("parent", key="a", fail="after_emit", fail_attempts=1)
    bad = env.emit("parent", key="b", fail="bad_child", fail_attempts=9)
    env.flush()
    w = ChainWorker(env, monkeypatch)
    try:
        wait_for(lambda: retried in {x["id"] for x in env.lines()}, 40, what="retried parent")
        dead: list[Any] = wait_for(  # type: ignore[assignment]
            lambda: read_all(env, dlq_topic(env.topic("parent")), idle=1), 40,
            what="bad parent dead-lettered")
    finally:
        w.stop()
    assert bad not in {x["id"] for x in env.lines()}
    assert dict(dead[0].headers())[h.ERROR_CLASS] == b"streamjobs.errors.PayloadError"
    children = read_all(env, env.topic("child"))
    assert len(children) == 2, [dict(m.headers()) for m in children]
    assert len({dict(m.headers())[h.PARENT_ID] for m in children}) == 1
    assert len({meta(m).job_id for m in children}) == 2


def _topic_config(env: Env, topic: str, name: str, value: str) -> None:
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[ConfigEntry(
        name, value, incremental_operation=AlterConfigOpType.SET)])
    for fut in env.admin.incremental_alter_configs([res]).values():
        fut.result(timeout=30)

