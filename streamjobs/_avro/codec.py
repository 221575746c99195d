"""Payload bytes: Avro with schema history and resolution, in either framing (``framing.py``).

A value is a frame naming the writer schema + the Avro binary body. The frame is the Avro
single-object header (``C3 01`` + the writer's 8-byte CRC-64-AVRO fingerprint) or, for job types
with ``framing = "registry"``, the Confluent wire format (``00`` + the writer's 4-byte schema id
in a schema registry). ``encode`` always writes the current version of the job type's record;
``decode`` finds the writer schema (by fingerprint in ``schemas/``, or by id through the
registry, cached) and resolves it into the current version (Avro resolution: defaults for added
fields, removed fields dropped, promotions).

Decoding is the worker's hot path and its input is untrusted: every schema is parsed once, the
(writer, reader) pairs are cached, and every failure becomes ``DecodeError`` with the raw bytes
and a reason code, never another exception. Memory is bounded: inputs over ``max_record_bytes``
are refused before decoding; fastavro reads from an in-memory buffer, so a corrupt length prefix
can only ask for the bytes that are there (it fails with EOFError instead of allocating), and
the catalogue refuses arrays of zero-byte items, whose corrupt counts could loop for ages.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.schema import to_parsing_canonical_form
from fastavro.validation import validate as _fastavro_validate

from ..errors import (
    ConfigError,
    DecodeError,
    PayloadError,
    RegistryError,
    RegistryUnavailable,
    UnknownSchema,
    UnknownSchemaId,
)
from .framing import (
    REGISTRY,
    SO_HEADER,
    Frame,
    fingerprint,
    parse,
    registry_header,
    single_object_header,
)
from .reader import BodyReader, compile_reader
from .writer import compile_encoder

if TYPE_CHECKING:
    from .._schemas.catalogue import Catalogue, SchemaVersion
    from .._schemas.registry import SchemaRegistry

__all__ = ["Codec", "Decoded", "registry_schema"]

_MISS_SECONDS = 5.0  # how long a failed registry lookup stands for the records after it

def _fingerprint(version: SchemaVersion) -> bytes:
    return fingerprint(version.canonical)


def registry_schema(version: SchemaVersion) -> str:
    """The schema text registered for ``version`` (self-contained: shared types inline)."""
    return json.dumps(version.schema, separators=(",", ":"))


# -- decoding ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    payload: dict[str, Any]
    fingerprint: bytes  # the writer's
    schema: str  # record full name
    version: int  # the writer's version (0: a registry schema that is not in schemas/)


# A frozen dataclass's __init__ goes through object.__setattr__ per field, which costs more
# than a small record's whole decode; the slot descriptors set the same fields directly.
_new = object.__new__


def _slot_setter(name: str) -> Callable[[Any, Any], None]:
    setter: Callable[[Any, Any], None] = Decoded.__dict__[name].__set__
    return setter


_set_payload, _set_fingerprint, _set_schema, _set_version = (
    _slot_setter(n) for n in ("payload", "fingerprint", "schema", "version"))


def _decoded(payload: dict[str, Any], fingerprint: bytes, schema: str, version: int) -> Decoded:
    d: Decoded = _new(Decoded)
    _set_payload(d, payload)
    _set_fingerprint(d, fingerprint)
    _set_schema(d, schema)
    _set_version(d, version)
    return d


@dataclass(frozen=True, slots=True)
class _Plan:
    """How to read one writer schema: ``reader`` is None when writer == reader (fast path)."""

    writer: dict[str, Any]
    reader: dict[str, Any] | None
    schema: str
    version: int
    fingerprint: bytes  # the writer's
    fast: BodyReader | None = None  # compiled reader (writer == reader, plain types)


class Codec:
    """Encodes payloads of the catalogue's job types and decodes any version ever written.

    ``registry`` is needed by job types with registry framing (their schema id) and to decode
    registry-framed records (writer schema by id); both are asked once per schema and cached.
    """

    def __init__(self, catalogue: Catalogue, *, registry: SchemaRegistry | None = None,
                 max_record_bytes: int = 16 * 1024 * 1024) -> None:
        if max_record_bytes < SO_HEADER:
            raise ValueError(f"max_record_bytes must be >= {SO_HEADER}")
        self.catalogue = catalogue
        self.registry = registry
        self.max_record_bytes = max_record_bytes
        self._known: dict[bytes, tuple[str, int]] = {}
        self._writers: dict[bytes, SchemaVersion] = {}
        self._current_fp: dict[str, bytes] = {}
        for name in catalogue.schema_names():
            for version in catalogue.versions(name):
                fp = _fingerprint(version)
                # Versions with equal canonical forms (say, only "doc" changed) share a
                # fingerprint and decode identically; the oldest one names it.
                self._known.setdefault(fp, (name, version.version))
                self._writers.setdefault(fp, version)
            self._current_fp[name] = _fingerprint(catalogue.current(name))
        self._plans_by_header: dict[bytes, _Plan] = {}  # decode without job_type: the usual case
        self._plans: dict[tuple[bytes, str], _Plan] = {}
        self._by_id: dict[int, tuple[dict[str, Any], bytes]] = {}  # registry id -> writer
        self._misses: dict[int | None, tuple[float, str]] = {}  # id (None: any) -> until, why
        self._checks: dict[str, Callable[[Any, str], None]] = {}
        self._encoders: dict[str, Callable[[Mapping[str, Any]], bytes]] = {}

    # -- encode -------------------------------------------------------------------------------

    def fingerprint(self, job_type: str) -> bytes:
        return self._current_fp[self.catalogue.get(job_type).schema]

    def header(self, job_type: str) -> bytes:
        """The frame ``encode`` writes for ``job_type``: asks the registry for the schema id of
        a registry-framed job type (RegistryError when it is not registered)."""
        job = self.catalogue.get(job_type)
        if job.framing != REGISTRY:
            return single_object_header(self._current_fp[job.schema])
        if self.registry is None:
            raise ConfigError("registry_url", f"job type {job_type!r} uses registry framing: "
                                              "give a schema registry URL "
                                              "(STREAMJOBS_REGISTRY_URL)")
        current = self.catalogue.current(job.schema)
        schema_id = self.registry.lookup(job.subject, registry_schema(current))
        if schema_id is None:
            raise RegistryError(self.registry.url, f"{job.schema} v{current.version} is not "
                                f"registered under subject {job.subject!r}; run `streamjobs "
                                f"schemas register`", status=404)
        return registry_header(schema_id)

    def check(self, job_type: str, payload: Mapping[str, Any]) -> None:
        """Raise ``PayloadError`` unless ``payload`` fits the current version of ``job_type``'s
        record: what ``encode`` checks, without framing (no registry needed)."""
        schema = self.catalogue.get(job_type).schema
        check = self._checks.get(schema)
        if check is None:
            check = self._checks[schema] = _compile(self.catalogue.current(schema).parsed)
        try:
            check(payload, "")
        except _Invalid as exc:
            raise PayloadError(job_type, exc.path, exc.reason) from None

    def encode(self, job_type: str, payload: Mapping[str, Any]) -> bytes:
        enc = self._encoders.get(job_type) or self.encoder(job_type)
        return enc(payload)

    def encoder(self, job_type: str) -> Callable[[Mapping[str, Any]], bytes]:
        """``encode`` for one job type (what emit calls per record): a schema-specific encoder
        (``_avro_writer.py``) takes payloads of exact builtin types; anything else, valid or not,
        goes through the checker (errors name the field) and fastavro."""
        enc = self._encoders.get(job_type)
        if enc is not None:
            return enc
        schema = self.catalogue.get(job_type).schema
        parsed = self.catalogue.current(schema).parsed
        prefix = self.header(job_type)
        check = self._checks.get(schema)
        if check is None:
            check = self._checks[schema] = _compile(parsed)

        def checked(payload: Mapping[str, Any]) -> bytes:
            try:
                check(payload, "")
            except _Invalid as exc:
                raise PayloadError(job_type, exc.path, exc.reason) from None
            out = io.BytesIO()
            out.write(prefix)
            try:
                fastavro.schemaless_writer(out, parsed, payload)
            except Exception as exc:  # the check above should make this unreachable
                raise PayloadError(job_type, "", f"{type(exc).__name__}: {exc}") from None
            return out.getvalue()

        # Outside the fast path (maybe invalid), a payload is checked.
        enc = compile_encoder(parsed, prefix, checked) or checked
        self._encoders[job_type] = enc
        return enc

    # -- decode -------------------------------------------------------------------------------

    def known_fingerprints(self) -> dict[bytes, tuple[str, int]]:
        return dict(self._known)

    def decode(self, raw: bytes, job_type: str | None = None) -> Decoded:
        """Decode ``raw`` into the current version of its record (or of ``job_type``'s record).

        Raises ``UnknownSchema`` for a writer schema that cannot be found now (a fingerprint no
        local version has, e.g. a newer deploy wrote it; a registry id the registry does not
        know or cannot be asked about: retry later), ``DecodeError`` for anything else that
        cannot be decoded and ``UnknownJobType`` when ``job_type`` is not in the catalogue.
        """
        if not isinstance(raw, bytes):
            raw = bytes(raw)
        n = len(raw)
        if n > self.max_record_bytes:
            raise DecodeError(raw, "too_large", f"{n} bytes > max_record_bytes "
                                                f"{self.max_record_bytes}")
        frame = parse(raw)
        header = frame.header
        if job_type is None:
            plan = self._plans_by_header.get(header) or self._plan(raw, frame, None)
        else:
            plan = self._plans.get((header, job_type)) or self._plan(raw, frame, job_type)
        pos = len(header)
        fast = plan.fast
        if fast is not None:
            try:
                return _decoded(fast(raw, pos), plan.fingerprint, plan.schema, plan.version)
            except Exception:  # declined: fastavro decides (and names the error)
                pass
        buf = io.BytesIO(raw)  # shares the bytes object, no copy
        buf.seek(pos)
        try:
            payload = fastavro.schemaless_reader(buf, plan.writer, plan.reader)
        except Exception as exc:  # EOFError, UnicodeDecodeError, MemoryError, fastavro errors
            raise DecodeError(raw, "bad_body", f"{type(exc).__name__}: {exc}") from None
        if buf.tell() != n:
            raise DecodeError(raw, "bad_body", f"{n - buf.tell()} trailing bytes after the "
                                               f"{plan.schema} v{plan.version} body")
        if not isinstance(payload, dict):
            raise DecodeError(raw, "bad_body", f"{plan.schema} is not a record")
        return _decoded(payload, plan.fingerprint, plan.schema, plan.version)

    def as_written(self, raw: bytes) -> Decoded:
        """Decode ``raw`` with its writer schema, without resolution (what a dead letter held
        when it was written). Raises like ``decode``."""
        frame = parse(raw)
        if frame.schema_id is not None:
            writer, fp = self._registry_writer(raw, frame.schema_id)
            local = self._writers.get(fp)
            name, version = self._known[fp] if local is not None else (str(writer["name"]), 0)
        else:
            fp = frame.fingerprint or b""
            local = self._writers.get(fp)
            if local is None:
                raise UnknownSchema(raw, fp)
            writer = local.parsed
            name, version = self._known[fp]
        buf = io.BytesIO(raw)
        buf.seek(frame.body)
        try:
            payload = fastavro.schemaless_reader(buf, writer, None)
        except Exception as exc:
            raise DecodeError(raw, "bad_body", f"{type(exc).__name__}: {exc}") from None
        if buf.tell() != len(raw) or not isinstance(payload, dict):
            raise DecodeError(raw, "bad_body", f"not one {name} record")
        return _decoded(payload, fp, name, version)

    def body_reader(self, raw: bytes, job_type: str) -> BodyReader:
        """A reader of bodies framed like ``raw`` for ``job_type`` (call after ``raw`` decoded:
        its plan is cached): what the worker's hot path calls per record."""
        plan = self._plans[(parse(raw).header, job_type)]
        if plan.fast is not None:
            return plan.fast
        writer, reader = plan.writer, plan.reader
        read_body = fastavro.schemaless_reader

        def read(value: bytes, pos: int) -> dict[str, Any]:
            buf = io.BytesIO(value)
            buf.seek(pos)
            payload = read_body(buf, writer, reader)
            if buf.tell() != len(value) or type(payload) is not dict:
                raise ValueError("not one record")
            return payload

        return read

    def _plan(self, raw: bytes, frame: Frame, job_type: str | None) -> _Plan:
        if frame.schema_id is not None:
            writer_parsed, fp = self._registry_writer(raw, frame.schema_id)
        else:
            fp = frame.fingerprint or b""
            writer_parsed = None
        local = self._writers.get(fp)
        if local is None and writer_parsed is None:
            raise UnknownSchema(raw, fp)
        writer_name = local.name if local is not None else str(writer_parsed["name"])  # type: ignore[index]
        reader_name = writer_name if job_type is None else self.catalogue.get(job_type).schema
        if not self.catalogue.versions(reader_name):
            assert frame.schema_id is not None  # a local writer's record is in the catalogue
            raise UnknownSchemaId(raw, frame.schema_id, f"record {writer_name} is not in "
                                                        f"schemas/")
        reader = self.catalogue.current(reader_name)
        same = self._current_fp[reader_name] == fp
        if local is not None:
            writer = local.parsed
            name, version = self._known[fp]
        else:
            assert writer_parsed is not None
            writer, name, version = writer_parsed, writer_name, 0
        plan = _Plan(writer, None if same else reader.parsed, name, version, fp,
                     compile_reader(writer) if same else None)
        if job_type is None:
            self._plans_by_header[frame.header] = plan
        else:
            self._plans[(frame.header, job_type)] = plan
        return plan

    def _registry_writer(self, raw: bytes, schema_id: int) -> tuple[dict[str, Any], bytes]:
        """The writer schema of a registry id (parsed) and its fingerprint; asked once."""
        found = self._by_id.get(schema_id)
        if found is not None:
            return found
        if self.registry is None:
            raise UnknownSchemaId(raw, schema_id, "no schema registry configured "
                                                  "(STREAMJOBS_REGISTRY_URL)")
        # A registry that failed is not asked again for a few seconds (nor an id it did not
        # know): each record would otherwise wait for its own request, up to the timeout.
        now = time.monotonic()
        for key in (None, schema_id):
            miss = self._misses.get(key)
            if miss is not None and now < miss[0]:
                raise UnknownSchemaId(raw, schema_id, miss[1])
        try:
            text = self.registry.schema(schema_id)
        except RegistryUnavailable as exc:
            self._misses[None] = (now + _MISS_SECONDS, str(exc))
            raise UnknownSchemaId(raw, schema_id, str(exc)) from None
        except RegistryError as exc:
            if len(self._misses) > 1000:
                self._misses.clear()
            self._misses[schema_id] = (now + _MISS_SECONDS, f"not found: {exc}")
            raise UnknownSchemaId(raw, schema_id, f"not found: {exc}") from None
        try:
            parsed = fastavro.parse_schema(json.loads(text), named_schemas={})
            canonical = to_parsing_canonical_form(parsed)
        except Exception as exc:
            raise DecodeError(raw, "bad_schema", f"schema id {schema_id}: "
                                                 f"{type(exc).__name__}: {exc}") from None
        if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
            raise DecodeError(raw, "bad_schema", f"schema id {schema_id} is not a record")
        found = self._by_id[schema_id] = (parsed, fingerprint(canonical))
        return found


# -- payload validation ------------------------------------------------------------------------
# fastavro's writer accepts some wrong payloads silently (1.5 or True for an int, 2**40 for an
# int, a str for an array, unknown keys in nested records). Checks compiled once per schema
# reject them and name the field path and the expected type.

_Check = Callable[[Any, str], None]


class _Invalid(Exception):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason


def _got(value: Any) -> str:
    text = repr(value)
    return f"got {type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return " | ".join(_describe(s) for s in schema)
    if schema.get("logicalType"):
        return f"{schema['type']} ({schema['logicalType']})"
    if schema["type"] in ("record", "error", "enum", "fixed"):
        return f"{schema['type']} {schema['name']}"
    if schema["type"] == "array":
        return f"array of {_describe(schema['items'])}"
    if schema["type"] == "map":
        return f"map of {_describe(schema['values'])}"
    return _describe(schema["type"])


def _primitive(name: str) -> _Check:
    def is_int(lo: int, hi: int) -> Callable[[Any], bool]:
        return lambda v: type(v) is int and lo <= v <= hi  # bool is not an int here
    tests: dict[str, Callable[[Any], bool]] = {
        "null": lambda v: v is None,
        "boolean": lambda v: type(v) is bool,
        "int": is_int(-(2**31), 2**31 - 1),
        "long": is_int(-(2**63), 2**63 - 1),
        "float": lambda v: type(v) is float or type(v) is int,
        "double": lambda v: type(v) is float or type(v) is int,
        "bytes": lambda v: isinstance(v, bytes | bytearray),
        "string": lambda v: isinstance(v, str),
    }
    test = tests[name]
    expected = f"expected {name}" + (" (32-bit)" if name == "int" else
                                     " (64-bit)" if name == "long" else "")

    def check(value: Any, path: str) -> None:
        if not test(value):
            raise _Invalid(path, f"{expected}, {_got(value)}")
    return check


def _compile(parsed: dict[str, Any]) -> _Check:
    named: dict[str, Any] = parsed.get("__named_schemas", {})
    compiled: dict[str, _Check] = {}

    def build(schema: Any) -> _Check:
        if isinstance(schema, str):
            if schema in named:
                if schema not in compiled:
                    compiled[schema] = _primitive("null")  # placeholder for recursive types
                    compiled[schema] = build(named[schema])
                return lambda v, p: compiled[schema](v, p)
            return _primitive(schema)
        if isinstance(schema, list):
            return union(schema)
        kind = schema["type"]
        if schema.get("logicalType"):
            return logical(schema)
        if kind in ("record", "error"):
            return record(schema)
        if kind == "enum":
            symbols = frozenset(schema["symbols"])
            desc = ", ".join(schema["symbols"])

            def check_enum(v: Any, p: str) -> None:
                if not (isinstance(v, str) and v in symbols):
                    raise _Invalid(p, f"expected one of the symbols {desc}, {_got(v)}")
            return check_enum
        if kind == "fixed":
            size = schema["size"]

            def check_fixed(v: Any, p: str) -> None:
                if not (isinstance(v, bytes | bytearray) and len(v) == size):
                    raise _Invalid(p, f"expected {size} bytes (fixed), {_got(v)}")
            return check_fixed
        if kind == "array":
            item = build(schema["items"])

            def check_array(v: Any, p: str) -> None:
                if not isinstance(v, list | tuple):
                    raise _Invalid(p, f"expected {_describe(schema)} (a list), {_got(v)}")
                for i, x in enumerate(v):
                    item(x, f"{p}[{i}]")
            return check_array
        if kind == "map":
            value = build(schema["values"])

            def check_map(v: Any, p: str) -> None:
                if not isinstance(v, Mapping):
                    raise _Invalid(p, f"expected {_describe(schema)} (a dict), {_got(v)}")
                for k, x in v.items():
                    if not isinstance(k, str):
                        raise _Invalid(p, f"map keys must be strings, {_got(k)}")
                    value(x, f"{p}[{k!r}]")
            return check_map
        return build(kind)  # {"type": "string"} and the like

    def record(schema: dict[str, Any]) -> _Check:
        fields = [(f["name"], build(f["type"]), "default" in f) for f in schema["fields"]]
        names = frozenset(name for name, _, _ in fields)
        listing = ", ".join(name for name, _, _ in fields)

        def check_record(v: Any, p: str) -> None:
            if not isinstance(v, Mapping):
                raise _Invalid(p, f"expected record {schema['name']} (a dict), {_got(v)}")
            if not names.issuperset(v.keys()):
                extra = sorted(str(k) for k in v.keys() - names)[0]
                raise _Invalid(_join(p, extra), f"unknown field (record {schema['name']} has: "
                                                f"{listing})")
            for name, check, has_default in fields:
                if name in v:
                    check(v[name], _join(p, name))
                elif not has_default:
                    raise _Invalid(_join(p, name), "missing (required, no default)")
        return check_record

    def union(branches: list[Any]) -> _Check:
        checks = [build(b) for b in branches]
        desc = _describe(branches)
        # With one record-like branch, a dict that fails inside it reports the inner field.
        records = [c for b, c in zip(branches, checks, strict=True) if _is_record(b, named)]

        def check_union(v: Any, p: str) -> None:
            for check in checks:
                try:
                    check(v, p)
                    return
                except _Invalid:
                    pass
            if len(records) == 1 and isinstance(v, Mapping):
                records[0](v, p)
            raise _Invalid(p, f"expected {desc}, {_got(v)}")
        return check_union

    def logical(schema: dict[str, Any]) -> _Check:
        # Rare; fastavro knows which Python types each logical type's writer accepts.
        sub = fastavro.parse_schema(schema, named_schemas={})

        def check_logical(v: Any, p: str) -> None:
            if not _fastavro_validate(v, sub, raise_errors=False):
                raise _Invalid(p, f"expected {_describe(schema)}, {_got(v)}")
        return check_logical

    return build(parsed)


def _is_record(schema: Any, named: dict[str, Any]) -> bool:
    if isinstance(schema, str):
        schema = named.get(schema)
    return isinstance(schema, dict) and schema.get("type") in ("record", "error")
