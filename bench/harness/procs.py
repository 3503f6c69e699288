"""Processes under test: started pinned to a core, awaited over HTTP, measured, stopped."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil

SERVER_CORE = 0
LOAD_CORE = 1


# The cores this process may use at start, before pin_self() narrows its own affinity
# (children inherit it, so each child is pinned explicitly).
_CORES = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()


def can_pin() -> bool:
    """Two cores to split between server and load generator (else nothing is pinned)."""
    return hasattr(os, "sched_setaffinity") and {SERVER_CORE, LOAD_CORE} <= _CORES


def pin_self(core: int = LOAD_CORE) -> None:
    if can_pin():
        os.sched_setaffinity(0, {core})


def unpin_self() -> None:
    if _CORES:
        os.sched_setaffinity(0, set(_CORES))


class Proc:
    """A child process with its log file, pinned to `core` when the machine allows it."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_dir: Path,
                 core: int | None = SERVER_CORE, cwd: Path | None = None) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        pin = core if core is not None and can_pin() else None
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            cmd, env=env, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT,
            preexec_fn=(lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None)
        self.ps = psutil.Process(self.popen.pid)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time so far: other processes on the core do not inflate it."""
        times = self.ps.cpu_times()
        return times.user + times.system

    def rss(self) -> int:
        return self.ps.memory_info().rss

    def wait_http(self, url: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                break
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {url}; its log ends:\n{tail}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()
