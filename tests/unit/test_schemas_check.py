"""``streamjobs schemas check`` / ``list``: Avro resolution rules between every pair of versions,
both ways, with messages naming the record, versions, field and rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from streamjobs._schemas.catalogue import Catalogue
from streamjobs._schemas.compatibility import check
from streamjobs.cli.schemas import group
from streamjobs.errors import SchemaCompatibilityError
from tests.conftest import RunCli

ROOT = Path(__file__).resolve().parents[2]
TOML = '[jobs.r]\nschema = "t.R"\ntopic = "t.r"\n'


def write_versions(path: Path, *field_lists: list[dict[str, Any]], name: str = "t.R") -> Path:
    """A schemas dir whose record ``name`` has one version per field list."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "catalogue.toml").write_text(TOML)
    for n, fields in enumerate(field_lists, 1):
        schema = {"type": "record", "name": name, "fields": fields}
        (path / f"{name}.v{n}.avsc").write_text(json.dumps(schema))
    return path


def _runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told (the dependency floor runs these)
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2: always separate, and the argument is gone
        return CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = _runner().invoke(group, list(args))
    return result.exit_code, result.stdout, result.stderr


def problems_of(path: Path) -> list[dict[str, Any]]:
    code, out, _ = run("check", "--schemas", str(path), "--json")
    report = json.loads(out)
    assert code == (0 if report["ok"] else 1)
    return list(report["problems"])


ID = {"name": "id", "type": "string"}
E1 = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}

