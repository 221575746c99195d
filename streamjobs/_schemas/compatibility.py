"""Schema compatibility between versions, by Avro's resolution rules.

For every record name and every pair of versions (old, new), both directions are checked:
backward (the new version reads data the old one wrote) and forward (the old version reads data
the new one wrote). Both must hold, because during a rolling deploy old and new code read each
other's records. ``problems(catalogue)`` lists what breaks; ``check(catalogue)`` raises the first
as ``SchemaCompatibilityError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from itertools import combinations
from typing import TYPE_CHECKING, Any

from ..errors import SchemaCompatibilityError

if TYPE_CHECKING:
    from .catalogue import Catalogue, SchemaVersion

__all__ = ["Problem", "check", "pairs", "problems", "read_problems"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})

# Avro promotions: writer type -> reader types that can read it.
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"int", "long", "float", "double"}),
    "long": frozenset({"long", "float", "double"}),
    "float": frozenset({"float", "double"}),
    "string": frozenset({"string", "bytes"}),
    "bytes": frozenset({"bytes", "string"}),
}


@dataclass(frozen=True)
class Problem:
    schema: str  # record full name
    writer_version: int
    reader_version: int
    direction: str  # "backward" (new reads old) or "forward" (old reads new)
    field: str  # path inside the record, "" for the record itself
    rule: str  # short code: field_without_default, type_change, enum_symbol, ...
    message: str

    def __str__(self) -> str:
        where = f" field {self.field!r}:" if self.field else ""
        return (f"{self.schema} v{self.reader_version} cannot read v{self.writer_version} data "
                f"({self.direction}):{where} {self.message} [{self.rule}]")

    def as_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "writer_version": self.writer_version,
                "reader_version": self.reader_version, "direction": self.direction,
                "field": self.field, "rule": self.rule, "message": self.message}


def pairs(catalogue: Catalogue) -> Iterator[tuple[SchemaVersion, SchemaVersion]]:
    """Every (older, newer) pair of versions of every schema."""
    for name in catalogue.schema_names():
        yield from combinations(catalogue.versions(name), 2)


def problems(catalogue: Catalogue) -> list[Problem]:
    out: list[Problem] = []
    for old, new in pairs(catalogue):
        out += read_problems(old, new, "backward")
        out += read_problems(new, old, "forward")
    return out


def check(catalogue: Catalogue) -> None:
    found = problems(catalogue)
    if found:
        raise SchemaCompatibilityError(found[0].schema, str(found[0]))


def read_problems(writer: SchemaVersion, reader: SchemaVersion, direction: str) -> list[Problem]:
    """Why ``reader`` cannot read data written with ``writer`` (empty: it can)."""
    return _Resolver(writer, reader, direction).run()


class _Resolver:
    def __init__(self, writer: SchemaVersion, reader: SchemaVersion, direction: str) -> None:
        self.writer, self.reader, self.direction = writer, reader, direction
        self.w_named: dict[str, Any] = writer.parsed.get("__named_schemas", {})
        self.r_named: dict[str, Any] = reader.parsed.get("__named_schemas", {})
        self.seen: set[tuple[str, str]] = set()  # named pairs in progress (recursive types)
        self.found: list[Problem] = []

    def run(self) -> list[Problem]:
        self.resolve(self.writer.parsed, self.reader.parsed, "")
        return self.found

    def problem(self, path: str, rule: str, message: str) -> None:
        self.found.append(Problem(self.writer.name, self.writer.version, self.reader.version,
                                  self.direction, path, rule, message))

    def deref(self, schema: Any, named: dict[str, Any]) -> Any:
        """Named references -> definitions, ``{"type": "int"}`` -> ``"int"``."""
        if isinstance(schema, str):
            return named.get(schema, schema)
        if isinstance(schema, dict) and "logicalType" not in schema:
            inner = schema.get("type")
            if isinstance(inner, dict | list) or inner in _PRIMITIVES:
                return self.deref(inner, named)
        return schema

    def resolve(self, w: Any, r: Any, path: str) -> None:
        w, r = self.deref(w, self.w_named), self.deref(r, self.r_named)
        if isinstance(w, list):  # every branch the writer may have used must be readable
            for branch in w:
                sub = _Resolver(self.writer, self.reader, self.direction)
                sub.seen = self.seen
                sub.resolve(branch, r, path)
                for p in sub.found:
                    if p.field == path and p.rule == "type_change":  # say it is the union's
                        p = replace(p, rule="union_branch",
                                    message=f"union branch {p.message}")
                    self.found.append(p)
            return
        if isinstance(r, list):
            for branch in r:
                trial = _Resolver(self.writer, self.reader, self.direction)
                trial.seen = set(self.seen)
                trial.resolve(w, branch, path)
                if not trial.found:
                    return
            self.problem(path, "union_branch", f"{_kind(w)} in v{self.writer.version} matches "
                                               f"no branch of the union in "
                                               f"v{self.reader.version} ({_kinds(r)})")
            return
        wk, rk = _kind(w), _kind(r)
        w_logical = w.get("logicalType") if isinstance(w, dict) else None
        r_logical = r.get("logicalType") if isinstance(r, dict) else None
        if w_logical != r_logical:
            self.problem(path, "logical_type", f"logical type changed from {w_logical} to "
                                               f"{r_logical}")
        if wk in _PROMOTIONS or rk in _PROMOTIONS or wk in ("null", "boolean", "double"):
            if wk != rk and rk not in _PROMOTIONS.get(wk, frozenset()):
                self.problem(path, "type_change", f"type {wk} in v{self.writer.version} "
                                                  f"cannot be read as {rk} (only promotions "
                                                  f"int->long->float->double, string<->bytes)")
            return
        if wk != rk:
            self.problem(path, "type_change", f"type {wk} in v{self.writer.version} cannot be "
                                              f"read as {rk}")
            return
        if wk in ("record", "error", "enum", "fixed") and not self.names_match(w, r, path):
            return
        if wk == "array":
            self.resolve(w["items"], r["items"], f"{path}[]")
        elif wk == "map":
            self.resolve(w["values"], r["values"], f"{path}{{}}")
        elif wk == "fixed":
            if w["size"] != r["size"]:
                self.problem(path, "fixed_size", f"fixed size changed from {w['size']} to "
                                                 f"{r['size']}")
        elif wk == "enum":
            missing = [s for s in w["symbols"] if s not in r["symbols"]]
            if missing and "default" not in r:
                self.problem(path, "enum_symbol", f"symbol(s) {', '.join(missing)} of "
                                                  f"v{self.writer.version} unknown to "
                                                  f"v{self.reader.version}, whose enum has no "
                                                  f"default")
        else:
            self.record(w, r, path)

    def names_match(self, w: dict[str, Any], r: dict[str, Any], path: str) -> bool:
        w_short = w["name"].rpartition(".")[2]
        accepted = {r["name"].rpartition(".")[2], r["name"]}
        accepted |= {a.rpartition(".")[2] for a in r.get("aliases", [])}
        if w_short not in accepted and w["name"] not in accepted:
            self.problem(path, "name_change", f"{_kind(w)} {w['name']} renamed to {r['name']} "
                                              f"without an alias")
            return False
        return True

    def record(self, w: dict[str, Any], r: dict[str, Any], path: str) -> None:
        key = (w["name"], r["name"])
        if key in self.seen:
            return
        self.seen.add(key)
        w_fields = {f["name"]: f for f in w["fields"]}
        for rf in r["fields"]:
            field_path = f"{path}.{rf['name']}" if path else rf["name"]
            names = [rf["name"], *rf.get("aliases", [])]
            wf = next((w_fields[n] for n in names if n in w_fields), None)
            if wf is not None:
                self.resolve(wf["type"], rf["type"], field_path)
            elif "default" not in rf:
                if self.direction == "backward":
                    self.problem(field_path, "field_without_default",
                                 f"added in v{self.reader.version} without a default, so "
                                 f"v{self.writer.version} data has no value for it")
                else:
                    self.problem(field_path, "field_without_default",
                                 f"removed in v{self.writer.version} but has no default in "
                                 f"v{self.reader.version}, so v{self.reader.version} readers "
                                 f"have no value for it")


def _kind(schema: Any) -> str:
    if isinstance(schema, str):
        return schema
    if isinstance(schema, list):
        return "union"
    kind = schema.get("type")
    return kind if isinstance(kind, str) else _kind(kind)


def _kinds(branches: list[Any]) -> str:
    return ", ".join(b["name"] if isinstance(b, dict) and "name" in b else _kind(b)
                     for b in branches)
