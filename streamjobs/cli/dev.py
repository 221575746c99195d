"""``streamjobs dev``: the local Apache Kafka broker for development, the demo and the tests."""

from __future__ import annotations

import subprocess
import sys
import time

import click

from ..dev.broker import DEV_SASL_PASSWORD, DEV_SASL_USER, DevBroker
from ..dev.tools import TOOLS, tool_command
from ..errors import DevBrokerError
from ._common import EXIT_FAILURE, EXIT_NOT_FOUND, fail, json_option, print_json

__all__ = ["group"]

_port = click.option("--port", type=int, default=9092, show_default=True,
                     envvar="STREAMJOBS_DEV_PORT",
                     help="Broker port on 127.0.0.1 (the controller uses port+1).")


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
def up(port: int, nodes: int, timeout: float, sasl: bool, tls: bool) -> None:
    """Start the broker (formats storage on first run; no-op when already up)."""
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


@group.command()
@_port
@click.option("--wipe", is_flag=True, envvar="STREAMJOBS_DEV_WIPE",
              help="Also delete the broker's data.")
def down(port: int, wipe: bool) -> None:
    """Stop the broker (SIGTERM, then SIGKILL after a grace period)."""
    was_up = DevBroker(port).down(wipe=wipe)
    click.echo(("stopped" if was_up else "not running") + (" (data wiped)" if wipe else ""))


@group.command()
@_port
@json_option
def status(port: int, as_json: bool) -> None:
    """Print whether the broker is up, its pid and address (exit 3 when down)."""
    broker = DevBroker(port)
    state = broker.state()
    up_now = state is not None and broker.is_up()
    if as_json:
        print_json({"up": up_now, "pid": state.pid if state else None,
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
    sys.exit(0 if up_now else EXIT_NOT_FOUND)


@group.command()
@_port
@click.option("-n", "--lines", type=int, default=100, show_default=True,
              envvar="STREAMJOBS_DEV_LOG_LINES")
@click.option("-f", "--follow", is_flag=True, envvar="STREAMJOBS_DEV_LOG_FOLLOW")
def logs(port: int, lines: int, follow: bool) -> None:
    """Show the broker log."""
    broker = DevBroker(port)
    if not broker.log_file.exists():
        fail(f"no broker log at {broker.log_file}", EXIT_NOT_FOUND)
    click.echo(broker.log_tail(lines))
    if follow:
        with open(broker.log_file, errors="replace") as fh:
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
