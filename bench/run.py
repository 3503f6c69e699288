"""`make bench`: Koppel against its references, in one run, as one table.

    .venv/bin/python -m bench.run [--scenario refresh,login] [--runs 3] [--seconds 5]

Sets up PostgreSQL-backed Koppel in its own databases (`koppel_bench`, recreated each
run; `koppel_bench_overview`, kept while its seed matches) and a claimed Redis database,
runs every chosen scenario and the references it is compared with (servers pinned to
core 0, the load generator to core 1), prints one table and, for a full run, writes
docs/benchmarks.md. See docs/benchmarks.md for what each scenario does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import time
from pathlib import Path

from bench.harness import infra, refs
from bench.harness.common import ROOT, say
from bench.harness.context import Ctx
from bench.harness.doc import document
from bench.harness.procs import can_pin, pin_self
from bench.harness.report import notes, replace_soak, rows, text_table, write_doc
from bench.harness.targets import EXTRA_SCENARIOS, SCENARIOS

WORLD_DATABASE = "koppel_bench"
DOC = ROOT / "docs" / "benchmarks.md"
AUTH = {"client_credentials", "refresh", "code_exchange", "login", "par_exchange"}
SYNC = {"reads", "dpop_reads", "scope_usage", "data_access", "server", "deliveries",
        "latency"}
OVERVIEW = {"overview", "exposure", "csv"}


def parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=env("SCENARIO", ""),
                        help=f"comma-separated, from {', '.join(SCENARIOS + EXTRA_SCENARIOS)}"
                        " (default: all but soak)")
    parser.add_argument("--runs", type=int, default=int(env("BENCH_RUNS", "3")))
    parser.add_argument("--seconds", type=float, default=float(env("BENCH_SECONDS", "5")))
    parser.add_argument("--concurrency", type=int, default=int(env("BENCH_CONCURRENCY", "32")))
    parser.add_argument("--connections", type=int,
                        default=int(env("BENCH_CONNECTIONS", "") or 1_000_000),
                        help="connections in the overview database")
    parser.add_argument("--soak-seconds", type=float,
                        default=float(env("SOAK_SECONDS", "") or 300))
    parser.add_argument("--no-peer", action="store_true",
                        help="skip the oidc-provider peer (no Node.js needed)")
    parser.add_argument("--doc", type=Path, default=None,
                        help="write the report here (default: docs/benchmarks.md for a "
                        "full run or the soak, nowhere for a partial run)")
    parser.add_argument("--no-doc", action="store_true", help="write no report file")
    return parser.parse_args(argv)


def chosen_scenarios(spec: str) -> list[str]:
    if not spec.strip():
        return list(SCENARIOS)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in SCENARIOS + EXTRA_SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; known: "
                         f"{', '.join(SCENARIOS + EXTRA_SCENARIOS)}")
    return names


async def measure(ctx: Ctx, args: argparse.Namespace, chosen: list[str]) -> str | None:
    """Run the chosen scenarios; returns the soak's report, if it ran."""
    from bench.harness import auth_scenarios, overview_scenarios, sync_scenarios

    world = env = None
    if set(chosen) & (AUTH | SYNC | {"verify", "driver", "soak"}):
        from bench.harness.world import World

        say(f"setting up {WORLD_DATABASE} (migrate, demo seed, apps)")
        database = infra.recreate_database(WORLD_DATABASE)
        env = ctx.env(database, ctx.var / "world")
        world = World(env, ctx.redis.url)
    try:
        if "client_credentials" in chosen and not args.no_peer:
            say("reference: oidc-provider client-credentials grants")
            await refs.oidc_provider(ctx)
        if "login" in chosen:
            say("reference: argon2id ceiling")
            refs.argon2(ctx)
        if set(chosen) & AUTH:
            say("auth service scenarios")
            await auth_scenarios.run(ctx, world, env, chosen)
        if "verify" in chosen:
            say("token verification (and the raw ES256 reference)")
            verify_probe(ctx, env)
        if "driver" in chosen:
            say("database drivers: psycopg and asyncpg on the hot statements")
            world.app_with_connections(["employee.info.read"], 1)  # a connection to read by
            driver_probe(ctx, env)
        if set(chosen) & SYNC:
            say("sync service scenarios")
            await sync_scenarios.run(ctx, world, env, chosen)
        if set(chosen) & OVERVIEW:
            say("registry overview scenarios")
            await overview_scenarios.run(ctx, chosen, args.connections)
        if "soak" in chosen:
            from bench.harness import soak

            return await soak.run(ctx, world, env, args.soak_seconds)
    finally:
        if world is not None:
            world.engine.dispose()
            infra.drop_database(WORLD_DATABASE)
    return None