# (v1 fields, v2 fields, expected (direction, field, rule) problems)
CASES: list[tuple[str, list[Any], list[Any], set[tuple[str, str, str]]]] = [
    ("add with default", [ID], [ID, {"name": "x", "type": "int", "default": 0}], set()),
    ("add without default", [ID], [ID, {"name": "x", "type": "int"}],
     {("backward", "x", "field_without_default")}),
    ("remove with default", [ID, {"name": "x", "type": "int", "default": 0}], [ID], set()),
    ("remove without default", [ID, {"name": "x", "type": "int"}], [ID],
     {("forward", "x", "field_without_default")}),
    ("int to long", [{"name": "n", "type": "int"}], [{"name": "n", "type": "long"}],
     {("forward", "n", "type_change")}),
    ("float to double", [{"name": "n", "type": "float"}], [{"name": "n", "type": "double"}],
     {("forward", "n", "type_change")}),
    ("string to bytes", [{"name": "s", "type": "string"}], [{"name": "s", "type": "bytes"}],
     set()),
    ("int to string", [{"name": "n", "type": "int"}], [{"name": "n", "type": "string"}],
     {("backward", "n", "type_change"), ("forward", "n", "type_change")}),
    ("make nullable", [{"name": "s", "type": "string"}],
     [{"name": "s", "type": ["null", "string"], "default": None}],
     {("forward", "s", "union_branch")}),
    ("widen a union", [{"name": "u", "type": ["null", "int"]}],
     [{"name": "u", "type": ["null", "int", "string"]}], {("forward", "u", "union_branch")}),
    ("union to a branch all old branches promote to", [{"name": "u", "type": ["int", "long"]}],
     [{"name": "u", "type": "long"}], set()),
    ("union drops a branch", [{"name": "u", "type": ["null", "string"]}],
     [{"name": "u", "type": "string"}], {("backward", "u", "union_branch")}),
    ("enum add symbol", [{"name": "c", "type": E1}],
     [{"name": "c", "type": {**E1, "symbols": ["RED", "GREEN", "BLUE"]}}],
     {("forward", "c", "enum_symbol")}),
    ("enum add symbol with default", [{"name": "c", "type": {**E1, "default": "RED"}}],
     [{"name": "c", "type": {**E1, "symbols": ["RED", "GREEN", "BLUE"], "default": "RED"}}],
     set()),
    ("enum remove symbol", [{"name": "c", "type": E1}],
     [{"name": "c", "type": {**E1, "symbols": ["RED"]}}], {("backward", "c", "enum_symbol")}),
    ("fixed size", [{"name": "f", "type": {"type": "fixed", "name": "F", "size": 4}}],
     [{"name": "f", "type": {"type": "fixed", "name": "F", "size": 8}}],
     {("backward", "f", "fixed_size"), ("forward", "f", "fixed_size")}),
    ("nested record field", [{"name": "a", "type": {"type": "record", "name": "A", "fields": [
        ID]}}], [{"name": "a", "type": {"type": "record", "name": "A", "fields": [
            ID, {"name": "zip", "type": "string"}]}}],
     {("backward", "a.zip", "field_without_default")}),
    ("array items", [{"name": "xs", "type": {"type": "array", "items": "int"}}],
     [{"name": "xs", "type": {"type": "array", "items": "string"}}],
     {("backward", "xs[]", "type_change"), ("forward", "xs[]", "type_change")}),
    ("map values promote", [{"name": "m", "type": {"type": "map", "values": "int"}}],
     [{"name": "m", "type": {"type": "map", "values": "double"}}],
     {("forward", "m{}", "type_change")}),
    ("renamed nested record", [{"name": "a", "type": {"type": "record", "name": "A",
                                                      "fields": [ID]}}],
     [{"name": "a", "type": {"type": "record", "name": "B", "fields": [ID]}}],
     {("backward", "a", "name_change"), ("forward", "a", "name_change")}),
    ("rename field with alias", [{"name": "old", "type": "int", "default": 0}],
     [{"name": "new", "type": "int", "aliases": ["old"], "default": 0}], set()),
    ("logical type change", [{"name": "t", "type": "long"}],
     [{"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}}],
     {("backward", "t", "logical_type"), ("forward", "t", "logical_type")}),
]


@pytest.mark.parametrize(("v1", "v2", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rules(tmp_path: Path, v1: list[Any], v2: list[Any],
               expected: set[tuple[str, str, str]]) -> None:
    found = problems_of(write_versions(tmp_path, v1, v2))
    assert {(p["direction"], p["field"], p["rule"]) for p in found} == expected
    for p in found:
        assert p["schema"] == "t.R"
        assert {p["writer_version"], p["reader_version"]} == {1, 2}


def test_every_older_pair_not_only_consecutive(tmp_path: Path) -> None:
    """v1 -> v2 adds a default, v2 -> v3 removes the field: fine for v2, not for v1 readers."""
    path = write_versions(tmp_path, [ID, {"name": "x", "type": "int"}],
                          [ID, {"name": "x", "type": "int", "default": 0}], [ID])
    found = problems_of(path)
    assert [(p["reader_version"], p["writer_version"], p["direction"], p["rule"])
            for p in found] == [(1, 3, "forward", "field_without_default")]


def test_text_output_names_record_versions_field_and_rule(tmp_path: Path) -> None:
    code, out, err = run("check", "--schemas",
                         str(write_versions(tmp_path, [ID], [ID, {"name": "x", "type": "int"}])))
    assert code == 1
    assert ("t.R v2 cannot read v1 data (backward): field 'x': added in v2 without a default, "
            "so v1 data has no value for it [field_without_default]") in err
    assert out.startswith("1 problem(s):")


def test_demo_schemas_pass() -> None:
    code, out, _ = run("check", "--schemas", str(ROOT / "schemas"))
    assert code == 0
    assert out.strip() == ("ok: 2 job types, 2 schemas, 3 versions, 1 version pairs checked "
                           "both ways")
    assert problems_of(ROOT / "schemas") == []


def test_shared_types_are_checked_too(tmp_path: Path) -> None:
    path = write_versions(tmp_path, [ID])
    (path / "t.S.v1.avsc").write_text(json.dumps(
        {"type": "record", "name": "t.S", "fields": [ID]}))
    (path / "t.S.v2.avsc").write_text(json.dumps(
        {"type": "record", "name": "t.S", "fields": [ID, {"name": "y", "type": "int"}]}))
    assert [(p["schema"], p["field"]) for p in problems_of(path)] == [("t.S", "y")]


def test_check_raises_schema_compatibility_error(tmp_path: Path) -> None:
    path = write_versions(tmp_path, [ID], [ID, {"name": "x", "type": "int"}])
    with pytest.raises(SchemaCompatibilityError) as info:
        check(Catalogue.load(path))
    assert info.value.schema == "t.R" and "field 'x'" in info.value.reason
    check(Catalogue.load(ROOT / "schemas"))  # no error


def test_bad_catalogue_is_one_line_exit_1(tmp_path: Path) -> None:
    code, _, err = run("check", "--schemas", str(tmp_path))
    assert code == 1
    assert err.startswith("error: ") and "catalogue.toml: file not found" in err
    assert "Traceback" not in err


def test_list(tmp_path: Path) -> None:
    code, out, _ = run("list", "--schemas", str(ROOT / "schemas"), "--json")
    assert code == 0
    data = json.loads(out)
    assert [j["job_type"] for j in data["job_types"]] == ["send_welcome_email", "make_thumbnail"]
    versions = [(s["schema"], s["version"], s["current"]) for s in data["schemas"]]
    assert versions == [("demo.Thumbnail", 1, True), ("demo.WelcomeEmail", 1, False),
                        ("demo.WelcomeEmail", 2, True)]
    assert all(len(s["fingerprint"]) == 16 for s in data["schemas"])
    code, out, _ = run("list", "--schemas", str(ROOT / "schemas"))
    assert code == 0 and "send_welcome_email" in out and "v2 (current)" in out


def test_real_cli_subprocess(run_cli: RunCli, tmp_path: Path) -> None:
    """The installed ``streamjobs`` command, environment variable for the directory."""
    ok = run_cli("schemas", "check")
    assert ok.returncode == 0, ok.stderr
    bad = write_versions(tmp_path, [ID], [ID, {"name": "x", "type": "int"}])
    result = run_cli("schemas", "check", env={"STREAMJOBS_SCHEMAS": str(bad)})
    assert result.returncode == 1
    assert "field 'x'" in result.stderr and "Traceback" not in result.stderr
