"""Benchmark the environment overview (SPEC 5.5) on PostgreSQL at a million connections.

    .venv/bin/koppel bench seed-connections --environment "Bench 1M" --count 1000000
    .venv/bin/python bench/overview_bench.py --environment "Bench 1M" [--runs 50]

(with KOPPEL_DATABASE_URL on the benchmark database, migrated to head; `--seed N` does
the seeding first). Starts the registry under uvicorn, signs an accountant's token, and
prints p50/p95 of the first page, a deep cursor page (90 % in), pages sorted by last use
(first, newest first, 90 % in), a page filtered by app
and status (the most popular app), and the CSV export's rows/s with the server's peak
RSS. Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import psutil
import redis
from sqlalchemy import func, text
from sqlmodel import col, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.registry.overview.repository import NEVER  # noqa: E402
from shared.config import Settings  # noqa: E402
from shared.db import create_sync_engine, sync_session_factory, utcnow  # noqa: E402
from shared.models import (  # noqa: E402
    App,
    Company,
    Connection,
    ConnectionCompany,
    Employee,
    Environment,
    SigningKey,
    TokenFamily,
    User,
)
from shared.pagination import encode_cursor  # noqa: E402
from shared.signing import Signer  # noqa: E402
from shared.vault import SecretBox, load_keyring  # noqa: E402
from shared.vault.columns import SIGNING_PRIVATE_KEY  # noqa: E402
from shared.vault.errors import VaultError  # noqa: E402

PORT = 18562
BASE = f"http://127.0.0.1:{PORT}"
REDIS_SERVER = os.environ.get("KOPPEL_BENCH_REDIS", "redis://127.0.0.1:6379")
SCOPE = "environment.connections.read"
PATH = "/v1/environment/connections"


def claim_redis_db() -> int:
    """A logical Redis database no test run uses (the test harness's claim protocol)."""
    admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    try:
        for db in range(15, 0, -1):
            if admin.set(f"koppel-test:db:{db}", "overview-bench", nx=True, ex=3600):
                return db
    finally:
        admin.close()
    raise SystemExit("no free Redis database")


def release_redis_db(db: int) -> None:
    client = redis.Redis.from_url(f"{REDIS_SERVER}/{db}")
    client.flushdb()
    client.close()
    admin = redis.Redis.from_url(f"{REDIS_SERVER}/0")
    admin.delete(f"koppel-test:db:{db}")
    admin.close()


def prepare(settings: Settings, environment: str) -> dict:
    """The accountant's token, a deep cursor and the most popular app of the environment."""
    keyring = load_keyring(settings)
    engine = create_sync_engine(settings.resolved_database_url)
    with sync_session_factory(engine)() as session:
        env = session.exec(select(Environment).where(Environment.name == environment)).one()
        accountant = session.exec(select(User).where(
            User.environment_id == env.id, User.template == "accountant",
            col(User.active)).limit(1)).one()
        first_party = session.exec(select(App).where(col(App.first_party)).limit(1)).one()
        total = session.exec(select(func.count()).select_from(Connection).where(
            Connection.environment_id == env.id)).one()
        deep = session.exec(select(Connection).where(Connection.environment_id == env.id)
                            .order_by(col(Connection.id)).offset(int(total * 0.9))
                            .limit(1)).one()
        # 90 % in, in last-used order (never used first, as the overview sorts them).
        used_deep = session.exec(
            select(Connection.last_used_at, Connection.id)
            .where(Connection.environment_id == env.id)
            .order_by(col(Connection.last_used_at).asc().nulls_first(), col(Connection.id))
            .offset(int(total * 0.9)).limit(1)).one()
        popular_id, popular_count = session.exec(
            select(Connection.app_id, func.count()).where(Connection.environment_id == env.id)
            .group_by(col(Connection.app_id)).order_by(func.count().desc()).limit(1)).one()
        popular = session.get(App, popular_id)
        family = TokenFamily(app_id=first_party.id, user_id=accountant.id,
                             environment_id=env.id, scopes=[SCOPE],
                             expires_at=utcnow() + timedelta(hours=2))
        session.add(family)
        session.flush()
        now = int(time.time())
        retire_foreign_keys(session, SecretBox(keyring))
        token = Signer(SecretBox(keyring)).sign(session, {
            "iss": settings.issuer, "aud": settings.api_audience, "iat": now,
            "exp": now + 3600, "sub": str(accountant.id), "client_id": first_party.client_id,
            "scope": SCOPE, "environment_id": str(env.id),
            "jti": f"{family.id}.{secrets.token_urlsafe(8)}"}, alg="ES256", typ="at+jwt")
        session.commit()
        size = session.exec(text("SELECT pg_size_pretty(pg_total_relation_size('connections'))")
                            ).one()[0]
    engine.dispose()
    cursor = encode_cursor(keyring.digest_key, "created_at",
                           [deep.created_at.isoformat(), str(deep.id)])
    used_cursor = encode_cursor(keyring.digest_key, "last_used_at",
                                [(used_deep[0] or NEVER).isoformat(), str(used_deep[1])])
    return {"token": token, "total": total, "cursor": cursor, "used_cursor": used_cursor,
            "app": popular.client_id,
            "app_count": popular_count, "size": size}


def exposure_subjects(settings: Settings, environment: str) -> list[dict]:
    """An employee in the company that the most connections cover and one in a company
    of median coverage (the seed has no employees: made here once, found again later by
    their numbers), each with how many connection rows name its company."""
    engine = create_sync_engine(settings.resolved_database_url)
    subjects = []
    with sync_session_factory(engine)() as session:
        env = session.exec(select(Environment).where(Environment.name == environment)).one()
        counts = session.exec(
            select(ConnectionCompany.company_id, func.count().label("n"))
            .join(Connection, col(Connection.id) == ConnectionCompany.connection_id)
            .where(Connection.environment_id == env.id)
            .group_by(col(ConnectionCompany.company_id)).order_by(text("n DESC"))).all()
        for label, (company_id, covering) in (("busiest", counts[0]),
                                              ("median", counts[len(counts) // 2])):
            number = f"BX-{company_id.hex}"
            employee = session.exec(select(Employee).where(
                Employee.environment_id == env.id, Employee.number == number)).first()
            if employee is None:
                company = session.get(Company, company_id)
                employee = Employee(environment_id=env.id, debtor_id=company.debtor_id,
                                    company_id=company_id, number=number,
                                    first_name="Bench", last_name=label.title())
                session.add(employee)
                session.flush()
            subjects.append({"label": label, "employee_id": str(employee.id),
                             "covering": covering})
        session.commit()
    engine.dispose()
    return subjects


def retire_foreign_keys(session, box: SecretBox) -> None:
    """The kept database may hold signing keys that another checkout's bench made with
    its own key ring (var/ is per checkout): retire those, so this run signs with a key
    it can open (a new one is made if none is left)."""
    for row in session.exec(select(SigningKey).where(col(SigningKey.active))).all():
        try:
            SIGNING_PRIVATE_KEY.open(box, row)
        except VaultError:
            row.active = False
            row.publish_until = utcnow()
            session.add(row)
    session.flush()


def start_server(env: dict[str, str]) -> subprocess.Popen:
    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/uvicorn"), "services.registry.app:create_app", "--factory",
         "--port", str(PORT), "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT)
    for _ in range(200):
        try:
            if httpx.get(f"{BASE}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the registry did not start")


def timed(client: httpx.Client, params: dict, runs: int) -> tuple[float, float, int]:
    """p50 and p95 in ms of `runs` calls (after two warm-ups), and the page's row count."""
    rows = 0
    for _ in range(2):
        response = client.get(PATH, params=params)
        response.raise_for_status()
        rows = len(response.json()["data"])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        client.get(PATH, params=params).raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], rows


def export(client: httpx.Client, pid: int) -> dict:
    """Stream the whole CSV; sample the server's RSS meanwhile."""
    process = psutil.Process(pid)
    before = process.memory_info().rss
    cpu_before = process.cpu_times()
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = size = 0
    start = time.perf_counter()
    with client.stream("GET", PATH, headers={"Accept": "text/csv"}, timeout=None) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    seconds = time.perf_counter() - start
    cpu_after = process.cpu_times()
    done.set()
    sampler.join()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    return {"rows": lines - 1, "seconds": seconds, "bytes": size, "cpu": cpu,
            "rss_before": before, "rss_peak": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--environment", default="Bench 1M")
    parser.add_argument("--seed", type=int, default=0, help="seed N connections first")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    database_url = os.environ.get("KOPPEL_DATABASE_URL", "")
    if not database_url.startswith("postgresql"):
        raise SystemExit("set KOPPEL_DATABASE_URL to the benchmark's PostgreSQL database")
    db = claim_redis_db()
    var = Path(os.environ.get("KOPPEL_VAR_DIR", "/tmp/koppel-overview-bench"))
    env = {**os.environ, "KOPPEL_DATABASE_URL": database_url, "KOPPEL_VAR_DIR": str(var),
           "KOPPEL_REDIS_URL": f"{REDIS_SERVER}/{db}", "KOPPEL_LOG_LEVEL": "warning"}
    server = None
    try:
        if args.seed:
            start = time.perf_counter()
            subprocess.run([str(ROOT / ".venv/bin/koppel"), "bench", "seed-connections",
                            "--environment", args.environment, "--count", str(args.seed)],
                           env=env, check=True)
            print(f"seed: {args.seed} connections in {time.perf_counter() - start:.1f} s")
        settings = Settings(_env_file=None, database_url=database_url,
                            redis_url=env["KOPPEL_REDIS_URL"], var_dir=var)
        setup = prepare(settings, args.environment)
        print(f"environment {args.environment!r}: {setup['total']} connections, "
              f"table+indexes {setup['size']}; most popular app {setup['app_count']} "
              "connections")
        server = start_server(env)
        print(f"registry pid {server.pid}, RSS "
              f"{psutil.Process(server.pid).memory_info().rss / 2**20:.0f} MiB after start")
        headers = {"Authorization": f"Bearer {setup['token']}"}
        with httpx.Client(base_url=BASE, headers=headers, timeout=60) as client:
            cases = [
                ("first page (limit 50)", {"limit": 50}),
                ("deep cursor page (90 % in, limit 50)", {"limit": 50,
                                                           "cursor": setup["cursor"]}),
                ("sorted by last use (limit 50)", {"limit": 50, "sort": "last_used_at"}),
                ("sorted by last use, newest first (limit 50)", {"limit": 50,
                                                                 "sort": "-last_used_at"}),
                ("sorted by last use, deep cursor (90 % in)", {
                    "limit": 50, "sort": "last_used_at", "cursor": setup["used_cursor"]}),
                ("filtered: app + status=active (limit 50)", {
                    "limit": 50, "app": setup["app"], "status": "active"}),
                ("filtered: app + status=suspended (limit 50)", {
                    "limit": 50, "app": setup["app"], "status": "suspended"}),
            ]
            for name, params in cases:
                p50, p95, rows = timed(client, params, args.runs)
                print(f"{name:45s} p50 {p50:8.1f} ms  p95 {p95:8.1f} ms  "
                      f"({rows} rows, {args.runs} runs)")
            if not args.skip_export:
                result = export(client, server.pid)
                print(f"CSV export: {result['rows']} rows, {result['bytes'] / 2**20:.0f} MiB "
                      f"in {result['seconds']:.1f} s = {result['rows'] / result['seconds']:,.0f}"
                      f" rows/s; server CPU {result['cpu']:.1f} s = "
                      f"{result['rows'] / max(result['cpu'], 1e-9):,.0f} rows per CPU-second;"
                      f" server RSS {result['rss_before'] / 2**20:.0f} MiB before, "
                      f"peak {result['rss_peak'] / 2**20:.0f} MiB")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        release_redis_db(db)


if __name__ == "__main__":
    main()