def driver_probe(ctx: Ctx, env: dict[str, str]) -> None:
    """Statements per CPU-second of psycopg and asyncpg (bench/harness/driver_probe.py)."""
    refs.probe("driver", 1, env)  # warm-up
    for i in range(ctx.runs):
        result = refs.probe("driver", ctx.seconds, env)
        for key, value in result.items():
            ctx.figure(key, "/s").runs.append(value)
        say(f"  driver run {i + 1}/{ctx.runs}: " + ", ".join(
            f"{key} {value:,.0f}/CPU-s" for key, value in result.items()))
    ctx.figure("employee_read_asyncpg", "/s").notes.append(
        "statements per CPU-second of one process on the server core, 10 connections "
        "busy at once, the drivers in turn in one-second slices")


def verify_probe(ctx: Ctx, env: dict[str, str]) -> None:
    raw, verify = ctx.figure("ref_es256", "/s"), ctx.figure("verify", "/s")
    refs.probe("verify", 1, env)  # warm-up
    for i in range(ctx.runs):
        result = refs.probe("verify", ctx.seconds, env)
        raw.runs.append(result["raw"])
        verify.runs.append(result["verifier"])
        say(f"  verify run {i + 1}/{ctx.runs}: {result['verifier']:,.0f}/s, raw ES256 "
            f"{result['raw']:,.0f}/s")
    verify.notes.append("TokenVerifier with the status mirror (signature, claims, connection "
                        "status), interleaved 250-token batches with the raw checks, one core")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    chosen = chosen_scenarios(args.scenario)
    started = time.time()
    infra.ensure_servers()
    load_before = infra.load_average()
    pin_self()
    var = infra.VAR
    var.mkdir(parents=True, exist_ok=True)
    ctx = Ctx(runs=args.runs, seconds=args.seconds, concurrency=args.concurrency, var=var,
              redis=infra.RedisDb())
    soak_report = None
    try:
        soak_report = asyncio.run(measure(ctx, args, chosen))
    finally:
        ctx.redis.release()
    table = rows(ctx.figures, chosen)
    if table:
        print()
        print(text_table(table))
    figure_notes = notes(ctx.figures)
    if figure_notes:
        print("\n" + "\n".join(figure_notes))
    if soak_report:
        print("\n" + soak_report)
    minutes, seconds = divmod(int(time.time() - started), 60)
    meta = {
        "machine": infra.machine(), "load_before": load_before,
        "load_after": infra.load_average(), "runs": args.runs, "seconds": args.seconds,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
        "command": "make bench" + (f" SCENARIO={','.join(chosen)}" if args.scenario else ""),
        "pinning": ("servers and single-core references on core 0, load generator and "
                    "webhook receiver on core 1") if can_pin() else "none (fewer than 2 cores)",
        "duration": f"{minutes} min {seconds} s",
    }
    full = set(SCENARIOS) <= set(chosen)
    doc = None if args.no_doc else args.doc or (DOC if full or soak_report else None)
    if doc is not None:
        if full:
            write_doc(doc, document(table, meta, figure_notes),
                      soak=None if soak_report is None else soak_report)
        if soak_report and not full:
            replace_soak(doc, soak_report)
        say(f"wrote {doc}")
    say(f"done in {meta['duration']} ({shlex.join(sys.argv)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
