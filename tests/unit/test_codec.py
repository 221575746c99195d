"""Codec: single-object framing, schema resolution across versions, payload validation, and
bounded failure on hostile input."""

from __future__ import annotations

import datetime as dt
import io
import random
import shutil
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest

from streamjobs._avro.codec import Codec, Decoded
from streamjobs._avro.framing import SO_MAGIC as MAGIC
from streamjobs._avro.framing import fingerprint
from streamjobs._schemas.catalogue import Catalogue
from streamjobs.errors import DecodeError, PayloadError, UnknownJobType, UnknownSchema

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("schemas_codec")

ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "ship_to": {"city": "Lyon", "zip": "69001"},
    "bill_to": {"city": "Paris", "zip": None},
    "status": "PAID",
    "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}],
    "attrs": {"channel": "web"},
    "digest": b"\x00\x01\x02\x03",
    "blob": b"\xff",
    "total": 12.5,
    "gift": True,
    "placed_at": dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC),
}


@pytest.fixture(scope="module")
def codec() -> Codec:
    return Codec(Catalogue.load(FIXTURE))


@pytest.fixture
def v1_codec(tmp_path: Path) -> Codec:
    """The codec of an older deploy: t.Event only up to v1."""
    old = tmp_path / "old"
    shutil.copytree(FIXTURE, old)
    (old / "t.Event.v2.avsc").unlink()
    return Codec(Catalogue.load(old))


def zigzag(n: int) -> bytes:
    """Avro's long encoding."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte = z & 0x7F
        z >>= 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def test_round_trip_every_type(codec: Codec) -> None:
    raw = codec.encode("order", ORDER)
    assert raw[:2] == MAGIC and raw[2:10] == codec.fingerprint("order")
    decoded = codec.decode(raw)
    assert decoded == Decoded(ORDER, codec.fingerprint("order"), "t.Order", 1)
    assert codec.decode(raw, "order").payload == ORDER


def test_defaults_fill_omitted_fields(codec: Codec) -> None:
    minimal = {k: v for k, v in ORDER.items() if k not in ("bill_to", "attrs", "blob", "gift")}
    payload = codec.decode(codec.encode("order", minimal)).payload
    assert (payload["bill_to"], payload["attrs"], payload["blob"], payload["gift"]) == (
        None, {}, b"", False)


def test_recursive_schema(codec: Codec) -> None:
    tree = {"label": "root", "children": [{"label": "a", "children": [{"label": "b"}]}]}
    decoded = codec.decode(codec.encode("tree", tree)).payload
    assert decoded["children"][0]["children"][0] == {"label": "b", "children": []}
    with pytest.raises(PayloadError) as info:
        codec.encode("tree", {"label": "r", "children": [{"label": "a", "children": [{}]}]})
    assert info.value.field == "children[0].children[0].label"


def _crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO written out from the Avro specification: the reference the codec's
    fingerprints (fastavro's implementation) are held to."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def test_fingerprint_is_crc64_of_canonical_form_little_endian(codec: Codec) -> None:
    current = codec.catalogue.current("t.Event")
    expected = fastavro.schema.fingerprint(current.canonical, "CRC-64-AVRO")
    assert codec.fingerprint("event").hex() == expected  # fastavro prints the framing's bytes
    assert codec.fingerprint("event") == _crc64_avro(current.canonical.encode()).to_bytes(
        8, "little")


def test_fastavro_fingerprint_equals_the_spec_algorithm(codec: Codec) -> None:
    """Rule: the frame's fingerprint (fastavro's CRC-64-AVRO) is the specification's, on
    Avro's own test vectors and on every schema version of the catalogue."""
    # From Avro's share/test/data/schema-tests.txt (fingerprints as signed Java longs).
    vectors = {'"null"': 7195948357588979594, '"int"': 8247732601305521295,
               '"string"': -8142146995180207161}
    for canonical, signed in vectors.items():
        assert _crc64_avro(canonical.encode()) == signed % 2**64
        assert fingerprint(canonical) == (signed % 2**64).to_bytes(8, "little")
    versions = [v for name in codec.catalogue.schema_names()
                for v in codec.catalogue.versions(name)]
    assert len(versions) >= 5
    for v in versions:
        assert fingerprint(v.canonical) == _crc64_avro(v.canonical.encode()).to_bytes(
            8, "little"), v


def test_known_fingerprints_cover_every_version(codec: Codec) -> None:
    known = codec.known_fingerprints()
    assert sorted(known.values()) == [("t.Address", 1), ("t.Event", 1), ("t.Event", 2),
                                      ("t.Order", 1), ("t.Tree", 1)]
    assert known[codec.fingerprint("event")] == ("t.Event", 2)


def test_old_writer_read_by_new_reader(codec: Codec, v1_codec: Codec) -> None:
    """v1 bytes (int count, a field v2 removed) decode as v2: promotion, default, drop."""
    raw = v1_codec.encode("event", {"id": "e1", "count": 7, "legacy": "zzz"})
    decoded = codec.decode(raw)
    assert decoded.payload == {"id": "e1", "count": 7, "note": "n/a"}
    assert (decoded.schema, decoded.version) == ("t.Event", 1)
    assert decoded.fingerprint == v1_codec.fingerprint("event") != codec.fingerprint("event")
    assert codec.decode(raw, "event").payload == decoded.payload  # cached plan, same answer


