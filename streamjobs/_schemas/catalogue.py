"""The catalogue: job types as data, read from ``<schemas_dir>/catalogue.toml``.

A job type names its Avro record, its topic, an optional key field, a retry policy and topic
settings. The record's versions come from the schema files (``schemafiles.py``). Everything is
checked at load; errors are ``CatalogueError(file, entry, reason)``. Format: docs/catalogue.md.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .._avro.framing import FRAMINGS, REGISTRY, SINGLE_OBJECT
from .._durations import parse_duration
from .._limits import BreakerPolicy, RateLimit, parse_breaker, parse_concurrency, parse_rate
from .._names import dlq_topic, retry_topic, unique_topic
from .._priorities import PriorityLanes, parse_priorities
from .._retry import DEFAULT_DELAY_TIERS, RetryPolicy
from .._schedules import Schedule, parse_schedule
from .._settings import Settings
from .._unique import TICK_WINDOW_S, UniquePolicy, parse_unique
from ..errors import CatalogueError, ConfigError, UnknownJobType
from .files import SchemaVersion, load_versions

__all__ = ["CATALOGUE_FILE", "DEFAULT_STATUS", "STATUS_MODES", "Catalogue", "JobType",
           "SchemaVersion", "TopicSettings"]

CATALOGUE_FILE = "catalogue.toml"

_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_JOB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_SETTINGS_KEYS = {"partitions", "replication_factor", "retention", "retention_ms"}
_DEFAULT_KEYS = _SETTINGS_KEYS | {"retry", "permanent_errors", "status", "framing",
                                   "subject_strategy", "timeout"}
# Which status transitions a job type records (docs/status.md): every one, failures only
# (retrying, dead: the jobs needing attention; the worker's hot path writes nothing), none.
STATUS_MODES = ("all", "failures", "none")
DEFAULT_STATUS = "failures"
# How a registry subject is named: Confluent's TopicNameStrategy and RecordNameStrategy.
SUBJECT_STRATEGIES = ("topic", "record")
_JOB_KEYS = _DEFAULT_KEYS | {"schema", "topic", "key_field", "unique", "rate_limit",
                             "concurrency", "breaker", "priorities", "default_priority",
                             "priority_policy", "priority_weights"}


@dataclass(frozen=True)
class TopicSettings:
    partitions: int = 6
    replication_factor: int = 1
    retention_ms: int | None = None  # None: the broker's default


@dataclass(frozen=True)
class JobType:
    name: str
    schema: str  # full name of the Avro record
    topic: str
    key_field: str | None
    retry: RetryPolicy
    permanent_errors: tuple[str, ...]
    settings: TopicSettings
    status: str = DEFAULT_STATUS  # one of STATUS_MODES
    framing: str = SINGLE_OBJECT  # how emit frames the payload (framing.py)
    subject_strategy: str = "topic"  # registry subject: "<topic>-value" or the record name

    @property
    def subject(self) -> str:
        """The schema registry subject of this job type's schema."""
        return f"{self.topic}-value" if self.subject_strategy == "topic" else self.schema
    unique: UniquePolicy | None = None  # docs/catalogue.md "Unique jobs"
    timeout_s: float | None = None  # async handlers are cancelled past it (docs/worker.md)
    # Flow control (limits.py; README "Rate limits, concurrency and circuit breakers").
    rate_limit: RateLimit | None = None
    concurrency: int | None = None
    breaker: BreakerPolicy | None = None
    lanes: PriorityLanes | None = None  # priority lanes (priorities.py), one topic each

    @property
    def topics(self) -> tuple[str, ...]:
        """Its job topics: the topic, or one per priority lane (highest first)."""
        return self.lanes.topics(self.topic) if self.lanes is not None else (self.topic,)

    @property
    def partitions(self) -> int:
        return self.settings.partitions

    @property
    def replication_factor(self) -> int:
        return self.settings.replication_factor

    @property
    def retention_ms(self) -> int | None:
        return self.settings.retention_ms


