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


class _Gen:
    """Source of one module: one function per record type, the others inlined."""

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

    def write(self, schema: Any, x: str, pad: str) -> list[str]:
        """Lines (indented by ``pad``) writing the value in local ``x`` through ``a``."""
        kind = self.kind(schema)
        schema = self.resolve(schema)
        if kind == "null":
            return [f"{pad}if {x} is not None: raise _Slow"]
        if kind == "boolean":
            return [f"{pad}if {x} is True: a(b'\\x01')", f"{pad}elif {x} is False: a(b'\\x00')",
                    f"{pad}else: raise _Slow"]
        if kind in ("int", "long"):
            lo, hi = _INT32 if kind == "int" else _INT64
            return [f"{pad}if type({x}) is not int or not {lo} <= {x} <= {hi}: raise _Slow",
                    f"{pad}a(_zz({x}))"]
        if kind in ("float", "double"):
            pack = "_pf" if kind == "float" else "_pd"
            return [f"{pad}if type({x}) is not float and type({x}) is not int: raise _Slow",
                    f"{pad}a({pack}({x}))"]
        if kind in ("string", "bytes"):
            b = self.tmp()
            first = (f"{pad}if type({x}) is not str: raise _Slow" if kind == "string" else
                     f"{pad}if type({x}) is not bytes: raise _Slow")
            value = f"{x}.encode()" if kind == "string" else x
            return [first, f"{pad}{b} = {value}; n = len({b})",
                    f"{pad}a(_S[n] if n < 4096 else _zz(n)); a({b})"]
        if kind == "enum":
            table = self.const({s: _zz(i) for i, s in enumerate(schema["symbols"])})
            e = self.tmp()
            return [f"{pad}{e} = {table}.get({x}) if type({x}) is str else None",
                    f"{pad}if {e} is None: raise _Slow", f"{pad}a({e})"]
        if kind == "fixed":
            return [f"{pad}if type({x}) is not bytes or len({x}) != {int(schema['size'])}: "
                    f"raise _Slow", f"{pad}a({x})"]
        if kind == "array":
            y = self.tmp()
            return [f"{pad}if type({x}) is not list: raise _Slow", f"{pad}if {x}:",
                    f"{pad}    n = len({x}); a(_S[n] if n < 4096 else _zz(n))",
                    f"{pad}    for {y} in {x}:", *self.write(schema["items"], y, pad + "        "),
                    f"{pad}a(b'\\x00')"]
        if kind == "map":
            k, y = self.tmp(), self.tmp()
            return [f"{pad}if type({x}) is not dict: raise _Slow", f"{pad}if {x}:",
                    f"{pad}    n = len({x}); a(_S[n] if n < 4096 else _zz(n))",
                    f"{pad}    for {k}, {y} in {x}.items():",
                    *self.write("string", k, pad + "        "),
                    *self.write(schema["values"], y, pad + "        "),
                    f"{pad}a(b'\\x00')"]
        if kind in ("record", "error"):
            return [f"{pad}{self.record(schema)}({x}, a)"]
        if kind == "union":
            return self.union(schema, x, pad)
        raise _Unsupported(kind)

    def union(self, branches: list[Any], x: str, pad: str) -> list[str]:
        owner: dict[type, int] = {}
        for i, branch in enumerate(branches):
            for t in _ACCEPTS[self.kind(branch)]:
                if t in owner:  # two branches may take this type: let fastavro choose
                    return [f"{pad}raise _Slow"]
                owner[t] = i
        t = self.tmp()
        lines = [f"{pad}{t} = type({x})"]
        for py_type, i in owner.items():
            if py_type is bool and self.kind(branches[i]) != "boolean":
                continue  # True for an int: refused like the checker does
            lines += [f"{pad}{'if' if len(lines) == 1 else 'elif'} {t} is "
                      f"{self.const(py_type)}:", f"{pad}    a({_zz(i)!r})",
                      *self.write(branches[i], x, pad + "    ")]
        return [*lines, f"{pad}else: raise _Slow"]

    def record(self, schema: dict[str, Any]) -> str:
        name = schema["name"]
        if name in self.records:
            return self.records[name]
        fn = self.records[name] = f"r{len(self.records)}"
        body = self.fields(schema, "x", "    ")
        self.defs.append("\n".join([f"def {fn}(x, a):", *body]))
        return fn

    def fields(self, schema: dict[str, Any], x: str, pad: str) -> list[str]:
        """Check ``x`` is a dict holding every required field and no unknown one, then write
        the fields in schema order (a missing field with a default writes the default)."""
        required = sum("default" not in f for f in schema["fields"])
        lines = [f"{pad}if type({x}) is not dict: raise _Slow", f"{pad}n_ = {required}"]
        for f in schema["fields"]:
            v = self.tmp()
            key = repr(f["name"])
            if "default" in f:
                lines += [f"{pad}{v} = {x}.get({key}, _M)",
                          f"{pad}if {v} is _M: {v} = {self.const(f['default'])}",
                          f"{pad}else: n_ += 1"]
            else:
                lines.append(f"{pad}{v} = {x}[{key}]")  # KeyError: the checked path reports it
            lines += self.write(f["type"], v, pad)
        return [*lines, f"{pad}if len({x}) != n_: raise _Slow"]


def compile_encoder(parsed: dict[str, Any], prefix: bytes = b"") -> Callable[[Any], bytes] | None:
    """``prefix`` + the Avro body of ``parsed`` (a fastavro-parsed record schema) for payloads
    on the fast path; raises for any other payload. None if the schema is not supported."""
    gen = _Gen(parsed.get("__named_schemas", {}))
    try:
        body = gen.fields(parsed, "p", "    ")
    except (_Unsupported, KeyError, TypeError):
        return None
    src = "\n".join([*gen.defs, "def encode(p):", f"    out = [{prefix!r}]",
                     "    a = out.append", *body, "    return b''.join(out)"])
    exec(compile(src, f"<avro encoder {parsed.get('name')}>", "exec"), gen.ns)
    encode: Callable[[Any], bytes] = gen.ns["encode"]
    return encode
