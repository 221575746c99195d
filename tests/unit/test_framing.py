"""Frames: one parser for single-object and Confluent registry framing."""

from __future__ import annotations

import pytest

from streamjobs._avro.framing import (
    REGISTRY,
    SINGLE_OBJECT,
    header_of,
    parse,
    registry_header,
    single_object_header,
)
from streamjobs.errors import DecodeError

FP = bytes(range(8))


def test_single_object_frame() -> None:
    raw = single_object_header(FP) + b"body"
    frame = parse(raw)
    assert (frame.framing, frame.fingerprint, frame.schema_id) == (SINGLE_OBJECT, FP, None)
    assert frame.body == 10 and frame.header == raw[:10] == header_of(raw)


def test_registry_frame_is_magic_zero_and_big_endian_id() -> None:
    raw = registry_header(0x01020304) + b"body"
    assert raw[:5] == b"\x00\x01\x02\x03\x04"
    frame = parse(raw)
    assert (frame.framing, frame.schema_id, frame.fingerprint) == (REGISTRY, 0x01020304, None)
    assert frame.body == 5 and header_of(raw) == raw[:5]


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "truncated"), (b"\xc3", "truncated"), (b"\xc3\x01" + FP[:7], "truncated"),
    (b"\x00\x00\x01", "truncated"), (b"\x01abc", "bad_magic"), (b"{}", "bad_magic"),
])
def test_bad_frames_name_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse(raw)
    assert (info.value.reason, info.value.raw) == (reason, raw)


def test_registry_ids_must_fit_four_bytes() -> None:
    assert registry_header(2**32 - 1) == b"\x00\xff\xff\xff\xff"
    with pytest.raises(ValueError, match="4 bytes"):
        registry_header(2**32)
