"""`koppel run`: starts Redis, the services and the worker; stops all of them again."""

from __future__ import annotations

import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from cli import supervisor as supervisor_module
from shared.config import Settings
from shared.redis_embedded import socket_path, stop_embedded

READY_TIMEOUT_S = 90
SLEEPER = "import time; time.sleep(60)"
STUBBORN = (
    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Supervisor:
    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.errors = (cwd / "run.err").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "run"], env=env, cwd=cwd, text=True,
            stdout=subprocess.PIPE, stderr=self.errors,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_ready(self) -> str:
        seen = ""
        while True:
            try:
                line = self.lines.get(timeout=READY_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"no ready line; stdout so far:\n{seen}")
            seen += line
            if line.startswith("ready"):
                return seen


@pytest.fixture
def var_dir_of_its_own() -> Iterator[Settings]:
    # Short, so that the embedded Redis's socket path fits.
    path = Path(tempfile.mkdtemp(prefix="kr-", dir="/tmp"))
    settings = Settings(_env_file=None, var_dir=path)
    yield settings
    stop_embedded(settings)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def supervisor(
    cli_env: dict[str, str], var_dir_of_its_own: Settings, tmp_path: Path,
    committing_sessions: sessionmaker[Session],
) -> Iterator[tuple[Supervisor, list[int]]]:
    ports = [_free_port() for _ in range(3)]
    env = {
        **cli_env,
        "KOPPEL_VAR_DIR": str(var_dir_of_its_own.var_dir),
        "KOPPEL_AUTH_URL": f"http://127.0.0.1:{ports[0]}",
        "KOPPEL_ISSUER": f"http://127.0.0.1:{ports[0]}",
        "KOPPEL_REGISTRY_URL": f"http://127.0.0.1:{ports[1]}",
        "KOPPEL_SYNC_URL": f"http://127.0.0.1:{ports[2]}",
        "KOPPEL_LOG_LEVEL": "warning",
    }
    del env["KOPPEL_REDIS_URL"]  # the supervisor starts (and stops) an embedded one
    running = Supervisor(env, tmp_path)
    try:
        yield running, ports
    finally:
        if running.process.poll() is None:
            running.process.kill()
            running.process.wait()
        running.errors.close()


def test_run_serves_everything_and_ctrl_c_stops_it_all(
    supervisor: tuple[Supervisor, list[int]], var_dir_of_its_own: Settings
) -> None:
    running, ports = supervisor

    printed = running.wait_ready()

    assert "accountant@demo.koppel.test" in printed and "koppel-web-demo" in printed
    for port in ports:
        with httpx.Client(trust_env=False, timeout=5) as client:
            assert client.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
            assert client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
    children = _children(running.process.pid)
    assert len(children) == 4  # three services and the worker
    assert socket_path(var_dir_of_its_own).exists()

    running.process.send_signal(signal.SIGINT)

    assert running.process.wait(timeout=30) == 0
    assert not [pid for pid in children if _alive(pid)]
    assert not socket_path(var_dir_of_its_own).exists()


def test_a_dead_child_is_reported_and_a_stubborn_one_is_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(supervisor_module, "STOP_GRACE_S", 0.5)
    armed = tmp_path / "armed"
    spawn = supervisor_module.spawn_process
    children = [
        spawn("polite", [sys.executable, "-c", SLEEPER], None),
        spawn("stubborn", [sys.executable, "-c", STUBBORN, str(armed)], None),
        spawn("dead", [sys.executable, "-c", "raise SystemExit(3)"], None),
    ]
    polite, stubborn, dead = children
    dead.process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while not armed.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    assert supervisor_module.first_exit(children) == "dead exited unexpectedly with status 3"
    supervisor_module.stop_all(children)

    assert polite.process.returncode == -signal.SIGTERM
    assert stubborn.process.returncode == -signal.SIGKILL
