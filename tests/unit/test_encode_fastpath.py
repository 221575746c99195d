"""The generated encoders (streamjobs/_avro/writer.py): byte-for-byte what fastavro writes for the
payloads they take, and never taking a payload the codec's checker refuses."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import fastavro
import pytest

from streamjobs._avro.writer import _Slow, compile_encoder

# What the fast path raises to decline (Codec.encode then takes the checked path).
DECLINED = (_Slow, KeyError, OverflowError)

SCHEMA: dict[str, Any] = {
    "type": "record", "name": "Everything", "namespace": "t",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "b", "type": "boolean"},
        {"name": "raw", "type": "bytes"},
        {"name": "nothing", "type": "null"},
        {"name": "color", "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attrs", "type": {"type": "map", "values": ["null", "long", "string"]}},
        {"name": "opt", "type": ["null", "string"], "default": None},
        {"name": "num", "type": ["null", "double"], "default": None},
        {"name": "locale", "type": "string", "default": "en"},
        {"name": "addr", "type": {"type": "record", "name": "Addr", "fields": [
            {"name": "city", "type": "string"}, {"name": "zip", "type": ["null", "string"]}]}},
        {"name": "more", "type": {"type": "array", "items": "Addr"}},
        {"name": "next", "type": ["null", "Everything"], "default": None},
        {"name": "c2", "type": "Color", "default": "GREEN"},
        {"name": "wrapped", "type": {"type": "string"}},
    ],
}


def parse(schema: dict[str, Any]) -> dict[str, Any]:
    parsed = fastavro.parse_schema(schema)
    assert isinstance(parsed, dict)
    return parsed


def fastavro_bytes(parsed: dict[str, Any], payload: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed, payload)
    return out.getvalue()


def text(rng: random.Random) -> str:
    return "".join(rng.choice("aé€😀z") for _ in range(rng.choice([0, 1, 5, 70, 300])))


def payload(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    ints = [0, 1, -1, 63, -64, 64, 127, 128, 2**31 - 1, -(2**31), 300, -300]
    longs = [*ints, 2**63 - 1, -(2**63), 2**40, -(2**53)]
    doubles = [0.0, -0.0, 1.5, 1e300, -1e-300, math.inf, -math.inf, 3, 2**60]
    p: dict[str, Any] = {
        "s": text(rng), "i": rng.choice(ints), "l": rng.choice(longs),
        "f": rng.choice([0.0, 1.5, -2.25, 3, 1e30, math.inf]), "d": rng.choice(doubles),
        "b": rng.choice([True, False]), "raw": rng.randbytes(rng.choice([0, 3, 5000])),
        "nothing": None, "color": rng.choice(["RED", "GREEN"]), "digest": rng.randbytes(4),
        "tags": [text(rng) for _ in range(rng.choice([0, 1, 3, 70]))],
        "attrs": {text(rng): rng.choice([None, 5, -2**62, "x"]) for _ in range(rng.choice([0, 2]))},
        "addr": {"city": text(rng), "zip": rng.choice([None, "69001"])},
        "more": [{"city": "c", "zip": None}] * rng.choice([0, 2]),
        "wrapped": text(rng),
    }
    for name, value in (("opt", rng.choice([None, "o"])), ("num", rng.choice([None, 2.5, 7])),
                        ("locale", "fr"), ("c2", "RED")):
        if rng.random() < 0.5:
            p[name] = value
    if depth < 2 and rng.random() < 0.3:
        p["next"] = payload(rng, depth + 1)
    return p


def test_same_bytes_as_fastavro() -> None:
    parsed = parse(SCHEMA)
    fast = compile_encoder(parsed, b"PRE")
    assert fast is not None
    rng = random.Random(7)
    for _ in range(400):
        p = payload(rng)
        assert fast(p) == b"PRE" + fastavro_bytes(parsed, p)


@pytest.mark.parametrize("field, value", [
    ("i", True), ("i", 1.5), ("i", 2**31), ("l", 2**63), ("d", "1"), ("f", None),
    ("b", 1), ("s", b"x"), ("raw", "x"), ("raw", bytearray(b"x")), ("color", "BLUE"),
    ("digest", b"12345"), ("tags", ("a",)), ("tags", "ab"), ("tags", [1]),
    ("attrs", {1: None}), ("attrs", {"k": 1.5}), ("opt", 3), ("num", True),
    ("addr", {"city": "c"}), ("addr", {"city": "c", "zip": None, "x": 1}), ("s", None),
    ("f", 1e300),  # not a float32: fastavro writes inf, the fast path declines
])
def test_declines_what_it_cannot_prove(field: str, value: Any) -> None:
    parsed = parse(SCHEMA)
    fast = compile_encoder(parsed)
    assert fast is not None
    p = payload(random.Random(1))
    p[field] = value
    with pytest.raises(DECLINED):
        fast(p)


def test_declines_unknown_and_missing_fields_and_non_dicts() -> None:
    parsed = parse(SCHEMA)
    fast = compile_encoder(parsed)
    assert fast is not None
    p = payload(random.Random(2))
    for bad in ({**p, "extra": 1}, {k: v for k, v in p.items() if k != "s"}, list(p.items())):
        with pytest.raises(DECLINED):
            fast(bad)


def test_ambiguous_unions_and_logical_types_take_the_checked_path() -> None:
    ambiguous = parse({"type": "record", "name": "U", "fields": [
        {"name": "u", "type": ["int", "boolean"]}]})
    fast = compile_encoder(ambiguous)
    assert fast is not None
    with pytest.raises(DECLINED):
        fast({"u": 1})
    logical = parse({"type": "record", "name": "L", "fields": [
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}}]})
    assert compile_encoder(logical) is None
