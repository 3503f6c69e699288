"""PostgreSQL, Redis and the environment the Koppel processes under test run with."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import psycopg
import redis

from bench.harness.common import ROOT, say

PG = os.environ.get("KOPPEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("KOPPEL_BENCH_REDIS", "redis://127.0.0.1:6379")
VAR = Path(os.environ.get("KOPPEL_BENCH_VAR", str(ROOT / "var" / "bench")))
CLAIM_TTL_S = 6 * 3600


def _pg_up() -> bool:
    try:
        with psycopg.connect(f"{PG}/postgres", connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _redis_up() -> bool:
    client = redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _wait(check, name: str) -> None:
    for _ in range(60):
        if check():
            return
        time.sleep(1)
    raise SystemExit(f"{name} is not reachable; set KOPPEL_BENCH_PG / KOPPEL_BENCH_REDIS")


def ensure_servers() -> None:
    """Start the machine's PostgreSQL and Redis the way .ci/run does, if they are down."""
    if not _pg_up() and shutil.which("pg_ctlcluster") and Path("/etc/postgresql").is_dir():
        say("starting PostgreSQL")
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
                       check=False)
    _wait(_pg_up, "PostgreSQL")
    if not _redis_up() and shutil.which("redis-server"):
        say("starting Redis")
        Path("/var/lib/redis").mkdir(parents=True, exist_ok=True)
        subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1",
                        "--port", "6379", "--save", "", "--appendonly", "no",
                        "--dir", "/var/lib/redis"], check=False)
    _wait(_redis_up, "Redis")


def database_url(name: str) -> str:
    return f"{PG}/{name}"


def recreate_database(name: str) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(name)


def drop_database(name: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze_database(name: str) -> None:
    """Planner statistics for every table, as autovacuum would gather them in a while:
    a freshly seeded database measured without them measures the wrong plans."""
    with psycopg.connect(database_url(name), autocommit=True) as conn:
        conn.execute("ANALYZE")


def database_comment(name: str) -> str | None:
    """The comment on database `name` (the seed marker), None if it does not exist."""
    with psycopg.connect(f"{PG}/postgres") as conn:
        row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                           "WHERE datname = %s", (name,)).fetchone()
    if row is None:
        return None
    return row[0] or ""


def set_database_comment(name: str, comment: str) -> None:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f'COMMENT ON DATABASE "{name}" IS ' + "'" + comment.replace("'", "''")
                     + "'")


class RedisDb:
    """A logical Redis database claimed with the test suite's protocol (a key in db 0),
    so that a test run never shares it; flushed on claim and on release."""

    def __init__(self, owner: str = "koppel-bench") -> None:
        admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
        try:
            for db in range(15, 0, -1):
                if admin.set(f"koppel-test:db:{db}", owner, nx=True, ex=CLAIM_TTL_S):
                    self.db = db
                    break
            else:
                raise SystemExit("no free Redis database (all 15 claimed)")
        finally:
            admin.close()
        self.url = f"{REDIS_SERVER}/{self.db}"
        self.flush()

    def flush(self) -> None:
        client = redis.Redis.from_url(self.url)
        client.flushdb()
        client.close()

    def delete_matching(self, pattern: str) -> None:
        client = redis.Redis.from_url(self.url)
        keys = list(client.scan_iter(pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        client.close()

    def release(self) -> None:
        self.flush()
        admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
        admin.delete(f"koppel-test:db:{self.db}")
        admin.close()


def koppel_env(database: str, redis_url: str, var: Path, **extra: str) -> dict[str, str]:
    """The environment of a Koppel process under test (and of its `koppel` commands)."""
    var.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "KOPPEL_DATABASE_URL": database, "KOPPEL_REDIS_URL": redis_url,
            "KOPPEL_VAR_DIR": str(var), "KOPPEL_LOG_LEVEL": "warning",
            "KOPPEL_WEBHOOKS_ALLOW_LOOPBACK": "true", **extra}


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"


def machine() -> dict[str, str]:
    """CPU, cores, memory, load and the servers' versions, for the report."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    with psycopg.connect(f"{PG}/postgres") as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
    client = redis.Redis.from_url(REDIS_SERVER)
    redis_version = client.info("server")["redis_version"]
    client.close()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": str(os.cpu_count()), "memory": f"{memory_gib:.0f} GiB",
            "python": platform.python_version(), "postgresql": pg_version,
            "redis": redis_version, "node": _first_line(["node", "--version"]),
            "kernel": platform.release()}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
