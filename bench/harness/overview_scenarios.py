"""The environment overview at a million connections (SPEC 5.5): p95 of the first page,
a deep cursor page and a filtered page, the CSV export's rows/s and peak memory, and
who can read one employee (exposure) in the busiest company and a median one.
`koppel serve registry` on the server core, against `koppel_bench_overview`, seeded by
`koppel bench seed-connections` and kept between runs while its seed marker matches."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlmodel import select

from bench.harness import infra
from bench.harness.common import KOPPEL, ROOT, percentile, say
from bench.harness.context import Ctx, url
from bench.harness.procs import Proc
from bench.overview_bench import PATH, exposure_subjects, prepare
from shared.config import Settings
from shared.db import create_sync_engine, sync_session_factory
from shared.models import SigningKey

# Another name (KOPPEL_BENCH_OVERVIEW_DB) keeps a second million-row database beside it.
DATABASE = os.environ.get("KOPPEL_BENCH_OVERVIEW_DB", "koppel_bench_overview")
ENVIRONMENT = "Bench 1M"
SEED_VERSION = 2  # 2: expires_at and scope_used_at seeded
PAGE_REQUESTS = 100
CSV_TIMEOUT_S = float(os.environ.get("BENCH_CSV_TIMEOUT", "180"))


def ensure_seeded(ctx: Ctx, connections: int) -> tuple[dict[str, str], Path]:
    """The overview database, seeded with `connections` unless already so (the marker is a
    comment on the database; the key ring that signed it lives in var/bench/overview). The
    marker names the schema head: a database seeded before a migration is seeded again,
    not migrated (a migration's backfill would leave the tables bloated and unanalysed,
    and the figures not comparable)."""
    var = ctx.var / "overview"
    marker = (f"koppel-bench overview v{SEED_VERSION}: {connections} connections, seed 1, "
              f"schema {_schema_head()}")
    env = ctx.env(infra.database_url(DATABASE), var)
    key_file = Settings(_env_file=None, var_dir=var).key_file
    if infra.database_comment(DATABASE) == marker and key_file.exists():
        say(f"overview database kept ({marker})")
        subprocess.run([KOPPEL, "db", "upgrade"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return env, var
    say(f"seeding {DATABASE} with {connections:,} connections (minutes for a million)")
    infra.recreate_database(DATABASE)
    subprocess.run([KOPPEL, "db", "upgrade"], env=env, check=True, stdout=subprocess.DEVNULL)
    started = time.perf_counter()
    subprocess.run([KOPPEL, "bench", "seed-connections", "--environment", ENVIRONMENT,
                    "--count", str(connections)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    say(f"  seeded in {time.perf_counter() - started:.0f} s")
    infra.analyze_database(DATABASE)
    infra.set_database_comment(DATABASE, marker)
    return env, var


def _schema_head() -> str:
    """The newest migration's revision."""
    config = Config(str(ROOT / "alembic.ini"))
    return ScriptDirectory.from_config(config).get_current_head() or "none"


def _ensure_signing_key(settings: Settings) -> None:
    engine = create_sync_engine(settings.resolved_database_url)
    with sync_session_factory(engine)() as session:
        missing = session.exec(select(SigningKey)).first() is None
    engine.dispose()
    if missing:
        from shared.signing import rotate_signing_keys

        rotate_signing_keys(settings)


async def _pages(ctx: Ctx, http: aiohttp.ClientSession, name: str, params: dict,
                 path: str = PATH) -> None:
    figure = ctx.figure(name, "ms")

    async def once() -> float:
        start = time.perf_counter()
        async with http.get(f"{url('registry')}{path}", params=params) as r:
            await r.read()
            if r.status != 200:
                raise RuntimeError(f"{name}: {r.status}")
        return (time.perf_counter() - start) * 1000

    for _ in range(20):
        await once()
    for _ in range(ctx.runs):
        times = [await once() for _ in range(PAGE_REQUESTS)]
        figure.runs.append(percentile(times, 95))
    say(f"  {name}: p95 {figure.median:.1f} ms (p95 of {PAGE_REQUESTS} sequential requests, "
        f"{ctx.runs} runs)")


