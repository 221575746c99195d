"""Small CLI promises: `dev tool --help` lists the tools (options after NAME still go to the
tool), and an unknown tool exits 3 naming the available ones."""

from __future__ import annotations

from click.testing import CliRunner

from streamjobs._dev.tools import TOOLS
from streamjobs.cli import main


def test_dev_tool_help_lists_the_tools() -> None:
    """Rule: `streamjobs dev tool --help` (and -h) exits 0 and names every tool."""
    for flag in ("--help", "-h"):
        res = CliRunner().invoke(main, ["dev", "tool", flag], prog_name="streamjobs")
        assert res.exit_code == 0, res.output
        assert "Usage: streamjobs dev tool" in res.output
        assert all(f"  {t}\n" in res.output for t in TOOLS)


def test_unknown_tool_exits_3_naming_the_tools() -> None:
    res = CliRunner().invoke(main, ["dev", "tool", "kafka-nope", "--help"])
    assert res.exit_code == 3
    assert "kafka-topics" in res.output


def test_dev_up_refuses_registry_options_without_registry() -> None:
    """`dev up --registry-tls`/`--registry-auth` without `--registry` would start a broker and
    silently ignore them: a usage error (exit 2) in one line, before anything starts."""
    for extra in (["--registry-tls"], ["--registry-auth", "u:p"]):
        res = CliRunner().invoke(main, ["dev", "up", "--port", "1", *extra],
                                 prog_name="streamjobs")
        assert res.exit_code == 2, res.output
        assert res.output.strip().splitlines() == [
            "error: --registry-tls and --registry-auth need --registry"]
