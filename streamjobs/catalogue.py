"""The catalogue: job types as data, read from ``<schemas_dir>/catalogue.toml`` and ``*.avsc``.

A job type names its Avro record, its topic, an optional key field, a retry policy and topic
settings. Schema files keep history by construction: one file per version,
``<full name>.v<N>.avsc``; the highest version is the current one, older ones stay so every
writer fingerprint ever used can still be read. Named types shared between files are versioned
the same way and pinned by each file that references them (``"uses": {"demo.Address": 1}``),
so changing a shared type never silently changes an old version. See docs/catalogue.md.

Everything is checked at load; errors are ``CatalogueError(file, entry, reason)``.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import to_parsing_canonical_form

from .errors import CatalogueError, ConfigError, UnknownJobType
from .retry import DEFAULT_DELAY_TIERS, RetryPolicy, dlq_topic, parse_duration, retry_topic

__all__ = ["CATALOGUE_FILE", "Catalogue", "JobType", "SchemaVersion", "TopicSettings"]

CATALOGUE_FILE = "catalogue.toml"

_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                        r"\.v(?P<version>[1-9][0-9]*)\.avsc$")
_TOPIC = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_JOB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,199}$")
_CLASS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
_SETTINGS_KEYS = {"partitions", "replication_factor", "retention", "retention_ms"}
_DEFAULT_KEYS = _SETTINGS_KEYS | {"retry", "permanent_errors"}
_JOB_KEYS = _DEFAULT_KEYS | {"schema", "topic", "key_field"}


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

    @property
    def partitions(self) -> int:
        return self.settings.partitions

    @property
    def replication_factor(self) -> int:
        return self.settings.replication_factor

    @property
    def retention_ms(self) -> int | None:
        return self.settings.retention_ms


@dataclass(frozen=True)
class SchemaVersion:
    """One ``<name>.v<version>.avsc`` file, with pinned shared types expanded inline."""

    name: str
    version: int
    file: Path
    schema: dict[str, Any] = field(repr=False)  # self-contained Avro JSON (no "uses")
    parsed: dict[str, Any] = field(repr=False)  # fastavro.parse_schema(schema)
    canonical: str = field(repr=False)  # Parsing Canonical Form (what the fingerprint hashes)


class Catalogue:
    """Job types and schema versions of one schemas directory. Immutable after ``load``."""

    def __init__(self, schemas_dir: Path, jobs: Mapping[str, JobType],
                 versions: Mapping[str, tuple[SchemaVersion, ...]]) -> None:
        self.schemas_dir = schemas_dir
        self._jobs = dict(jobs)
        self._versions = dict(versions)
        self._topics: dict[str, tuple[JobType, ...]] = {}
        for job in self._jobs.values():
            self._topics[job.topic] = (*self._topics.get(job.topic, ()), job)

    @classmethod
    def load(cls, schemas_dir: str | Path) -> Catalogue:
        return _Loader(Path(schemas_dir)).load()

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

    def wait_tiers(self, topic: str) -> tuple[float, ...]:
        """Tiers of ``<topic>.retry.<tier>``: the policies' tiers plus the default tiers."""
        tiers = set(DEFAULT_DELAY_TIERS)
        for job in self.for_topic(topic):
            tiers.update(job.retry.tiers())
        return tuple(sorted(tiers))

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
        self.raw: dict[str, dict[int, tuple[Path, dict[str, Any]]]] = {}

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
        unknown = set(doc) - {"defaults", "jobs"}
        if unknown:
            raise self.error(sorted(unknown)[0], "unknown section (expected defaults, jobs)")
        versions = self._load_schemas()
        defaults = doc.get("defaults", {})
        self._check_table(defaults, "defaults", _DEFAULT_KEYS)
        jobs_doc = doc.get("jobs", {})
        if not isinstance(jobs_doc, dict) or not jobs_doc:
            raise self.error("jobs", "no job types: add at least one [jobs.<name>] table")
        jobs = {name: self._job(name, spec, defaults, versions)
                for name, spec in jobs_doc.items()}
        self._check_topics(jobs)
        return Catalogue(self.dir, jobs, versions)

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
        return JobType(name=name, schema=schema, topic=topic, key_field=key_field, retry=retry,
                       permanent_errors=tuple(permanent), settings=self._settings(entry, merged))

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
        for topic, settings in ((j.topic, j.settings) for j in jobs.values()):
            for other in catalogue.for_topic(topic):
                if other.settings != settings:
                    raise self.error(f"jobs.{other.name}", f"topic {topic!r} is shared with "
                                     f"other job types but its partitions/replication/retention "
                                     f"differ ({settings} vs {other.settings})")
            # Kafka refuses topics whose names differ only by '.' vs '_' (metric names collide).
            norm = topic.replace(".", "_")
            if collide.setdefault(norm, topic) != topic:
                raise self.error(f"jobs.{catalogue.for_topic(topic)[0].name}",
                                 f"topic {topic!r} collides with {collide[norm]!r} ('.' and '_' "
                                 f"are the same to Kafka)")
        for topic, jobs_of_topic in catalogue._topics.items():
            derived = [dlq_topic(topic), *(retry_topic(topic, t)
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

    def _load_schemas(self) -> dict[str, tuple[SchemaVersion, ...]]:
        for path in sorted(self.dir.rglob("*.avsc")):
            m = _FILE_NAME.match(path.name)
            if m is None:
                raise CatalogueError(str(path), None, "schema files must be named "
                                     "<full name>.v<N>.avsc, e.g. demo.WelcomeEmail.v1.avsc")
            name, version = m.group("name"), int(m.group("version"))
            if version in self.raw.get(name, {}):
                raise CatalogueError(str(path), None, f"duplicate of "
                                     f"{self.raw[name][version][0]}")
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CatalogueError(str(path), None, f"invalid JSON: {exc}") from None
            if not isinstance(doc, dict) or doc.get("type") not in _NAMED:
                raise CatalogueError(str(path), None, "must hold one named Avro type "
                                     "(record, enum or fixed)")
            full = _full_name(doc, "")
            if full != name:
                raise CatalogueError(str(path), None, f"defines {full!r} but the file name "
                                     f"says {name!r}")
            self.raw.setdefault(name, {})[version] = (path, doc)
        out: dict[str, tuple[SchemaVersion, ...]] = {}
        for name, by_version in sorted(self.raw.items()):
            numbers = sorted(by_version)
            if numbers != list(range(1, len(numbers) + 1)):
                missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
                raise CatalogueError(str(by_version[numbers[-1]][0]), None,
                                     f"version(s) {', '.join(f'v{n}' for n in missing)} of "
                                     f"{name} missing: never delete old versions, records "
                                     f"written with them may still be in Kafka")
            out[name] = tuple(self._version(name, n) for n in numbers)
        return out

    def _version(self, name: str, version: int) -> SchemaVersion:
        path, doc = self.raw[name][version]
        try:
            pins = self._pins(name, version, ())
            schema = _Expander(pins, self.raw).expand_top(doc)
            parsed = cast("dict[str, Any]", fastavro.parse_schema(copy.deepcopy(schema)))
            canonical = to_parsing_canonical_form(parsed)
            _check_arrays(parsed, parsed.get("__named_schemas", {}))
        except CatalogueError as exc:
            raise CatalogueError(str(path), exc.entry, exc.reason) from None
        except Exception as exc:  # fastavro's SchemaParseException and friends
            raise CatalogueError(str(path), None, f"invalid Avro schema: {exc}") from None
        return SchemaVersion(name, version, path, schema, parsed, canonical)

    def _pins(self, name: str, version: int, chain: tuple[str, ...]) -> dict[str, int]:
        """Shared-type versions pinned by ``name`` v``version``, transitively."""
        doc = self.raw[name][version][1]
        uses = doc.get("uses", {})
        if not isinstance(uses, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in uses.values()):
            raise CatalogueError("", "uses", 'must map type names to versions: '
                                 '{"demo.Address": 1}')
        pins: dict[str, int] = {}
        for used, used_version in uses.items():
            if used in chain or used == name:
                raise CatalogueError("", "uses", f"cycle: {' -> '.join((*chain, name, used))}")
            if used_version not in self.raw.get(used, {}):
                raise CatalogueError("", "uses", f"{used} v{used_version} not found (expected "
                                     f"a file {used}.v{used_version}.avsc)")
            for n, v in {used: used_version, **self._pins(used, used_version,
                                                          (*chain, name))}.items():
                if pins.setdefault(n, v) != v:
                    raise CatalogueError("", "uses", f"{n} pinned to both v{pins[n]} and v{v}")
        return pins


class _Expander:
    """Inlines pinned shared types at their first use, so each version is self-contained:
    its fingerprint covers the shared types and other Avro tools can read it as is."""

    def __init__(self, pins: dict[str, int],
                 raw: dict[str, dict[int, tuple[Path, dict[str, Any]]]]) -> None:
        self.pins = pins
        self.raw = raw
        self.defined: set[str] = set()

    def expand_top(self, doc: dict[str, Any]) -> dict[str, Any]:
        out = self.expand({k: v for k, v in doc.items() if k != "uses"}, "")
        unused = set(self.pins) - self.defined
        if unused:
            raise CatalogueError("", "uses", f"{', '.join(sorted(unused))} pinned but not used")
        assert isinstance(out, dict)
        return out

    def expand(self, node: Any, ns: str) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = node if "." in node else (f"{ns}.{node}" if ns else node)
            if full in self.defined:
                return full
            if full in self.pins:
                shared = self.raw[full][self.pins[full]][1]
                body = {k: v for k, v in shared.items() if k not in ("uses", "namespace")}
                body["name"] = full  # a dotted name carries its namespace
                return self.expand(body, ns)
            raise CatalogueError("", None, f"unknown type {node!r}: define it, or pin a shared "
                                           f'type with "uses": {{"{full}": <version>}}')
        if isinstance(node, list):
            return [self.expand(item, ns) for item in node]
        if not isinstance(node, dict):
            return node
        out = dict(node)
        kind = node.get("type")
        if kind in _NAMED:
            full = _full_name(node, ns)
            if full in self.defined:
                raise CatalogueError("", None, f"type {full!r} defined twice")
            self.defined.add(full)
            inner_ns = full.rpartition(".")[0]
            if kind in ("record", "error"):
                out["fields"] = [{**f, "type": self.expand(f.get("type"), inner_ns)}
                                 if isinstance(f, dict) else f for f in node.get("fields", [])]
        elif kind == "array":
            out["items"] = self.expand(node.get("items"), ns)
        elif kind == "map":
            out["values"] = self.expand(node.get("values"), ns)
        elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            out["type"] = self.expand(kind, ns)
        return out


def _full_name(node: Mapping[str, Any], ns: str) -> str:
    name = str(node.get("name", ""))
    if "." in name:
        return name
    namespace = node.get("namespace", ns)
    return f"{namespace}.{name}" if namespace else name


def _zero_width(schema: Any, named: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """True when a value of ``schema`` can encode to zero bytes."""
    if isinstance(schema, str):
        if schema == "null":
            return True
        if schema in named and schema not in seen:
            return _zero_width(named[schema], named, seen | {schema})
        return False
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "fixed":
            return schema.get("size") == 0
        if kind in ("record", "error"):
            return all(_zero_width(f["type"], named, seen) for f in schema.get("fields", []))
        if isinstance(kind, str | dict | list) and kind not in ("array", "map", "enum"):
            return _zero_width(kind, named, seen)
    return False


def _check_arrays(schema: Any, named: Mapping[str, Any]) -> None:
    """Refuse arrays of zero-byte items: a corrupt item count in such an array costs no input
    bytes, so a reader would loop (and allocate) for up to 2**63 items."""
    if isinstance(schema, list):
        for branch in schema:
            _check_arrays(branch, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            if _zero_width(schema.get("items"), named):
                raise CatalogueError("", None, "arrays of items that encode to zero bytes "
                                     "(null, empty records, fixed of size 0) are not allowed: "
                                     "a corrupt count could make readers loop for ages")
            _check_arrays(schema.get("items"), named)
        elif kind == "map":
            _check_arrays(schema.get("values"), named)
        elif kind in ("record", "error"):
            for f in schema.get("fields", []):
                _check_arrays(f.get("type"), named)
        elif isinstance(kind, dict | list):
            _check_arrays(kind, named)


def _topic_problem(topic: str) -> str | None:
    if not _TOPIC.match(topic) or topic in (".", ".."):
        return (f"invalid Kafka topic name {topic!r} (1-249 of a-z A-Z 0-9 . _ -, "
                f"not '.' or '..')")
    return None
