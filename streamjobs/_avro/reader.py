"""Compiled Avro body readers: the decode hot path for plain schemas.

``fastavro.schemaless_reader`` re-walks the parsed schema on every call and reads through a
file object one ``read()`` at a time, which dominates the cost of a small record. For a schema
made of plain types this module generates, once, a Python function that reads the body straight
from the ``bytes`` with index arithmetic (bench/worker_throughput.py shows what it saves).

The compiled reader is a *shortcut*, never the authority: it supports null, boolean, int,
long, float, double, bytes, string, record, enum, fixed, array, map and union, without logical
types, and only when writer == reader (no resolution). On anything it does not accept exactly
(truncation, trailing bytes, a boolean byte other than 0/1, a union or enum index out of range,
negative lengths or block counts, varints longer than 9 bytes, invalid UTF-8, more array/map
items than bytes left) it raises, and the caller decodes again with fastavro, which gives the
precise error or the value. So a record decodes to exactly what fastavro returns, or fastavro
decides.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["BodyReader", "compile_reader"]

# (value bytes, offset of the body) -> payload; raises on anything unusual.
BodyReader = Callable[[bytes, int], dict[str, Any]]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class _Bad(Exception):
    """The compiled reader declines: decode with fastavro instead."""


def _varint(b: bytes, p: int, x: int) -> tuple[int, int]:
    """Rest of a varint whose first byte ``x`` had the continuation bit. At most 10 bytes
    whose value fits 64 bits (the 10th byte is 0 or 1); anything longer is corrupt and goes to
    fastavro, whatever it makes of it."""
    x &= 0x7F
    shift = 7
    while shift < 63:
        c = b[p]
        p += 1
        x |= (c & 0x7F) << shift
        if c < 0x80:
            return x, p
        shift += 7
    c = b[p]
    if c > 1:
        raise _Bad
    return x | (c << 63), p + 1


class _Unsupported(Exception):
    pass


class _Gen:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.n = 0
        self.active: set[str] = set()  # named types being generated (recursion: unsupported)

    def var(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def const(self, value: Any) -> str:
        name = self.var("K")
        self.consts[name] = value
        return name

    def varint(self, ind: int) -> None:
        """Reads a varint into ``x``: one and two bytes inline (values below 8192, the usual
        ones), longer ones through ``_varint``."""
        e = self.emit
        e(ind, "x = b[p]; p += 1")
        e(ind, "if x > 127:")
        e(ind + 1, "c = b[p]")
        e(ind + 1, "if c < 128: x = (x & 127) | (c << 7); p += 1")
        e(ind + 1, "else: x, p = _varint(b, p, x)")

    def long(self, ind: int, target: str) -> None:
        e = self.emit
        self.varint(ind)
        e(ind, f"{target} = (x >> 1) ^ -(x & 1)")

    def length(self, ind: int, end: str) -> None:
        """Reads a byte length; ``end`` = offset after the bytes (checked against n)."""
        e = self.emit
        self.varint(ind)
        e(ind, "if x & 1: raise _Bad")  # negative length
        e(ind, f"{end} = p + (x >> 1)")
        e(ind, f"if {end} > n: raise _Bad")

    def read(self, schema: Any, ind: int, target: str) -> None:
        e = self.emit
        if isinstance(schema, list):
            self.union(schema, ind, target)
            return
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                self.primitive(schema, ind, target)
                return
            if schema not in self.named or schema in self.active:
                raise _Unsupported(schema)
            self.active.add(schema)
            self.read(self.named[schema], ind, target)
            self.active.discard(schema)
            return
        if not isinstance(schema, dict) or "logicalType" in schema:
            raise _Unsupported(repr(schema))
        kind = schema.get("type")
        if kind in ("record", "error"):
            fields = schema["fields"]
            names = []
            for f in fields:
                v = self.var("f")
                self.read(f["type"], ind, v)
                names.append((f["name"], v))
            e(ind, f"{target} = {{" + ", ".join(f"{k!r}: {v}" for k, v in names) + "}")
        elif kind == "enum":
            symbols = self.const(tuple(schema["symbols"]))
            i = self.var("i")
            self.long(ind, i)
            e(ind, f"if {i} < 0: raise _Bad")
            e(ind, f"{target} = {symbols}[{i}]")  # IndexError past the end
        elif kind == "fixed":
            end = self.var("e")
            e(ind, f"{end} = p + {int(schema['size'])}")
            e(ind, f"if {end} > n: raise _Bad")
            e(ind, f"{target} = b[p:{end}]; p = {end}")
        elif kind in ("array", "map"):
            self.block(schema, kind, ind, target)
        elif isinstance(kind, str) and kind in _PRIMITIVES:
            self.primitive(kind, ind, target)
        else:
            raise _Unsupported(repr(kind))

    def primitive(self, kind: str, ind: int, target: str) -> None:
        e = self.emit
        if kind == "null":
            e(ind, f"{target} = None")
        elif kind == "boolean":
            e(ind, "x = b[p]; p += 1")
            e(ind, "if x > 1: raise _Bad")
            e(ind, f"{target} = x == 1")
        elif kind in ("int", "long"):
            self.long(ind, target)
        elif kind == "float":
            e(ind, f"{target} = _f(b, p)[0]; p += 4")
        elif kind == "double":
            e(ind, f"{target} = _d(b, p)[0]; p += 8")
        else:
            end = self.var("e")
            self.length(ind, end)
            if kind == "string":
                e(ind, f"{target} = b[p:{end}].decode(); p = {end}")
            else:
                e(ind, f"{target} = b[p:{end}]; p = {end}")

    def union(self, branches: list[Any], ind: int, target: str) -> None:
        e = self.emit
        i = self.var("u")
        self.long(ind, i)
        for k, branch in enumerate(branches):
            e(ind, f"{'if' if k == 0 else 'elif'} {i} == {k}:")
            self.read(branch, ind + 1, target)
        e(ind, "else: raise _Bad")

    def block(self, schema: dict[str, Any], kind: str, ind: int, target: str) -> None:
        e = self.emit
        c = self.var("c")
        e(ind, f"{target} = {'[]' if kind == 'array' else '{}'}")
        e(ind, "while True:")
        self.long(ind + 1, c)
        e(ind + 1, f"if {c} == 0: break")
        # Negative counts (block sizes follow) are legal but rare: fastavro reads them. Each
        # item takes at least one byte here (zero-byte items are refused by the catalogue),
        # so a count beyond the bytes left is corrupt: no loop over a huge count.
        e(ind + 1, f"if {c} < 0 or {c} > n - p: raise _Bad")
        e(ind + 1, f"for _ in range({c}):")
        if kind == "array":
            item = self.var("a")
            self.read(schema["items"], ind + 2, item)
            e(ind + 2, f"{target}.append({item})")
        else:
            key, end, val = self.var("k"), self.var("e"), self.var("m")
            self.length(ind + 2, end)
            e(ind + 2, f"{key} = b[p:{end}].decode(); p = {end}")
            self.read(schema["values"], ind + 2, val)
            e(ind + 2, f"{target}[{key}] = {val}")


def compile_reader(parsed: dict[str, Any]) -> BodyReader | None:
    """A reader for bodies written with ``parsed`` (a fastavro-parsed record schema) and read
    with the same schema, or None when the schema uses something the compiler leaves to
    fastavro (logical types, recursion, non-record top level)."""
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    gen = _Gen(parsed.get("__named_schemas", {}))
    try:
        gen.read(parsed, 1, "r")
    except (_Unsupported, KeyError, TypeError, ValueError):
        return None
    src = "\n".join(["def read(b, p):", "    n = len(b)", *gen.lines,
                     "    if p != n: raise _Bad", "    return r"])
    scope: dict[str, Any] = {"_varint": _varint, "_Bad": _Bad,
                             "_f": struct.Struct("<f").unpack_from,
                             "_d": struct.Struct("<d").unpack_from, **gen.consts}
    exec(compile(src, f"<avro reader {parsed.get('name', '?')}>", "exec"), scope)
    reader: BodyReader = scope["read"]
    return reader
