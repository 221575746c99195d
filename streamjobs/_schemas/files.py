"""Versioned schema files: ``<full name>.v<N>.avsc``, one per version, shared types pinned.

The highest version of a name is current; older versions stay so any writer fingerprint ever
used can be read. A file that references a shared named type pins its version with a top-level
``"uses": {"demo.Address": 1}``; at load the pinned definitions are inlined at their first use,
so every version is a self-contained Avro schema (its fingerprint covers the shared types and
any Avro tool can read it). See docs/catalogue.md.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import fastavro
from fastavro.schema import to_parsing_canonical_form

from ..errors import CatalogueError

__all__ = ["SchemaVersion", "load_versions"]

_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
                        r"\.v(?P<version>[1-9][0-9]*)\.avsc$")
_PRIMITIVES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


@dataclass(frozen=True)
class SchemaVersion:
    """One ``<name>.v<version>.avsc`` file, with pinned shared types expanded inline."""

    name: str
    version: int
    file: Path
    schema: dict[str, Any] = field(repr=False)  # self-contained Avro JSON (no "uses")
    parsed: dict[str, Any] = field(repr=False)  # fastavro.parse_schema(schema)
    canonical: str = field(repr=False)  # Parsing Canonical Form (what the fingerprint hashes)


def load_versions(schemas_dir: Path) -> dict[str, tuple[SchemaVersion, ...]]:
    """Every ``*.avsc`` under ``schemas_dir``: full name -> versions, oldest first."""
    return _Loader(schemas_dir).load()


class _Loader:
    def __init__(self, schemas_dir: Path) -> None:
        self.dir = schemas_dir
        self.raw: dict[str, dict[int, tuple[Path, dict[str, Any]]]] = {}

    def load(self) -> dict[str, tuple[SchemaVersion, ...]]:
        for path in sorted(self.dir.rglob("*.avsc")):
            m = _FILE_NAME.match(path.name)
            if m is None:
                raise CatalogueError(str(path), None, "schema files must be named "
                                     "<full name>.v<N>.avsc, e.g. demo.WelcomeEmail.v1.avsc")
            name, version = m.group("name"), int(m.group("version"))
            if version in self.raw.get(name, {}):
                raise CatalogueError(str(path), None, f"duplicate of "
                                     f"{self.raw[name][version][0]}")
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                raise CatalogueError(str(path), None, f"invalid JSON: {exc}") from None
            if not isinstance(doc, dict) or doc.get("type") not in _NAMED:
                raise CatalogueError(str(path), None, "must hold one named Avro type "
                                     "(record, enum or fixed)")
            full = _full_name(doc, "")
            if full != name:
                raise CatalogueError(str(path), None, f"defines {full!r} but the file name "
                                     f"says {name!r}")
            self.raw.setdefault(name, {})[version] = (path, doc)
        out: dict[str, tuple[SchemaVersion, ...]] = {}
        for name, by_version in sorted(self.raw.items()):
            numbers = sorted(by_version)
            if numbers != list(range(1, len(numbers) + 1)):
                missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
                raise CatalogueError(str(by_version[numbers[-1]][0]), None,
                                     f"version(s) {', '.join(f'v{n}' for n in missing)} of "
                                     f"{name} missing: never delete old versions, records "
                                     f"written with them may still be in Kafka")
            out[name] = tuple(self._version(name, n) for n in numbers)
        return out

    def _version(self, name: str, version: int) -> SchemaVersion:
        path, doc = self.raw[name][version]
        try:
            pins = self._pins(name, version, ())
            schema = _Expander(pins, self.raw).expand_top(doc)
            parsed = cast("dict[str, Any]", fastavro.parse_schema(copy.deepcopy(schema)))
            canonical = to_parsing_canonical_form(parsed)
            _check_arrays(parsed, parsed.get("__named_schemas", {}))
            _python_defaults(parsed)
        except CatalogueError as exc:
            raise CatalogueError(str(path), exc.entry, exc.reason) from None
        except Exception as exc:  # fastavro's SchemaParseException and friends
            raise CatalogueError(str(path), None, f"invalid Avro schema: {exc}") from None
        return SchemaVersion(name, version, path, schema, parsed, canonical)

    def _pins(self, name: str, version: int, chain: tuple[str, ...]) -> dict[str, int]:
        """Shared-type versions pinned by ``name`` v``version``, transitively."""
        doc = self.raw[name][version][1]
        uses = doc.get("uses", {})
        if not isinstance(uses, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in uses.values()):
            raise CatalogueError("", "uses", 'must map type names to versions: '
                                 '{"demo.Address": 1}')
        pins: dict[str, int] = {}
        for used, used_version in uses.items():
            if used in chain or used == name:
                raise CatalogueError("", "uses", f"cycle: {' -> '.join((*chain, name, used))}")
            if used_version not in self.raw.get(used, {}):
                raise CatalogueError("", "uses", f"{used} v{used_version} not found (expected "
                                     f"a file {used}.v{used_version}.avsc)")
            for n, v in {used: used_version, **self._pins(used, used_version,
                                                          (*chain, name))}.items():
                if pins.setdefault(n, v) != v:
                    raise CatalogueError("", "uses", f"{n} pinned to both v{pins[n]} and v{v}")
        return pins


class _Expander:
    """Inlines pinned shared types at their first use, so each version is self-contained:
    its fingerprint covers the shared types and other Avro tools can read it as is."""

    def __init__(self, pins: dict[str, int],
                 raw: dict[str, dict[int, tuple[Path, dict[str, Any]]]]) -> None:
        self.pins = pins
        self.raw = raw
        self.defined: set[str] = set()

    def expand_top(self, doc: dict[str, Any]) -> dict[str, Any]:
        out = self.expand({k: v for k, v in doc.items() if k != "uses"}, "")
        unused = set(self.pins) - self.defined
        if unused:
            raise CatalogueError("", "uses", f"{', '.join(sorted(unused))} pinned but not used")
        assert isinstance(out, dict)
        return out

    def expand(self, node: Any, ns: str) -> Any:
        if isinstance(node, str):
            if node in _PRIMITIVES:
                return node
            full = node if "." in node else (f"{ns}.{node}" if ns else node)
            if full in self.defined:
                return full
            if full in self.pins:
                shared = self.raw[full][self.pins[full]][1]
                body = {k: v for k, v in shared.items() if k not in ("uses", "namespace")}
                body["name"] = full  # a dotted name carries its namespace
                return self.expand(body, ns)
            raise CatalogueError("", None, f"unknown type {node!r}: define it, or pin a shared "
                                           f'type with "uses": {{"{full}": <version>}}')
        if isinstance(node, list):
            return [self.expand(item, ns) for item in node]
        if not isinstance(node, dict):
            return node
        out = dict(node)
        kind = node.get("type")
        if kind in _NAMED:
            full = _full_name(node, ns)
            if full in self.defined:
                raise CatalogueError("", None, f"type {full!r} defined twice")
            self.defined.add(full)
            inner_ns = full.rpartition(".")[0]
            if kind in ("record", "error"):
                out["fields"] = [{**f, "type": self.expand(f.get("type"), inner_ns)}
                                 if isinstance(f, dict) else f for f in node.get("fields", [])]
        elif kind == "array":
            out["items"] = self.expand(node.get("items"), ns)
        elif kind == "map":
            out["values"] = self.expand(node.get("values"), ns)
        elif isinstance(kind, dict | list) or (isinstance(kind, str) and kind not in _PRIMITIVES):
            out["type"] = self.expand(kind, ns)
        return out


def _full_name(node: Mapping[str, Any], ns: str) -> str:
    name = str(node.get("name", ""))
    if "." in name:
        return name
    namespace = node.get("namespace", ns)
    return f"{namespace}.{name}" if namespace else name


def _zero_width(schema: Any, named: Mapping[str, Any], seen: frozenset[str] = frozenset()) -> bool:
    """True when a value of ``schema`` can encode to zero bytes."""
    if isinstance(schema, str):
        if schema == "null":
            return True
        if schema in named and schema not in seen:
            return _zero_width(named[schema], named, seen | {schema})
        return False
    if isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "fixed":
            return schema.get("size") == 0
        if kind in ("record", "error"):
            return all(_zero_width(f["type"], named, seen) for f in schema.get("fields", []))
        if isinstance(kind, str | dict | list) and kind not in ("array", "map", "enum"):
            return _zero_width(kind, named, seen)
    return False


def _check_arrays(schema: Any, named: Mapping[str, Any]) -> None:
    """Refuse arrays of zero-byte items: a corrupt item count in such an array costs no input
    bytes, so a reader would loop (and allocate) for up to 2**63 items."""
    if isinstance(schema, list):
        for branch in schema:
            _check_arrays(branch, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind == "array":
            if _zero_width(schema.get("items"), named):
                raise CatalogueError("", None, "arrays of items that encode to zero bytes "
                                     "(null, empty records, fixed of size 0) are not allowed: "
                                     "a corrupt count could make readers loop for ages")
            _check_arrays(schema.get("items"), named)
        elif kind == "map":
            _check_arrays(schema.get("values"), named)
        elif kind in ("record", "error"):
            for f in schema.get("fields", []):
                _check_arrays(f.get("type"), named)
        elif isinstance(kind, dict | list):
            _check_arrays(kind, named)


def _python_defaults(parsed: dict[str, Any]) -> None:
    """Turn JSON defaults into the Python values fastavro writes and returns: Avro writes
    ``bytes``/``fixed`` defaults as strings of code points 0-255, and fastavro would otherwise
    fill a missing bytes field with that str (a write error, or a str where bytes belong)."""
    named: dict[str, Any] = parsed.get("__named_schemas", {})

    def convert(schema: Any, value: Any) -> Any:
        if isinstance(schema, str):
            if schema == "bytes" and isinstance(value, str):
                return value.encode("latin-1")
            return convert(named[schema], value) if schema in named else value
        if isinstance(schema, list):  # a union's default belongs to its first branch
            return convert(schema[0], value) if schema else value
        kind = schema.get("type")
        if kind == "fixed" and isinstance(value, str):
            return value.encode("latin-1")
        if kind in ("record", "error") and isinstance(value, dict):
            return {f["name"]: convert(f["type"], value[f["name"]]) if f["name"] in value
                    else f.get("default") for f in schema["fields"]}
        if kind == "array" and isinstance(value, list):
            return [convert(schema["items"], v) for v in value]
        if kind == "map" and isinstance(value, dict):
            return {k: convert(schema["values"], v) for k, v in value.items()}
        if isinstance(kind, str | list | dict) and kind not in _NAMED and kind not in (
                "array", "map"):
            return convert(kind, value)
        return value

    def walk(schema: Any) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error"):
                for f in schema["fields"]:
                    if "default" in f:
                        f["default"] = convert(f["type"], f["default"])
                    walk(f["type"])
            elif kind == "array":
                walk(schema["items"])
            elif kind == "map":
                walk(schema["values"])
            elif isinstance(kind, list | dict):
                walk(kind)

    walk(parsed)
    for definition in named.values():
        walk(definition)
