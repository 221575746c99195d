"""The streamjobs exception tree. Every error streamjobs raises derives from one root.

    StreamjobsError
    ├── ConfigError              bad configuration (names the field)
    ├── CatalogueError           bad catalogue or schema file (names the file and entry)
    ├── SchemaCompatibilityError a schema version would break old readers or writers
    ├── UnknownJobType           a job type the catalogue does not have
    ├── PayloadError             a payload does not match its Avro schema (names the field)
    ├── DecodeError              bytes from Kafka that cannot be decoded (carries raw bytes, reason)
    │   └── UnknownSchema        a writer fingerprint this process does not know
    │       └── UnknownSchemaId  a registry schema id that cannot be resolved now
    ├── RegistryError            the schema registry refused a request (status, code, refused)
    │   └── RegistryUnavailable  the registry cannot be reached, or refuses our credentials/CA
    ├── KafkaError               the broker refused or could not be reached (code, topic)
    │   ├── BrokerUnavailable    no broker answered within the bounded wait
    │   ├── RecordTooLarge       a record larger than the topic or client accepts
    │   ├── DeliveryFailed       the broker did not acknowledge a produced record
    │   ├── ProducerFenced       a newer transactional producer with the same id took over
    │   ├── TopicNotFound        the topic does not exist (CLI exit 3)
    │   └── GroupNotFound        no consumer group of that name (CLI exit 3)
    ├── GroupActive              a group with live members: its offsets cannot be moved
    ├── DevBrokerError           the local development broker (``streamjobs dev``)
    ├── JobTimeout               a handler ran past its job type's timeout (retried)
    ├── NotInWorker              ``ctx.emit`` called outside a worker's handler
    ├── JobFailure               raised by handlers to steer the failure path
    │   ├── Retry                retry this job after a given delay
    │   └── PermanentError       do not retry; dead-letter at once
    └── RunawayJobs              ``testing.JobRunner.run`` hit ``max_jobs`` with jobs still due

The public API raises these, not confluent-kafka's exceptions: call sites catch
``connection.ClientError`` and raise ``connection.translate(...)`` (``streamjobs._connection``).

Exceptions carry their data as attributes so callers never parse messages.
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "CatalogueError",
    "ConfigError",
    "DecodeError",
    "DeliveryFailed",
    "DevBrokerError",
    "GroupActive",
    "GroupNotFound",
    "JobFailure",
    "JobTimeout",
    "KafkaError",
    "NotInWorker",
    "PayloadError",
    "PermanentError",
    "ProducerFenced",
    "RecordTooLarge",
    "RegistryError",
    "RegistryUnavailable",
    "Retry",
    "RunawayJobs",
    "SchemaCompatibilityError",
    "StreamjobsError",
    "TopicNotFound",
    "UnknownJobType",
    "UnknownSchema",
    "UnknownSchemaId",
]


class StreamjobsError(Exception):
    """Root of every error streamjobs raises."""


class ConfigError(StreamjobsError):
    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class CatalogueError(StreamjobsError):
    def __init__(self, file: str, entry: str | None, reason: str) -> None:
        self.file = file
        self.entry = entry
        self.reason = reason
        where = f"{file} [{entry}]" if entry else file
        super().__init__(f"{where}: {reason}")


class SchemaCompatibilityError(StreamjobsError):
    def __init__(self, schema: str, reason: str) -> None:
        self.schema = schema
        self.reason = reason
        super().__init__(f"{schema}: {reason}")


class UnknownJobType(StreamjobsError):
    def __init__(self, job_type: str, known: tuple[str, ...] = ()) -> None:
        self.job_type = job_type
        self.known = known
        hint = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"unknown job type {job_type!r}{hint}")


class PayloadError(StreamjobsError):
    def __init__(self, job_type: str, field: str, reason: str) -> None:
        self.job_type = job_type
        self.field = field
        self.reason = reason
        super().__init__(f"{job_type}: field {field!r}: {reason}")


class DecodeError(StreamjobsError):
    """Bytes that cannot be decoded. ``raw`` is the exact input, ``reason`` a short code."""

    def __init__(
        self,
        raw: bytes,
        reason: str,
        detail: str = "",
        *,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.raw = raw
        self.reason = reason
        self.detail = detail
        self.topic = topic
        self.partition = partition
        self.offset = offset
        where = f" at {topic}[{partition}]@{offset}" if topic is not None else ""
        super().__init__(f"cannot decode {len(raw)} bytes{where}: {reason}: {detail}".rstrip(": "))


class UnknownSchema(DecodeError):
    """A well-framed record whose writer fingerprint no local schema has (e.g. written by a
    newer deploy). Retryable: a newer worker may know it."""

    def __init__(self, raw: bytes, fingerprint: bytes, **where: object) -> None:
        self.fingerprint = fingerprint
        super().__init__(raw, "unknown_schema", f"fingerprint {fingerprint.hex()}", **where)  # type: ignore[arg-type]


class UnknownSchemaId(UnknownSchema):
    """A registry-framed record whose schema id cannot be resolved now: the registry does not
    know it or cannot be reached. Retryable, like an unknown fingerprint."""

    def __init__(self, raw: bytes, schema_id: int, why: str) -> None:
        self.schema_id = schema_id
        self.why = why
        DecodeError.__init__(self, raw, "unknown_schema", f"schema id {schema_id}: {why}")
        self.fingerprint = raw[:5]


class RegistryError(StreamjobsError):
    """The schema registry refused a request (``status`` is its HTTP status, ``code`` its
    error code when it sent one)."""

    def __init__(self, url: str, message: str, *, status: int | None = None,
                 code: int | None = None, refused: bool = False) -> None:
        self.url = url
        self.status = status
        self.code = code
        self.refused = refused
        super().__init__(f"schema registry at {url}: {message}")


class RegistryUnavailable(RegistryError):
    """The schema registry cannot be used: unreachable, timeout, 5xx, or ``refused`` (our
    credentials (401/403) or its TLS certificate: a setting to fix, not a wait)."""


class KafkaError(StreamjobsError):
    def __init__(self, message: str, *, code: str | None = None, topic: str | None = None) -> None:
        self.code = code
        self.topic = topic
        super().__init__(message)


class BrokerUnavailable(KafkaError):
    pass


class RecordTooLarge(KafkaError):
    def __init__(self, size: int, limit: int | None, *, topic: str | None = None) -> None:
        self.size = size
        self.limit = limit
        lim = f" (limit {limit})" if limit is not None else ""
        super().__init__(f"record of {size} bytes is too large{lim}", code="MSG_SIZE_TOO_LARGE",
                         topic=topic)


class DeliveryFailed(KafkaError):
    def __init__(self, message: str, *, code: str | None = None, topic: str | None = None,
                 job_id: str | None = None) -> None:
        self.job_id = job_id
        super().__init__(message, code=code, topic=topic)


class ProducerFenced(KafkaError):
    """A newer producer with the same ``transactional_id`` took over (e.g. a second
    ``dlq reprocess --execute`` on the same dead-letter topic): this one can write nothing
    more, and its unfinished transaction was aborted."""

    def __init__(self, message: str, *, transactional_id: str, topic: str | None = None
                 ) -> None:
        self.transactional_id = transactional_id
        super().__init__(message, code="PRODUCER_FENCED", topic=topic)


class TopicNotFound(KafkaError):
    """The topic does not exist on the broker (CLI exit code 3)."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} not found", code="UNKNOWN_TOPIC_OR_PART", topic=topic)


