"""Registration of the catalogue's schema history in a real Apicurio Registry (`schemas
register`, `schemas check`) under both subject strategies. No Kafka topics are needed, but the
tests live with the other registry tests (tests/kafka) and use the same registry fixture."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from confluent_kafka.schema_registry import SchemaRegistryClient

from streamjobs._avro.codec import registry_schema
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._schemas.registry import RegistryConfig, SchemaRegistry
from tests.conftest import RunCli
from tests.kafka.registry_support import registry_url_fixture  # noqa: F401 - fixture

SCHEMAS = Path(__file__).resolve().parent.parent / "apps" / "registry_schemas"


def _confluent(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def test_schemas_check_reports_a_version_the_registry_lacks(registry_url: str,
                                                            run_cli: RunCli, unique: str) -> None:
    """Rule: `schemas check` fails (exit 1) naming the version of schemas/ that is not
    registered under the subject; `schemas register` fixes it (idempotent)."""
    prefix = f"{unique}."
    catalogue = Catalogue.load(SCHEMAS, topic_prefix=prefix)
    subject = catalogue.get("order").subject
    SchemaRegistry(RegistryConfig(registry_url)).register(
        subject, registry_schema(catalogue.versions("test.Order")[0]))
    env = {"STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_REGISTRY_URL": registry_url}
    check = run_cli("schemas", "check", "--schemas", str(SCHEMAS), env=env)
    assert check.returncode == 1, check.stdout
    assert f"subject {subject} (test.Order): v2 is not registered" in check.stderr
    reg = run_cli("schemas", "register", "--schemas", str(SCHEMAS), env=env)
    assert reg.returncode == 0, reg.stderr
    assert "2 version(s) registered in 1 subject(s)" in reg.stdout
    assert run_cli("schemas", "check", "--schemas", str(SCHEMAS), env=env).returncode == 0
    assert _confluent(registry_url).get_versions(subject) == [1, 2]


def test_record_name_strategy_registers_under_the_record_name(registry_url: str,
                                                              run_cli: RunCli,
                                                              tmp_path: Path) -> None:
    """Rule: with subject_strategy = "record" the history goes under the record's full name
    (RecordNameStrategy), whatever the topic (`schemas list` shows it); re-registering changes
    nothing."""
    schemas = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, schemas)
    name = f"test.Order{tmp_path.name.replace('-', '_').replace('.', '_')}"
    for f in schemas.glob("test.Order.v*.avsc"):  # a record name no other test registers
        f.write_text(f.read_text().replace('"Order"', f'"{name.split(".", 1)[1]}"'))
        f.rename(schemas / f.name.replace("test.Order", name))
    toml = (schemas / "catalogue.toml").read_text()
    (schemas / "catalogue.toml").write_text(
        toml.replace('schema = "test.Order"', f'schema = "{name}"\nsubject_strategy = "record"'))
    assert Catalogue.load(schemas).get("order").subject == name
    listed = run_cli("schemas", "list", "--schemas", str(schemas), "--json")
    [job] = json.loads(listed.stdout)["job_types"]
    assert (job["framing"], job["subject"]) == ("registry", name)
    env = {"STREAMJOBS_REGISTRY_URL": registry_url}
    for _ in range(2):
        res = run_cli("schemas", "register", "--schemas", str(schemas), env=env)
        assert res.returncode == 0, res.stderr
    assert _confluent(registry_url).get_versions(name) == [1, 2]
    assert run_cli("schemas", "check", "--schemas", str(schemas), env=env).returncode == 0
