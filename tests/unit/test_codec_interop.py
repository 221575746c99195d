"""Our single-object encoding interoperates with the official Apache ``avro`` package, both ways:
fingerprints, bodies, and resolution between versions."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from pathlib import Path
from typing import Any

import avro.errors
import avro.io
import avro.schema
import pytest

from streamjobs._avro.codec import Codec
from streamjobs._avro.framing import SO_MAGIC as MAGIC
from streamjobs._schemas.catalogue import Catalogue, SchemaVersion

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("schemas_codec")


def apache(version: SchemaVersion) -> avro.schema.Schema:
    return avro.schema.parse(json.dumps(version.schema))


def apache_write(schema: avro.schema.Schema, datum: dict[str, Any]) -> bytes:
    """Single-object encoding done with the avro package: header + its fingerprint + body."""
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(datum, avro.io.BinaryEncoder(buf))
    return MAGIC + schema.fingerprint("CRC-64-AVRO") + buf.getvalue()


def apache_read(raw: bytes, writer: avro.schema.Schema,
                reader: avro.schema.Schema | None = None) -> Any:
    buf = io.BytesIO(raw[10:])
    datum = avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(buf))
    assert buf.tell() == len(raw) - 10  # the avro package consumed exactly our body
    return datum


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(Catalogue.load(FIXTURE))


def all_versions() -> list[SchemaVersion]:
    out: list[SchemaVersion] = []
    for path in (FIXTURE, ROOT / "schemas"):
        cat = Catalogue.load(path)
        for name in cat.schema_names():
            out.extend(cat.versions(name))
    return out


@pytest.mark.parametrize("version", all_versions(), ids=lambda v: f"{v.name}.v{v.version}")
def test_fingerprints_match_the_avro_package(version: SchemaVersion) -> None:
    codec = Codec(Catalogue.load(version.file.parent))
    ours = {fp for fp, nv in codec.known_fingerprints().items() if nv[0] == version.name}
    theirs = apache(version)
    if "logicalType" in json.dumps(version.schema):
        # avro-python 1.12 keeps {"type":"long"} for logical types in the canonical form;
        # the spec's [PRIMITIVES] rule (and Java's SchemaNormalization, fastavro) write "long".
        assert theirs.canonical_form.replace('{"type":"long"}', '"long"') == version.canonical
    else:
        assert theirs.canonical_form == version.canonical
        assert theirs.fingerprint("CRC-64-AVRO") in ours


def test_apache_reads_our_bytes(codec: Codec) -> None:
    order = {
        "order_id": "o-1", "ship_to": {"city": "Lyon", "zip": "69001"},
        "bill_to": {"city": "Paris", "zip": None}, "status": "PAID",
        "lines": [{"sku": "a", "qty": 2}], "attrs": {"k": "v"}, "digest": b"abcd",
        "blob": b"\x00\xff", "total": 1.25, "gift": True,
        "placed_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
    }
    raw = codec.encode("order", order)
    assert raw[:2] == MAGIC
    datum = apache_read(raw, apache(codec.catalogue.current("t.Order")))
    assert datum == order

    event = {"id": "e", "count": 2**40, "note": "x"}
    raw = codec.encode("event", event)
    current = apache(codec.catalogue.current("t.Event"))
    assert raw[2:10] == current.fingerprint("CRC-64-AVRO")
    assert apache_read(raw, current) == event


def test_apache_old_reader_reads_our_new_bytes() -> None:
    """Forward compatibility checked by another implementation: demo v1 reader, v2 writer."""
    codec = Codec(Catalogue.load(ROOT / "schemas"))
    v1, v2 = (apache(v) for v in codec.catalogue.versions("demo.WelcomeEmail"))
    raw = codec.encode("send_welcome_email", {"user_id": "u", "email": "e", "locale": "fr"})
    assert apache_read(raw, v2, v1) == {"user_id": "u", "email": "e"}


def test_apache_agrees_int_to_long_is_backward_only(codec: Codec) -> None:
    """The fixture's t.Event v1 -> v2 (int -> long) reads old data, not new data with the old
    reader; ``streamjobs schemas check`` must flag exactly that."""
    v1, v2 = (apache(v) for v in codec.catalogue.versions("t.Event"))
    raw = codec.encode("event", {"id": "e", "count": 5})
    with pytest.raises(avro.errors.SchemaResolutionException):
        apache_read(raw, v2, v1)


def test_we_read_apache_bytes_with_resolution(codec: Codec) -> None:
    v1, v2 = (apache(v) for v in codec.catalogue.versions("t.Event"))
    raw = apache_write(v1, {"id": "e", "count": 7, "legacy": "gone"})
    decoded = codec.decode(raw)
    assert decoded.payload == {"id": "e", "count": 7, "note": "n/a"}
    assert decoded.version == 1
    raw = apache_write(v2, {"id": "e", "count": -(2**63), "note": "hi"})
    assert codec.decode(raw).payload == {"id": "e", "count": -(2**63), "note": "hi"}
    assert codec.decode(raw).version == 2


def test_we_read_apache_bytes_of_a_nested_schema(codec: Codec) -> None:
    tree = {"label": "r", "children": [{"label": "a", "children": []}]}
    raw = apache_write(apache(codec.catalogue.current("t.Tree")), tree)
    assert raw == codec.encode("tree", tree)  # byte for byte the same encoding
    assert codec.decode(raw).payload == tree


def test_demo_v1_bytes_from_apache_read_by_demo_v2(tmp_path: Path) -> None:
    cat = Catalogue.load(ROOT / "schemas")
    v1 = apache(cat.versions("demo.WelcomeEmail")[0])
    raw = apache_write(v1, {"user_id": "u", "email": "e@x"})
    assert Codec(cat).decode(raw, "send_welcome_email").payload == {
        "user_id": "u", "email": "e@x", "locale": "en"}
    old = tmp_path / "s"
    shutil.copytree(ROOT / "schemas", old)
    (old / "demo.WelcomeEmail.v2.avsc").unlink()
    assert Codec(Catalogue.load(old)).encode("send_welcome_email",
                                             {"user_id": "u", "email": "e@x"}) == raw
