"""``streamjobs web``: serve the dashboard (docs/web.md).

Binds 127.0.0.1 unless told otherwise; any other address needs ``STREAMJOBS_WEB_TOKEN``
(given only through the environment, so it never shows in a process list). Exit codes:
0 stopped, 1 failure, 2 usage (including a non-loopback ``--host`` without a token),
4 Kafka unreachable.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import FrameType

import click

from .._config import KafkaConfig
from .._schemas.registry import RegistryConfig
from ..errors import CatalogueError, ConfigError
from ._common import (
    EXIT_FAILURE,
    EXIT_USAGE,
    fail,
    handle_errors,
    kafka_options,
    load_catalogue,
    registry_options,
    schemas_option,
)
from ._common import (
    settings as cli_settings,
)

__all__ = ["command"]

TOKEN_ENV = "STREAMJOBS_WEB_TOKEN"


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="STREAMJOBS_WEB_HOST",
              help="Address to bind; a non-loopback one needs STREAMJOBS_WEB_TOKEN.")
@click.option("--port", type=int, default=8080, show_default=True,
              envvar="STREAMJOBS_WEB_PORT", help="Port to listen on.")
@click.option("--read-only", is_flag=True, envvar="STREAMJOBS_WEB_READ_ONLY",
              help="Hide and refuse every action that changes anything.")
@click.option("--root-path", default="", envvar="STREAMJOBS_WEB_ROOT_PATH",
              help="Path prefix the dashboard is served under (behind an ingress), e.g. /jobs.")
@click.option("--group", "groups", multiple=True, envvar="STREAMJOBS_WEB_GROUP",
              help="Consumer group to show even when none of its workers report; repeatable.")
@schemas_option
@kafka_options
@registry_options
@handle_errors
def command(kafka: KafkaConfig, require_broker: Callable[[], None], host: str, port: int,
            read_only: bool, root_path: str, groups: tuple[str, ...], schemas_dir: str,
            registry: RegistryConfig | None) -> None:
    """Serve the dashboard: overview, jobs by id (live over SSE), dead letters, replay, and a
    JSON API. Actions need STREAMJOBS_WEB_TOKEN (log in on the page, or Bearer)."""
    prefix = cli_settings().topic_prefix
    try:
        import uvicorn

        from .._web import Sources, WebSettings, create_app
    except ModuleNotFoundError as exc:
        fail(f"streamjobs web needs the web extra ({exc.name} is missing): "
             f"pip install 'streamjobs[web]'", EXIT_FAILURE)
    try:
        settings = WebSettings(host=host, port=port, read_only=read_only, root_path=root_path,
                               token=os.environ.get(TOKEN_ENV) or None, topic_prefix=prefix)
    except ConfigError as exc:
        fail(f"invalid option --{exc.field.replace('_', '-')}: {exc.reason}", EXIT_USAGE)
    require_broker()  # after the options are known good
    try:
        catalogue = load_catalogue(schemas_dir)
    except CatalogueError as exc:
        click.echo(f"warning: no catalogue, dead letters and wait tiers not shown: {exc}",
                   err=True)
        catalogue = None
    sources = Sources.open(kafka, catalogue, prefix=prefix, groups=groups, registry=registry)
    app = create_app(settings, sources)
    sources.start()  # here, so a broker error is one line (exit 4), not a server traceback
    for warning in sources.warnings:
        click.echo(f"warning: {warning}", err=True)
    mode = "read-only" if read_only else "actions on" if settings.token else \
        "view only: no STREAMJOBS_WEB_TOKEN"
    click.echo(f"streamjobs web: http://{host}:{port}{settings.root_path}/ ({mode})", err=True)
    live = app.state.web.live

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            live.close()  # event streams never end by themselves: end them so we stop at once
            super().handle_exit(sig, frame)

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                          proxy_headers=True, forwarded_allow_ips="127.0.0.1",
                          timeout_graceful_shutdown=5)).run()
