"""Loading the catalogue: the demo schemas, shared types, and every load error naming its place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamjobs._retry import DEFAULT_DELAY_TIERS, Exponential, RetryPolicy
from streamjobs._schemas.catalogue import Catalogue, JobType, TopicSettings
from streamjobs.errors import CatalogueError, UnknownJobType

ROOT = Path(__file__).resolve().parents[2]

USER = {"type": "record", "name": "User", "namespace": "t",
        "fields": [{"name": "id", "type": "string"}, {"name": "n", "type": "int"}]}
GOOD = """
[jobs.a]
schema = "t.User"
topic = "t.users"
key_field = "id"
"""


def make_dir(tmp_path: Path, toml: str = GOOD, **schemas: Any) -> Path:
    """A schemas dir with ``catalogue.toml`` and ``file name -> schema JSON`` files."""
    schemas = schemas or {"t.User.v1.avsc": USER}
    for name, schema in schemas.items():
        text = schema if isinstance(schema, str) else json.dumps(schema)
        (tmp_path / name).write_text(text)
    (tmp_path / "catalogue.toml").write_text(toml)
    return tmp_path


def load_error(path: Path) -> CatalogueError:
    with pytest.raises(CatalogueError) as info:
        Catalogue.load(path)
    return info.value


def test_demo_catalogue() -> None:
    cat = Catalogue.load(ROOT / "schemas")
    assert cat.names() == ("send_welcome_email", "make_thumbnail")
    assert len(cat) == 2
    email = cat.get("send_welcome_email")
    assert email == JobType(
        name="send_welcome_email", schema="demo.WelcomeEmail", topic="demo.emails",
        key_field="user_id",
        retry=RetryPolicy(max_attempts=5, exponential=Exponential(1.0, 2.0, 60.0, 0.1)),
        permanent_errors=("ValueError",),
        settings=TopicSettings(partitions=6, replication_factor=1, retention_ms=7 * 86400_000),
        status="all")
    assert email.partitions == 6 and email.retention_ms == 604800000
    thumb = cat.get("make_thumbnail")
    assert (thumb.topic, thumb.key_field, thumb.retry) == ("demo.images", "image_id",
                                                           RetryPolicy())
    assert [v.version for v in cat.versions("demo.WelcomeEmail")] == [1, 2]
    assert cat.current("demo.WelcomeEmail").version == 2
    assert [f["name"] for f in cat.current("demo.WelcomeEmail").schema["fields"]] == [
        "user_id", "email", "locale"]
    assert cat.for_topic("demo.images") == (thumb,)
    assert cat.for_topic("nope") == ()
    assert set(cat.job_topics()) == {"demo.emails", "demo.images"}
    assert [j.name for j in cat] == ["send_welcome_email", "make_thumbnail"]


def test_wait_tiers_are_the_fixed_ladder_whatever_the_policies() -> None:
    cat = Catalogue.load(ROOT / "schemas")
    # demo.emails retries exponentially (1s, 2s, 4s, 8s), demo.images after 5s and 30s: the
    # same five tiers for both, so each job topic needs 7 topics (job, 5 tiers, DLQ).
    assert cat.wait_tiers("demo.emails") == (1.0, 10.0, 60.0, 600.0, 3600.0)
    assert cat.wait_tiers("demo.images") == DEFAULT_DELAY_TIERS
    assert cat.wait_tiers("unknown") == DEFAULT_DELAY_TIERS


def test_unknown_job_type_lists_known() -> None:
    cat = Catalogue.load(ROOT / "schemas")
    with pytest.raises(UnknownJobType) as info:
        cat.get("nope")
    assert info.value.known == ("send_welcome_email", "make_thumbnail")


def test_defaults_apply_and_job_keys_replace_them(tmp_path: Path) -> None:
    toml = """
[defaults]
partitions = 3
retention_ms = -1
retry = { delays = ["2s"], max_attempts = 2 }
permanent_errors = ["KeyError"]

[jobs.a]
schema = "t.User"
topic = "t.one"

