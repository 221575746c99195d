"""``--processes P``: a small supervisor that keeps P worker processes running.

Each child is the same ``streamjobs worker`` command with ``--processes 1`` (and its own
metrics port, ``port + i``). A child that dies is replaced (after a short pause if it died
young, so a crash loop does not spin); a child that exits 0 (``--burst`` drained) is not.
A child that is not live (_worker/stuck.py: every slot's sync handler stuck past its timeout,
or a poll loop without heartbeat) is killed and replaced: each child touches a liveness file
(``STREAMJOBS_LIVENESS_FILE``) at each live heartbeat, and one staler than ``liveness_ttl``
means not live. Its uncommitted jobs are re-run by whichever member gets its partitions
(at-least-once). SIGTERM/SIGINT are forwarded once and the supervisor waits for the
children's graceful shutdown; a second signal kills them and exits at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

__all__ = ["LIVENESS_FILE_ENV", "supervise"]

LIVENESS_FILE_ENV = "STREAMJOBS_LIVENESS_FILE"  # set for each child; read by the CLI worker

RESTART_PAUSE = 1.0  # seconds before replacing a child that lived less than YOUNG
YOUNG = 5.0


@dataclass
class _Child:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restart_at: float = 0.0
    finished: bool = False


def _say(message: str) -> None:
    print(f"streamjobs supervisor: {message}", file=sys.stderr, flush=True)


def supervise(count: int, argv: list[str], *, metrics_port: int, grace_period: float,
              liveness_ttl: float = 30.0) -> int:
    signals: list[int] = []
    files = Path(tempfile.mkdtemp(prefix="streamjobs-liveness-"))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals.append(signum)
        if len(signals) > 1:
            for c in children:
                if c.proc is not None and c.proc.poll() is None:
                    c.proc.kill()
            os._exit(128 + signum)
        for c in children:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signum)

    def start(child: _Child) -> None:
        port = metrics_port + child.index if metrics_port else 0
        cmd = [sys.executable, "-m", "streamjobs", *argv, "--processes", "1",
               "--metrics-port", str(port)]
        live = files / f"child-{child.index}"
        live.unlink(missing_ok=True)
        child.proc = subprocess.Popen(cmd, env={**os.environ, LIVENESS_FILE_ENV: str(live)})
        child.started = time.monotonic()
        _say(f"child {child.index} started (pid {child.proc.pid})")

    children = [_Child(i) for i in range(count)]
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for c in children:
        start(c)
    failed = False
    while True:
        now = time.monotonic()
        alive = 0
        for c in children:
            if c.finished:
                continue
            if c.proc is None:
                if signals:
                    c.finished = True
                elif now >= c.restart_at:
                    start(c)
                    alive += 1
                continue
            code = c.proc.poll()
            if code is None:
                alive += 1
                if not signals and _stale(files / f"child-{c.index}", c.started, liveness_ttl):
                    _say(f"child {c.index} (pid {c.proc.pid}) not live for {liveness_ttl:g}s "
                         "(stuck); killing it")
                    c.proc.kill()
                continue
            if signals or code == 0:
                c.finished = True
                # A child still starting up when our signal came dies of it before it can
                # install its handlers: it had taken no job yet, so that is a clean stop.
                failed = failed or code not in (0, *(-s for s in signals))
                _say(f"child {c.index} (pid {c.proc.pid}) exited with {code}")
                continue
            _say(f"child {c.index} (pid {c.proc.pid}) died with {code}; replacing it")
            young = now - c.started < YOUNG
            c.proc = None
            c.restart_at = now + (RESTART_PAUSE if young else 0.0)
            alive += 1
        if alive == 0 and all(c.finished for c in children):
            return 1 if failed else 0
        time.sleep(0.1)


def _stale(path: Path, started: float, ttl: float) -> bool:
    """The child's liveness file is older than ``ttl`` (a child gets ``ttl`` to create it)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        age = time.monotonic() - started
    return age > ttl
