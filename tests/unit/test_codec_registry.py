"""The codec with registry framing, over an in-memory registry (the real one is exercised in
tests/kafka/test_registry_interop.py): ids written, writer ids resolved into the current
version, unknown or unreachable ids retryable, one registry request per schema."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from streamjobs._avro.codec import Codec, registry_schema
from streamjobs._avro.framing import REGISTRY, SINGLE_OBJECT, parse, registry_header
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._schemas.registry import RegistryConfig, SchemaRegistry
from streamjobs.errors import (
    CatalogueError,
    ConfigError,
    DecodeError,
    RegistryError,
    RegistryUnavailable,
    UnknownSchemaId,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "apps" / "registry_schemas"


class MemoryRegistry(SchemaRegistry):
    """The real client with its HTTP calls answered from memory (and counted)."""

    def __init__(self) -> None:
        super().__init__(RegistryConfig("http://registry.invalid/ccompat"))
        self.by_id: dict[int, str] = {}
        self.subjects: dict[str, list[int]] = {}
        self.requests: list[str] = []
        self.down = False

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        self.requests.append(f"{method} {path}")
        if self.down:
            raise RegistryUnavailable(self.url, "connection refused")
        parts = path.strip("/").split("/")
        if parts[:2] == ["schemas", "ids"]:
            if int(parts[2]) not in self.by_id:
                raise RegistryError(self.url, "not found", status=404, code=40403)
            return {"schema": self.by_id[int(parts[2])]}
        if parts[0] == "subjects" and method == "POST":
            subject, text = parts[1], body["schema"]
            ids = [i for i in self.subjects.get(subject, []) if self.by_id[i] == text]
            if len(parts) == 3:  # register
                if not ids:
                    ids = [len(self.by_id) + 1]
                    self.by_id[ids[0]] = text
                    self.subjects.setdefault(subject, []).append(ids[0])
            elif not ids:
                raise RegistryError(self.url, "not found", status=404, code=40403)
            return {"id": ids[0]}
        raise AssertionError(path)


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.load(SCHEMAS)


def _register_all(registry: MemoryRegistry, catalogue: Catalogue) -> list[int]:
    subject = catalogue.get("order").subject
    return [registry.register(subject, registry_schema(v))
            for v in catalogue.versions("test.Order")]


def test_encode_writes_the_registry_id_of_the_current_version(catalogue: Catalogue) -> None:
    registry = MemoryRegistry()
    _v1, v2 = _register_all(registry, catalogue)
    registry.requests.clear()
    codec = Codec(catalogue, registry=registry)
    raw = codec.encode("order", {"id": "a", "amount": 1, "note": "n"})
    frame = parse(raw)
    assert (frame.framing, frame.schema_id) == (REGISTRY, v2)
    for i in range(50):
        codec.encode("order", {"id": str(i), "amount": i, "note": ""})
    assert registry.requests == []  # register() cached the id
    fresh = MemoryRegistry()
    fresh.by_id, fresh.subjects = registry.by_id, registry.subjects
    Codec(catalogue, registry=fresh).encode("order", {"id": "a", "amount": 1})
    assert fresh.requests == ["POST /subjects/orders-value"]  # one lookup, then cached


def test_encode_needs_a_registry_and_a_registered_schema(catalogue: Catalogue) -> None:
    with pytest.raises(ConfigError) as info:
        Codec(catalogue).encode("order", {"id": "a", "amount": 1})
    assert info.value.field == "registry_url"
    with pytest.raises(RegistryError, match="schemas register"):
        Codec(catalogue, registry=MemoryRegistry()).encode("order", {"id": "a", "amount": 1})


def test_decode_resolves_any_writer_id_into_the_current_version(catalogue: Catalogue) -> None:
    registry = MemoryRegistry()
    v1, _ = _register_all(registry, catalogue)
    old = catalogue.versions("test.Order")[0]
    body = io.BytesIO()
    schemaless_writer(body, old.parsed, {"id": "x", "amount": 3})
    raw = registry_header(v1) + body.getvalue()
    reader = Codec(catalogue, registry=MemoryRegistry())
    reader.registry.by_id = registry.by_id  # type: ignore[union-attr]
    for _ in range(3):
        decoded = reader.decode(raw, "order")
        assert decoded.payload == {"id": "x", "amount": 3, "note": ""}
        assert (decoded.schema, decoded.version) == ("test.Order", 1)
    assert reader.registry.requests == [f"GET /schemas/ids/{v1}"]  # type: ignore[union-attr]
    assert reader.body_reader(raw, "order")(raw, 5) == {"id": "x", "amount": 3, "note": ""}
    assert reader.as_written(raw).payload == {"id": "x", "amount": 3}


def test_a_foreign_writer_schema_resolves_by_name(catalogue: Catalogue) -> None:
    """A writer schema that is no version in schemas/ (another team's v3 with an extra field)
    still resolves into the current version when the names match."""
    foreign = {"type": "record", "name": "Order", "namespace": "test", "fields": [
        {"name": "id", "type": "string"}, {"name": "amount", "type": "int"},
        {"name": "extra", "type": "long"}]}
    registry = MemoryRegistry()
    registry.by_id[42] = json.dumps(foreign)
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(foreign), {"id": "f", "amount": 1, "extra": 9})
    decoded = Codec(catalogue, registry=registry).decode(registry_header(42) + body.getvalue(),
                                                         "order")
    assert decoded.payload == {"id": "f", "amount": 1, "note": ""} and decoded.version == 0


def test_unknown_or_unreachable_ids_are_retryable(catalogue: Catalogue) -> None:
    raw = registry_header(99) + b"\x02x\x02"
    registry = MemoryRegistry()
    with pytest.raises(UnknownSchemaId, match="not found") as info:
        Codec(catalogue, registry=registry).decode(raw, "order")
    assert (info.value.reason, info.value.schema_id) == ("unknown_schema", 99)
    registry.down = True
    codec = Codec(catalogue, registry=registry)
    registry.requests.clear()
    for _ in range(3):  # one request, then the failure stands for a few seconds
        with pytest.raises(UnknownSchemaId, match="connection refused"):
            codec.decode(raw, "order")
    assert len(registry.requests) == 1
    with pytest.raises(UnknownSchemaId, match="no schema registry configured"):
        Codec(catalogue).decode(raw, "order")
    registry = MemoryRegistry()
    registry.by_id[5] = '"string"'
    with pytest.raises(DecodeError, match="not a record") as bad:
        Codec(catalogue, registry=registry).decode(registry_header(5) + b"\x02x", "order")
    assert not isinstance(bad.value, UnknownSchemaId)


def test_single_object_records_still_decode_beside_registry_ones(catalogue: Catalogue) -> None:
    so = Codec(catalogue.with_framing(SINGLE_OBJECT)).encode("order", {"id": "s", "amount": 2})
    assert parse(so).framing == SINGLE_OBJECT
    assert Codec(catalogue).decode(so, "order").payload == {"id": "s", "amount": 2, "note": ""}


def test_catalogue_framing_keys(tmp_path: Path) -> None:
    order = json.loads((SCHEMAS / "test.Order.v1.avsc").read_text())
    (tmp_path / "test.Order.v1.avsc").write_text(json.dumps(order))
    other = {**order, "name": "Other"}
    (tmp_path / "test.Other.v1.avsc").write_text(json.dumps(other))

    def load(toml: str) -> Catalogue:
        (tmp_path / "catalogue.toml").write_text(toml)
        return Catalogue.load(tmp_path)

    cat = load('[defaults]\nframing = "registry"\n[jobs.a]\nschema = "test.Order"\n'
               'topic = "t.a"\n[jobs.b]\nschema = "test.Other"\ntopic = "t.b"\n'
               'framing = "single-object"\n')
    assert (cat.get("a").framing, cat.get("b").framing) == (REGISTRY, SINGLE_OBJECT)
    assert cat.get("a").subject == "t.a-value"
    assert cat.with_topic_prefix("p.").get("a").subject == "p.t.a-value"
    rec = load('[jobs.a]\nschema = "test.Order"\ntopic = "t.a"\nframing = "registry"\n'
               'subject_strategy = "record"\n')
    assert rec.get("a").subject == "test.Order"
    for toml, needle in [
        ('[jobs.a]\nschema = "test.Order"\ntopic = "t"\nframing = "confluent"\n', "framing"),
        ('[jobs.a]\nschema = "test.Order"\ntopic = "t"\nsubject_strategy = "x"\n',
         "subject_strategy"),
        ('[defaults]\nframing = "registry"\n[jobs.a]\nschema = "test.Order"\ntopic = "t"\n'
         '[jobs.b]\nschema = "test.Other"\ntopic = "t"\n', 'subject_strategy = "record"')]:
        with pytest.raises(CatalogueError, match=needle):
            load(toml)


def test_a_worker_of_registry_framed_job_types_needs_a_registry(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from streamjobs._worker import Worker
    from tests.apps.registry_jobs import app

    monkeypatch.delenv("STREAMJOBS_REGISTRY_URL", raising=False)
    with pytest.raises(ConfigError) as info:
        Worker(app)
    assert info.value.field == "registry_url" and "order" in info.value.reason
    worker = Worker(app, registry=RegistryConfig("http://127.0.0.1:1/ccompat"))
    assert worker.registry is not None