class GroupNotFound(KafkaError):
    """No consumer group of that name: no member and no committed offset (CLI exit code 3)."""

    def __init__(self, group: str) -> None:
        self.group = group
        super().__init__(f"consumer group {group!r} not found (no members, no committed "
                         f"offsets)", code="GROUP_ID_NOT_FOUND")


class GroupActive(StreamjobsError):
    """Offsets of a group with live members cannot be moved: they would overwrite them."""

    def __init__(self, group: str, state: str, members: int) -> None:
        self.group = group
        self.state = state
        self.members = members
        super().__init__(f"group {group!r} is active (state {state}, {members} member(s)): "
                         f"stop its workers first, or use `streamjobs replay range` to re-run "
                         f"records while they keep running")


class DevBrokerError(StreamjobsError):
    pass


class JobTimeout(StreamjobsError):
    """A handler ran longer than its timeout (``timeout_s``); the job takes the retry path."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"handler ran past its timeout of {timeout_s:g}s")


class NotInWorker(StreamjobsError):
    """``ctx.emit`` was called outside a worker's handler threads or event loop."""


class JobFailure(StreamjobsError):
    """Base for exceptions a handler raises on purpose to steer the failure path."""


class Retry(JobFailure):
    """Ask for this job to run again after ``after`` seconds (within max attempts)."""

    def __init__(self, after: float, reason: str = "") -> None:
        if after < 0:
            raise ValueError("Retry(after=...) must be >= 0")
        self.after = after
        self.reason = reason
        super().__init__(reason or f"retry after {after}s")


class PermanentError(JobFailure):
    """The job can never succeed as it is: dead-letter it at once, no retries."""


class RunawayJobs(StreamjobsError):
    """``run`` ran ``max_jobs`` attempts and jobs were still due (a job emitting itself?)."""

    def __init__(self, max_jobs: int, pending: int) -> None:
        self.max_jobs = max_jobs
        self.pending = pending
        super().__init__(f"ran {max_jobs} attempts and {pending} job(s) still pending")
