"""Record framing: the bytes before the Avro body that name the writer schema.

Two framings exist, told apart by the first byte:

- ``single-object`` (Avro single-object encoding): ``C3 01`` + the writer schema's 8-byte
  CRC-64-AVRO fingerprint (little endian) + body. Self-describing given ``schemas/``.
- ``registry`` (Confluent wire format): ``00`` + the writer schema's 4-byte big-endian id in a
  schema registry + body. What Confluent-style serializers in any language read and write.

This module is the one place that parses frames; the codec, the worker's intake, the
dead-letter tools and the test runner all use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastavro.schema import fingerprint as _fastavro_fingerprint

from ..errors import DecodeError

__all__ = ["FRAMINGS", "REGISTRY", "SINGLE_OBJECT", "Frame", "fingerprint", "header_of", "parse",
           "registry_header", "single_object_header"]

SINGLE_OBJECT = "single-object"
REGISTRY = "registry"
FRAMINGS = (SINGLE_OBJECT, REGISTRY)

SO_MAGIC = b"\xc3\x01"
SO_HEADER = len(SO_MAGIC) + 8
CF_MAGIC = b"\x00"
CF_HEADER = len(CF_MAGIC) + 4


@dataclass(frozen=True, slots=True)
class Frame:
    framing: str  # SINGLE_OBJECT or REGISTRY
    header: bytes  # the frame bytes (magic + fingerprint or id): names the writer
    fingerprint: bytes | None  # single-object: the writer's CRC-64-AVRO, little endian
    schema_id: int | None  # registry: the writer's id in the registry

    @property
    def body(self) -> int:
        """Offset of the Avro body."""
        return len(self.header)


def parse(raw: bytes) -> Frame:
    """The frame of ``raw``; ``DecodeError`` (``bad_magic`` or ``truncated``) otherwise."""
    n = len(raw)
    if raw[:2] == SO_MAGIC:
        if n < SO_HEADER:
            raise DecodeError(raw, "truncated", f"{n} bytes, the header alone is {SO_HEADER}")
        header = raw[:SO_HEADER]
        return Frame(SINGLE_OBJECT, header, header[2:], None)
    if raw[:1] == CF_MAGIC:
        if n < CF_HEADER:
            raise DecodeError(raw, "truncated", f"{n} bytes, the registry header alone is "
                                                f"{CF_HEADER}")
        header = raw[:CF_HEADER]
        return Frame(REGISTRY, header, None, int.from_bytes(header[1:], "big"))
    if n < 2 and SO_MAGIC.startswith(raw):
        raise DecodeError(raw, "truncated", f"{n} bytes, the header alone is {SO_HEADER}")
    raise DecodeError(raw, "bad_magic", f"starts with {raw[:2].hex() or 'nothing'}, expected "
                                        f"{SO_MAGIC.hex()} (single-object) or "
                                        f"{CF_MAGIC.hex()} (registry)")


def header_of(raw: bytes) -> bytes:
    """The frame bytes of ``raw`` without checks (a cache key on the hot path): a wrong or
    short header simply matches no cached reader."""
    return raw[:CF_HEADER] if raw[:1] == CF_MAGIC else raw[:SO_HEADER]


def fingerprint(canonical: str) -> bytes:
    """The single-object frame's fingerprint of a schema: CRC-64-AVRO of its Parsing Canonical
    Form, 8 bytes little endian (fastavro's hex string is those bytes in order)."""
    return bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))


def single_object_header(fingerprint: bytes) -> bytes:
    return SO_MAGIC + fingerprint


def registry_header(schema_id: int) -> bytes:
    if not 0 <= schema_id < 2**32:
        raise ValueError(f"schema id {schema_id} does not fit 4 bytes")
    return CF_MAGIC + schema_id.to_bytes(4, "big")
