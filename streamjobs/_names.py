"""The name of every topic and consumer group streamjobs reads or writes.

A job topic comes from the catalogue (with the environment's topic prefix already applied);
every other name derives from it or from the prefix here, so tools, worker and docs agree:

    <topic>                       the job topic (catalogue)
    <topic>.retry.<tier>          a wait tier (``retry_topic``; tiers as ``format_duration``)
    <topic>.dlq                   dead letters (``dlq_topic``)
    <topic>.dlq.reprocessed       progress of ``dlq reprocess`` (``progress_topic``)
    <topic>.unique                uniqueness claims (``unique_topic``)
    <topic>.p-<lane>              a priority lane other than the default (``lane_topic``;
                                  a job topic of its own, with its tiers and DLQ)
    <prefix>streamjobs.status     job status records (``status_topic``)
    <prefix>streamjobs.workers    worker reports (``reports_topic``)
    <prefix>streamjobs.schedules  fired schedule ticks, also the schedulers' group
    <prefix>streamjobs-<app>      a worker group by default (``default_group_id``)
    <group>.wait                  the group of its wait-tier consumers (``wait_group``)
"""

from __future__ import annotations

import re

from ._durations import format_duration, parse_duration

__all__ = [
    "SCAN_GROUP",
    "SCHEDULES_TOPIC",
    "STATUS_TOPIC",
    "WORKERS_TOPIC",
    "default_group_id",
    "dlq_topic",
    "is_dlq_topic",
    "lane_topic",
    "parse_wait_topic",
    "progress_topic",
    "reports_topic",
    "retry_topic",
    "schedules_topic",
    "status_topic",
    "transactional_id",
    "unique_topic",
    "wait_group",
]

STATUS_TOPIC = "streamjobs.status"
WORKERS_TOPIC = "streamjobs.workers"
SCHEDULES_TOPIC = "streamjobs.schedules"
# librdkafka wants a group id even for assign(); the tools' readers commit nothing under it.
SCAN_GROUP = "streamjobs-scan"

_WAIT = re.compile(r"^(?P<topic>.+)\.retry\.(?P<tier>\d+(?:ms|s|m|h|d))$")


def retry_topic(topic: str, tier: float) -> str:
    """The wait topic of ``topic`` for ``tier`` seconds: ``demo.emails.retry.30s``."""
    return f"{topic}.retry.{format_duration(tier)}"


def parse_wait_topic(name: str) -> tuple[str, float] | None:
    """``("demo.emails", 30.0)`` for ``"demo.emails.retry.30s"``; None for other names.
    Only canonical tier spellings (as ``format_duration`` writes them) are accepted."""
    m = _WAIT.match(name)
    if m is None:
        return None
    tier = parse_duration(m.group("tier"))
    if retry_topic(m.group("topic"), tier) != name:
        return None
    return m.group("topic"), tier


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"


def is_dlq_topic(name: str) -> bool:
    return name.endswith(".dlq")


def progress_topic(dlq: str) -> str:
    return f"{dlq}.reprocessed"


def transactional_id(dlq: str) -> str:
    """The one transactional id of every executing run over ``dlq``: a new run fences the
    previous one."""
    return f"streamjobs-reprocess-{dlq}"


def lane_topic(topic: str, lane: str) -> str:
    """The job topic of a non-default priority lane: ``demo.emails.p-high``."""
    return f"{topic}.p-{lane}"


def unique_topic(job_topic: str) -> str:
    return f"{job_topic}.unique"


def status_topic(prefix: str = "") -> str:
    """The status topic of an environment (``prefix`` as for every catalogue topic)."""
    return prefix + STATUS_TOPIC


def reports_topic(prefix: str = "") -> str:
    """The compacted topic of worker reports under a topic prefix."""
    return prefix + WORKERS_TOPIC


def schedules_topic(prefix: str = "") -> str:
    """The single-partition compacted topic of fired ticks (also the schedulers' group id)."""
    return prefix + SCHEDULES_TOPIC


def default_group_id(app_name: str, topic_prefix: str = "") -> str:
    """The worker group of an app when none is given: ``<prefix>streamjobs-<app name>``."""
    return f"{topic_prefix}streamjobs-{app_name}"


def wait_group(group_id: str) -> str:
    """The consumer group of a worker group's wait-tier consumers."""
    return f"{group_id}.wait"