def test_newer_writer_is_unknown_schema_for_an_old_reader(codec: Codec,
                                                          v1_codec: Codec) -> None:
    raw = codec.encode("event", {"id": "e1", "count": 2**40})
    with pytest.raises(UnknownSchema) as info:
        v1_codec.decode(raw)
    assert info.value.reason == "unknown_schema"
    assert info.value.raw == raw and info.value.fingerprint == raw[2:10]


def test_demo_welcome_email_v1_reads_with_locale_default(tmp_path: Path) -> None:
    old = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", old)
    (old / "demo.WelcomeEmail.v2.avsc").unlink()
    raw = Codec(Catalogue.load(old)).encode("send_welcome_email",
                                            {"user_id": "u1", "email": "a@b.c"})
    decoded = Codec(Catalogue.load(ROOT / "schemas")).decode(raw)
    assert decoded.payload == {"user_id": "u1", "email": "a@b.c", "locale": "en"}
    assert decoded.version == 1


def test_decode_into_a_job_types_record_of_another_name_fails(codec: Codec) -> None:
    raw = codec.encode("event", {"id": "e", "count": 1})
    with pytest.raises(DecodeError) as info:
        codec.decode(raw, "tree")
    assert info.value.reason == "bad_body"


def test_unknown_job_type(codec: Codec) -> None:
    with pytest.raises(UnknownJobType):
        codec.encode("nope", {})
    with pytest.raises(UnknownJobType):
        codec.fingerprint("nope")
    with pytest.raises(UnknownJobType):
        codec.decode(codec.encode("event", {"id": "e", "count": 1}), "nope")


# (payload change, field path named, words of the reason)
BAD_PAYLOADS: list[tuple[dict[str, Any], str, str]] = [
    ({"order_id": 5}, "order_id", "expected string, got int 5"),
    ({"total": "12"}, "total", "expected double"),
    ({"total": True}, "total", "expected double"),
    ({"gift": 1}, "gift", "expected boolean"),
    ({"status": "LOST"}, "status", "expected one of the symbols NEW, PAID"),
    ({"digest": b"\x00"}, "digest", "expected 4 bytes (fixed)"),
    ({"blob": "text"}, "blob", "expected bytes"),
    ({"lines": "ab"}, "lines", "expected array of record t.Line (a list)"),
    ({"lines": [{"sku": "a", "qty": 1.5}]}, "lines[0].qty", "expected int (32-bit), got float"),
    ({"lines": [{"sku": "a", "qty": True}]}, "lines[0].qty", "expected int"),
    ({"lines": [{"sku": "a", "qty": 2**31}]}, "lines[0].qty", "expected int (32-bit)"),
    ({"lines": [{"sku": "a"}]}, "lines[0].qty", "missing (required, no default)"),
    ({"lines": [{"sku": "a", "qty": 1, "x": 1}]}, "lines[0].x", "unknown field"),
    ({"attrs": {"k": 1}}, "attrs['k']", "expected string"),
    ({"attrs": {1: "v"}}, "attrs", "map keys must be strings"),
    ({"ship_to": {"city": "x", "zip": 75}}, "ship_to.zip", "expected null | string"),
    ({"ship_to": None}, "ship_to", "expected record t.Address (a dict)"),
    ({"bill_to": {"city": 3}}, "bill_to.city", "expected string"),  # inside the union's record
    ({"bill_to": "Paris"}, "bill_to", "expected null | t.Address"),
    ({"placed_at": "yesterday"}, "placed_at", "expected long (timestamp-millis)"),
    ({"surprise": 1}, "surprise", "unknown field (record t.Order has: order_id, ship_to"),
]


