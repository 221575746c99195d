"""The ``streamjobs`` command line: a thin layer over the library, one module per command group.

Groups load lazily so ``streamjobs --help`` stays fast and one group's imports never slow another.
Exit codes: 0 ok, 1 failure, 2 usage error or (``topics plan``) changes pending, 3 not found,
4 Kafka unreachable.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

__all__ = ["main"]

# name -> "module:attribute" of a click command or group.
_COMMANDS: dict[str, str] = {
    "dev": "streamjobs.cli.dev:group",
    "emit": "streamjobs.cli.emit:command",
    "topics": "streamjobs.cli.topics:group",
    "schemas": "streamjobs.cli.schemas:group",
    "worker": "streamjobs.cli.worker:command",
    "dlq": "streamjobs.cli.dlq:group",
    "replay": "streamjobs.cli.replay:command",
    "lag": "streamjobs.cli.lag:command",
    "schedules": "streamjobs.cli.schedules:group",
    "status": "streamjobs.cli.status:command",
    "web": "streamjobs.cli.web:command",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None  # missing from this install: click says "No such command"
            raise
        cmd: Any = getattr(mod, attr)
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="streamjobs")
def main() -> None:
    """streamjobs: background jobs as Avro events on Apache Kafka."""
