"""Avro encoders generated per schema: the hot path of ``Codec.encode`` (and so of ``emit``).

``compile_encoder(parsed)`` writes Python source that type-checks and encodes one record in a
single pass, with every field name, enum table and default baked in. It accepts only payloads
built from exact builtin types (``dict``, ``list``, ``str``, ``int``...), in range, with no
unknown keys and every required field present: a strict subset of what the codec's checker
accepts. Anything else raises, and ``Codec.encode`` falls back to the checker (which names the
bad field) and fastavro. So the fast path never accepts a payload the checker would refuse,
and, where it accepts one, writes the bytes fastavro writes (tests/unit/test_encode_fastpath.py
compares them). Schemas with logical types get no fast encoder (None): they always take the
checker + fastavro path.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

__all__ = ["compile_encoder"]


class _Slow(Exception):
    """The payload is outside the fast path; the caller takes the checked path."""


class _Unsupported(Exception):
    """The schema uses something the generator does not handle."""


def _zz(n: int) -> bytes:
    """Avro long: zig-zag, then base-128 varint (little end first)."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SIZES = tuple(_zz(n) for n in range(4096))  # lengths and counts, precomputed
_INT32, _INT64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
# Python types each kind of branch may take (bool counts as an int: fastavro may take it as
# one). A union gets a fast path only when no type fits two branches, so the branch picked by
# type is the one fastavro picks (the first that validates).
_ACCEPTS: dict[str, frozenset[type]] = {
    "null": frozenset({type(None)}), "boolean": frozenset({bool}),
    "int": frozenset({int, bool}), "long": frozenset({int, bool}),
    "float": frozenset({float, int, bool}), "double": frozenset({float, int, bool}),
    "bytes": frozenset({bytes}), "fixed": frozenset({bytes}), "string": frozenset({str}),
    "enum": frozenset({str}), "array": frozenset({list}), "map": frozenset({dict}),
    "record": frozenset({dict}), "error": frozenset({dict}),
}


_Code = tuple[list[str], list[str]]  # lines to run, then expressions of the bytes, in order