async def _export(http: aiohttp.ClientSession, server: Proc) -> dict:
    peak, done = [server.rss()], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.rss())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    start = time.perf_counter()
    complete = True
    try:
        async with http.get(f"{url('registry')}{PATH}", headers={"Accept": "text/csv"},
                            timeout=aiohttp.ClientTimeout(total=None)) as r:
            if r.status != 200:
                raise RuntimeError(f"CSV export: {r.status}")
            async for chunk in r.content.iter_chunked(1 << 16):
                lines += chunk.count(b"\n")
                if time.perf_counter() - start > CSV_TIMEOUT_S:
                    complete = False
                    break
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return {"rows": max(lines - 1, 0), "seconds": seconds, "peak": peak[0],
            "complete": complete}


async def run(ctx: Ctx, chosen: list[str], connections: int) -> None:
    env, var = ensure_seeded(ctx, connections)
    settings = Settings(_env_file=None, database_url=env["KOPPEL_DATABASE_URL"],
                        redis_url=ctx.redis.url, var_dir=var, issuer=env["KOPPEL_ISSUER"])
    _ensure_signing_key(settings)
    setup = prepare(settings, ENVIRONMENT)
    server = ctx.serve("registry", env)
    headers = {"Authorization": f"Bearer {setup['token']}"}
    try:
        async with aiohttp.ClientSession(headers=headers) as http:
            if "overview" in chosen:
                await _pages(ctx, http, "overview_first", {"limit": "50"})
                await _pages(ctx, http, "overview_deep", {"limit": "50",
                                                          "cursor": setup["cursor"]})
                await _pages(ctx, http, "overview_filtered", {
                    "limit": "50", "app": setup["app"], "status": "active"})
                ctx.figures["overview_first"].notes.append(
                    f"{setup['total']:,} connections (table and indexes {setup['size']}); "
                    f"filtered: the most popular app ({setup['app_count']:,} connections) "
                    "and status=active; deep: a cursor 90 % in"
                    + ("" if setup["total"] >= 1_000_000 else
                       " (fewer than the target's 1,000,000: BENCH_CONNECTIONS)"))
            if "exposure" in chosen:
                await _exposure(ctx, http, settings)
            if "csv" in chosen:
                await _csv(ctx, http, server)
    finally:
        server.stop()


async def _exposure(ctx: Ctx, http: aiohttp.ClientSession, settings: Settings) -> None:
    """Who can read one employee (its first page of 50), in the company that the most
    connections cover and in one of median coverage."""
    notes = []
    for subject in exposure_subjects(settings, ENVIRONMENT):
        name = f"exposure_{subject['label']}"
        await _pages(ctx, http, name, {"limit": "50"},
                     f"/v1/environment/employees/{subject['employee_id']}/exposure")
        notes.append(f"{subject['label']}: its company in {subject['covering']:,} consents")
    ctx.figures["exposure_busiest"].notes.append("; ".join(notes))


async def _csv(ctx: Ctx, http: aiohttp.ClientSession, server: Proc) -> None:
    rate, peak = ctx.figure("csv_rate", "/s"), ctx.figure("csv_peak_mb", "MB")
    idle = server.rss() / 1e6
    for i in range(ctx.runs):
        result = await _export(http, server)
        rate.runs.append(result["rows"] / result["seconds"])
        peak.runs.append(result["peak"] / 1e6)
        say(f"  CSV export run {i + 1}/{ctx.runs}: {result['rows']:,} rows in "
            f"{result['seconds']:.1f} s = {rate.runs[-1]:,.0f} rows/s, peak RSS "
            f"{peak.runs[-1]:.0f} MB")
        if not result["complete"]:
            rate.notes.append(f"run {i + 1} stopped after {CSV_TIMEOUT_S:.0f} s "
                              f"({result['rows']:,} rows): rows/s of the part received")
        if result["seconds"] > 60:
            rate.notes.append("one export took over 60 s: no further runs")
            break
    peak.notes.append(f"the registry process's peak RSS (idle: {idle:.0f} MB)")

