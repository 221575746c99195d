"""The compiled Avro body reader (the decode fast path) returns exactly what fastavro returns
for every body fastavro reads, and declines (raises) on every body fastavro refuses."""

from __future__ import annotations

import io
import random
import string
from typing import Any

import fastavro
import pytest

from streamjobs._avro.reader import compile_reader

ADDRESS = {"type": "record", "name": "Addr", "fields": [
    {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "string"]}]}
SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "All", "namespace": "t", "fields": [
        {"name": "n", "type": "long"},
        {"name": "i", "type": "int"},
        {"name": "s", "type": "string"},
        {"name": "b", "type": "bytes"},
        {"name": "ok", "type": "boolean"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "nothing", "type": "null"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G", "B"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "MD", "size": 4}},
        {"name": "home", "type": ADDRESS},
        {"name": "work", "type": ["null", "t.Addr"]},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "grid", "type": {"type": "array", "items": {"type": "array", "items": "long"}}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long", "string"]}},
        {"name": "either", "type": ["string", "double", "t.Color"]},
    ]})


def text(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + "é€😀") for _ in range(rng.randrange(12)))


def payload(rng: random.Random) -> dict[str, Any]:
    big = rng.choice([0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**31), 2**62 - 1, -(2**62),
                      2**63 - 1, -(2**63), rng.randrange(-(2**40), 2**40)])
    return {
        "n": big, "i": rng.randrange(-(2**31), 2**31), "s": text(rng),
        "b": bytes(rng.randrange(256) for _ in range(rng.randrange(5))),
        "ok": rng.random() < 0.5, "f": rng.uniform(-1e6, 1e6), "d": rng.uniform(-1e300, 1e300),
        "nothing": None, "color": rng.choice("RGB"), "digest": bytes(range(4)),
        "home": {"city": text(rng), "zip": rng.choice([None, text(rng)])},
        "work": rng.choice([None, {"city": "x", "zip": None}]),
        "tags": [text(rng) for _ in range(rng.randrange(4))],
        "grid": [[rng.randrange(-300, 300) for _ in range(rng.randrange(3))]
                 for _ in range(rng.randrange(3))],
        "attrs": {text(rng): rng.choice([None, 5, "v"]) for _ in range(rng.randrange(3))},
        "either": rng.choice(["s", 1.5, "G"]),
    }


def body(p: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, SCHEMA, p)
    return out.getvalue()


def fastavro_read(raw: bytes) -> Any:
    buf = io.BytesIO(raw)
    value = fastavro.schemaless_reader(buf, SCHEMA, None)
    if buf.tell() != len(raw):
        raise ValueError("trailing bytes")
    return value


READ = compile_reader(SCHEMA)


def test_valid_bodies_read_exactly_like_fastavro() -> None:
    assert READ is not None
    rng = random.Random(7)
    for _ in range(500):
        raw = b"HEADER" + body(payload(rng))
        got = READ(raw, 6)
        want = fastavro_read(raw[6:])
        assert got == want and list(got) == list(want)
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


def test_corrupt_bodies_are_declined_whenever_fastavro_refuses_them() -> None:
    assert READ is not None
    rng = random.Random(11)
    for _ in range(3000):
        raw = bytearray(body(payload(rng)))
        how = rng.randrange(3)
        if how == 0:
            raw = raw[:rng.randrange(len(raw))]  # truncated
        elif how == 1:
            for _ in range(rng.randrange(1, 4)):  # flipped bytes
                raw[rng.randrange(len(raw))] = rng.randrange(256)
        else:
            raw += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3)))  # trailing
        data = bytes(raw)
        try:
            want: Any = fastavro_read(data)
        except Exception:
            want = None
        try:
            got: Any = READ(data, 0)
        except Exception:
            continue  # declined: the caller asks fastavro, which decides
        assert want is not None and got == want


@pytest.mark.parametrize("schema", [
    {"type": "record", "name": "L", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]},
    {"type": "record", "name": "Tree", "fields": [
        {"name": "kids", "type": {"type": "array", "items": "Tree"}}]},
])
def test_logical_types_and_recursion_are_left_to_fastavro(schema: dict[str, Any]) -> None:
    assert compile_reader(fastavro.parse_schema(schema)) is None


def test_huge_counts_and_long_varints_are_declined() -> None:
    read = compile_reader(fastavro.parse_schema({"type": "record", "name": "A", "fields": [
        {"name": "xs", "type": {"type": "array", "items": "long"}}]}))
    assert read is not None
    with pytest.raises(Exception):  # noqa: B017 - any exception means "ask fastavro"
        read(b"\xfe\xff\xff\xff\x0f\x02\x00", 0)  # count 2**31 - 1 with 2 bytes left
    with pytest.raises(Exception):  # noqa: B017
        read(b"\x02" + b"\xff" * 9 + b"\x02\x00", 0)  # a varint beyond 64 bits
