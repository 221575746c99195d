"""Free ports for the private brokers some tests start."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port_block"]


def free_port_block(count: int) -> int:
    """A base port with ``count`` consecutive free ports on 127.0.0.1, below the kernel's
    ephemeral range: a block taken from that range can be handed, between our check and the JVM's
    bind, to an outgoing connection (a node dialling another node's controller), and the node
    then dies at start-up (the probable cause of a 3-broker scenario lost in CI)."""
    top = min(_ephemeral_floor(), 65000) - count
    for _ in range(500):
        base = random.randrange(20000, max(20001, top))
        if all(_bindable(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no block of free ports")


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