[jobs.b]
schema = "t.User"
topic = "t.two"
partitions = 12
retry = { max_attempts = 1 }
permanent_errors = []
"""
    cat = Catalogue.load(make_dir(tmp_path, toml))
    a, b = cat.get("a"), cat.get("b")
    assert a.settings == TopicSettings(partitions=3, replication_factor=1, retention_ms=-1)
    assert a.retry == RetryPolicy(delays=(2.0,), max_attempts=2)
    assert a.permanent_errors == ("KeyError",)
    assert b.partitions == 12 and b.key_field is None
    assert b.retry == RetryPolicy(max_attempts=1)  # the whole retry table is replaced
    assert b.permanent_errors == ()


def test_job_types_may_share_a_topic(tmp_path: Path) -> None:
    toml = GOOD + '\n[jobs.b]\nschema = "t.User"\ntopic = "t.users"\n' \
                  'retry = { delays = ["7s"], max_attempts = 2 }\n'
    cat = Catalogue.load(make_dir(tmp_path, toml))
    assert [j.name for j in cat.for_topic("t.users")] == ["a", "b"]
    assert cat.wait_tiers("t.users") == DEFAULT_DELAY_TIERS  # 7s hops 1s tiers


def test_shared_type_pinned_and_inlined(tmp_path: Path) -> None:
    addr1 = {"type": "record", "name": "Address", "namespace": "t",
             "fields": [{"name": "city", "type": "string"}]}
    addr2 = {**addr1, "fields": [*addr1["fields"],
                                 {"name": "zip", "type": "string", "default": ""}]}
    person = {"type": "record", "name": "Person", "namespace": "t", "uses": {"t.Address": 1},
              "fields": [{"name": "id", "type": "string"},
                         {"name": "home", "type": "Address"},
                         {"name": "work", "type": ["null", "t.Address"], "default": None}]}
    person2 = {**person, "uses": {"t.Address": 2}}
    toml = '[jobs.p]\nschema = "t.Person"\ntopic = "t.people"\n'
    cat = Catalogue.load(make_dir(tmp_path, toml, **{
        "t.Address.v1.avsc": addr1, "t.Address.v2.avsc": addr2,
        "t.Person.v1.avsc": person, "t.Person.v2.avsc": person2}))
    v1, v2 = cat.versions("t.Person")
    assert "uses" not in v1.schema
    home = v1.schema["fields"][1]["type"]
    assert home["name"] == "t.Address" and len(home["fields"]) == 1  # v1 stays on Address v1
    assert v1.schema["fields"][2]["type"] == ["null", "t.Address"]  # later uses: references
    assert len(v2.schema["fields"][1]["type"]["fields"]) == 2
    assert v1.canonical != v2.canonical


@pytest.mark.parametrize(("files", "match"), [
    ({"t.P.v1.avsc": {"type": "record", "name": "t.P", "uses": {"t.A": 2},
                      "fields": [{"name": "a", "type": "t.A"}]}}, "t.A v2 not found"),
    ({"t.P.v1.avsc": {"type": "record", "name": "t.P", "uses": {"t.A": 1},
                      "fields": [{"name": "x", "type": "int"}]}}, "pinned but not used"),
    ({"t.P.v1.avsc": {"type": "record", "name": "t.P",
                      "fields": [{"name": "a", "type": "t.A"}]}}, "unknown type 't.A'"),
    ({"t.P.v1.avsc": {"type": "record", "name": "t.P", "uses": "t.A",
                      "fields": [{"name": "a", "type": "t.A"}]}}, "must map type names"),
])
def test_shared_type_errors(tmp_path: Path, files: dict[str, Any], match: str) -> None:
    a = {"type": "enum", "name": "t.A", "symbols": ["X", "Y"]}
    toml = '[jobs.p]\nschema = "t.P"\ntopic = "t.p"\n'
    err = load_error(make_dir(tmp_path, toml, **{"t.A.v1.avsc": a, **files}))
    assert err.file.endswith("t.P.v1.avsc")
    assert match in err.reason


def test_shared_type_pinned_at_two_versions(tmp_path: Path) -> None:
    a1 = {"type": "enum", "name": "t.A", "symbols": ["X"]}
    a2 = {"type": "enum", "name": "t.A", "symbols": ["X", "Y"], "default": "X"}
    b = {"type": "record", "name": "t.B", "uses": {"t.A": 2},
         "fields": [{"name": "a", "type": "t.A"}]}
    p = {"type": "record", "name": "t.P", "uses": {"t.A": 1, "t.B": 1},
         "fields": [{"name": "a", "type": "t.A"}, {"name": "b", "type": "t.B"}]}
    toml = '[jobs.p]\nschema = "t.P"\ntopic = "t.p"\n'
    err = load_error(make_dir(tmp_path, toml, **{
        "t.A.v1.avsc": a1, "t.A.v2.avsc": a2, "t.B.v1.avsc": b, "t.P.v1.avsc": p}))
    assert "t.A pinned to both v1 and v2" in err.reason


# Each bad catalogue: (toml, extra schema files or None, entry named, words in the reason)
BAD_CATALOGUES = [
    ("[jobs.a\n", None, None, "invalid TOML"),
    (GOOD + GOOD.replace("key_field", "# k"), None, "jobs.a", "duplicate job type"),
    ("[jobz.a]\n", None, "jobz", "unknown section"),
    ("[defaults]\npartitions = 3\n", None, "jobs", "no job types"),
    ('[jobs.a]\nschema = "t.Nope"\ntopic = "t.x"\n', None, "jobs.a", "schema 't.Nope' not found"),
    ('[jobs.a]\ntopic = "t.x"\n', None, "jobs.a", "'schema' is required"),
    ('[jobs.a]\nschema = "t.User"\n', None, "jobs.a", "'topic' is required"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "bad topic!"\n', None, "jobs.a",
     "invalid Kafka topic name"),
    ('[jobs.a]\nschema = "t.User"\ntopic = ".."\n', None, "jobs.a", "invalid Kafka topic name"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "' + "x" * 245 + '"\n', None, "jobs.a",
     "derived topic"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nkey_field = "email"\n', None, "jobs.a",
     "key_field 'email' is not a field of t.User v1"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nretry = { delays = ["1 week"] }\n', None,
     "jobs.a", "jobs.a.retry.delays[0]"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nretry = { max_attempts = 0 }\n', None,
     "jobs.a", "jobs.a.retry.max_attempts"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nretries = 3\n', None, "jobs.a",
     "unknown key 'retries'"),
    ('[defaults]\nparts = 3\n' + GOOD, None, "defaults", "unknown key 'parts'"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\npartitions = 0\n', None, "jobs.a",
     "partitions must be an integer >= 1"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nretention = "forever"\n', None, "jobs.a",
     "retention"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\nretention = "1d"\nretention_ms = 5\n', None,
     "jobs.a", "not both"),
    ('[jobs.a]\nschema = "t.User"\ntopic = "t.u"\npermanent_errors = ["not a class"]\n', None,
     "jobs.a", "permanent_errors"),
    ('[jobs."a b"]\nschema = "t.User"\ntopic = "t.u"\n', None, "jobs.a b", "job type names"),
    (GOOD + '[jobs.b]\nschema = "t.User"\ntopic = "t.users"\npartitions = 2\n', None, "jobs.",
     "differ"),
    (GOOD + '[jobs.b]\nschema = "t.User"\ntopic = "t_users"\n', None, "jobs.b", "collides"),
    (GOOD + '[jobs.b]\nschema = "t.User"\ntopic = "t.users.dlq"\n', None, "jobs.b",
     "retry/dead-letter topic of 't.users'"),
    (GOOD + '[jobs.b]\nschema = "t.User"\ntopic = "t.users.retry.1m"\n', None, "jobs.b",
     "retry/dead-letter topic"),
    ('[jobs.a]\nschema = "t.Color"\ntopic = "t.u"\n',
     {"t.Color.v1.avsc": {"type": "enum", "name": "t.Color", "symbols": ["R"]}}, "jobs.a",
     "must be an Avro record"),
]


@pytest.mark.parametrize(("toml", "files", "entry", "reason"), BAD_CATALOGUES)
def test_catalogue_errors_name_file_and_entry(tmp_path: Path, toml: str,
                                              files: dict[str, Any] | None, entry: str | None,
                                              reason: str) -> None:
    path = make_dir(tmp_path, toml, **{"t.User.v1.avsc": USER, **(files or {})})
    err = load_error(path)
    assert err.file == str(path / "catalogue.toml")
    if entry is None:
        assert err.entry is None
    else:
        assert err.entry is not None and err.entry.startswith(entry)
    assert reason in err.reason
    assert str(path / "catalogue.toml") in str(err)


def test_missing_catalogue_file(tmp_path: Path) -> None:
    err = load_error(tmp_path)
    assert err.file == str(tmp_path / "catalogue.toml")
    assert "not found" in err.reason


# Bad schema files: (file name, content, words in the reason)
BAD_SCHEMA_FILES = [
    ("t.User.avsc", USER, "must be named <full name>.v<N>.avsc"),
    ("t.User.v0.avsc", USER, "must be named"),
    ("t.User.v3.avsc", USER, "v2 of t.User missing: never delete old versions"),
    ("t.Other.v1.avsc", USER, "defines 't.User' but the file name says 't.Other'"),
    ("t.Bad.v1.avsc", "{not json", "invalid JSON"),
    ("t.Bad.v1.avsc", ["null", "string"], "one named Avro type"),
    ("t.Bad.v1.avsc", {"type": "record", "name": "t.Bad",
                       "fields": [{"name": "x", "type": "integer"}]}, "unknown type 'integer'"),
    ("t.Bad.v1.avsc", {"type": "record", "name": "t.Bad",
                       "fields": [{"name": "x", "type": "int", "default": "zero"}]},
     "invalid Avro schema"),
    ("t.Bad.v1.avsc", {"type": "record", "name": "t.Bad",
                       "fields": [{"name": "x", "type": {"type": "array", "items": "null"}}]},
     "zero bytes"),
    ("t.Bad.v1.avsc", {"type": "record", "name": "t.Bad", "fields": [
        {"name": "x", "type": {"type": "array", "items": {
            "type": "record", "name": "E", "fields": [{"name": "n", "type": "null"}]}}}]},
     "zero bytes"),
]


@pytest.mark.parametrize(("name", "content", "reason"), BAD_SCHEMA_FILES)
def test_schema_file_errors_name_the_file(tmp_path: Path, name: str, content: Any,
                                          reason: str) -> None:
    path = make_dir(tmp_path, GOOD, **{"t.User.v1.avsc": USER, name: content})
    err = load_error(path)
    assert err.file.endswith(name)
    assert reason in err.reason


def test_array_of_non_zero_width_items_is_fine(tmp_path: Path) -> None:
    user = {**USER, "fields": [*USER["fields"],
                               {"name": "tags", "type": {"type": "array", "items": "string"},
                                "default": []},
                               {"name": "maybe", "type": {"type": "array",
                                                          "items": ["null", "int"]},
                                "default": []}]}
    cat = Catalogue.load(make_dir(tmp_path, GOOD, **{"t.User.v1.avsc": user}))
    assert len(cat.current("t.User").schema["fields"]) == 4