class Catalogue:
    """Job types and schema versions of one schemas directory. Immutable after ``load``."""

    def __init__(self, schemas_dir: Path, jobs: Mapping[str, JobType],
                 versions: Mapping[str, tuple[SchemaVersion, ...]],
                 schedules: Mapping[str, Schedule] | None = None, *,
                 topic_prefix: str = "") -> None:
        self.schemas_dir = schemas_dir
        self.topic_prefix = topic_prefix  # already applied to every job's topic
        self._jobs = dict(jobs)
        self._versions = dict(versions)
        self.schedules: Mapping[str, Schedule] = dict(schedules or {})
        self._topics: dict[str, tuple[JobType, ...]] = {}
        for job in self._jobs.values():
            for topic in job.topics:
                self._topics[topic] = (*self._topics.get(topic, ()), job)

    @classmethod
    def load(cls, schemas_dir: str | Path, *, topic_prefix: str | None = None) -> Catalogue:
        """Loads ``<schemas_dir>/catalogue.toml`` and every schema version.

        ``topic_prefix`` is put before every job topic (and so before its retry and dead-letter
        topics): several environments or test runs can share one cluster. None (the default)
        means ``STREAMJOBS_TOPIC_PREFIX`` (``Settings.from_env()``), as for the CLI; ``""``
        means no prefix whatever the environment says.
        """
        if topic_prefix is None:
            topic_prefix = Settings.from_env().topic_prefix
        catalogue = _Loader(Path(schemas_dir)).load()
        return catalogue.with_topic_prefix(topic_prefix) if topic_prefix else catalogue

    def with_topic_prefix(self, prefix: str) -> Catalogue:
        """This catalogue with ``prefix`` instead of its own (prefixes never stack)."""
        if prefix == self.topic_prefix:
            return self
        cut = len(self.topic_prefix)
        jobs = {name: replace(job, topic=prefix + job.topic[cut:])
                for name, job in self._jobs.items()}
        for job in jobs.values():
            problem = _topic_problem(job.topic)
            if problem:
                raise CatalogueError(str(self.schemas_dir / CATALOGUE_FILE), job.name,
                                     f"topic prefix {prefix!r}: {problem}")
        return Catalogue(self.schemas_dir, jobs, self._versions, self.schedules,
                         topic_prefix=prefix)

    def with_framing(self, framing: str) -> Catalogue:
        """The same catalogue with every job type framed ``framing``."""
        jobs = {name: replace(job, framing=framing) for name, job in self._jobs.items()}
        return Catalogue(self.schemas_dir, jobs, self._versions, self.schedules,
                         topic_prefix=self.topic_prefix)

    # -- job types --------------------------------------------------------------------------

    def get(self, name: str) -> JobType:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJobType(name, self.names()) from None

    def __iter__(self) -> Iterator[JobType]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, name: object) -> bool:
        return name in self._jobs

    def names(self) -> tuple[str, ...]:
        return tuple(self._jobs)

    def for_topic(self, topic: str) -> tuple[JobType, ...]:
        return self._topics.get(topic, ())

    def job_topics(self) -> dict[str, TopicSettings]:
        return {topic: jobs[0].settings for topic, jobs in self._topics.items()}

    def unique_topics(self) -> dict[str, float]:
        """Job topics whose records are deduplicated (a unique job type, or the target of a
        schedule, whose ticks are deduplicated by job id) -> the longest window in seconds."""
        out: dict[str, float] = {}
        for job in self._jobs.values():
            if job.unique is not None:
                out[job.topic] = max(out.get(job.topic, 0.0), job.unique.window_s)
        for schedule in self.schedules.values():
            topic = self._jobs[schedule.job_type].topic
            out[topic] = max(out.get(topic, 0.0), TICK_WINDOW_S)
        return out

    def wait_tiers(self, topic: str) -> tuple[float, ...]:
        """Tiers of ``<topic>.retry.<tier>``: the fixed ``DEFAULT_DELAY_TIERS`` whatever the
        retry policies say. A delay that is not a tier hops through the largest tiers that
        fit (``retry.pick_tier``), so a job topic costs the same few topics (docs/topics.md,
        "Footprint") and its wait consumer reads the same few partitions."""
        del topic  # one ladder for every job topic; the argument keeps callers per-topic
        return DEFAULT_DELAY_TIERS

    # -- schemas ----------------------------------------------------------------------------

    def schema_names(self) -> tuple[str, ...]:
        """Full names of every versioned schema file (job records and shared types)."""
        return tuple(sorted(self._versions))

    def versions(self, schema: str) -> tuple[SchemaVersion, ...]:
        """All versions of ``schema``, oldest first (empty when unknown)."""
        return self._versions.get(schema, ())

    def current(self, schema: str) -> SchemaVersion:
        """The highest version of ``schema``: what writers write and readers read into."""
        versions = self._versions.get(schema)
        if not versions:
            raise KeyError(schema)
        return versions[-1]


