"""``streamjobs dev``: the local Apache Kafka broker for development, the demo and the tests."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import click

from .._dev.broker import DEV_SASL_PASSWORD, DEV_SASL_USER, DevBroker
from .._dev.registry import DevRegistry
from .._dev.tools import TOOLS, tool_command
from ..errors import DevBrokerError
from ._common import EXIT_FAILURE, EXIT_NOT_FOUND, EXIT_USAGE, fail, json_option, print_json

__all__ = ["group"]

_port = click.option("--port", type=int, default=9092, show_default=True,
                     envvar="STREAMJOBS_DEV_PORT",
                     help="Broker port on 127.0.0.1 (the controller uses port+1).")
_registry_port = click.option("--registry-port", type=int, default=8081, show_default=True,
                              envvar="STREAMJOBS_DEV_REGISTRY_PORT",
                              help="Port of the local schema registry on 127.0.0.1.")
_registry_tls = click.option(
    "--registry-tls", is_flag=True, envvar="STREAMJOBS_DEV_REGISTRY_TLS",
    help="The registry serves HTTPS only, with a certificate for 127.0.0.1/localhost from a "
         "dev CA; clients trust the CA file it prints.")
_registry_auth = click.option(
    "--registry-auth", metavar="USER:PASSWORD", default=None,
    envvar="STREAMJOBS_DEV_REGISTRY_AUTH",
    help="The registry requires HTTP basic auth and lets this one user in (dev only).")


@click.group("dev")
def group() -> None:
    """Run a local single-node Apache Kafka (KRaft) for development and tests."""


@group.command()
@_port
@click.option("--nodes", type=click.IntRange(1, 5), default=1, show_default=True,
              envvar="STREAMJOBS_DEV_NODES",
              help="Number of KRaft nodes (3 gives replication factor 3, min ISR 2).")
@click.option("--timeout", type=float, default=90, show_default=True,
              envvar="STREAMJOBS_DEV_TIMEOUT", help="Seconds to wait for the broker.")
@click.option("--sasl", is_flag=True, envvar="STREAMJOBS_DEV_SASL",
              help="Also listen with SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256/512) on "
                   f"port+2*nodes; dev-only user {DEV_SASL_USER}/{DEV_SASL_PASSWORD}.")
@click.option("--tls", is_flag=True, envvar="STREAMJOBS_DEV_TLS",
              help="Make that listener SASL_SSL (implies --sasl), with a certificate for "
                   "127.0.0.1/localhost from a dev CA; clients trust the CA file it prints.")
@click.option("--registry", is_flag=True, envvar="STREAMJOBS_DEV_REGISTRY",
              help="Also start a schema registry (Apicurio, in memory; needs Java 21+).")
@_registry_port
@_registry_tls
@_registry_auth
def up(port: int, nodes: int, timeout: float, sasl: bool, tls: bool, registry: bool,
       registry_port: int, registry_tls: bool, registry_auth: str | None) -> None:
    """Start the broker (formats storage on first run; no-op when already up)."""
    if (registry_tls or registry_auth) and not registry:
        fail("--registry-tls and --registry-auth need --registry", EXIT_USAGE)
    try:
        broker = DevBroker(port, nodes=nodes, sasl=sasl, tls=tls)
    except DevBrokerError as exc:
        fail(str(exc))
    started = time.monotonic()
    try:
        state, fresh = broker.up(timeout=timeout)
    except DevBrokerError as exc:
        fail(str(exc))
    if fresh:
        click.echo(f"kafka {state.kafka_version} up on {state.bootstrap} (pid {state.pid}) "
                   f"in {time.monotonic() - started:.1f}s")
    else:
        click.echo(f"kafka already up on {state.bootstrap} (pid {state.pid})")
    if state.sasl_bootstrap:
        protocol = "SASL_SSL" if state.tls else "SASL_PLAINTEXT"
        click.echo(f"{protocol} on {state.sasl_bootstrap} (PLAIN, SCRAM-SHA-256, "
                   f"SCRAM-SHA-512; user {DEV_SASL_USER}, password {DEV_SASL_PASSWORD}: dev only)")
    if state.ca_location:
        click.echo(f"TLS CA for clients: {state.ca_location} (STREAMJOBS_SSL_CA_LOCATION)")
    if registry:
        _registry_up(registry_port, timeout, registry_tls, registry_auth)


def _registry_up(port: int, timeout: float, tls: bool, auth: str | None) -> None:
    started = time.monotonic()
    try:
        state, fresh = DevRegistry(port, tls=tls, auth=auth).up(timeout=timeout)
    except DevBrokerError as exc:
        fail(str(exc))
    if fresh:
        click.echo(f"schema registry (Apicurio {state.version}) up on {state.url} (pid "
                   f"{state.pid}) in {time.monotonic() - started:.1f}s")
    else:
        click.echo(f"schema registry already up on {state.url} (pid {state.pid})")
    click.echo(f"export STREAMJOBS_REGISTRY_URL={state.url}")
    if state.ca_location:
        click.echo(f"export STREAMJOBS_REGISTRY_CA_LOCATION={state.ca_location}")
    if state.username:
        click.echo(f"export STREAMJOBS_REGISTRY_USERNAME={state.username}  # and "
                   "STREAMJOBS_REGISTRY_PASSWORD, the password you gave")


@group.command()
@_port
@click.option("--wipe", is_flag=True, envvar="STREAMJOBS_DEV_WIPE",
              help="Also delete the broker's data.")
@_registry_port
def down(port: int, wipe: bool, registry_port: int) -> None:
    """Stop the broker and the schema registry (SIGTERM, then SIGKILL after a grace period)."""
    if DevRegistry(registry_port).down():
        click.echo("schema registry stopped")
    was_up = DevBroker(port).down(wipe=wipe)
    click.echo(("stopped" if was_up else "not running") + (" (data wiped)" if wipe else ""))


@group.command()
@_port
@_registry_port
@json_option
def status(port: int, registry_port: int, as_json: bool) -> None:
    """Print whether the broker (and a schema registry) is up, its pid and address (exit 3 when
    the broker is down)."""
    broker = DevBroker(port)
    state = broker.state()
    up_now = state is not None and broker.is_up()
    registry = _registry_status(DevRegistry(registry_port))
    if as_json:
        print_json({"up": up_now, "pid": state.pid if state else None, "registry": registry,
                    "bootstrap": broker.bootstrap, "data_dir": str(broker.data_dir),
                    "log_file": str(broker.log_file),
                    "kafka_version": state.kafka_version if state else None,
                    "sasl_bootstrap": broker.sasl_bootstrap,
                    "sasl_protocol": broker.sasl_protocol if broker.sasl else None,
                    "ca_location": state.ca_location if state else None})
    elif up_now and state is not None:
        click.echo(f"up pid={state.pid} address={state.bootstrap} data={state.data_dir}")
    else:
        click.echo(f"down address={broker.bootstrap}")
    if registry["up"] and not as_json:
        click.echo(f"registry up pid={registry['pid']} url={registry['url']}")
    sys.exit(0 if up_now else EXIT_NOT_FOUND)


def _registry_status(registry: DevRegistry) -> dict[str, Any]:
    state = registry.state()
    return {"up": state is not None and registry.is_up(), "pid": state.pid if state else None,
            "url": registry.url, "log_file": str(registry.log_file),
            "version": state.version if state else None,
            "ca_location": state.ca_location if state else None,
            "username": state.username if state else None}


@group.command()
@_port
@click.option("-n", "--lines", type=int, default=100, show_default=True,
              envvar="STREAMJOBS_DEV_LOG_LINES")
@click.option("-f", "--follow", is_flag=True, envvar="STREAMJOBS_DEV_LOG_FOLLOW")
@click.option("--registry", is_flag=True, envvar="STREAMJOBS_DEV_LOG_REGISTRY",
              help="Show the schema registry's log instead of the broker's.")
@_registry_port
def logs(port: int, lines: int, follow: bool, registry: bool, registry_port: int) -> None:
    """Show the broker log (or the schema registry's)."""
    if registry:
        reg = DevRegistry(registry_port)
        if not reg.log_file.exists():
            fail(f"no registry log at {reg.log_file}", EXIT_NOT_FOUND)
        log_file, tail = reg.log_file, reg.log_tail(lines)
    else:
        broker = DevBroker(port)
        if not broker.log_file.exists():
            fail(f"no broker log at {broker.log_file}", EXIT_NOT_FOUND)
        log_file, tail = broker.log_file, broker.log_tail(lines)
    click.echo(tail)
    if follow:
        with open(log_file, errors="replace") as fh:
            fh.seek(0, 2)
            while True:
                line = fh.readline()
                if line:
                    click.echo(line, nl=False)
                else:
                    time.sleep(0.3)


@group.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("name", metavar="NAME|--help")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def tool(ctx: click.Context, name: str, args: tuple[str, ...]) -> None:
    """Run one of Kafka's own CLI tools (e.g. kafka-topics --list) from the same jars.
    Options after NAME go to the tool (`dev tool kafka-topics --help` is the tool's help);
    `dev tool --help` lists the tools."""
    if name in ("--help", "-h", "help"):
        click.echo(ctx.get_help())
        click.echo("\nTools:\n" + "\n".join(f"  {t}" for t in sorted(TOOLS)))
        return
    if name.removesuffix(".sh") not in TOOLS:
        fail(f"unknown tool {name!r}; available: {', '.join(sorted(TOOLS))}", EXIT_NOT_FOUND)
    try:
        cmd = tool_command(name, args)
    except DevBrokerError as exc:
        fail(str(exc), EXIT_FAILURE)
    sys.exit(subprocess.call(cmd))


@group.group("registry")
def registry_group() -> None:
    """The local schema registry alone (Apicurio Registry, in memory, on 127.0.0.1)."""


@registry_group.command("up")
@_registry_port
@click.option("--timeout", type=float, default=90, show_default=True,
              envvar="STREAMJOBS_DEV_TIMEOUT", help="Seconds to wait for the registry.")
@_registry_tls
@_registry_auth
def registry_up(registry_port: int, timeout: float, registry_tls: bool,
                registry_auth: str | None) -> None:
    """Start the schema registry (fetched from Maven Central on first use)."""
    _registry_up(registry_port, timeout, registry_tls, registry_auth)


@registry_group.command("down")
@_registry_port
def registry_down(registry_port: int) -> None:
    """Stop the schema registry (its schemas are in memory: they are gone)."""
    click.echo("stopped" if DevRegistry(registry_port).down() else "not running")


@registry_group.command("status")
@_registry_port
@json_option
def registry_status(registry_port: int, as_json: bool) -> None:
    """Print whether the schema registry is up (exit 3 when down)."""
    info = _registry_status(DevRegistry(registry_port))
    if as_json:
        print_json(info)
    else:
        click.echo(f"up pid={info['pid']} url={info['url']}" if info["up"]
                   else f"down url={info['url']}")
    sys.exit(0 if info["up"] else EXIT_NOT_FOUND)
