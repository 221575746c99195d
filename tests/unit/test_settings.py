"""One topic prefix for the library and the CLI: ``Settings`` from the environment, followed by
``Catalogue.load``, ``App`` and the default group ids; the CLI's name handling of ``--topic``."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from streamjobs._names import default_group_id
from streamjobs._ops.dlq import parse_ref
from streamjobs._ops.replay import PartitionPlan, ResetPlan, ResetSpec
from streamjobs._schemas.catalogue import Catalogue
from streamjobs._settings import Settings
from streamjobs._worker import App, Worker, wait_group
from streamjobs.cli._common import load_catalogue, schemas_option, settings
from streamjobs.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def test_settings_read_the_prefix_from_the_environment() -> None:
    """Rule: STREAMJOBS_TOPIC_PREFIX is the prefix; unset or empty means none; a prefix Kafka
    could not put in a topic name is refused naming the field."""
    assert Settings.from_env({"STREAMJOBS_TOPIC_PREFIX": "staging."}).topic_prefix == "staging."
    assert Settings.from_env({}).topic_prefix == ""
    assert Settings.from_env({"STREAMJOBS_TOPIC_PREFIX": ""}).topic_prefix == ""
    with pytest.raises(ConfigError) as info:
        Settings("bad/prefix")
    assert info.value.field == "topic_prefix"


def test_topic_names_are_taken_under_the_prefix_once() -> None:
    """Rule: a catalogue name gets the prefix; a name already carrying it is kept."""
    s = Settings("staging.")
    assert s.topic("demo.emails") == "staging.demo.emails"
    assert s.topic("demo.emails.dlq") == "staging.demo.emails.dlq"
    assert s.topic("staging.demo.emails") == "staging.demo.emails"
    assert Settings().topic("demo.emails") == "demo.emails"


def test_default_group_ids_carry_the_prefix() -> None:
    """Rule: the worker's default group is <prefix>streamjobs-<app>, its wait group follows."""
    assert default_group_id("demo") == "streamjobs-demo"
    assert default_group_id("demo", "staging.") == "staging.streamjobs-demo"
    assert Settings("p-").group_id("demo") == "p-streamjobs-demo"
    app = App(schemas=SCHEMAS, name="demo", topic_prefix="staging.")
    assert app.default_group_id() == "staging.streamjobs-demo"
    assert wait_group(app.default_group_id()) == "staging.streamjobs-demo.wait"


def test_catalogue_load_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: Catalogue.load without topic_prefix uses STREAMJOBS_TOPIC_PREFIX, like the CLI;
    topic_prefix="" opts out; prefixes never stack."""
    monkeypatch.setenv("STREAMJOBS_TOPIC_PREFIX", "env.")
    cat = Catalogue.load(SCHEMAS)
    assert cat.topic_prefix == "env."
    assert cat.get("send_welcome_email").topic == "env.demo.emails"
    assert Catalogue.load(SCHEMAS, topic_prefix="").get("send_welcome_email").topic == \
        "demo.emails"
    other = cat.with_topic_prefix("x.")
    assert other.get("send_welcome_email").topic == "x.demo.emails"
    assert other.with_topic_prefix("").get("send_welcome_email").topic == "demo.emails"


def test_app_follows_the_environment_and_never_doubles_a_prefix(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: App() takes STREAMJOBS_TOPIC_PREFIX like Catalogue.load; given a catalogue loaded
    under that prefix, its topics carry the prefix once; setting topic_prefix later (the
    CLI's --topic-prefix) moves every topic and the default group."""
    monkeypatch.setenv("STREAMJOBS_TOPIC_PREFIX", "env.")
    app = App(schemas=Catalogue.load(SCHEMAS), name="demo")
    job = app.catalogue.get("send_welcome_email")
    assert app.topic_prefix == "env." and app.topic(job) == "env.demo.emails"
    assert app.default_group_id() == "env.streamjobs-demo"
    app.topic_prefix = "cli."
    assert app.topic(job) == "cli.demo.emails"
    assert app.catalogue.get("send_welcome_email").topic == "cli.demo.emails"
    assert App(schemas=SCHEMAS, topic_prefix="").topic(job) == "demo.emails"


def test_worker_default_group_is_prefixed() -> None:
    """Rule: a Worker without group_id joins <prefix>streamjobs-<app name>."""
    app = App(schemas=SCHEMAS, name="demo", topic_prefix="staging.")

    @app.job("send_welcome_email")
    def _email(payload: dict[str, object], ctx: object) -> None: ...

    @app.job("make_thumbnail")
    def _thumb(payload: dict[str, object], ctx: object) -> None: ...

    assert Worker(app).group_id == "staging.streamjobs-demo"


def test_cli_prefix_option_and_environment_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rule: a command's --topic-prefix (or its variable) is the one Settings the command uses
    for the catalogue and for --topic names; without the option the environment decides."""
    seen: list[tuple[str, str]] = []

    @click.command()
    @schemas_option
    def cmd(schemas_dir: str) -> None:
        seen.append((settings().topic_prefix,
                     load_catalogue(schemas_dir).get("send_welcome_email").topic))

    runner = CliRunner()
    assert runner.invoke(cmd, ["--schemas", str(SCHEMAS), "--topic-prefix", "a."]).exit_code == 0
    assert runner.invoke(cmd, ["--schemas", str(SCHEMAS)],
                         env={"STREAMJOBS_TOPIC_PREFIX": "b."}).exit_code == 0
    bad = runner.invoke(cmd, ["--schemas", str(SCHEMAS), "--topic-prefix", "a/b"])
    assert bad.exit_code == 2
    assert seen == [("a.", "a.demo.emails"), ("b.", "b.demo.emails")]


@pytest.mark.parametrize("text,expected", [
    ("0:5", (None, 0, 5)),
    ("3/17", (None, 3, 17)),
    ("demo.emails.dlq/0/5", ("demo.emails.dlq", 0, 5)),
    ("staging.demo.emails.dlq/2/0", ("staging.demo.emails.dlq", 2, 0)),
])
def test_dlq_record_references(text: str, expected: tuple[str | None, int, int]) -> None:
    """Rule: `dlq show` takes what `dlq list` prints (TOPIC/PARTITION/OFFSET) and P:O."""
    assert parse_ref(text) == expected


@pytest.mark.parametrize("text", ["", "5", "a:b", "t/x/1", "/0/5", "0:"])
def test_bad_dlq_record_references(text: str) -> None:
    with pytest.raises(ValueError, match="TOPIC/PARTITION/OFFSET"):
        parse_ref(text)


def test_replay_plan_names_topics_the_group_never_committed_on() -> None:
    """Rule: a topic where the group has no committed offset on any partition is flagged
    (a misspelt group would otherwise plan '0 jobs' quietly)."""
    plan = ResetPlan("g", ResetSpec("to_earliest"), (
        PartitionPlan("a", 0, None, 0, 0, 5), PartitionPlan("a", 1, 3, 0, 0, 5),
        PartitionPlan("b", 0, None, 0, 0, 5), PartitionPlan("b", 1, None, 0, 0, 5)))
    assert plan.never_committed() == ("b",)