class _Loader:
    def __init__(self, schemas_dir: Path) -> None:
        self.dir = schemas_dir
        self.file = str(schemas_dir / CATALOGUE_FILE)

    def error(self, entry: str | None, reason: str) -> CatalogueError:
        return CatalogueError(self.file, entry, reason)

    def load(self) -> Catalogue:
        path = self.dir / CATALOGUE_FILE
        if not path.is_file():
            raise self.error(None, "file not found (the catalogue lives in "
                                   f"<schemas dir>/{CATALOGUE_FILE})")
        text = path.read_text(encoding="utf-8")
        self._check_duplicate_jobs(text)
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise self.error(None, f"invalid TOML: {exc}") from None
        unknown = set(doc) - {"defaults", "jobs", "schedules"}
        if unknown:
            raise self.error(sorted(unknown)[0], "unknown section (expected defaults, jobs, "
                                                 "schedules)")
        versions = load_versions(self.dir)
        defaults = doc.get("defaults", {})
        self._check_table(defaults, "defaults", _DEFAULT_KEYS)
        jobs_doc = doc.get("jobs", {})
        if not isinstance(jobs_doc, dict) or not jobs_doc:
            raise self.error("jobs", "no job types: add at least one [jobs.<name>] table")
        jobs = {name: self._job(name, spec, defaults, versions)
                for name, spec in jobs_doc.items()}
        self._check_topics(jobs)
        return Catalogue(self.dir, jobs, versions, self._schedules(doc.get("schedules", {}), jobs))

    def _schedules(self, doc: Any, jobs: Mapping[str, JobType]) -> dict[str, Schedule]:
        if not isinstance(doc, dict):
            raise self.error("schedules", "must be a table of [schedules.<name>] tables")
        out: dict[str, Schedule] = {}
        for name, table in doc.items():
            try:
                schedule = parse_schedule(name, table)
            except ValueError as exc:
                raise self.error(f"schedules.{name}", str(exc)) from None
            if schedule.job_type not in jobs:
                raise self.error(f"schedules.{name}", f"job {schedule.job_type!r} is not a job "
                                 f"type of this catalogue")
            out[name] = schedule
        return out

    def _check_duplicate_jobs(self, text: str) -> None:
        # tomllib rejects duplicate tables too, but without naming the job type.
        seen: dict[str, int] = {}
        header = re.compile(r'^\s*\[\s*jobs\s*\.\s*(?:"([^"]+)"|([A-Za-z0-9_-]+))\s*\]\s*(#.*)?$')
        for lineno, line in enumerate(text.splitlines(), 1):
            m = header.match(line)
            if m is None:
                continue
            name = m.group(1) or m.group(2)
            if name in seen:
                raise self.error(f"jobs.{name}", f"duplicate job type (line {seen[name]} and "
                                                 f"line {lineno})")
            seen[name] = lineno

    def _check_table(self, table: Any, entry: str, allowed: set[str]) -> None:
        if not isinstance(table, dict):
            raise self.error(entry, "must be a table")
        unknown = set(table) - allowed
        if unknown:
            raise self.error(entry, f"unknown key {sorted(unknown)[0]!r} "
                                    f"(allowed: {', '.join(sorted(allowed))})")

    # -- jobs -------------------------------------------------------------------------------

    def _job(self, name: str, spec: Any, defaults: dict[str, Any],
             versions: Mapping[str, tuple[SchemaVersion, ...]]) -> JobType:
        entry = f"jobs.{name}"
        if not _JOB_NAME.match(name):
            raise self.error(entry, "job type names are letters, digits, '_', '.', '-', "
                                    "starting with a letter or '_'")
        self._check_table(spec, entry, _JOB_KEYS)
        merged = {**defaults, **spec}  # a job's key replaces the default's key as a whole
        for key in ("schema", "topic"):
            if not isinstance(merged.get(key), str) or not merged[key]:
                raise self.error(entry, f"{key!r} is required (a string)")
        schema, topic = merged["schema"], merged["topic"]
        if schema not in versions:
            raise self.error(entry, f"schema {schema!r} not found: expected a file "
                                    f"{schema}.v1.avsc in {self.dir}")
        current = versions[schema][-1]
        if current.schema.get("type") not in ("record", "error"):
            raise self.error(entry, f"schema {schema!r} must be an Avro record")
        problem = _topic_problem(topic)
        if problem:
            raise self.error(entry, problem)
        key_field = merged.get("key_field")
        if key_field is not None:
            names = [f["name"] for f in current.schema["fields"]]
            if key_field not in names:
                raise self.error(entry, f"key_field {key_field!r} is not a field of {schema} "
                                        f"v{current.version} (fields: {', '.join(names)})")
        try:
            retry = RetryPolicy.from_mapping(merged.get("retry", {}), f"{entry}.retry")
        except ConfigError as exc:
            raise self.error(entry, f"{exc.field}: {exc.reason}") from None
        permanent = merged.get("permanent_errors", [])
        if not isinstance(permanent, list) or not all(
                isinstance(p, str) and _CLASS_NAME.match(p) for p in permanent):
            raise self.error(entry, "permanent_errors must be a list of exception class names "
                                    "('module.Class' or 'Class')")
        unique = None
        if "unique" in spec:
            try:
                unique = parse_unique(spec["unique"])
            except ValueError as exc:
                raise self.error(entry, str(exc)) from None
        try:
            lanes = parse_priorities(spec)
        except ConfigError as exc:
            raise self.error(entry, f"{exc.field}: {exc.reason}") from None
        if lanes is not None and unique is not None:
            raise self.error(entry, "priorities: a unique job type has one topic (duplicates "
                                    "are detected there); it cannot have lanes")
        timeout = None
        if "timeout" in merged:
            try:
                timeout = parse_duration(merged["timeout"])
            except ValueError as exc:
                raise self.error(entry, f"timeout: {exc}") from None
            if timeout <= 0:
                raise self.error(entry, "timeout must be > 0")
        try:
            rate = parse_rate(spec["rate_limit"]) if "rate_limit" in spec else None
            concurrency = (parse_concurrency(spec["concurrency"]) if "concurrency" in spec
                           else None)
            breaker = parse_breaker(spec["breaker"]) if "breaker" in spec else None
        except ValueError as exc:
            raise self.error(entry, str(exc)) from None
        if lanes is not None and (rate or concurrency or breaker):
            # Both hold partitions through the same pause; one per job type until they share it.
            raise self.error(entry, "priorities: a job type with lanes cannot also have "
                                    "rate_limit, concurrency or breaker (not supported yet)")
        status = merged.get("status", DEFAULT_STATUS)
        if status not in STATUS_MODES:
            raise self.error(entry, f"status must be one of {', '.join(STATUS_MODES)}, "
                                    f"got {status!r}")
        framing = merged.get("framing", SINGLE_OBJECT)
        if framing not in FRAMINGS:
            raise self.error(entry, f"framing must be one of {', '.join(FRAMINGS)}, "
                                    f"got {framing!r}")
        strategy = merged.get("subject_strategy", "topic")
        if strategy not in SUBJECT_STRATEGIES:
            raise self.error(entry, f"subject_strategy must be one of "
                                    f"{', '.join(SUBJECT_STRATEGIES)}, got {strategy!r}")
        return JobType(name=name, schema=schema, topic=topic, key_field=key_field, retry=retry,
                       permanent_errors=tuple(permanent), settings=self._settings(entry, merged),
                       framing=framing, subject_strategy=strategy, status=status,
                       unique=unique, timeout_s=timeout, rate_limit=rate,
                       concurrency=concurrency, breaker=breaker, lanes=lanes)

    def _settings(self, entry: str, merged: dict[str, Any]) -> TopicSettings:
        values: dict[str, Any] = {}
        for key in ("partitions", "replication_factor"):
            if key in merged:
                v = merged[key]
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise self.error(entry, f"{key} must be an integer >= 1, got {v!r}")
                values[key] = v
        if "retention" in merged and "retention_ms" in merged:
            raise self.error(entry, "give retention or retention_ms, not both")
        if "retention" in merged:
            try:
                values["retention_ms"] = round(parse_duration(merged["retention"]) * 1000)
            except ValueError as exc:
                raise self.error(entry, f"retention: {exc}") from None
        elif "retention_ms" in merged:
            v = merged["retention_ms"]
            if isinstance(v, bool) or not isinstance(v, int) or (v < 0 and v != -1):
                raise self.error(entry, f"retention_ms must be an integer >= 0 or -1 "
                                        f"(forever), got {v!r}")
            values["retention_ms"] = v
        return TopicSettings(**values)

    def _check_topics(self, jobs: Mapping[str, JobType]) -> None:
        catalogue = Catalogue(self.dir, jobs, {})
        collide: dict[str, str] = {}
        for job in jobs.values():
            topic, settings = job.topic, job.settings
            if job.lanes is not None:
                for lane_t in job.topics:
                    if catalogue.for_topic(lane_t) != (job,):
                        raise self.error(f"jobs.{job.name}", f"priorities: topic {lane_t!r} "
                                         "is shared with another job type; a job type with "
                                         "lanes has its topics to itself")
            for other in catalogue.for_topic(topic):
                if other.settings != settings:
                    raise self.error(f"jobs.{other.name}", f"topic {topic!r} is shared with "
                                     f"other job types but its partitions/replication/retention "
                                     f"differ ({settings} vs {other.settings})")
                # One "<topic>-value" subject cannot hold the histories of two records.
                if (other.schema != job.schema and REGISTRY in (other.framing, job.framing)
                        and "topic" in (other.subject_strategy, job.subject_strategy)):
                    raise self.error(f"jobs.{other.name}", f"topic {topic!r} carries several "
                                     f"schemas with registry framing: its job types need "
                                     f"subject_strategy = \"record\" (one subject per record)")
            # Kafka refuses topics whose names differ only by '.' vs '_' (metric names collide).
            norm = topic.replace(".", "_")
            if collide.setdefault(norm, topic) != topic:
                raise self.error(f"jobs.{catalogue.for_topic(topic)[0].name}",
                                 f"topic {topic!r} collides with {collide[norm]!r} ('.' and '_' "
                                 f"are the same to Kafka)")
        for topic, jobs_of_topic in catalogue._topics.items():
            derived = [dlq_topic(topic), unique_topic(topic), *(retry_topic(topic, t)
                                           for t in catalogue.wait_tiers(topic))]
            for name in derived:
                problem = _topic_problem(name)
                if problem:
                    raise self.error(f"jobs.{jobs_of_topic[0].name}",
                                     f"derived topic {name!r}: {problem}")
                if name in catalogue._topics:
                    raise self.error(f"jobs.{catalogue._topics[name][0].name}",
                                     f"topic {name!r} is the retry/dead-letter topic of {topic!r}")

    # -- schema files -----------------------------------------------------------------------


def _topic_problem(topic: str) -> str | None:
    if not _TOPIC.match(topic) or topic in (".", ".."):
        return (f"invalid Kafka topic name {topic!r} (1-249 of a-z A-Z 0-9 . _ -, "
                f"not '.' or '..')")
    return None