class _Gen:
    """Source of one module: one function per record type, the rest inlined. Each value's
    encoding is a few expressions joined once at the end (cheaper than appending to a list),
    except inside arrays and maps, whose items are appended to a list per container."""

    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.ns: dict[str, Any] = {"_Slow": _Slow, "_zz": _zz, "_S": _SIZES, "_M": object(),
                                   "_pf": struct.Struct("<f").pack,
                                   "_pd": struct.Struct("<d").pack}
        self.records: dict[str, str] = {}  # record full name -> function name
        self.defs: list[str] = []
        self.n = 0

    def tmp(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def const(self, value: Any) -> str:
        name = f"c{len(self.ns)}"
        self.ns[name] = value
        return name

    def resolve(self, schema: Any) -> Any:
        while True:
            if isinstance(schema, str) and schema in self.named:
                schema = self.named[schema]
            elif (isinstance(schema, dict) and not schema.get("logicalType")
                  and isinstance(schema.get("type"), str | list | dict)
                  and schema["type"] not in ("record", "error", "enum", "fixed", "array", "map")):
                schema = schema["type"]  # {"type": "string"} and the like
            else:
                return schema

    def kind(self, schema: Any) -> str:
        schema = self.resolve(schema)
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, str):
            if schema not in _PRIMITIVES:
                raise _Unsupported(schema)
            return schema
        if schema.get("logicalType"):
            raise _Unsupported(schema["logicalType"])
        return str(schema["type"])

    def size(self, expr: str) -> tuple[list[str], str]:
        n = self.tmp()
        return [f"{n} = len({expr})"], f"(_S[{n}] if {n} < 4096 else _zz({n}))"

    def write(self, schema: Any, x: str, pad: str) -> _Code:
        """Code (indented by ``pad``) checking the value in local ``x`` and encoding it."""
        kind = self.kind(schema)
        schema = self.resolve(schema)
        if kind == "null":
            return [f"{pad}if {x} is not None: raise _Slow"], []
        if kind == "boolean":
            return [f"{pad}if {x} is not True and {x} is not False: raise _Slow"], [
                f"(b'\\x01' if {x} else b'\\x00')"]
        if kind in ("int", "long"):
            lo, hi = _INT32 if kind == "int" else _INT64
            return [f"{pad}if type({x}) is not int or not {lo} <= {x} <= {hi}: raise _Slow"], [
                f"_zz({x})"]
        if kind in ("float", "double"):
            pack = "_pf" if kind == "float" else "_pd"
            b = self.tmp()  # packed at once: an unpackable value must fail before the join
            return [f"{pad}if type({x}) is not float and type({x}) is not int: raise _Slow",
                    f"{pad}{b} = {pack}({x})"], [b]
        if kind in ("string", "bytes"):
            b = self.tmp()
            size, part = self.size(b)
            if kind == "string":
                return [f"{pad}if type({x}) is not str: raise _Slow", f"{pad}{b} = {x}.encode()",
                        *(pad + line for line in size)], [part, b]
            return [f"{pad}if type({x}) is not bytes: raise _Slow", f"{pad}{b} = {x}",
                    *(pad + line for line in size)], [part, b]
        if kind == "enum":
            table = self.const({s: _zz(i) for i, s in enumerate(schema["symbols"])})
            e = self.tmp()
            return [f"{pad}{e} = {table}.get({x}) if type({x}) is str else None",
                    f"{pad}if {e} is None: raise _Slow"], [e]
        if kind == "fixed":
            return [f"{pad}if type({x}) is not bytes or len({x}) != {int(schema['size'])}: "
                    f"raise _Slow"], [x]
        if kind in ("array", "map"):
            return self.container(kind, schema, x, pad)
        if kind in ("record", "error"):
            return [], [f"{self.record(schema)}({x})"]
        if kind == "union":
            return self.union(schema, x, pad)
        raise _Unsupported(kind)

    def container(self, kind: str, schema: dict[str, Any], x: str, pad: str) -> _Code:
        """Arrays and maps as one block: count, items, then 0 (as fastavro writes them)."""
        out, y, k = self.tmp(), self.tmp(), self.tmp()
        inner = pad + "        "
        if kind == "array":
            loop = [f"{pad}    for {y} in {x}:"]
            lines, parts = self.write(schema["items"], y, inner)
        else:
            loop = [f"{pad}    for {k}, {y} in {x}.items():"]
            key_lines, key_parts = self.write("string", k, inner)
            value_lines, value_parts = self.write(schema["values"], y, inner)
            lines, parts = key_lines + value_lines, key_parts + value_parts
        size, count = self.size(x)
        return [f"{pad}if type({x}) is not {'list' if kind == 'array' else 'dict'}: raise _Slow",
                f"{pad}if {x}:", *(f"{pad}    {line}" for line in size),
                f"{pad}    {out} = [{count}]", *loop, *lines,
                f"{inner}{out} += ({', '.join(parts)},)",
                f"{pad}    {out}.append(b'\\x00')", f"{pad}    {out} = b''.join({out})",
                f"{pad}else: {out} = b'\\x00'"], [out]

    def union(self, branches: list[Any], x: str, pad: str) -> _Code:
        owner: dict[type, int] = {}
        for i, branch in enumerate(branches):
            for accepted in _ACCEPTS[self.kind(branch)]:
                if accepted in owner:  # two branches may take this type: let fastavro choose
                    return [f"{pad}raise _Slow"], []
                owner[accepted] = i
        t, u = self.tmp(), self.tmp()
        lines = [f"{pad}{t} = type({x})"]
        for py_type, i in owner.items():
            if py_type is bool and self.kind(branches[i]) != "boolean":
                continue  # True for an int: refused like the checker does
            body, parts = self.write(branches[i], x, pad + "    ")
            lines += [f"{pad}{'if' if len(lines) == 1 else 'elif'} {t} is "
                      f"{self.const(py_type)}:", *body,
                      f"{pad}    {u} = " + (f"b''.join(({_zz(i)!r}, {', '.join(parts)}))"
                                            if parts else repr(_zz(i)))]
        return [*lines, f"{pad}else: raise _Slow"], [u]

    def record(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        if name in self.records:
            return self.records[name]
        fn = self.records[name] = f"r{len(self.records)}"
        lines, parts = self.fields(schema, "x", "    ")
        self.defs.append("\n".join([f"def {fn}(x):", *lines,
                                    f"    return b''.join(({', '.join(parts)},))"]))
        return fn

    def fields(self, schema: dict[str, Any], x: str, pad: str) -> _Code:
        """Check ``x`` is a dict holding every required field and no unknown one, then write
        the fields in schema order (a missing field with a default writes the default)."""
        required = sum("default" not in f for f in schema["fields"])
        lines = [f"{pad}if type({x}) is not dict: raise _Slow", f"{pad}n_ = {required}"]
        parts: list[str] = []
        for f in schema["fields"]:
            v = self.tmp()
            key = repr(f["name"])
            if "default" in f:
                lines += [f"{pad}{v} = {x}.get({key}, _M)",
                          f"{pad}if {v} is _M: {v} = {self.const(f['default'])}",
                          f"{pad}else: n_ += 1"]
            else:
                lines.append(f"{pad}{v} = {x}[{key}]")  # KeyError: the checked path reports it
            field_lines, field_parts = self.write(f["type"], v, pad)
            lines += field_lines
            parts += field_parts
        return [*lines, f"{pad}if len({x}) != n_: raise _Slow"], parts


def compile_encoder(parsed: dict[str, Any], prefix: bytes = b"",
                    fallback: Callable[[Any], bytes] | None = None
                    ) -> Callable[[Any], bytes] | None:
    """``prefix`` + the Avro body of ``parsed`` (a fastavro-parsed record schema) for payloads
    on the fast path; for any other payload, ``fallback(payload)``, or an exception without
    one. None if the schema is not supported. (The fallback is called from inside: a wrapper
    function around the encoder would cost emit a call per record.)"""
    gen = _Gen(parsed.get("__named_schemas", {}))
    try:
        lines, parts = gen.fields(parsed, "p", "    ")
    except (_Unsupported, KeyError, TypeError):
        return None
    body = [*lines, f"    return b''.join(({', '.join([repr(prefix), *parts])},))"]
    if fallback is not None:
        gen.ns["_fallback"] = fallback
        body = ["    try:", *("    " + line for line in body),
                "    except Exception:", "        return _fallback(p)"]
    src = "\n".join([*gen.defs, "def encode(p):", *body])
    exec(compile(src, f"<avro encoder {parsed.get('name')}>", "exec"), gen.ns)
    encode: Callable[[Any], bytes] = gen.ns["encode"]
    return encode