@pytest.mark.parametrize(("change", "field", "reason"), BAD_PAYLOADS)
def test_payload_errors_name_the_field_and_expected_type(codec: Codec, change: dict[str, Any],
                                                         field: str, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode("order", {**ORDER, **change})
    assert (info.value.job_type, info.value.field) == ("order", field)
    assert reason in info.value.reason


def test_missing_required_top_level_field(codec: Codec) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode("event", {"id": "e"})
    assert info.value.field == "count" and "missing" in info.value.reason


def test_long_range(codec: Codec) -> None:
    assert codec.decode(codec.encode("event", {"id": "e", "count": 2**63 - 1})).payload[
        "count"] == 2**63 - 1
    with pytest.raises(PayloadError, match="count"):
        codec.encode("event", {"id": "e", "count": 2**63})


def test_payload_must_be_a_mapping(codec: Codec) -> None:
    with pytest.raises(PayloadError) as info:
        codec.encode("event", ["id", "e"])  # type: ignore[arg-type]
    assert info.value.field == ""


# -- hostile input ----------------------------------------------------------------------------


def frame(codec: Codec, job_type: str, body: bytes) -> bytes:
    return MAGIC + codec.fingerprint(job_type) + body


def test_bad_input_reasons(codec: Codec) -> None:
    good = codec.encode("event", {"id": "e", "count": 1})
    event_fp = codec.fingerprint("event")
    cases: list[tuple[bytes, str]] = [
        (b"", "truncated"),
        (b"\xc3", "truncated"),
        (b"\xc3\x01\x00", "truncated"),
        (b"{\"id\": 1}", "bad_magic"),
        (b"\x01" + good[1:], "bad_magic"),
        # 00 opens a registry frame: its id cannot be resolved without a registry (retryable)
        (b"\x00" + good[1:], "unknown_schema"),
        (b"\x00", "truncated"),
        (MAGIC + b"\x00" * 8 + good[10:], "unknown_schema"),
        (good[:-1], "bad_body"),  # truncated body
        (good + b"\x00", "bad_body"),  # trailing bytes
        (MAGIC + event_fp + zigzag(2**40) + b"abc", "bad_body"),  # huge string length
        (MAGIC + event_fp + zigzag(-5) + b"abcdefgh", "bad_body"),  # negative length
        (MAGIC + event_fp + zigzag(3) + b"\xff\xfe\xfd" + zigzag(1), "bad_body"),  # bad UTF-8
        (MAGIC + event_fp + zigzag(1) + b"e" + b"\xff" * 11, "bad_body"),  # varint too long
    ]
    order_fp = codec.fingerprint("order")
    cases += [
        # array count 2**40 with one item present; map count 2**40
        (MAGIC + order_fp + zigzag(1) + b"o" + zigzag(1) + b"c" + zigzag(0) + zigzag(0)
         + zigzag(0) + zigzag(2**40) + zigzag(1) + b"s" + zigzag(1), "bad_body"),
        (MAGIC + order_fp + zigzag(1) + b"o" + zigzag(1) + b"c" + zigzag(0) + zigzag(0)
         + zigzag(0) + zigzag(0) + zigzag(2**40), "bad_body"),
        # union branch 7 of 2; enum symbol 9 of 2
        (MAGIC + order_fp + zigzag(1) + b"o" + zigzag(1) + b"c" + zigzag(7), "bad_body"),
        (MAGIC + order_fp + zigzag(1) + b"o" + zigzag(1) + b"c" + zigzag(0) + zigzag(0)
         + zigzag(9), "bad_body"),
    ]
    for raw, reason in cases:
        with pytest.raises(DecodeError) as info:
            codec.decode(raw)
        assert (info.value.reason, info.value.raw) == (reason, raw), raw


def test_too_large_is_refused_before_decoding() -> None:
    codec = Codec(Catalogue.load(FIXTURE), max_record_bytes=64)
    ok = codec.encode("event", {"id": "e", "count": 1})
    assert codec.decode(ok).payload["id"] == "e"
    raw = codec.encode("event", {"id": "x" * 100, "count": 1})
    with pytest.raises(DecodeError) as info:
        codec.decode(raw)
    assert info.value.reason == "too_large" and "max_record_bytes 64" in info.value.detail


def test_every_truncation_of_a_record_is_a_decode_error(codec: Codec) -> None:
    raw = codec.encode("order", ORDER)
    for n in range(len(raw)):
        with pytest.raises(DecodeError) as info:
            codec.decode(raw[:n])
        assert info.value.reason in ("truncated", "bad_magic", "unknown_schema", "bad_body")


def test_random_bytes_fail_fast_and_cleanly(codec: Codec) -> None:
    """Random garbage, with and without a valid header: always DecodeError, no MemoryError,
    no other exception, and quickly."""
    fps = [codec.fingerprint(j) for j in ("event", "order", "tree")]
    started = time.monotonic()
    outcomes: dict[str, int] = {}
    for seed in range(3000):
        rng = random.Random(seed)
        body = rng.randbytes(rng.randrange(0, 200))
        raw = (MAGIC + rng.choice(fps) + body) if seed % 3 else body
        try:
            codec.decode(raw)
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except DecodeError as exc:
            assert exc.raw == raw
            outcomes[exc.reason] = outcomes.get(exc.reason, 0) + 1
    assert time.monotonic() - started < 2.0
    assert outcomes.get("bad_body", 0) > 1000 and outcomes.get("bad_magic", 0) > 500


def test_bytearray_and_memoryview_input(codec: Codec) -> None:
    raw = codec.encode("event", {"id": "e", "count": 1})
    assert codec.decode(bytearray(raw)).payload["id"] == "e"  # type: ignore[arg-type]
    assert codec.decode(memoryview(raw)).payload["id"] == "e"  # type: ignore[arg-type]


def test_encoding_matches_fastavro_body(codec: Codec) -> None:
    payload = {"id": "e", "count": 3, "note": "hi"}
    body = io.BytesIO()
    fastavro.schemaless_writer(body, codec.catalogue.current("t.Event").parsed, payload)
    assert codec.encode("event", payload) == frame(codec, "event", body.getvalue())
