"""Benchmark the auth service's grants on PostgreSQL, one server core, one load core.

    .venv/bin/python bench/auth_bench.py [--seconds 10] [--concurrency 32] [--scenario NAME]

Creates a fresh database `koppel_bench_auth`, seeds it, starts uvicorn pinned to core 0,
drives it from core 1 with aiohttp, and prints requests/s per scenario with the
argon2id ceiling measured in the same run. Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared.config import Settings  # noqa: E402
from shared.db import create_sync_engine, sync_session_factory, utcnow  # noqa: E402
from shared.models import App, AuthorizationCode, RefreshToken, TokenFamily, User  # noqa: E402
from shared.passwords import hash_password, verify_password  # noqa: E402
from shared.vault import TokenKind, load_keyring, new_token, token_digest  # noqa: E402

PG = os.environ.get("KOPPEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("KOPPEL_BENCH_REDIS", "redis://127.0.0.1:6379/15")
DB = "koppel_bench_auth"
PORT = 18555
BASE = f"http://127.0.0.1:{PORT}"
REDIRECT = "http://127.0.0.1:9/cb"


def fresh_database() -> str:
    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    return f"{PG}/{DB}"


def env_for(url: str, var: Path) -> dict[str, str]:
    return {**os.environ, "KOPPEL_DATABASE_URL": url, "KOPPEL_REDIS_URL": REDIS,
            "KOPPEL_VAR_DIR": str(var), "KOPPEL_ISSUER": BASE, "KOPPEL_LOG_LEVEL": "warning",
            "KOPPEL_FAILED_LOGIN_LIMIT_PER_ACCOUNT": "1000000",
            "KOPPEL_FAILED_LOGIN_LIMIT_PER_ADDRESS": "1000000"}


def prepare(env: dict[str, str], codes: int, refreshes: int) -> dict:
    """Seed an app and user, and mint codes and refresh tokens straight into the DB."""
    subprocess.run([str(ROOT / ".venv/bin/koppel"), "db", "upgrade"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([str(ROOT / ".venv/bin/koppel"), "demo", "seed", "--json", "--name", "bench",
                    "--employees", "2"], env=env, check=True, stdout=subprocess.DEVNULL)
    settings = Settings(database_url=env["KOPPEL_DATABASE_URL"], redis_url=REDIS,
                        var_dir=Path(env["KOPPEL_VAR_DIR"]))
    ring = load_keyring(settings)
    secret = new_token(TokenKind.CLIENT_SECRET)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    engine = create_sync_engine(settings.resolved_database_url)
    plain_codes, plain_refresh = [], []
    with sync_session_factory(engine)() as db:
        user = db.query(User).filter(User.email == "hr_manager@bench.koppel.test").one()
        user.password_hash = hash_password("bench-password")
        app = App(client_id="bench-app", name="Bench", redirect_uris=[REDIRECT],
                  scopes=["employee.info.read", "offline_access"],
                  grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                  token_endpoint_auth_method="client_secret_basic",
                  client_secret_digest=token_digest(ring.digest_key, secret))
        db.add(app)
        db.flush()
        now = utcnow()
        # First-party-shaped families (no connection) keep the set-up simple; the grant
        # still checks the family, the user, the app and rotates with compare-and-swap.
        for _ in range(codes):
            family = TokenFamily(app_id=app.id, user_id=user.id, environment_id=user.environment_id,
                                 scopes=["employee.info.read", "offline_access"],
                                 expires_at=now + timedelta(days=30))
            db.add(family)
            db.flush()
            code = new_token(TokenKind.AUTHORIZATION_CODE)
            plain_codes.append(code)
            db.add(AuthorizationCode(
                code_digest=token_digest(ring.digest_key, code), app_id=app.id, user_id=user.id,
                family_id=family.id, redirect_uri=REDIRECT, scopes=family.scopes,
                code_challenge=challenge.decode(), expires_at=now + timedelta(hours=1)))
        for _ in range(refreshes):
            family = TokenFamily(app_id=app.id, user_id=user.id, environment_id=user.environment_id,
                                 scopes=["employee.info.read", "offline_access"],
                                 expires_at=now + timedelta(days=30))
            db.add(family)
            db.flush()
            token = new_token(TokenKind.REFRESH_TOKEN)
            plain_refresh.append(token)
            db.add(RefreshToken(token_digest=token_digest(ring.digest_key, token),
                                family_id=family.id, expires_at=now + timedelta(days=30)))
        db.commit()
    engine.dispose()
    return {"secret": secret, "verifier": verifier, "codes": plain_codes,
            "refresh": plain_refresh, "settings": settings}


async def mint_login_challenges(settings: Settings, n: int) -> tuple[list[tuple[str, str]], str]:
    """Pending authorization requests bound to one browser cookie, for the login scenario."""
    import redis.asyncio as aioredis

    from services.auth.oauth2.pending import Pending, _pending_key
    from shared.vault import load_keyring as ring_of

    ring = ring_of(settings)
    cookie = secrets.token_urlsafe(32)
    client = aioredis.Redis.from_url(REDIS)

    class _Runtime:  # the two attributes _pending_key reads
        keyring = ring
        redis = client

    out = []
    pipe = client.pipeline(transaction=False)
    for _ in range(n):
        challenge = new_token(TokenKind.CHALLENGE)
        pending = Pending(query=[("client_id", "bench-app")], client_id="bench-app",
                          browser=token_digest(ring.digest_key, cookie))
        pipe.set(_pending_key(_Runtime, challenge), json.dumps(dataclasses.asdict(pending)), ex=900)
        out.append((challenge, pending.csrf))
    await pipe.execute()
    await client.aclose()
    return out, cookie


async def drive(name: str, make_request, seconds: float, concurrency: int) -> float:
    """Requests per second over `seconds` with `concurrency` workers; asserts success."""
    done = 0
    errors = 0
    stop = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        async def worker() -> None:
            nonlocal done, errors
            while time.perf_counter() < stop:
                try:
                    status = await make_request(http)
                except IndexError:
                    return
                if status in (200, 303):
                    done += 1
                else:
                    errors += 1
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    if errors:
        print(f"  {name}: {errors} failed requests", file=sys.stderr)
    return done / elapsed


def argon2_ceiling(seconds: float = 3.0) -> float:
    stored = hash_password("bench-password")
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        verify_password(stored, "bench-password")
        count += 1
    return count / (time.perf_counter() - start)


async def run(args) -> None:
    var = Path("/tmp/koppel-bench-auth")
    var.mkdir(exist_ok=True)
    url = fresh_database()
    env = env_for(url, var)
    budget = int(args.seconds * 3000)
    data = prepare(env, codes=budget, refreshes=budget)
    subprocess.run(["redis-cli", "-u", REDIS, "flushdb"], check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen(
        ["taskset", "-c", "0", str(ROOT / ".venv/bin/python"), "-m", "uvicorn",
         "services.auth.app:create_app", "--factory", "--port", str(PORT), "--no-access-log",
         "--log-level", "warning"], env=env)
    os.sched_setaffinity(0, {1})
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"{BASE}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        basic = base64.b64encode(f"bench-app:{data['secret']}".encode()).decode()
        auth_header = {"Authorization": f"Basic {basic}"}
        codes, refresh = list(data["codes"]), list(data["refresh"])

        async def client_credentials(http):
            async with http.post(f"{BASE}/token", data={"grant_type": "client_credentials"},
                                 headers=auth_header) as r:
                await r.read()
                return r.status

        async def code_exchange(http):
            form = {"grant_type": "authorization_code", "code": codes.pop(),
                    "redirect_uri": REDIRECT, "code_verifier": data["verifier"]}
            async with http.post(f"{BASE}/token", data=form, headers=auth_header) as r:
                await r.read()
                return r.status

        async def refresh_grant(http):
            form = {"grant_type": "refresh_token", "refresh_token": refresh.pop()}
            async with http.post(f"{BASE}/token", data=form, headers=auth_header) as r:
                await r.read()
                return r.status

        logins, cookie = await mint_login_challenges(data["settings"], int(args.seconds * 200))

        async def login(http):
            challenge, csrf = logins.pop()
            form = {"username": "hr_manager@bench.koppel.test", "password": "bench-password",
                    "login_challenge": challenge, "csrf_token": csrf}
            async with http.post(f"{BASE}/login", data=form, allow_redirects=False,
                                 cookies={"koppel_browser": cookie}) as r:
                await r.read()
                return r.status

        scenarios = {"client_credentials": client_credentials, "code_exchange": code_exchange,
                     "refresh": refresh_grant, "login": login}
        chosen = [args.scenario] if args.scenario else list(scenarios)
        results = {}
        for name in chosen:
            await drive(name, scenarios[name], 2, args.concurrency)  # warm up
            runs = [await drive(name, scenarios[name], args.seconds, args.concurrency)
                    for _ in range(args.runs)]
            results[name] = runs
        ceiling = [argon2_ceiling() for _ in range(args.runs)] if "login" in chosen else []
    finally:
        server.terminate()
        server.wait(timeout=20)
    print(f"\nauth service, PostgreSQL, 1 server core, {args.concurrency} concurrent, "
          f"{args.runs} x {args.seconds:g} s")
    print(f"{'scenario':<22}{'median/s':>10}{'min':>10}{'max':>10}")
    for name, runs in results.items():
        print(f"{name:<22}{statistics.median(runs):>10.0f}{min(runs):>10.0f}{max(runs):>10.0f}")
    if ceiling:
        med = statistics.median(ceiling)
        print(f"{'argon2id ceiling':<22}{med:>10.1f}{min(ceiling):>10.1f}{max(ceiling):>10.1f}")
        print(f"logins / ceiling: {statistics.median(results['login']) / med:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--scenario")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
