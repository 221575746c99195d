"""Every CLI option has an environment variable, and the README lists every one of them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click

from streamjobs.cli import main

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def _commands(group: click.Group, ctx: click.Context, path: str = "streamjobs"
              ) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, f"{path} {name} is listed but cannot be loaded"
        full = f"{path} {name}"
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, click.Context(cmd, info_name=name, parent=ctx), full)
        else:
            yield full, cmd


def _params() -> list[tuple[str, click.Parameter]]:
    ctx = click.Context(main, info_name="streamjobs")
    out = []
    for path, cmd in _commands(main, ctx):
        for param in cmd.params:
            if param.name in {"help", "version"}:
                continue
            # `dev tool NAME ARGS...` passes everything through to Kafka's tool untouched.
            if path == "streamjobs dev tool":
                continue
            out.append((f"{path} {param.name}", param))
    return out


def test_every_option_has_an_environment_variable() -> None:
    """Rule: no CLI option or argument without a STREAMJOBS_* (or KAFKA_/JAVA_) variable."""
    missing = [name for name, p in _params() if not p.envvar]
    assert missing == []


def test_every_environment_variable_is_in_the_readme() -> None:
    """Rule: the README's table names every variable the CLI reads."""
    names: set[str] = set()
    for _, p in _params():
        envvars = p.envvar if isinstance(p.envvar, list | tuple) else [p.envvar]
        names.update(str(e) for e in envvars if e)
    assert names, "found no environment variables at all"
    missing = sorted(n for n in names if n not in README)
    assert missing == []


CONNECTION = {"--bootstrap-servers", "--security-protocol", "--sasl-mechanism",
              "--sasl-username", "--sasl-password", "--ssl-ca-location",
              "--ssl-certificate-location", "--ssl-key-location", "--ssl-key-password",
              "--client-id", "--connect-timeout", "--log-level", "--consumer-config",
              "--producer-config"}
REGISTRY = {"--registry-url", "--registry-username", "--registry-password",
            "--registry-ca-location", "--registry-timeout"}


def test_every_command_and_option_is_in_the_readme() -> None:
    """Rule: the README's command table has a row for every command, naming every option (the
    connection and registry options once, in the paragraph above the table)."""
    section = README[README.index("### Every command and option"):]
    intro, _, table = section.partition("| command |")
    assert all(f"`{o}`" in intro for o in CONNECTION | REGISTRY)
    rows = {line.split("|")[1].strip().strip("`").split(" [")[0]: line
            for line in table.splitlines() if line.startswith("| `streamjobs")}
    ctx = click.Context(main, info_name="streamjobs")
    for path, cmd in _commands(main, ctx):
        row = next((r for name, r in rows.items() if name.startswith(path)), None)
        assert row is not None, f"no README row for {path}"
        for p in cmd.params:
            if isinstance(p, click.Option) and p.name != "help":
                flag = max(p.opts, key=len)
                if flag in CONNECTION:
                    assert "connection options" in row, path
                elif flag in REGISTRY:
                    assert "registry options" in row, path
                else:
                    assert f"`{flag}`" in row, f"{path}: {flag} missing from the README"
