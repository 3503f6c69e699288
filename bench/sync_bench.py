"""Benchmark the sync service on PostgreSQL: webhook deliveries, write-to-receiver latency
and authenticated reads.

    .venv/bin/python bench/sync_bench.py [--apps 20] [--endpoints 5] [--events 100]
        [--rate 100] [--rate-seconds 20] [--seconds 10] [--runs 3] [--concurrency 32]

Creates a fresh database `koppel_bench_sync` (dropped at the end unless --keep), seeds
the demo environment, apps, connections and webhook endpoints (through the API), and runs:

1. deliveries: `--events` employee.updated events written to the outbox while no worker
   runs, each covered by every app's connection, so events x apps x endpoints deliveries
   wait; then one `koppel worker` process (pinned to core 0) relays and delivers them to
   a local aiohttp receiver (core 1). Measured until the queue drains.
2. latency: one endpoint left; PATCH /v1/employees/{id} at a steady `--rate` for
   `--rate-seconds`; latency from the event's creation inside the API transaction (its
   UUIDv7 millisecond) to the receiver, p50 / p99 / max.
3. reads: GET /v1/employees/{id} with connection tokens (full verifier: ES256, status
   cache, connection reach, rate limit), uvicorn pinned to core 0 (no worker), aiohttp
   load on core 1. Rate-limit windows are reset between runs, never raised.

Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import psycopg
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from shared.config import Settings  # noqa: E402
from shared.db import create_sync_engine, sync_session_factory  # noqa: E402
from shared.models import Company, Debtor, Employee, Environment, SigningKey  # noqa: E402
from shared.outbox import emit  # noqa: E402
from shared.signing import Signer  # noqa: E402
from shared.vault import SecretBox, load_keyring  # noqa: E402
from tests.fixtures import factories as f  # noqa: E402

PG = os.environ.get("KOPPEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("KOPPEL_BENCH_REDIS", "redis://127.0.0.1:6379/14")
DB = "koppel_bench_sync"
PORT = 18556
BASE = f"http://127.0.0.1:{PORT}"
KOPPEL = str(ROOT / ".venv/bin/koppel") if (ROOT / ".venv").is_dir() else str(
    Path(sys.executable).parent / "koppel")
READ_CONNECTIONS_PER_APP = 10  # 10 x 600 requests per minute = the app's 6000


def database(drop_only: bool = False) -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        if not drop_only:
            conn.execute(f"CREATE DATABASE {DB}")
    return f"{PG}/{DB}"


def env_for(url: str, var: Path) -> dict[str, str]:
    return {**os.environ, "KOPPEL_DATABASE_URL": url, "KOPPEL_REDIS_URL": REDIS,
            "KOPPEL_VAR_DIR": str(var), "KOPPEL_LOG_LEVEL": "warning",
            "KOPPEL_WEBHOOKS_ALLOW_LOOPBACK": "true"}


class Bench:
    """The seeded world and a token signer."""

    def __init__(self, env: dict[str, str], employees: int = 50) -> None:
        subprocess.run([KOPPEL, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run([KOPPEL, "demo", "seed", "--json", "--name", "bench", "--employees",
                        str(employees)], env=env, check=True, stdout=subprocess.DEVNULL)
        self.settings = Settings(database_url=env["KOPPEL_DATABASE_URL"], redis_url=REDIS,
                                 var_dir=Path(env["KOPPEL_VAR_DIR"]))
        self.engine = create_sync_engine(self.settings.resolved_database_url)
        self.sessions = sync_session_factory(self.engine)
        with self.sessions() as session:
            if session.exec(select(SigningKey)).first() is None:
                from shared.signing import rotate_signing_keys
                rotate_signing_keys(self.settings)
        self.signer = Signer(SecretBox(load_keyring(self.settings)))
        with self.sessions() as session, session.begin():
            env_row = session.exec(select(Environment).where(Environment.name == "bench")).one()
            debtor = session.exec(select(Debtor).where(Debtor.environment_id == env_row.id,
                                                       Debtor.number == "D1")).one()
            companies = list(session.exec(select(Company).where(
                Company.debtor_id == debtor.id)).all())
            self.env_id, self.debtor_id = env_row.id, debtor.id
            self.company_id = companies[0].id
            self.employees = [e.id for e in session.exec(select(Employee).where(
                Employee.debtor_id == debtor.id)).all()]
            session.expunge_all()
        self.companies = companies

    def _sign(self, claims: dict) -> str:
        now = int(time.time())
        base = {"iss": self.settings.issuer, "aud": self.settings.api_audience, "iat": now,
                "exp": now + 3600}
        with self.sessions() as session, session.begin():
            return self.signer.sign(session, {**base, **claims}, alg="ES256", typ="at+jwt")

    def app_with_connections(self, scopes: list[str], connections: int,
                             jkt: str | None = None) -> tuple[str, list[str]]:
        """A partner app; returns its client-credentials token and connection tokens
        (DPoP-bound to the key with thumbprint `jkt`, `cnf.jkt`, when it is given)."""
        with self.sessions() as session, session.begin():
            app = f.make_app(session, scopes=scopes)
            companies = [session.get(Company, c.id) for c in self.companies]
            environment = session.get(Environment, self.env_id)
            rows = []
            for _ in range(connections):  # one live connection per user, app and debtor
                user = f.make_user(session, environment, companies=companies)
                connection = f.make_connection(session, user, app, companies=companies,
                                               scopes=scopes)
                family = f.make_token_family(session, app, user, connection_id=connection.id)
                rows.append((user.id, connection.id, family.id))
            client_id = app.client_id
        app_token = self._sign({"sub": client_id, "client_id": client_id,
                                "scope": "webhooks.manage", "jti": secrets.token_urlsafe(12)})
        tokens = [self._sign({
            "sub": str(user_id), "client_id": client_id, "scope": " ".join(scopes),
            "jti": f"{family_id}.{secrets.token_urlsafe(8)}",
            "environment_id": str(self.env_id), "connection_id": str(connection_id),
            "debtor_id": str(self.debtor_id), **({"cnf": {"jkt": jkt}} if jkt else {})})
            for user_id, connection_id, family_id in rows]
        return app_token, tokens

    def write_events(self, count: int) -> None:
        with self.sessions() as session, session.begin():
            for _ in range(count):
                emit(session, "employee.updated", self.env_id, debtor_id=self.debtor_id,
                     company_id=self.company_id, employee_id=self.employees[0],
                     changed_fields=["last_name"])


class Receiver:
    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self.latencies_ms: list[float] = []
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        self.count += 1
        self.first = self.first or now
        self.last = now
        msg = request.headers.get("webhook-id", "")
        if msg.startswith("msg_"):
            created_ms = uuid.UUID(msg[4:]).int >> 80  # UUIDv7: unix milliseconds
            self.latencies_ms.append(now * 1000 - created_ms)
        return web.Response(text="ok")

    async def start(self) -> web.ServerRunner:
        runner = web.ServerRunner(web.Server(self.handle), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return runner


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far: a figure that other processes on the
    same core do not inflate (unlike wall-clock rates)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", "0", *cmd], env=env)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


async def ready(http: aiohttp.ClientSession) -> None:
    for _ in range(150):
        try:
            async with http.get(f"{BASE}/readyz") as r:
                if r.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise SystemExit("the sync service did not become ready")


async def reset_rate_limits() -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(REDIS)
    keys = [k async for k in client.scan_iter("koppel:rl:*", count=1000)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def deliveries(args, bench: Bench, env, http, receiver: Receiver) -> list[str]:
    hooks = []
    for a in range(args.apps):
        app_token, _ = bench.app_with_connections(["employee.info.read"], 1)
        for e in range(args.endpoints):
            async with http.post(f"{BASE}/v1/webhooks", headers={
                    "Authorization": f"Bearer {app_token}"}, json={
                    "url": f"http://127.0.0.1:{receiver.port}/a{a}/e{e}",
                    "events": ["employee.updated"]}) as r:
                body = await r.json()
                assert r.status == 201, body
                hooks.append((app_token, body["id"]))
    bench.write_events(args.events)
    expected = args.events * args.apps * args.endpoints
    began = time.time()
    worker = start([KOPPEL, "worker"], env)
    try:
        while receiver.count < expected and time.time() - began < args.drain_timeout:
            await asyncio.sleep(0.05)
        cpu = cpu_seconds(worker.pid)
    finally:
        stop(worker)
    got = receiver.count
    span = receiver.last - receiver.first
    lines = [
        f"deliveries: {args.events} events x {args.apps} apps x {args.endpoints} endpoints = "
        f"{expected} expected, {got} received",
        f"  first to last receipt {span:.1f} s: {got / span:.0f} deliveries/s "
        f"(one worker process, core 0)",
        f"  worker start to last receipt (incl. start-up and relay) {receiver.last - began:.1f} s:"
        f" {got / (receiver.last - began):.0f} deliveries/s",
        f"  worker CPU {cpu:.1f} s (incl. start-up and relay): {got / cpu:.0f} deliveries per"
        f" CPU-second",
    ]
    for app_token, hook_id in hooks:
        async with http.delete(f"{BASE}/v1/webhooks/{hook_id}",
                               headers={"Authorization": f"Bearer {app_token}"}) as r:
            assert r.status in (200, 204), r.status
    return lines


async def latency(args, bench: Bench, env, http, receiver: Receiver) -> list[str]:
    total = int(args.rate * args.rate_seconds)
    # Enough connections (600 requests a minute each) and apps (6000) to stay in budget;
    # only the first app subscribes.
    app_token, tokens = bench.app_with_connections(["employee.info"], READ_CONNECTIONS_PER_APP)
    for _ in range(total // 5000):
        tokens += bench.app_with_connections(["employee.info"], READ_CONNECTIONS_PER_APP)[1]
    async with http.post(f"{BASE}/v1/webhooks", headers={"Authorization": f"Bearer {app_token}"},
                         json={"url": f"http://127.0.0.1:{receiver.port}/latency",
                               "events": ["employee.updated"]}) as r:
        assert r.status == 201, await r.text()
    await reset_rate_limits()
    receiver.count, receiver.latencies_ms = 0, []
    worker = start([KOPPEL, "worker"], env)
    await asyncio.sleep(5)  # the worker's start-up
    failed = 0
    late = 0.0

    async def patch(i: int) -> None:
        nonlocal failed
        employee = bench.employees[i % len(bench.employees)]
        auth = {"Authorization": f"Bearer {tokens[i % len(tokens)]}"}
        async with http.patch(f"{BASE}/v1/employees/{employee}", headers=auth,
                              json={"last_name": f"Bench {i}"}) as r:
            await r.read()
            failed += r.status != 200

    tasks = []
    began = time.perf_counter()
    try:
        for i in range(total):
            delay = began + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            tasks.append(asyncio.create_task(patch(i)))
        await asyncio.gather(*tasks)
        sent = time.perf_counter() - began
        deadline = time.time() + 60
        while receiver.count < total - failed and time.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        stop(worker)
    values = receiver.latencies_ms
    return [
        f"latency: PATCH /v1/employees/{{id}} at {args.rate:g}/s for {args.rate_seconds:g} s "
        f"({total} writes in {sent:.1f} s, {failed} failed, sender at most {late * 1000:.0f} ms"
        f" behind), {len(values)} received; API, worker on core 0",
        f"  event created (in the API transaction) to receiver: p50 {percentile(values, 50):.0f} ms"
        f", p99 {percentile(values, 99):.0f} ms, max {max(values):.0f} ms",
    ]


async def reads(args, bench: Bench, http, server: subprocess.Popen) -> list[str]:
    tokens = []
    for _ in range(args.read_apps):
        tokens += bench.app_with_connections(["employee.info.read"],
                                             READ_CONNECTIONS_PER_APP)[1]
    employees = bench.employees
    counter = 0

    async def run(seconds: float) -> tuple[float, int]:
        nonlocal counter
        done = errors = 0
        stop_at = time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=args.concurrency)
        async with aiohttp.ClientSession(connector=connector) as client:
            async def loop() -> None:
                nonlocal done, errors, counter
                while time.perf_counter() < stop_at:
                    counter += 1
                    headers = {"Authorization": f"Bearer {tokens[counter % len(tokens)]}"}
                    url = f"{BASE}/v1/employees/{employees[counter % len(employees)]}"
                    async with client.get(url, headers=headers) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1
                        else:
                            errors += 1
            start_at = time.perf_counter()
            await asyncio.gather(*(loop() for _ in range(args.concurrency)))
            return done / (time.perf_counter() - start_at), errors

    await reset_rate_limits()
    await run(2)  # warm up
    runs, per_cpu = [], []
    for _ in range(args.runs):
        await reset_rate_limits()
        cpu = cpu_seconds(server.pid)
        rate, errors = await run(args.seconds)
        per_cpu.append(rate * args.seconds / (cpu_seconds(server.pid) - cpu))
        if errors:
            print(f"  reads: {errors} non-200 answers", file=sys.stderr)
        runs.append(rate)
    return [
        f"reads: GET /v1/employees/{{id}}, {len(tokens)} connection tokens, {args.concurrency} "
        f"concurrent, {args.runs} x {args.seconds:g} s, uvicorn on core 0",
        f"  median {statistics.median(runs):.0f}/s (min {min(runs):.0f}, max {max(runs):.0f});"
        f" per server CPU-second: median {statistics.median(per_cpu):.0f}"
        f" (min {min(per_cpu):.0f}, max {max(per_cpu):.0f})",
    ]


async def main_async(args) -> None:
    var = Path("/tmp/koppel-bench-sync")
    var.mkdir(exist_ok=True)
    url = database()
    env = env_for(url, var)
    subprocess.run(["redis-cli", "-u", REDIS, "flushdb"], check=True, stdout=subprocess.DEVNULL)
    bench = Bench(env)
    os.sched_setaffinity(0, {1})
    receiver = Receiver()
    runner = await receiver.start()
    server = start([str(Path(KOPPEL).parent / "python"), "-m", "uvicorn",
                    "services.sync.app:create_app", "--factory", "--port", str(PORT),
                    "--no-access-log", "--log-level", "warning"], env)
    lines = [f"sync service, PostgreSQL, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"]
    try:
        async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=args.rate_concurrency)) as http:
            await ready(http)
            if "deliveries" in args.scenarios:
                lines += await deliveries(args, bench, env, http, receiver)
            if "latency" in args.scenarios:
                lines += await latency(args, bench, env, http, receiver)
            if "reads" in args.scenarios:
                lines += await reads(args, bench, http, server)
    finally:
        stop(server)
        await runner.cleanup()
        bench.engine.dispose()
        if not args.keep:
            database(drop_only=True)
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--endpoints", type=int, default=5)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--drain-timeout", type=float, default=300)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--rate-seconds", type=float, default=20)
    parser.add_argument("--rate-concurrency", type=int, default=100)
    parser.add_argument("--read-apps", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenarios", default="deliveries,latency,reads")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
