"""`koppel run`: everything on one machine, what `make run` starts.

The supervisor prepares what the children share (the embedded Redis, the migrated
database, the demo environment), then runs the three services and the worker as child
processes, each in its own process group so that a terminal's Ctrl-C reaches only the
supervisor, which then stops them in order: SIGTERM, a grace period, SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO

import httpx
import typer

from cli.context import load_settings
from cli.demo_command import print_demo, seed
from cli.output import CliError, handle_errors, stdout
from cli.serve import Service, check_redis, default_port
from shared.config import Settings
from shared.redis_embedded import start_embedded, stop_embedded

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
POLL_S = 0.2
DEMO_NAME = "demo"
_output_lock = threading.Lock()


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    health_url: str | None
    pump: threading.Thread


class StopRequested(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived while starting up."""


def _pump(name: str, stream: IO[bytes]) -> None:
    prefix = f"{name:<8}| "
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", errors="replace").rstrip("\n")
        with _output_lock:
            sys.stderr.write(prefix + line + "\n")
            sys.stderr.flush()
    stream.close()


def koppel_command(*args: str) -> list[str]:
    """The command line of a `koppel` child, on this interpreter."""
    return [sys.executable, "-m", "cli", *args]


def spawn_process(name: str, command: list[str], health_url: str | None) -> Child:
    """Start a child in its own process group, its output prefixed with `name` on stderr."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        process_group=0,
    )
    assert process.stdout is not None
    pump = threading.Thread(target=_pump, args=(name, process.stdout), daemon=True)
    pump.start()
    return Child(name, process, health_url, pump)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise CliError(
                f"{HOST}:{port} is not free ({exc.strerror}); is Koppel already running?"
            ) from None


def first_exit(children: Iterable[Child]) -> str | None:
    """Why the first child that has ended did so, or None while all run."""
    for child in children:
        code = child.process.poll()
        if code is not None and code < 0:
            return f"{child.name} was killed by {signal.Signals(-code).name}"
        if code is not None:
            return f"{child.name} exited unexpectedly with status {code}"
    return None


def _wait_ready(children: list[Child], stop: threading.Event) -> None:
    """Block until every service answers /healthz; raise if one dies or time runs out."""
    pending = [c for c in children if c.health_url]
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while pending:
            if stop.is_set():
                raise StopRequested
            if failure := first_exit(children):
                raise CliError(failure)
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise CliError(f"{names} did not answer /healthz within {READY_TIMEOUT_S:.0f} s")
            for child in list(pending):
                try:
                    if child.health_url and client.get(child.health_url).status_code == 200:
                        pending.remove(child)
                except httpx.HTTPError:
                    pass
            stop.wait(POLL_S)


def stop_all(children: list[Child]) -> None:
    """SIGTERM every child's process group, then SIGKILL what outlives the grace period."""
    for child in children:
        if child.process.poll() is None:
            _signal_group(child, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for child in children:
        try:
            child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"{child.name} did not stop within {STOP_GRACE_S:.0f} s; killing it")
            _signal_group(child, signal.SIGKILL)
            child.process.wait()
    for child in children:
        child.pump.join(timeout=2)


def _signal_group(child: Child, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.process.pid, signum)


def _say(message: str) -> None:
    with _output_lock:
        print(f"koppel: {message}", file=sys.stderr, flush=True)


def _install_stop_handlers() -> threading.Event:
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    return stop


def _services(settings: Settings) -> list[tuple[Service, int]]:
    return [(service, default_port(settings, service)) for service in Service]


def _prepare(settings: Settings) -> None:
    """Migrate and seed; print the URLs and demo logins."""
    document = seed(settings, DEMO_NAME)
    out = stdout()
    print_demo(out, document)
    out.print(
        "The demo passwords and the client secret above are reset on every start of "
        "`koppel run`; `.venv/bin/koppel demo seed --json --name NAME` makes another "
        "demo environment."
    )
    sys.stdout.flush()


def _supervise(settings: Settings, stop: threading.Event) -> int:
    children: list[Child] = []
    try:
        for service, port in _services(settings):
            args = ["serve", service.value, "--host", HOST, "--port", str(port)]
            health = f"http://{HOST}:{port}/healthz"
            children.append(spawn_process(service.value, koppel_command(*args), health))
        children.append(spawn_process("worker", koppel_command("worker"), None))
        _wait_ready(children, stop)
        if failure := first_exit(children):
            raise CliError(failure)
        urls = ", ".join(f"{s.value} http://{HOST}:{p}" for s, p in _services(settings))
        stdout().print(f"ready: {urls}, worker running. Press Ctrl-C to stop.")
        sys.stdout.flush()
        while not stop.wait(POLL_S * 2):
            if failure := first_exit(children):
                raise CliError(failure)
        _say("stopping")
        return 0
    except StopRequested:
        _say("stopping")
        return 0
    except CliError as exc:
        _say(f"error: {exc}; stopping the rest")
        return 1
    finally:
        stop_all(children)


@handle_errors
def run() -> None:
    """Start all services and the worker locally, with the demo environment seeded."""
    stop = _install_stop_handlers()
    settings = load_settings()
    for _, port in _services(settings):
        _check_port_free(port)
    started_redis = start_embedded(settings) if settings.uses_embedded_redis else False
    try:
        if not settings.uses_embedded_redis:
            check_redis(settings)
        _prepare(settings)
        code = 0 if stop.is_set() else _supervise(settings, stop)
    finally:
        if started_redis:
            stop_embedded(settings)
    _say("stopped")
    raise typer.Exit(code)
