"""The processes of a fault scenario: worker subprocesses to signal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import streamjobs_exe

__all__ = ["ROOT", "WorkerProc"]

ROOT = Path(__file__).resolve().parent.parent.parent


class WorkerProc:
    """One ``streamjobs worker`` subprocess in its own process group (pgid == pid)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in reap()
        self.popen = subprocess.Popen([*streamjobs_exe(), *args], env=env, cwd=str(ROOT),
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        self.started = time.monotonic()
        self.returncode: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def reap(self, timeout: float) -> int:
        try:
            self.returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.returncode = self.popen.wait(timeout=30)
        self._log.close()
        return self.returncode

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")
