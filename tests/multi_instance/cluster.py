"""Koppel as it runs at scale, on loopback: `koppel serve` and `koppel worker` child
processes on one database and one Redis database, and a webhook receiver in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.fixtures.backend import REPO_ROOT

START_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: all held open at once while they are picked, since a
    port closed again may be handed out by the next bind (two processes of one cluster on
    one port: the second fails to start, and the first answers in its place)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                  for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log: Path
    url: str | None = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def koppel(name: str, args: list[str], env: dict[str, str], logs: Path,
           url: str | None = None) -> Process:
    """Start `koppel ARGS` (this interpreter, this checkout) with its output in a file."""
    log = logs / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "cli", *args], env={**env, "PYTHONUNBUFFERED": "1"},
            cwd=logs, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    # `-m cli` must import this checkout whatever the working directory.
    return Process(name, popen, log, url)


def child_env(base: dict[str, str]) -> dict[str, str]:
    path = base.get("PYTHONPATH")
    return {**base, "PYTHONPATH": f"{REPO_ROOT}:{path}" if path else str(REPO_ROOT)}


def serve(name: str, service: str, port: int, env: dict[str, str], logs: Path) -> Process:
    return koppel(name, ["serve", service, "--host", "127.0.0.1", "--port", str(port)],
                  env, logs, url=f"http://127.0.0.1:{port}")


def wait_ready(processes: list[Process], timeout: float = START_TIMEOUT_S) -> None:
    """Until every service answers /readyz; fails early if a child exits."""
    pending = [p for p in processes if p.url]
    deadline = time.monotonic() + timeout
    while pending:
        for process in processes:
            if process.popen.poll() is not None:
                raise AssertionError(f"{process.name} exited:\n{process.log_text()[-3000:]}")
        for process in list(pending):
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{process.url}/readyz", timeout=2).status_code == 200:
                    pending.remove(process)
        if time.monotonic() > deadline:
            raise AssertionError(f"not ready: {[p.name for p in pending]}")
        time.sleep(0.2)


def stop(processes: list[Process]) -> None:
    """SIGTERM all, then wait; SIGKILL what outlives the grace period."""
    for process in processes:
        if process.popen.poll() is None:
            process.popen.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.popen.kill()
            process.popen.wait(5)


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class ThreadedReceiver:
    """An aiohttp webhook receiver on 127.0.0.1 in its own thread and event loop, so
    that a test may block on synchronous HTTP calls while it receives."""

    delay: Callable[[int], float] = lambda n: 0.0
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    answered: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        received = Received(dict(request.headers), await request.read())
        with self._lock:
            self.requests.append(received)
            number = len(self.requests)
        if wait := self.delay(number):
            await asyncio.sleep(wait)
        with self._lock:
            self.answered.append(received)
        return web.Response(text="ok")

    @contextlib.contextmanager
    def running(self) -> Iterator[ThreadedReceiver]:
        loop = asyncio.new_event_loop()
        started = threading.Event()
        holder: dict[str, Any] = {}

        async def start() -> None:
            runner = web.ServerRunner(web.Server(self._handle), shutdown_timeout=0.1)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            holder["runner"] = runner
            started.set()

        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        started.wait(10)
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(holder["runner"].cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if value := check():
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)
